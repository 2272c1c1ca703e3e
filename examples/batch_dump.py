"""Dumping a large map with BPF_MAP_LOOKUP_BATCH: thousands of entries per syscall instead of
two syscalls (GET_NEXT_KEY + LOOKUP) per entry.

    __u32 count = CHUNK; void *in = NULL; __u32 token;
    do {
        err = bpf_map_lookup_batch(fd, in, &token, keys, values, &count, NULL);
        /* count entries are in keys/values, even when err is -ENOENT (the end) */
        in = &token;
    } while (!err);

For a hash map the token is a bucket number, and a batch never splits a bucket: a chunk
smaller than the fullest bucket is refused with ENOSPC.

    python examples/batch_dump.py            # on the emulator
    python examples/batch_dump.py --kernel   # on the live kernel (root)
"""
import ctypes
import errno
import time

from bpfemu.libbpf import LibBpf
from bpfemu import Map
from bpfemu.uapi.consts import BPF_MAP_TYPE_HASH

from flows import backend_from_args

ENTRIES = 50_000
CHUNK = 4096


def main():
    backend = backend_from_args()
    lib = LibBpf(backend)
    fd = lib.bpf_map_create(BPF_MAP_TYPE_HASH, "big", 4, 8, ENTRIES)
    if fd < 0:
        raise SystemExit(f"bpf_map_create: {errno.errorcode[-fd]}")

    # fill it in one UPDATE_BATCH call: key i -> value 3*i
    keys = (ctypes.c_uint32 * ENTRIES)(*range(ENTRIES))
    values = (ctypes.c_uint64 * ENTRIES)(*(3 * i for i in range(ENTRIES)))
    count = ctypes.c_uint32(ENTRIES)
    ret = lib.bpf_map_update_batch(fd, keys, values, count)
    print(f"stored {count.value} entries with one bpf_map_update_batch call (returned {ret})")

    # dump it CHUNK entries at a time
    out_keys = (ctypes.c_uint32 * CHUNK)()
    out_values = (ctypes.c_uint64 * CHUNK)()
    token = ctypes.c_uint32()
    in_batch = None
    dumped, total, calls = 0, 0, 0
    start = time.perf_counter()
    while True:
        count = ctypes.c_uint32(CHUNK)
        err = lib.bpf_map_lookup_batch(fd, in_batch, token, out_keys, out_values, count)
        calls += 1
        if err not in (0, -errno.ENOENT):
            raise SystemExit(f"bpf_map_lookup_batch: {errno.errorcode[-err]}")
        for i in range(count.value):
            assert out_values[i] == 3 * out_keys[i]
        dumped += count.value
        total += sum(out_values[:count.value])
        if err == -errno.ENOENT:
            break
        in_batch = ctypes.c_uint32(token.value)       # resume after the last bucket
    elapsed = time.perf_counter() - start
    print(f"dumped {dumped} entries in {calls} bpf_map_lookup_batch calls of up to {CHUNK} "
          f"({elapsed:.2f} s); the walk ended with ENOENT")
    print(f"sum of the values: {total} (expected {3 * ENTRIES * (ENTRIES - 1) // 2})")
    print(f"a GET_NEXT_KEY walk would have taken {2 * ENTRIES} syscalls")

    # the same with the Map helper, which also grows the chunk on ENOSPC
    m = Map.open(backend, fd, ctypes.c_uint32, ctypes.c_uint64)
    items = m.items_lookup_batch(chunk=CHUNK)
    print(f"Map.items_lookup_batch(): {len(items)} (key, value) pairs, e.g. "
          f"{items[0][0].value} -> {items[0][1].value}")
    lib.close(fd)


if __name__ == "__main__":
    main()
