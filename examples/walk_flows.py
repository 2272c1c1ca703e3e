"""Walking a map from userspace with BPF_MAP_GET_NEXT_KEY, the way bpftool's dump and most
tools do it, with the libbpf-style functions:

    err = bpf_map_get_next_key(fd, NULL, &next);        /* NULL: the first key */
    while (!err) {
        bpf_map_lookup_elem(fd, &next, &stats);
        ...
        key = next;
        err = bpf_map_get_next_key(fd, &key, &next);   /* -ENOENT after the last key */
    }

Keys come in the kernel's hash-bucket order, not insertion order. A lookup can fail with
-ENOENT if the flow was deleted (or evicted) between the two calls: a tool skips it.

    python examples/walk_flows.py            # on the emulator
    python examples/walk_flows.py --kernel   # on the live kernel (root)
"""
import ctypes
import errno

from bpfemu.libbpf import LibBpf
from bpfemu.uapi.consts import BPF_MAP_TYPE_HASH, BPF_NOEXIST

from flows import FlowKey, FlowStats, backend_from_args

FLOWS = [  # what a program would have counted
    (FlowKey.of("10.0.0.1", 443, "tcp"), FlowStats(4, 3940)),
    (FlowKey.of("10.0.0.2", 53, "udp"), FlowStats(2, 200)),
    (FlowKey.of("192.168.1.7", 22, "tcp"), FlowStats(2, 1260)),
    (FlowKey.of("172.16.5.9", 8080, "tcp"), FlowStats(1, 60)),
]


def main():
    lib = LibBpf(backend_from_args())
    fd = lib.bpf_map_create(BPF_MAP_TYPE_HASH, "flows", ctypes.sizeof(FlowKey),
                            ctypes.sizeof(FlowStats), 1024)
    if fd < 0:
        raise SystemExit(f"bpf_map_create: {errno.errorcode[-fd]}")
    for key, stats in FLOWS:
        assert lib.bpf_map_update_elem(fd, key, stats, BPF_NOEXIST) == 0

    key, next_key, stats = None, FlowKey(), FlowStats()
    walked = skipped = packets = 0
    print(f"{'flow':22} {'packets':>7} {'bytes':>6}")
    err = lib.bpf_map_get_next_key(fd, key, next_key)
    while err == 0:
        walked += 1
        if lib.bpf_map_lookup_elem(fd, next_key, stats) == -errno.ENOENT:
            skipped += 1                      # deleted after GET_NEXT_KEY gave it to us
        else:
            print(f"{str(next_key):22} {stats.packets:7} {stats.bytes:6}")
            packets += stats.packets
        key = FlowKey.from_buffer_copy(next_key)
        err = lib.bpf_map_get_next_key(fd, key, next_key)
    print(f"the walk ended with {errno.errorcode[-err]} after {walked} keys "
          f"({skipped} vanished before their lookup); {packets} packets in all")
    lib.close(fd)


if __name__ == "__main__":
    main()
