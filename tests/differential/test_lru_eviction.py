"""LRU eviction, emulator against the live kernel, operation by operation.

Every test drives one map in lockstep on both backends (tests/differential/lru_support.py):
the host thread is pinned to the CPU of each call with os.sched_setaffinity and emu.cpu is
set to match. The expected side is always the kernel.

What is compared, and why it costs linear time: every call's return code and the bytes it
wrote back are compared on every step; after every insert a syscall lookup probes two keys
near the eviction frontier (a syscall lookup never sets the LRU reference bit, so probing
does not change what is evicted); and the full GET_NEXT_KEY order (exact under
BPF_F_ZERO_SEED) is compared every ``check_every(max_entries)`` operations and at the end.
A wrong eviction leaves a different key set, which the probes see at once when they hit it
and the next full walk sees in any case. The walk after every single operation (quadratic:
8,192 walks of 4,096 keys) runs only with the long tests (``scripts/long-tests``).

What is covered (docs/linux-6.18.md#lru-maps):

* sequential traces, keys 1, 2, 3, ... inserted with BPF_ANY, max_entries 1 .. 4096, in all
  four flavours (LRU_HASH / LRU_PERCPU_HASH x common / BPF_F_NO_COMMON_LRU) on CPU 0 only;
  alternating CPUs on every call (max_entries up to 256) and in blocks of 50 calls per CPU
  (3, 100, 1000), which keeps the file's runtime sane (switching CPUs costs a migration);
* random mixed workloads (syscall update ANY/NOEXIST/EXIST, delete, lookup-and-delete and
  lookup; program lookup, update, delete and lookup_percpu_elem) on one CPU and on two.
"""
import random

import pytest

from tests.differential.lru_support import (ANY, EXIST, FLAVOUR_IDS, FLAVOURS, LRU_PERCPU_HASH,
                                            NOEXIST, Pair, key_of, pinned)  # noqa: F401

SIZES = [1, 2, 3, 5, 8, 16, 100, 255, 256, 513, 1000, 4096]
FAST_WALK_ABOVE = 100       # bigger maps are walked with the bare-syscall / direct-op loop
WALKS_PER_MAP = 32          # full walks per max_entries operations: a constant, so linear cost


def check_every(max_entries: int) -> int:
    """Operations between two full walks: every one for small maps (a walk is cheap there),
    max_entries / WALKS_PER_MAP for big ones (at 4096 entries, once per common-LRU eviction
    batch of 128; the probe lookups look in between)."""
    return max(1, max_entries // WALKS_PER_MAP)


def _inserts(max_entries: int) -> int:
    """Keys inserted by a trace: max_entries, then twice as many again (4096: once again,
    which still crosses the whole map 1x and keeps the file's runtime sane)."""
    return 2 * max_entries if max_entries >= 4096 else 3 * max_entries + 4


def _trace(flavour, max_entries, cpu_of, every):
    _, map_type, flags = flavour
    fast = max_entries > FAST_WALK_ABOVE
    rng = random.Random(f"{flavour[0]}/{max_entries}")
    with Pair(map_type, max_entries, flags) as p:
        n = _inserts(max_entries)
        for i in range(1, n + 1):
            p.set_cpu(cpu_of(i))
            assert p.update(key_of(i), p.value(i)) == 0
            if i % every == 0:
                p.keys(fast=fast)
            else:
                # the oldest key a full map could still hold, and one of the last 2*max_entries
                if i > max_entries:
                    p.lookup(key_of(i - max_entries))
                p.lookup(key_of(rng.randint(max(1, i - 2 * max_entries), i)))
        keys = p.keys()
        assert keys, "an LRU map never ends up empty after inserts"
        # the newest key always survives its own insert
        assert key_of(n) in keys


LONG_SIZES = [m for m in SIZES if check_every(m) > 1]   # the others walk every step anyway


@pytest.mark.parametrize("max_entries", SIZES)
@pytest.mark.parametrize("flavour", FLAVOURS, ids=FLAVOUR_IDS)
def test_sequential_trace_one_cpu(pinned, flavour, max_entries):
    _trace(flavour, max_entries, lambda i: 0, check_every(max_entries))


@pytest.mark.parametrize("max_entries", [m for m in SIZES if m <= 256])
@pytest.mark.parametrize("flavour", FLAVOURS, ids=FLAVOUR_IDS)
def test_sequential_trace_alternating_cpus(pinned, flavour, max_entries):
    _trace(flavour, max_entries, lambda i: i % 2, check_every(max_entries))


@pytest.mark.parametrize("max_entries", [3, 100, 1000])
@pytest.mark.parametrize("flavour", FLAVOURS, ids=FLAVOUR_IDS)
def test_sequential_trace_cpu_blocks(pinned, flavour, max_entries):
    _trace(flavour, max_entries, lambda i: (i // 50) % 2, check_every(max_entries))


@pytest.mark.long
@pytest.mark.parametrize("max_entries", LONG_SIZES)
@pytest.mark.parametrize("flavour", FLAVOURS, ids=FLAVOUR_IDS)
def test_sequential_trace_one_cpu_walk_every_insert(pinned, flavour, max_entries):
    """The full walk after every insert: quadratic, for the long runs."""
    _trace(flavour, max_entries, lambda i: 0, 1)


@pytest.mark.long
@pytest.mark.parametrize("max_entries", [1000])
@pytest.mark.parametrize("flavour", FLAVOURS, ids=FLAVOUR_IDS)
def test_sequential_trace_cpu_blocks_walk_every_insert(pinned, flavour, max_entries):
    _trace(flavour, max_entries, lambda i: (i // 50) % 2, 1)


# --- random mixed workloads ------------------------------------------------------------------

# (operation, weight); the program-side lookup_percpu_elem only on per-CPU maps.
OPS = [
    ("update_any", 18), ("update_noexist", 9), ("update_exist", 9),
    ("delete", 7), ("lookup_and_delete", 5), ("lookup", 12),
    ("prog_lookup", 20), ("prog_update", 8), ("prog_delete", 3), ("prog_lookup_percpu", 4),
]
# max_entries -> operations (the order is compared after every one)
WORKLOADS = {1: 600, 3: 800, 8: 1200, 64: 900, 300: 2000}


def _workload(p: Pair, rng: random.Random, n_ops: int, cpus, every: int):
    percpu = p.map_type == LRU_PERCPU_HASH
    ops = [(name, w) for name, w in OPS if percpu or name != "prog_lookup_percpu"]
    names = [name for name, _ in ops]
    weights = [w for _, w in ops]
    max_entries = p.emu_map.max_entries
    key_space = max(4, max_entries * 3 // 2 + 2)
    for i in range(1, n_ops + 1):
        p.set_cpu(rng.choice(cpus))
        op = rng.choices(names, weights)[0]
        k = key_of(rng.randrange(key_space))
        if op == "update_any":
            p.update(k, p.value(i), ANY)
        elif op == "update_noexist":
            p.update(k, p.value(i), NOEXIST)
        elif op == "update_exist":
            p.update(k, p.value(i), EXIST)
        elif op == "delete":
            p.delete(k)
        elif op == "lookup_and_delete":
            p.lookup_and_delete(k)
        elif op == "lookup":
            p.lookup(k)
        elif op == "prog_lookup":
            p.prog_lookup(k)
        elif op == "prog_update":
            p.prog_update(k, p.prog_value(i), rng.choice((ANY, ANY, NOEXIST, EXIST)))
        elif op == "prog_delete":
            p.prog_delete(k)
        elif op == "prog_lookup_percpu":
            p.prog_lookup_percpu(k, rng.randrange(len(cpus) + 1))
        if i % every == 0:
            p.keys(fast=max_entries > FAST_WALK_ABOVE)
    p.keys()


def _random_workload(flavour, max_entries, cpus, every):
    name, map_type, flags = flavour
    n_ops = WORKLOADS[max_entries]
    rng = random.Random(f"{name}/{max_entries}/{len(cpus)}")
    with Pair(map_type, max_entries, flags) as p:
        _workload(p, rng, n_ops, cpus, every)


@pytest.mark.parametrize("cpus", [(0,), (0, 1)], ids=["one_cpu", "two_cpus"])
@pytest.mark.parametrize("max_entries", sorted(WORKLOADS))
@pytest.mark.parametrize("flavour", FLAVOURS, ids=FLAVOUR_IDS)
def test_random_workload(pinned, flavour, max_entries, cpus):
    _random_workload(flavour, max_entries, cpus, check_every(max_entries))


@pytest.mark.long
@pytest.mark.parametrize("cpus", [(0,), (0, 1)], ids=["one_cpu", "two_cpus"])
@pytest.mark.parametrize("max_entries", [m for m in sorted(WORKLOADS) if check_every(m) > 1])
@pytest.mark.parametrize("flavour", FLAVOURS, ids=FLAVOUR_IDS)
def test_random_workload_walk_every_op(pinned, flavour, max_entries, cpus):
    _random_workload(flavour, max_entries, cpus, 1)


def _reference_heavy(every):
    rng = random.Random("ref-heavy")
    with Pair(LRU_PERCPU_HASH, 600, 0) as p:
        keys = 900
        for i in range(1, 3001):
            p.set_cpu(rng.randrange(2))
            k = key_of(rng.randrange(keys))
            if rng.random() < 0.4:
                p.prog_lookup(k)
            else:
                p.update(k, p.value(i))
            if i % every == 0:
                p.keys(fast=True)
        p.keys()


def test_reference_heavy_workload(pinned):
    """Many program lookups (40 %) on a bigger common LRU from both CPUs: exercises active
    list rotation, inactive->active promotions and the rotation cursor
    (docs/linux-6.18.md#lru-maps)."""
    _reference_heavy(check_every(600))


@pytest.mark.long
def test_reference_heavy_workload_walk_every_op(pinned):
    _reference_heavy(1)
