"""How much memory a map's preallocation may take here, asked before it is made.

Linux preallocates a map's elements at MAP_CREATE (a HASH map without BPF_F_NO_PREALLOC,
the LRU maps, the arrays), so creating one can fail with ENOMEM and its updates never fail
for memory. The emulator reserves the same elements at create (ColumnarStore.reserve(),
the array's value block), and refuses a map whose reservation would not fit in what this
process can still get, before allocating any of it: allocating first could end in a
MemoryError half-way, or with the OOM killer, which ends the process rather than the call.

What the process can get is the smaller of the memory the machine has available
(MemAvailable in /proc/meminfo) and what RLIMIT_AS leaves above the address space in use
(/proc/self/statm). Both are read once per create of a preallocated map.
"""
import os
import resource

_PAGE = os.sysconf("SC_PAGE_SIZE")


def available_bytes() -> int:
    """The memory this process can still allocate, as far as it can tell (None-free: a
    figure it cannot read counts as unlimited)."""
    limit = 1 << 62
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    limit = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        try:
            with open("/proc/self/statm", "rb") as f:
                in_use = int(f.read().split()[0]) * _PAGE
        except (OSError, ValueError, IndexError):
            in_use = 0
        limit = min(limit, soft - in_use)
    return max(limit, 0)


def reservation_fits(nbytes: int) -> bool:
    """Whether a preallocation of nbytes (the emulator's own figure: its columns and value
    memory, see htab_reserve_bytes) leaves a margin of what the process can get: a quarter
    of it, at least 16 MiB, for the Python objects the calls make as they go."""
    avail = available_bytes()
    return nbytes <= avail - max(avail // 4, 16 << 20)


def htab_reserve_bytes(max_slots: int, slot_size: int, n_buckets: int, lru: bool) -> int:
    """What a hash map's store reserves at create: per slot its next and hash (4 bytes
    each), its key reference (8) and its value; per bucket a head (4); per LRU node an
    object of about 100 bytes and its list entry."""
    per_slot = 16 + slot_size + (108 if lru else 0)
    return max_slots * per_slot + n_buckets * 4
