"""update_stats(), the classic per-flow counting done by a BPF program, played from the
program side of the map:

    struct flow_stats *s = bpf_map_lookup_elem(&flows, &key);
    if (!s) {
        struct flow_stats zero = {};
        bpf_map_update_elem(&flows, &key, &zero, BPF_NOEXIST);  /* first packet of the flow */
        s = bpf_map_lookup_elem(&flows, &key);                   /* (another CPU may have    */
        if (!s)                                                  /*  created it: EEXIST is  */
            return;                                              /*  fine)                  */
    }
    __sync_fetch_and_add(&s->packets, 1);
    __sync_fetch_and_add(&s->bytes, len);

The program side's lookup gives a pointer into the map's value (here a live view), and the
atomic adds change the value in place. Userspace then reads the counters with the Map.

    python examples/update_stats.py            # on the emulator (DataPlane)
    python examples/update_stats.py --kernel   # real BPF programs on the live kernel
"""
import errno

from bpfemu import Map
from bpfemu.uapi.consts import BPF_MAP_TYPE_HASH, BPF_NOEXIST

from flows import BYTES, PACKETS, FlowKey, FlowStats, backend_from_args, dataplane_for

PACKETS_SEEN = [  # (flow, packet length)
    (FlowKey.of("10.0.0.1", 443, "tcp"), 1500),
    (FlowKey.of("10.0.0.2", 53, "udp"), 80),
    (FlowKey.of("10.0.0.1", 443, "tcp"), 1500),
    (FlowKey.of("192.168.1.7", 22, "tcp"), 60),
    (FlowKey.of("10.0.0.1", 443, "tcp"), 40),
    (FlowKey.of("10.0.0.2", 53, "udp"), 120),
    (FlowKey.of("192.168.1.7", 22, "tcp"), 1200),
    (FlowKey.of("10.0.0.1", 443, "tcp"), 900),
]


def update_stats(dp, fd, key, length, log):
    stats = dp.lookup_elem(fd, key)
    if stats is None:
        ret = dp.update_elem(fd, key, FlowStats(), BPF_NOEXIST)
        log.append(f"first packet of {key}: created its counters "
                   f"(update_elem with BPF_NOEXIST returned {ret})")
        if ret not in (0, -errno.EEXIST):
            return
        stats = dp.lookup_elem(fd, key)
        if stats is None:
            return
    dp.fetch_add(stats, PACKETS, 8, 1)
    dp.fetch_add(stats, BYTES, 8, length)


def main():
    backend = backend_from_args()
    flows = Map.create(backend, BPF_MAP_TYPE_HASH, FlowKey, FlowStats, 1024, name="flows")
    with dataplane_for(backend) as dp:
        log = []
        for key, length in PACKETS_SEEN:
            update_stats(dp, flows.fd, key, length, log)
        print("\n".join(log))
        # a second CPU racing for the same new flow: its NOEXIST update fails, it moves on
        ret = dp.update_elem(flows.fd, PACKETS_SEEN[0][0], FlowStats(), BPF_NOEXIST)
        print(f"NOEXIST update of an existing flow returns {ret} "
              f"(-{errno.errorcode[-ret]}): the counters are kept")

    print(f"{len(PACKETS_SEEN)} packets counted; the flow table from userspace:")
    total_p = total_b = 0
    for key, stats in sorted(flows.items(), key=lambda kv: str(kv[0])):
        print(f"  {str(key):22} {stats.packets:3} packets {stats.bytes:6} bytes")
        total_p += stats.packets
        total_b += stats.bytes
    print(f"  {'total':22} {total_p:3} packets {total_b:6} bytes")
    flows.close()


if __name__ == "__main__":
    main()
