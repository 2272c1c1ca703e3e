// SPDX-License-Identifier: GPL-2.0
/* A BPF object with the map kinds loaders create: HASH, LRU_HASH, PERCPU_ARRAY, a value
 * with a bpf_spin_lock, a PROG_ARRAY with a tail-call target, a HASH_OF_MAPS with an inner
 * map, and global data in .bss, .data and .rodata. tests/objects/ loads it with libbpf on
 * the live kernel and on the emulator and compares what the loader sees. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct counter {
	__u32 hits;
	struct bpf_spin_lock lock;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16);
	__type(key, __u64);
	__type(value, __u32);
} recent SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct counter);
} locked SEC(".maps");

int tail_target(struct __sk_buff *skb);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__array(values, int (void *));
} jumps SEC(".maps") = {
	.values = { [1] = (void *)&tail_target },
};

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} inner_one SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps") = {
	.values = { [2] = &inner_one },
};

__u64 packets;                          /* .bss */
__u32 threshold = 1000;                 /* .data */
const volatile __u32 sample_rate = 7;   /* .rodata */
const char greeting[] = "hello";        /* .rodata */

SEC("tc")
int tail_target(struct __sk_buff *skb)
{
	return 1;
}

SEC("tc")
int count(struct __sk_buff *skb)
{
	__u32 key = 0, idx = 2;
	__u64 *v, one = 1;
	struct counter *c;
	void *in;

	packets++;
	if (packets > threshold * sample_rate)
		return greeting[0];
	v = bpf_map_lookup_elem(&flows, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&flows, &key, &one, BPF_ANY);
	v = bpf_map_lookup_elem(&stats, &key);
	if (v)
		*v += skb->len;
	c = bpf_map_lookup_elem(&locked, &key);
	if (c) {
		bpf_spin_lock(&c->lock);
		c->hits++;
		bpf_spin_unlock(&c->lock);
	}
	bpf_map_update_elem(&recent, &one, &key, BPF_ANY);
	in = bpf_map_lookup_elem(&outer, &idx);
	if (in)
		bpf_map_lookup_elem(in, &key);
	bpf_tail_call(skb, &jumps, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
