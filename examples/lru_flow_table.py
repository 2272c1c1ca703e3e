"""An LRU flow table: an LRU hash keyed by the flow (source IP, source port, protocol) that
holds packet and byte counters, filled from userspace through the dict-like Map.

An LRU_HASH never refuses a new flow for lack of room: when it is full, the kernel evicts
the least recently used flows to make space. A plain HASH of the same size answers E2BIG.

    python examples/lru_flow_table.py            # on the emulator
    python examples/lru_flow_table.py --kernel   # on the live kernel (root)
"""
import errno

from bpfemu import BpfError, Map
from bpfemu.uapi.consts import BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH

from flows import FlowKey, FlowStats, backend_from_args

CAPACITY = 64
FLOWS = 200


def main():
    backend = backend_from_args()
    table = Map.create(backend, BPF_MAP_TYPE_LRU_HASH, FlowKey, FlowStats, CAPACITY,
                       name="flow_table")
    print(f"created {table!r}")

    # 200 flows from 10.0.0.1 .. 10.0.0.200, one packet each, into room for 64
    for i in range(1, FLOWS + 1):
        key = FlowKey.of(f"10.0.{i // 256}.{i % 256}", 1024 + i, "tcp" if i % 3 else "udp")
        table[key] = FlowStats(packets=1, bytes=60 + i)

    kept = table.items()
    print(f"flows seen: {FLOWS}, capacity: {CAPACITY}, flows kept: {len(kept)}")
    newest = FlowKey.of(f"10.0.{FLOWS // 256}.{FLOWS % 256}", 1024 + FLOWS,
                        "tcp" if FLOWS % 3 else "udp")
    print(f"newest flow {newest} kept: {'yes' if newest in table else 'no'}")
    oldest = FlowKey.of("10.0.0.1", 1025, "tcp")
    print(f"oldest flow {oldest} kept: {'yes' if oldest in table else 'no'}")
    print("a few of the flows in the table:")
    for key, stats in sorted(kept, key=lambda kv: kv[1].bytes, reverse=True)[:3]:
        print(f"  {key}: {stats.packets} packet, {stats.bytes} bytes")

    # the same stream into a plain hash: it fills up and refuses
    plain = Map.create(backend, BPF_MAP_TYPE_HASH, FlowKey, FlowStats, CAPACITY)
    try:
        for i in range(1, FLOWS + 1):
            plain[FlowKey.of(f"10.0.{i // 256}.{i % 256}", 1024 + i)] = FlowStats(1, 60)
    except BpfError as e:
        print(f"a plain HASH of {CAPACITY} refused flow {i}: "
              f"{errno.errorcode[e.errno]} ({e.strerror})")
    plain.close()
    table.close()


if __name__ == "__main__":
    main()
