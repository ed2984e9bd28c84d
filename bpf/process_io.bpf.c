// SPDX-License-Identifier: GPL-2.0 OR MIT
//
// Per-process network and block I/O counters. See docs/ebpf.md for why
// each hook was chosen, who gets credited and what it costs.
//
// tp_btf programs get typed kernel pointers, so fields are read by plain
// dereference (CO-RE relocated through vmlinux.h's preserve_access_index)
// rather than bpf_probe_read: cheaper per event, and checked by the verifier.
//
// Every counter is keyed by thread group id (the pid user space sees) in an
// LRU hash sized by user space before load, so a flood of processes can
// never grow the maps past their configured size. When the last thread of a
// process exits, its final counters go to user space through the `exits`
// ring buffer and its entries are deleted, so the maps hold live processes
// only and group totals keep what exited members did.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define MSG_PEEK 2
#define EEXIST 17
/* REQ_OP_BITS in include/linux/blk_types.h; stable since 4.10. */
#define REQ_OP_MASK 0xff
/* Devices one process can be counted on; more are counted as dropped. */
#define MAX_DEVS 4

enum stat_index { STAT_PROCESSED, STAT_DROPPED, STAT_COUNT };

struct net_counts {
	__u64 rx_bytes;
	__u64 tx_bytes;
	__u64 rx_packets;
	__u64 tx_packets;
	__u64 drops;
};

/* One process's block I/O on up to MAX_DEVS devices; index 0 read, 1 write.
 * A fixed array instead of a (tgid, dev) key keeps exit cleanup to one
 * delete, with no map walk. dev is the kernel's MKDEV(major, minor)
 * ((major << 20) | minor); 0 marks a free slot. */
struct io_counts {
	__u64 dev[MAX_DEVS]; /* u64: BPF cmpxchg needs 64 bits before -mcpu=v3 */
	__u64 bytes[MAX_DEVS][2];
	__u64 ops[MAX_DEVS][2];
};

struct exit_record {
	__u32 tgid;
	__u8 has_net;
	__u8 has_io;
	__u8 pad[2];
	char comm[16];
	struct net_counts net;
	struct io_counts io;
};

/* Set by user space before load: whether on_drop is loaded, so the send and
 * receive paths only pay for socket ownership when someone reads it. */
const volatile bool track_drops = false;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct net_counts);
} net_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct io_counts);
} io_stats SEC(".maps");

/* Per socket: the tgid that last sent or received on it, so a drop (which
 * happens in softirq context, with no useful "current") can be credited to
 * the socket's process. Socket-local storage lives and dies with the socket:
 * no size to choose, no stale entry when a socket address is reused, and a
 * lookup is a pointer chase rather than a hash. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} sock_owner SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} exits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void bump(__u32 index)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &index);
	if (v)
		(*v)++;
}

/* The value for key in an LRU hash, created zeroed when missing. A failed
 * create is counted as a dropped event. */
static __always_inline void *entry(void *map, __u32 *key, void *zero)
{
	void *v = bpf_map_lookup_elem(map, key);
	if (v)
		return v;
	long err = bpf_map_update_elem(map, key, zero, BPF_NOEXIST);
	if (err && err != -EEXIST) {
		bump(STAT_DROPPED);
		return NULL;
	}
	v = bpf_map_lookup_elem(map, key);
	if (!v)
		bump(STAT_DROPPED);
	return v;
}

static __always_inline bool inet_transport(struct sock *sk)
{
	if (!sk)
		return false;
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return false;
	/* sk_protocol is a plain u16 on every kernel that has these
	 * tracepoints (it stopped being a bitfield in 5.6). */
	__u16 proto = sk->sk_protocol;
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP;
}

static __always_inline void on_net(struct sock *sk, int ret, bool tx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct net_counts zero = {};
	struct net_counts *v = entry(&net_stats, &tgid, &zero);
	if (!v)
		return;
	bump(STAT_PROCESSED);
	if (tx) {
		__sync_fetch_and_add(&v->tx_bytes, ret);
		__sync_fetch_and_add(&v->tx_packets, 1);
	} else {
		__sync_fetch_and_add(&v->rx_bytes, ret);
		__sync_fetch_and_add(&v->rx_packets, 1);
	}
	if (track_drops) {
		__u32 *owner = bpf_sk_storage_get(&sock_owner, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (owner) {
			if (*owner != tgid)
				*owner = tgid;
		} else
			bump(STAT_DROPPED);
	}
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(on_send, struct sock *sk, int ret, int flags)
{
	if (ret > 0 && inet_transport(sk))
		on_net(sk, ret, true);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_recv, struct sock *sk, int ret, int flags)
{
	/* A peek leaves the data queued: it is counted when really read. */
	if (ret > 0 && !(flags & MSG_PEEK) && inet_transport(sk))
		on_net(sk, ret, false);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(on_drop, struct sk_buff *skb, void *location, int reason, struct sock *rx_sk)
{
	struct sock *sk = rx_sk;
	if (!sk)
		sk = skb->sk;
	if (!sk)
		return 0;
	__u32 *owner = bpf_sk_storage_get(&sock_owner, sk, 0, 0);
	if (!owner)
		return 0;
	__u32 tgid = *owner;
	struct net_counts *v = bpf_map_lookup_elem(&net_stats, &tgid);
	if (!v)
		return 0;
	bump(STAT_PROCESSED);
	__sync_fetch_and_add(&v->drops, 1);
	return 0;
}

/* Add one block I/O (or, with new_io false, bytes merged into one already
 * counted) of the current process. */
static __always_inline void on_block(struct gendisk *disk, __u32 opf, __u64 bytes, bool new_io)
{
	__u32 op = opf & REQ_OP_MASK;
	if (op != REQ_OP_READ && op != REQ_OP_WRITE)
		return;
	if (!disk || bytes == 0)
		return;
	__u64 dev = ((__u32)disk->major << 20) | (__u32)disk->first_minor;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct io_counts zero = {};
	struct io_counts *v = entry(&io_stats, &tgid, &zero);
	if (!v)
		return;
	for (int i = 0; i < MAX_DEVS; i++) {
		__u64 slot = v->dev[i];
		if (slot == 0)
			slot = __sync_val_compare_and_swap(&v->dev[i], 0, dev) ?: dev;
		if (slot != dev)
			continue;
		bump(STAT_PROCESSED);
		__sync_fetch_and_add(&v->bytes[i][op], bytes);
		if (new_io)
			__sync_fetch_and_add(&v->ops[i][op], 1);
		return;
	}
	bump(STAT_DROPPED);
}

/* Fires when a request is started, in the context of the task that
 * submitted it (block_rq_issue may run in a kblockd worker instead). */
SEC("tp_btf/block_io_start")
int BPF_PROG(on_io_start, struct request *rq)
{
	on_block(rq->q->disk, rq->cmd_flags, rq->__data_len, true);
	return 0;
}

/* A bio merged into a request that block_io_start already saw: its bytes
 * would otherwise be missing, since __data_len was read before the merge. */
static __always_inline void on_merge(struct bio *bio)
{
	on_block(bio->bi_bdev->bd_disk, bio->bi_opf, bio->bi_iter.bi_size, false);
}

SEC("tp_btf/block_bio_backmerge")
int BPF_PROG(on_backmerge, struct bio *bio)
{
	on_merge(bio);
	return 0;
}

SEC("tp_btf/block_bio_frontmerge")
int BPF_PROG(on_frontmerge, struct bio *bio)
{
	on_merge(bio);
	return 0;
}

/* Each exiting thread passes here; the last one of its process (signal->live
 * already 0) hands the process's counters to user space and deletes them. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	if (p->signal->live.counter != 0)
		return 0;
	__u32 tgid = p->tgid;
	struct net_counts *net = bpf_map_lookup_elem(&net_stats, &tgid);
	struct io_counts *io = bpf_map_lookup_elem(&io_stats, &tgid);
	/* Keeps clang from testing (net | io), which the verifier refuses. */
	barrier_var(io);
	if (!net && !io)
		return 0;
	bump(STAT_PROCESSED);
	struct exit_record *rec = bpf_ringbuf_reserve(&exits, sizeof(*rec), 0);
	if (rec) {
		__builtin_memset(rec, 0, sizeof(*rec));
		rec->tgid = tgid;
		bpf_get_current_comm(rec->comm, sizeof(rec->comm));
		if (net) {
			rec->has_net = 1;
			rec->net = *net;
		}
		if (io) {
			rec->has_io = 1;
			rec->io = *io;
		}
		bpf_ringbuf_submit(rec, 0);
	} else {
		bump(STAT_DROPPED);
	}
	bpf_map_delete_elem(&net_stats, &tgid);
	bpf_map_delete_elem(&io_stats, &tgid);
	return 0;
}
