"""LRU eviction, emulator against the live kernel, operation by operation.

Every test drives one map in lockstep on both backends (tests/differential/lru_support.py):
the host thread is pinned to the CPU of each call with os.sched_setaffinity and emu.cpu is
set to match. Every return code, every value read, and the full GET_NEXT_KEY order are
compared after every operation (BPF_F_ZERO_SEED makes the order exact); maps of more than
FAST_WALK_ABOVE entries are walked with the cheaper loop of Pair.keys(fast=True). The
expected side is always the kernel.

What is covered (reference/hashtab.md §4):

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


def _inserts(max_entries: int) -> int:
    """Keys inserted by a trace: max_entries, then twice as many again (4096: once again,
    which still crosses the whole map 1x and keeps the file's runtime sane)."""
    return 2 * max_entries if max_entries >= 4096 else 3 * max_entries + 4


def _trace(flavour, max_entries, cpu_of):
    _, map_type, flags = flavour
    fast = max_entries > FAST_WALK_ABOVE
    with Pair(map_type, max_entries, flags) as p:
        n = _inserts(max_entries)
        for i in range(1, n + 1):
            p.set_cpu(cpu_of(i))
            assert p.update(key_of(i), p.value(i)) == 0
            p.keys(fast=fast)
        keys = p.keys()
        assert keys, "an LRU map never ends up empty after inserts"
        # the newest key always survives its own insert
        assert key_of(n) in keys


@pytest.mark.parametrize("max_entries", SIZES)
@pytest.mark.parametrize("flavour", FLAVOURS, ids=FLAVOUR_IDS)
def test_sequential_trace_one_cpu(pinned, flavour, max_entries):
    _trace(flavour, max_entries, lambda i: 0)


@pytest.mark.parametrize("max_entries", [m for m in SIZES if m <= 256])
@pytest.mark.parametrize("flavour", FLAVOURS, ids=FLAVOUR_IDS)
def test_sequential_trace_alternating_cpus(pinned, flavour, max_entries):
    _trace(flavour, max_entries, lambda i: i % 2)


@pytest.mark.parametrize("max_entries", [3, 100, 1000])
@pytest.mark.parametrize("flavour", FLAVOURS, ids=FLAVOUR_IDS)
def test_sequential_trace_cpu_blocks(pinned, flavour, max_entries):
    _trace(flavour, max_entries, lambda i: (i // 50) % 2)


# --- random mixed workloads ------------------------------------------------------------------

# (operation, weight); the program-side lookup_percpu_elem only on per-CPU maps.
OPS = [
    ("update_any", 18), ("update_noexist", 9), ("update_exist", 9),
    ("delete", 7), ("lookup_and_delete", 5), ("lookup", 12),
    ("prog_lookup", 20), ("prog_update", 8), ("prog_delete", 3), ("prog_lookup_percpu", 4),
]
# max_entries -> operations (the order is compared after every one)
WORKLOADS = {1: 600, 3: 800, 8: 1200, 64: 900, 300: 2000}


def _workload(p: Pair, rng: random.Random, n_ops: int, cpus):
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
        p.keys(fast=max_entries > FAST_WALK_ABOVE)
    p.keys()


@pytest.mark.parametrize("cpus", [(0,), (0, 1)], ids=["one_cpu", "two_cpus"])
@pytest.mark.parametrize("max_entries", sorted(WORKLOADS))
@pytest.mark.parametrize("flavour", FLAVOURS, ids=FLAVOUR_IDS)
def test_random_workload(pinned, flavour, max_entries, cpus):
    name, map_type, flags = flavour
    n_ops = WORKLOADS[max_entries]
    rng = random.Random(f"{name}/{max_entries}/{len(cpus)}")
    with Pair(map_type, max_entries, flags) as p:
        _workload(p, rng, n_ops, cpus)


def test_reference_heavy_workload(pinned):
    """Many program lookups (40 %) on a bigger common LRU from both CPUs: exercises active
    list rotation, inactive->active promotions and the rotation cursor (hashtab.md §4.11)."""
    rng = random.Random("ref-heavy")
    with Pair(LRU_PERCPU_HASH, 600, 0) as p:
        keys = 900
        for i in range(3000):
            p.set_cpu(rng.randrange(2))
            k = key_of(rng.randrange(keys))
            if rng.random() < 0.4:
                p.prog_lookup(k)
            else:
                p.update(k, p.value(i))
            p.keys(fast=True)
        p.keys()
