// SPDX-License-Identifier: GPL-2.0
//
// Packets and bytes per interface and direction, counted at the TC layer.
//
// The same two programs serve a clsact filter and a tcx link: both return
// -1, which clsact reads as TC_ACT_UNSPEC ("no verdict, go on to the next
// filter, or pass the packet when none is left") and tcx as TCX_NEXT ("run
// the next program"). Returning TC_ACT_OK instead would end the filter
// chain and silently switch off every filter attached after ours.
//
// skb->len at TC includes the link-layer header in both directions (cls_bpf
// and tcx push the MAC header back before running the program on ingress),
// so byte counts are L2 frame lengths, as `ip -s link` reports them. A GSO
// super-packet counts as one packet: TC sees it before segmentation.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define NETPROBE_PASS (-1)

enum direction {
	INGRESS = 0,
	EGRESS = 1,
};

struct counters {
	__u64 packets[2];
	__u64 bytes[2];
};

// Keyed by ifindex. Per-CPU so the hot path needs no atomic instruction;
// user space sums the CPUs. A hash rather than an array because ifindexes
// grow without bound on hosts that create and remove many veth pairs.
// User space deletes the entry of an interface that went away.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct counters);
} netprobe_counters SEC(".maps");

static __always_inline int count(struct __sk_buff *skb, int dir)
{
	__u32 ifindex = skb->ifindex;
	struct counters *c = bpf_map_lookup_elem(&netprobe_counters, &ifindex);

	if (!c) {
		struct counters zero = {};

		// BPF_NOEXIST: another CPU may have inserted it meanwhile, and
		// its entry must not be overwritten with zeros.
		bpf_map_update_elem(&netprobe_counters, &ifindex, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&netprobe_counters, &ifindex);
		if (!c)
			return NETPROBE_PASS;
	}
	c->packets[dir] += 1;
	c->bytes[dir] += skb->len;
	return NETPROBE_PASS;
}

SEC("tc")
int netprobe_ingress(struct __sk_buff *skb)
{
	return count(skb, INGRESS);
}

SEC("tc")
int netprobe_egress(struct __sk_buff *skb)
{
	return count(skb, EGRESS);
}

char LICENSE[] SEC("license") = "GPL";
