// SPDX-License-Identifier: GPL-2.0
//
// TCP state tracking from the sock:inet_sock_set_state tracepoint, attached
// as tp_btf (no tracefs needed, arguments are typed kernel pointers).
//
// What the kernel reports here, and so what this program can count:
//
// * Full sockets: every state change of a struct sock goes through
//   tcp_set_state()/inet_sk_state_store()/inet_sk_set_state(), which fire
//   the tracepoint *before* storing the new state. A socket is born and dies
//   in CLOSE without an event.
// * A passive connection's child socket is cloned from its listener, so its
//   first event reads LISTEN -> SYN_RECV although the child was never a
//   listener; we treat that event as "new socket" and leave LISTEN alone.
// * Request sockets (NEW_SYN_RECV, what `ss` shows as SYN-RECV) and
//   TIME_WAIT sockets (inet_timewait_sock, also used for orphaned FIN_WAIT2)
//   are separate small objects that fire no event when they appear or die.
//   Those states, and CLOSE, are counted from a filtered netlink dump in user
//   space; this program only keeps the deltas of the states below.
//
// Only TCP over IPv4/IPv6 in the exporter's own network namespace counts:
// netlink sees only that namespace too, and the two must agree.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_LISTEN 10
#define TCP_CLOSE 7

// States numbers fit in 4 bits (ESTABLISHED = 1 .. BOUND_INACTIVE = 13).
#define NSTATES 16

// Set by user space before load: the inode of our network namespace.
const volatile __u32 netns_ino = 0;

// Cleared by user space once it has seeded the gauges; while set, the first
// old state of every socket that changes state is remembered (see seed_first).
volatile __u32 seeding = 1;

struct counters {
	// Transitions (old * NSTATES + new).
	__u64 transitions[NSTATES * NSTATES];
	// Net change of the number of full sockets per state since attach.
	__s64 delta[NSTATES];
	// Events we could not record: seed_first or pending_connect was full.
	__u64 seed_lost;
	__u64 conn_lost;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} tcp_state_map SEC(".maps");

// Socket cookie -> its state when it first changed after attach, while
// seeding. User space reconciles its netlink dump with it.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u32);
} seed_first SEC(".maps");

// A process, keyed so that a reused pid is a different key.
struct owner {
	__u32 tgid;
	__u32 pad;
	// task->group_leader->start_boottime, ns since boot.
	__u64 start;
};

struct conn_value {
	__u64 opened;
	char comm[16];
};

// Connections established per process, active and passive.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct owner);
	__type(value, struct conn_value);
} conn_by_owner SEC(".maps");

struct owned {
	struct owner owner;
	char comm[16];
	__u64 sk;
};

// Socket in SYN_SENT -> the process that called connect(), credited once
// the connection is ESTABLISHED (that transition runs in softirq context).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct owned);
} pending_connect SEC(".maps");

// Listening port -> the process that called listen(). Passive connections
// complete in softirq context, so they are credited to the listener's owner.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u16);
	__type(value, struct owned);
} listener_owner SEC(".maps");

static __always_inline void current_owner(struct owned *o, const struct sock *sk)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();

	o->owner.tgid = bpf_get_current_pid_tgid() >> 32;
	o->owner.pad = 0;
	o->owner.start = BPF_CORE_READ(task, group_leader, start_boottime);
	bpf_get_current_comm(o->comm, sizeof(o->comm));
	o->sk = (__u64)sk;
}

static __always_inline void credit(struct counters *c, const struct owned *o)
{
	struct conn_value *v = bpf_map_lookup_elem(&conn_by_owner, &o->owner);

	if (!v) {
		struct conn_value init = {};

		__builtin_memcpy(init.comm, o->comm, sizeof(init.comm));
		// NOEXIST: a concurrent insert wins and we add to it below.
		bpf_map_update_elem(&conn_by_owner, &o->owner, &init, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&conn_by_owner, &o->owner);
		if (!v) {
			c->conn_lost++;
			return;
		}
	}
	__sync_fetch_and_add(&v->opened, 1);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(inet_sock_set_state, const struct sock *sk, const int oldstate,
	     const int newstate)
{
	__u32 zero = 0;
	struct counters *c;
	__u16 family;
	__u64 key;

	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	if (BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) != netns_ino)
		return 0;
	c = bpf_map_lookup_elem(&tcp_state_map, &zero);
	if (!c)
		return 0;

	__u32 from = oldstate & (NSTATES - 1);
	__u32 to = newstate & (NSTATES - 1);
	c->transitions[from * NSTATES + to]++;

	// A passive child's first event: it was never a listener.
	int clone = oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV;
	if (!clone)
		c->delta[from]--;
	c->delta[to]++;

	if (seeding) {
		__u32 first = clone ? TCP_CLOSE : from;
		__u64 cookie = bpf_get_socket_cookie((void *)sk);

		if (bpf_map_update_elem(&seed_first, &cookie, &first, BPF_NOEXIST) == -7 /* E2BIG */)
			c->seed_lost++;
	}

	key = (__u64)sk;
	if (newstate == TCP_SYN_SENT) {
		// connect(): process context.
		struct owned o;

		current_owner(&o, sk);
		if (bpf_map_update_elem(&pending_connect, &key, &o, BPF_ANY))
			c->conn_lost++;
	} else if (oldstate == TCP_SYN_SENT) {
		struct owned *o = bpf_map_lookup_elem(&pending_connect, &key);

		if (o) {
			if (newstate == TCP_ESTABLISHED)
				credit(c, o);
			bpf_map_delete_elem(&pending_connect, &key);
		}
	} else if (newstate == TCP_LISTEN) {
		// listen(): process context.
		struct owned o;
		__u16 port = BPF_CORE_READ(sk, __sk_common.skc_num);

		current_owner(&o, sk);
		if (bpf_map_update_elem(&listener_owner, &port, &o, BPF_ANY))
			c->conn_lost++;
	} else if (oldstate == TCP_LISTEN && !clone) {
		__u16 port = BPF_CORE_READ(sk, __sk_common.skc_num);
		struct owned *o = bpf_map_lookup_elem(&listener_owner, &port);

		// Another listener on the same port (SO_REUSEPORT) keeps its entry.
		if (o && o->sk == key)
			bpf_map_delete_elem(&listener_owner, &port);
	} else if (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED) {
		__u16 port = BPF_CORE_READ(sk, __sk_common.skc_num);
		struct owned *o = bpf_map_lookup_elem(&listener_owner, &port);

		if (o)
			credit(c, o);
		else
			c->conn_lost++;
	}
	return 0;
}
