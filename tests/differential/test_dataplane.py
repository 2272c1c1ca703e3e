"""The program side of maps: bpfemu.progs.DataPlane against real BPF programs on the live
kernel (bpfemu.host_progs.HostDataPlane), for HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH.

Program-side lookups (value bytes on the current CPU), lookup_percpu_elem (any CPU, and CPUs
past the last possible one), updates with every flag value (including BPF_F_LOCK and unknown
bits, which the helpers refuse), deletes, and atomic fetch-and-add are interleaved with
syscall operations on one and two CPUs; every result and the full key order are compared.
"""
import errno
import random

import pytest

from bpfemu import BpfError
from bpfemu.uapi import consts as c

from tests.differential.lru_support import (ANY, EXIST, NOEXIST, Pair, key_of, need_host,
                                            pinned)  # noqa: F401
from tests.support import NCPU

HASH, PERCPU_HASH = c.BPF_MAP_TYPE_HASH, c.BPF_MAP_TYPE_PERCPU_HASH
LRU_HASH, LRU_PERCPU_HASH = c.BPF_MAP_TYPE_LRU_HASH, c.BPF_MAP_TYPE_LRU_PERCPU_HASH
NO_PREALLOC, NO_COMMON_LRU = c.BPF_F_NO_PREALLOC, c.BPF_F_NO_COMMON_LRU

CONFIGS = [
    ("hash", HASH, 0), ("hash_noprealloc", HASH, NO_PREALLOC),
    ("percpu", PERCPU_HASH, 0), ("percpu_noprealloc", PERCPU_HASH, NO_PREALLOC),
    ("lru", LRU_HASH, 0), ("lru_nocommon", LRU_HASH, NO_COMMON_LRU),
    ("lru_percpu", LRU_PERCPU_HASH, 0), ("lru_percpu_nocommon", LRU_PERCPU_HASH, NO_COMMON_LRU),
]
FLAG_VALUES = [ANY, NOEXIST, EXIST, 3, c.BPF_F_LOCK, c.BPF_F_LOCK | EXIST, 8, 1 << 32]


class FetchAddPair:
    """lookup + fetch_add on both sides (one program on the kernel)."""

    def __init__(self, p: Pair):
        self.p = p

    def __call__(self, key, offset, size, delta):
        p = self.p
        p.log.append(("fetch_add", key, offset, size, delta))
        h = p.host.dp.lookup_fetch_add(p.host.fd, key, offset, size, delta)
        view = p.emu.dp.lookup_elem(p.emu.fd, key)
        e = None if view is None else p.emu.dp.fetch_add(view, offset, size, delta)
        assert e == h, (f"fetch_add{(key, offset, size, delta)!r} on CPU {p.cpu}: kernel {h!r},"
                        f" emulator {e!r}; last operations {p.history()}")
        return h


@pytest.mark.parametrize("cpus", [(0,), (0, 1)], ids=["one_cpu", "two_cpus"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=[cfg[0] for cfg in CONFIGS])
def test_program_side_workload(pinned, cfg, cpus):
    name, map_type, flags = cfg
    percpu = map_type in (PERCPU_HASH, LRU_PERCPU_HASH)
    rng = random.Random(f"dataplane/{name}/{len(cpus)}")
    # value_size 16: no padding in per-CPU slots (test_percpu_padding.py covers padding)
    with Pair(map_type, 10, flags, value_size=16) as p:
        fetch_add = FetchAddPair(p)
        for i in range(700):
            p.set_cpu(rng.choice(cpus))
            k = key_of(rng.randrange(16))
            r = rng.random()
            if r < 0.25:
                p.prog_update(k, rng.randbytes(16), rng.choice(FLAG_VALUES))
            elif r < 0.35:
                p.update(k, rng.randbytes(p.vs_sys), rng.choice((ANY, NOEXIST, EXIST)))
            elif r < 0.55:
                p.prog_lookup(k)
            elif r < 0.62:
                p.prog_delete(k)
            elif r < 0.67:
                p.delete(k)
            elif r < 0.75:
                p.lookup(k)
            elif r < 0.87:
                offset, size = rng.choice(((0, 8), (8, 8), (0, 4), (12, 4)))
                fetch_add(k, offset, size, rng.choice((1, 1000, -1, 2**63, rng.randrange(2**64))))
            elif percpu:
                p.prog_lookup_percpu(k, rng.choice((0, 1, NCPU, NCPU + 1, 2**32 - 1)))
            else:
                p.lookup_and_delete(k)
            if i % 5 == 0:
                for key in p.keys():
                    p.lookup(key)


@pytest.mark.parametrize("map_type", [PERCPU_HASH, LRU_PERCPU_HASH, HASH, LRU_HASH])
def test_update_stats_on_both(pinned, map_type):
    """The seed documentation's update_stats() pattern, run as a program on both backends
    from both CPUs: lookup; if missing, create with BPF_NOEXIST and look up again; then
    atomically add 1 to packets and the length to bytes."""
    with Pair(map_type, 64, value_size=16) as p:
        fetch_add = FetchAddPair(p)

        def update_stats(key, nbytes):
            if p.prog_lookup(key) is None:
                p.prog_update(key, bytes(16), NOEXIST)
                if p.prog_lookup(key) is None:
                    return
            fetch_add(key, 0, 8, 1)
            fetch_add(key, 8, 8, nbytes)

        rng = random.Random(f"stats/{map_type}")
        for _ in range(300):
            p.set_cpu(rng.randrange(NCPU))
            update_stats(key_of(rng.randrange(20)), rng.randrange(60, 1500))
        for key in p.keys():
            p.lookup(key)


def test_verifier_refusals_match(pinned):
    """What BPF_PROG_LOAD refuses, the emulator's data plane refuses with the same errno."""
    need_host()
    with Pair(HASH, 4) as p:
        for side in (p.emu, p.host):
            with pytest.raises(BpfError) as e:
                side.dp.lookup_percpu_elem(side.fd, key_of(1), 0)
            assert e.value.errno == errno.EINVAL
            with pytest.raises(ValueError):
                side.dp.lookup_fetch_add(side.fd, key_of(1), 2, 4, 1)     # misaligned
            with pytest.raises(ValueError):
                side.dp.lookup_fetch_add(side.fd, key_of(1), 0, 2, 1)     # 16-bit atomic


@pytest.mark.parametrize("cfg", CONFIGS[::2], ids=[cfg[0] for cfg in CONFIGS[::2]])
def test_writes_through_the_lookup_result(pinned, cfg):
    """A program writing through the pointer bpf_map_lookup_elem() returned changes the
    element in place (this CPU's slot of a per-CPU map)."""
    _, map_type, flags = cfg
    with Pair(map_type, 8, flags, value_size=16) as p:
        for cpu in range(NCPU):
            p.set_cpu(cpu)
            p.prog_update(key_of(1), bytes(range(16)), ANY)
            for side in (p.emu, p.host):
                view = side.dp.lookup_elem(side.fd, key_of(1))
                view[3:9] = b"abcdef"
                view[15] = 0xEE
            p.lookup(key_of(1))
            assert p.prog_lookup(key_of(1))[3:9] == b"abcdef"
        p.keys()


@pytest.mark.parametrize("cpu_arg,protected", [(0, True), (1, True), (NCPU, False)],
                         ids=["this_cpu", "other_cpu", "past_last_cpu"])
@pytest.mark.parametrize("flags", [0, NO_COMMON_LRU], ids=["common", "no_common"])
def test_lookup_percpu_elem_marks_lru_percpu(pinned, flags, cpu_arg, protected):
    """bpf_map_lookup_percpu_elem() on LRU_PERCPU_HASH marks the element like a lookup
    (htab_lru_percpu_map_lookup_percpu_elem()), whatever CPU's slot it reads; a CPU past
    the last possible one returns NULL before the lookup and marks nothing. Selftest
    sanity7's shape: two keys, one touched, a third insert evicts the untouched one."""
    size = 2 * NCPU if flags & NO_COMMON_LRU else 2
    with Pair(LRU_PERCPU_HASH, size, flags) as p:
        assert p.update(key_of(1), p.value(1), NOEXIST) == 0
        assert p.update(key_of(2), p.value(2), NOEXIST) == 0
        found = p.prog_lookup_percpu(key_of(1), cpu_arg)
        assert (found is not None) == (cpu_arg < NCPU)
        assert p.update(key_of(3), p.value(3), NOEXIST) == 0
        survivors = p.key_set()
        if protected:
            assert survivors == {1, 3}
        else:
            # common LRU evicts the oldest unreferenced key only (target_free 1); a per-CPU
            # LRU shrinks up to 4 unreferenced nodes of this CPU's list: both keys go
            assert survivors == ({3} if flags & NO_COMMON_LRU else {2, 3})
