"""Padding bytes of per-CPU values written from the program side (DEVIATION(percpu-padding)).

A per-CPU value occupies round_up(value_size, 8) bytes per CPU. The syscall writes and reads
whole slots, padding included (docs: #per-cpu-values). A program-side insert (bpf_map_update_elem()
creating an element; pcpu_init_value() with onallcpus = false) writes value_size bytes on its
CPU and zeroes value_size bytes on the others, and leaves every slot's padding alone, so a
reused element shows its previous occupant's padding.

* LRU_PERCPU_HASH: each node keeps its per-CPU area for the map's life, and the emulator
  reuses nodes exactly as the kernel does, so it is exact: compared byte for byte here.
* PERCPU_HASH (prealloc and NO_PREALLOC): which element is reused is up to the kernel's
  freelist / allocator caches, not modelled. The emulator's documented rule: padding of an
  element created from the program side is zero in every slot. On the kernel the tests
  assert only the deterministic part (the value_size bytes of every slot; zero padding for
  never-used elements) and that its padding is one of the two possible outcomes.
"""
import random

import pytest

from bpfemu import Emulator, HostKernel
from bpfemu.host_progs import HostDataPlane
from bpfemu.progs import DataPlane
from bpfemu.uapi import consts as c

from tests.differential.lru_support import (EXIST, FLAVOURS, LRU_PERCPU_HASH, NOEXIST, ANY,
                                            Pair, key_of, need_host, pinned)  # noqa: F401
from tests.support import NCPU, Client

PERCPU_HASH = c.BPF_MAP_TYPE_PERCPU_HASH
VALUE_SIZE = 4          # 4 padding bytes per slot
SLOT = 8


def slots(buf: bytes) -> list:
    return [buf[i * SLOT:(i + 1) * SLOT] for i in range(NCPU)]


def syscall_value() -> bytes:
    """Slot i = value 0x10+i repeated, padding 0xe0+i repeated."""
    return b"".join(bytes([0x10 + i]) * VALUE_SIZE + bytes([0xE0 + i]) * (SLOT - VALUE_SIZE)
                    for i in range(NCPU))


@pytest.fixture(params=["emu", "host"])
def side(request, pinned):
    """(client, data plane, set_cpu, is_emu) on one backend."""
    import os
    if request.param == "host":
        need_host()
        b = HostKernel()
        dp = HostDataPlane(b)

        def set_cpu(cpu):
            os.sched_setaffinity(0, {cpu})
    else:
        b = Emulator(nr_cpus=NCPU, seed=1)
        dp = DataPlane(b)

        def set_cpu(cpu):
            b.cpu = cpu
    cl = Client(b)
    yield cl, dp, set_cpu, request.param == "emu"
    if request.param == "host":
        dp.close()
    cl.close_all()


@pytest.mark.parametrize("cpu", range(NCPU))
@pytest.mark.parametrize("map_flags", [0, c.BPF_F_NO_PREALLOC], ids=["prealloc", "no_prealloc"])
def test_percpu_hash_program_insert_padding(side, map_flags, cpu):
    cl, dp, set_cpu, is_emu = side
    set_cpu(cpu)
    fd = cl.create(PERCPU_HASH, 4, VALUE_SIZE, 4, map_flags | c.BPF_F_ZERO_SEED)
    assert fd >= 0
    a, b = key_of(1), key_of(2)
    new = bytes([0x33]) * VALUE_SIZE

    # A never-used element: zero padding everywhere, on both (deterministic).
    assert dp.update_elem(fd, b, new, NOEXIST) == 0
    ret, buf = cl.lookup(fd, b, SLOT * NCPU)
    assert ret == 0
    for i, s in enumerate(slots(buf)):
        assert s == (new if i == cpu else bytes(VALUE_SIZE)) + bytes(SLOT - VALUE_SIZE)
    assert cl.delete(fd, b) == 0

    # The syscall stores the padding bytes it is given (deterministic).
    assert cl.update(fd, a, syscall_value()) == 0
    assert cl.lookup(fd, a, SLOT * NCPU) == (0, syscall_value())

    # A program update of an existing element writes value_size bytes of this CPU's slot
    # only, in place: the padding stays (deterministic).
    assert dp.update_elem(fd, a, bytes([0x44]) * VALUE_SIZE, EXIST) == 0
    ret, buf = cl.lookup(fd, a, SLOT * NCPU)
    expect = bytearray(syscall_value())
    expect[cpu * SLOT:cpu * SLOT + VALUE_SIZE] = bytes([0x44]) * VALUE_SIZE
    assert (ret, buf) == (0, bytes(expect))

    # Delete it and create another element from the program side: it may reuse a's memory.
    assert cl.delete(fd, a) == 0
    assert dp.update_elem(fd, b, new, NOEXIST) == 0
    ret, buf = cl.lookup(fd, b, SLOT * NCPU)
    assert ret == 0
    for i, s in enumerate(slots(buf)):
        # deterministic on both: value bytes (this CPU's value, the others zeroed)
        assert s[:VALUE_SIZE] == (new if i == cpu else bytes(VALUE_SIZE))
        pad = s[VALUE_SIZE:]
        previous = bytes([0xE0 + i]) * (SLOT - VALUE_SIZE)
        if is_emu:
            # DEVIATION(percpu-padding): the emulator's rule, zero padding
            assert pad == bytes(SLOT - VALUE_SIZE)
        else:
            # Linux: whatever the reused element held (here, observed: a's padding, as the
            # freed element is reused at once), or zero for a fresh one; not asserted further
            assert pad in (previous, bytes(SLOT - VALUE_SIZE))


@pytest.mark.parametrize("flavour", [f for f in FLAVOURS if f[1] == LRU_PERCPU_HASH],
                         ids=lambda f: f[0])
@pytest.mark.parametrize("max_entries,value_size", [(1, 4), (3, 12), (8, 4), (8, 12), (40, 4)])
def test_lru_percpu_padding_exact(pinned, flavour, max_entries, value_size):
    """LRU_PERCPU_HASH keeps each node's padding across reuse, exactly like the kernel:
    syscall updates with random padding, deletes, evictions, steals and program-side
    inserts on both CPUs, every full per-CPU buffer compared. The padding makes node
    identity visible, so this checks which node every allocation reuses."""
    _, map_type, flags = flavour
    rng = random.Random(f"pad/{flags}/{max_entries}/{value_size}")
    slot = (value_size + 7) // 8 * 8
    with Pair(map_type, max_entries, flags, value_size=value_size) as p:
        for i in range(1200):
            p.set_cpu(rng.randrange(NCPU))
            k = key_of(rng.randrange(max_entries * 3 // 2 + 3))
            op = rng.random()
            if op < 0.3:
                p.update(k, rng.randbytes(slot * NCPU), rng.choice((ANY, ANY, NOEXIST, EXIST)))
            elif op < 0.55:
                p.prog_update(k, rng.randbytes(value_size), rng.choice((ANY, NOEXIST, EXIST)))
            elif op < 0.7:
                p.delete(k)
            elif op < 0.75:
                p.prog_delete(k)
            elif op < 0.85:
                p.lookup_and_delete(k)
            elif op < 0.95:
                p.lookup(k)
            else:
                p.prog_lookup(k)
            if i % 10 == 0:
                for key in p.keys():
                    p.lookup(key)


@pytest.mark.parametrize("case", ["shrunk_nodes", "global_free_nodes"])
def test_common_lru_harvest_reuse_order(pinned, case):
    """The smallest view of which node a common-LRU allocation gets after a harvest
    (bpf_lru_list_pop_free_to_local() refilling a CPU's local free list): tag every node
    with the padding of a syscall update (tag = key), then let program-side inserts reveal,
    one by one, whose node they got.

    shrunk_nodes: an 8-entry map full of keys 1..8 on CPU 0; each later insert shrinks
    target_free = 2 nodes (the two oldest keys) into the local free list.
    global_free_nodes: keys 1..8 deleted (1..6 had been flushed to the global lists, so
    their nodes go to the global free list, newest first); CPU 1 then harvests them.

    Linux 6.18.44 hands the harvested nodes out in harvest order: the first node moved to
    the local free list is the first reused (shrunk_nodes: 1, 2, 3, 4, ...; global_free_nodes:
    6, 5, 4, ...)."""
    with Pair(LRU_PERCPU_HASH, 8, 0, value_size=VALUE_SIZE) as p:
        def tagged(n):
            return (bytes(VALUE_SIZE) + bytes([n]) * (SLOT - VALUE_SIZE)) * NCPU
        for n in range(1, 9):
            p.update(key_of(n), tagged(n))
        if case == "global_free_nodes":
            for n in range(1, 9):
                p.delete(key_of(n))
            p.set_cpu(1)
        revealed = {"kernel": [], "emulator": []}
        for n in range(100, 108):
            assert p.prog_update(key_of(n), bytes([0x77]) * VALUE_SIZE, NOEXIST) == 0
            for name, side in (("kernel", p.host), ("emulator", p.emu)):
                ret, buf = side.lookup(side.fd, key_of(n))
                assert ret == 0
                revealed[name].append(buf[VALUE_SIZE])     # slot 0's first padding byte
            p.keys()
        assert revealed["emulator"] == revealed["kernel"], (
            f"node reuse order after LRU harvests (tag 0 = never used node): kernel "
            f"{revealed['kernel']}, emulator {revealed['emulator']}")
