"""The batch commands run in bulk (issue #20.1): a run of elements that the element op would
treat alike is one store operation, not a Python call of the element op per element. The
results are the kernel's (tests/differential/test_batch.py); here, that the element op is
only called where the run stops."""
import ctypes
import struct

import pytest

from bpfemu import Emulator
from bpfemu.uapi import consts as c
from tests.support import Client

U32 = struct.Struct("<I")
U = c.BPF_MAP_UPDATE_BATCH


def counting(m, name):
    """Replace the map's op `name` with one that counts its calls."""
    calls = []
    op = getattr(m.ops, name)

    def counted(*args):
        calls.append(args[1])
        return op(*args)
    m.ops = m.ops.replace(**{name: counted})
    return calls


def keys_of(*ks):
    return b"".join(U32.pack(k) for k in ks)


def batch(emu, cmd, fd, keys=b"", values=b"", count=0, vsize=8):
    """One batch call: (ret, count, keys buffer, values buffer) after it."""
    kb = ctypes.create_string_buffer(keys.ljust(4 * count, b"\0"), 4 * count)
    vb = ctypes.create_string_buffer((values or b"").ljust(vsize * count, b"\0"), vsize * count)
    out = ctypes.create_string_buffer(8)
    attr = ctypes.create_string_buffer(struct.pack(
        "<QQQQIIQQ", 0, ctypes.addressof(out), ctypes.addressof(kb),
        ctypes.addressof(vb) if values is not None else 0, count, fd, 0, 0), 168)
    ret = emu.bpf(cmd, attr, 56)
    return ret, U32.unpack_from(attr, 32)[0], kb.raw, vb.raw


@pytest.mark.parametrize("map_type", [c.BPF_MAP_TYPE_HASH, c.BPF_MAP_TYPE_PERCPU_HASH])
def test_update_batch_new_keys_in_bulk(map_type):
    emu = Emulator(nr_cpus=2, seed=1)
    cl = Client(emu)
    fd = cl.create(map_type, 4, 8, 64)
    vsize = 16 if map_type == c.BPF_MAP_TYPE_PERCPU_HASH else 8
    m = emu.map_of(fd)
    calls = counting(m, "map_update_elem_sys")
    ks = list(range(40))
    ret, count, _, _ = batch(emu, U, fd, keys_of(*ks), b"\x01" * vsize * 40, 40, vsize)
    assert (ret, count) == (0, 40)
    assert calls == []                          # no element op at all
    # A key already there stops the run: that one goes through the element op.
    ret, count, _, _ = batch(emu, U, fd, keys_of(50, 3, 51), b"\x02" * vsize * 3, 3, vsize)
    assert (ret, count) == (0, 3)
    assert calls == [keys_of(3)]


def test_delete_batch_in_bulk_stops_at_missing_key():
    emu = Emulator(nr_cpus=2, seed=1)
    cl = Client(emu)
    fd = cl.create(c.BPF_MAP_TYPE_HASH, 4, 8, 64)
    for k in range(10):
        assert cl.update(fd, U32.pack(k), b"\0" * 8) == 0
    calls = counting(emu.map_of(fd), "map_delete_elem")
    ret, count, _, _ = batch(emu, c.BPF_MAP_DELETE_BATCH, fd, keys_of(1, 2, 3, 42, 4), None, 5)
    assert (ret, count) == (-2, 3)              # ENOENT at the fourth
    assert calls == [keys_of(42)]


def test_array_batches_in_bulk():
    emu = Emulator(nr_cpus=2, seed=1)
    cl = Client(emu)
    fd = cl.create(c.BPF_MAP_TYPE_ARRAY, 4, 8, 16)
    m = emu.map_of(fd)
    updates = counting(m, "map_update_elem_sys")
    next_keys = counting(m, "map_get_next_key")
    ret, count, _, _ = batch(emu, U, fd, keys_of(*range(16)), bytes(range(128)), 16)
    assert (ret, count) == (0, 16)
    ret, count, _, _ = batch(emu, U, fd, keys_of(3, 1, 99), b"\x05" * 24, 3)
    assert (ret, count) == (-7, 2)              # E2BIG at the index out of range
    assert updates == [keys_of(99)]
    ret, count, keys, values = batch(emu, c.BPF_MAP_LOOKUP_BATCH, fd, count=20)
    assert (ret, count) == (-2, 16)             # the walk reached the end: ENOENT
    assert keys[:64] == keys_of(*range(16))
    assert values[:128] == bytes(range(8)) + b"\x05" * 8 + bytes(range(16, 24)) + b"\x05" * 8 \
        + bytes(range(32, 128))
    assert next_keys == []


@pytest.mark.parametrize("map_type", [c.BPF_MAP_TYPE_LRU_HASH, c.BPF_MAP_TYPE_LRU_PERCPU_HASH])
def test_lru_update_batch_calls_the_element_op_only_at_refills(map_type):
    """A 64-entry LRU map on 2 CPUs refills CPU 0's local free list 16 nodes at a time: the
    element op takes the element whose pop refills (keys 0, 16, 32), the bulk path the runs
    between; a key already in the map stops a run too."""
    emu = Emulator(nr_cpus=2, seed=1)
    cl = Client(emu)
    fd = cl.create(map_type, 4, 8, 64)
    vsize = 16 if map_type == c.BPF_MAP_TYPE_LRU_PERCPU_HASH else 8
    calls = counting(emu.map_of(fd), "map_update_elem_sys")
    ret, count, _, _ = batch(emu, U, fd, keys_of(*range(40)), b"\x01" * vsize * 40, 40, vsize)
    assert (ret, count) == (0, 40)
    assert calls == [keys_of(0), keys_of(16), keys_of(32)]
    del calls[:]
    ret, count, _, _ = batch(emu, U, fd, keys_of(50, 3, 51), b"\x02" * vsize * 3, 3, vsize)
    assert (ret, count) == (0, 3)
    assert calls == [keys_of(3)]
    assert sorted(U32.unpack(k)[0] for k in cl.keys(fd, 4)) == list(range(40)) + [50, 51]


def test_lru_delete_batch_gives_the_nodes_back_in_bulk(monkeypatch):
    """DELETE_BATCH on an LRU map gives the nodes back in one bulk operation, not through
    the per-node push (pending nodes and listed ones alike)."""
    from bpfemu.maps import lru
    emu = Emulator(nr_cpus=2, seed=1)
    cl = Client(emu)
    fd = cl.create(c.BPF_MAP_TYPE_LRU_HASH, 4, 8, 64)
    for k in range(40):
        assert cl.update(fd, U32.pack(k), b"\0" * 8) == 0
    pushed = []
    for name in ("bpf_common_lru_push_free", "bpf_percpu_lru_push_free"):
        monkeypatch.setattr(lru, name, lambda l, node, pushed=pushed: pushed.append(node))
    ret, count, _, _ = batch(emu, c.BPF_MAP_DELETE_BATCH, fd, keys_of(39, 1, 2, 38), None, 4)
    assert (ret, count) == (0, 4)
    assert pushed == []
    assert len(cl.keys(fd, 4)) == 36


@pytest.mark.parametrize("pattern", ["all present", "present and new in turn",
                                     "each new key twice"])
@pytest.mark.parametrize("map_type", [c.BPF_MAP_TYPE_HASH, c.BPF_MAP_TYPE_LRU_HASH])
def test_update_batch_work_is_linear_in_the_batch(monkeypatch, map_type, pattern):
    """After each element the element op takes (a present key) the batch loop asks the bulk
    op again: what that splits must be bounded by what it returns, not by the rest of the
    batch. Before, an UPDATE_BATCH of 256 present keys split 32,896 keys (4 ms)."""
    from bpfemu.maps import htab_batch
    split = htab_batch._split
    pieces = []

    def counted(buf, size, start, end):
        pieces.append(end - start)
        return split(buf, size, start, end)
    monkeypatch.setattr(htab_batch, "_split", counted)
    emu = Emulator(nr_cpus=2, seed=1)
    cl = Client(emu)
    n = 512
    fd = cl.create(map_type, 4, 8, 4 * n)
    present = {"all present": range(0, 2 * n, 2), "present and new in turn": range(0, 2 * n, 4),
               "each new key twice": ()}[pattern]
    for k in present:
        assert cl.update(fd, U32.pack(k), b"\0" * 8) == 0
    ks = list(range(0, 2 * n, 2))               # with "in turn": every other one is new
    if pattern == "each new key twice":         # k, k, k', k', ...: the second a replace
        ks = [k for k in ks[:n // 2] for _ in (0, 1)]
    ret, count, _, _ = batch(emu, U, fd, keys_of(*ks), b"\x07" * 8 * n, n)
    assert (ret, count) == (0, n)
    assert all(cl.lookup(fd, U32.pack(k), 8) == (0, b"\x07" * 8) for k in ks)
    assert sum(pieces) <= 20 * n                # 131,328 before with "all present"


@pytest.mark.parametrize("cpu", [0, 1])
@pytest.mark.parametrize("map_type,flags", [(c.BPF_MAP_TYPE_LRU_HASH, 0),
                                            (c.BPF_MAP_TYPE_LRU_PERCPU_HASH, 0),
                                            (c.BPF_MAP_TYPE_LRU_HASH, c.BPF_F_NO_COMMON_LRU)])
def test_lru_bulk_batches_leave_the_lists_the_element_ops_leave(cpu, map_type, flags):
    """Random update and delete batches (new keys, repeats, keys in the map, evictions) on
    the CPU the calls run on: with the bulk forms, the LRU lists, the map and every value are
    what the element ops alone leave."""
    import random
    from bpfemu.maps.lru import bpf_lru_dump
    vsize = 16 if map_type == c.BPF_MAP_TYPE_LRU_PERCPU_HASH else 8
    states = []
    for bulk in (True, False):
        emu = Emulator(nr_cpus=2, seed=1)
        emu.cpu = cpu
        cl = Client(emu)
        fd = cl.create(map_type, 4, 8, 96, flags)
        m = emu.map_of(fd)
        if not bulk:
            m.ops = m.ops.replace(map_update_elems=None, map_delete_elems=None)
        rnd = random.Random(5)
        out = []
        for _ in range(30):
            n = rnd.randrange(1, 80)
            ks = [rnd.randrange(300) for _ in range(n)]
            if rnd.random() < 0.7:
                vals = bytes(rnd.randrange(256) for _ in range(vsize * n))
                out.append(batch(emu, U, fd, keys_of(*ks), vals, n, vsize)[:2])
            else:                               # mostly keys in the map, then maybe not
                present = sorted(U32.unpack(k)[0] for k in cl.keys(fd, 4))
                ks = rnd.sample(present, min(n, len(present))) + ks[:rnd.randrange(2)]
                out.append(batch(emu, c.BPF_MAP_DELETE_BATCH, fd, keys_of(*ks), None,
                                 len(ks))[:2])
        keys = sorted(cl.keys(fd, 4))
        out.append([(k, cl.lookup(fd, k, vsize)) for k in keys])
        states.append((out, bpf_lru_dump(m.lru), bytes(m.lru.ref), bytes(m.lru.type),
                       list(m.lru.cpu)))
    assert states[0] == states[1]


def test_lru_delete_batch_around_the_rotation_cursor():
    """A delete batch of the node the common LRU's inactive rotation cursor is on, and its
    neighbours: the bulk give-back moves the cursor as the element ops do (the cursor only
    sits on a node once the inactive list is longer than the 128 nodes a rotation scans,
    so the map has 400 entries)."""
    from bpfemu.maps.lru import bpf_lru_dump
    seen = []
    for bulk in (True, False):
        emu = Emulator(nr_cpus=2, seed=1)
        cl = Client(emu)
        fd = cl.create(c.BPF_MAP_TYPE_LRU_HASH, 4, 8, 400)
        m = emu.map_of(fd)
        if not bulk:
            m.ops = m.ops.replace(map_update_elems=None, map_delete_elems=None)
        for k in range(400):
            assert cl.update(fd, U32.pack(k), b"\0" * 8) == 0
        cursor = m.lru.common_lru.next_inactive_rotation
        key = m.store.key(cursor)
        assert key is not None                  # on a node, not the list's sentinel
        k = U32.unpack(key)[0]
        ret, count, _, _ = batch(emu, c.BPF_MAP_DELETE_BATCH, fd, keys_of(k, k - 1, k + 1),
                                 None, 3)
        assert (ret, count) == (0, 3)
        seen.append((k, bpf_lru_dump(m.lru), m.lru.common_lru.next_inactive_rotation))
    assert seen[0] == seen[1]


@pytest.mark.parametrize("map_type,value_size", [(c.BPF_MAP_TYPE_HASH, 8),
                                                 (c.BPF_MAP_TYPE_HASH, 12),
                                                 (c.BPF_MAP_TYPE_HASH, 24),
                                                 (c.BPF_MAP_TYPE_PERCPU_HASH, 8),
                                                 (c.BPF_MAP_TYPE_LRU_PERCPU_HASH, 16)])
def test_values_of_gathers_each_slot_value(map_type, value_size):
    """The columnar store's values_of (a batch's values, joined): every slot's value in the
    slots' order, whichever way it gathers them (8-byte words, strided word views, slices)."""
    import random
    emu = Emulator(nr_cpus=2, seed=1)
    cl = Client(emu)
    fd = cl.create(map_type, 4, value_size, 64)
    store = emu.map_of(fd).store
    for k in range(40):
        vs = store.slot_size
        assert cl.update(fd, U32.pack(k), bytes((k * 7 + i) & 0xFF for i in range(vs))) == 0
    slots = [store.lookup(U32.pack(k)) for k in range(40)]
    rng = random.Random(5)
    for order in (slots, slots[::-1], rng.sample(slots, 40), rng.sample(slots, 2), slots[3:4]):
        assert store.values_of(order) == b"".join(bytes(store.value(l)) for l in order)


def test_a_batch_walk_of_a_filled_map_lets_its_order_go_at_the_end():
    """A LOOKUP_BATCH walk of a map whose elements all wait to be linked takes its buckets
    from an order of the whole map (three lists of its size); the walk's end lets it go,
    as a GET_NEXT_KEY walk's end does, so a map dumped once does not keep it."""
    import tracemalloc
    emu = Emulator(nr_cpus=2, seed=1)
    cl = Client(emu)
    n = 20000
    fd = cl.create(c.BPF_MAP_TYPE_HASH, 4, 8, n)
    for start in range(0, n, 1000):
        ks = list(range(start, start + 1000))
        assert batch(emu, U, fd, keys_of(*ks), b"\x01" * 8000, 1000)[:2] == (0, 1000)
    kb = ctypes.create_string_buffer(4 * 4096)
    vb = ctypes.create_string_buffer(8 * 4096)
    tok = ctypes.create_string_buffer(8)
    attr = ctypes.create_string_buffer(168)

    def walk():
        got, first = 0, True
        while True:
            struct.pack_into("<QQQQIIQQ", attr, 0, 0 if first else ctypes.addressof(tok),
                             ctypes.addressof(tok), ctypes.addressof(kb), ctypes.addressof(vb),
                             4096, fd, 0, 0)
            ret = emu.bpf(c.BPF_MAP_LOOKUP_BATCH, attr, 56)
            got += U32.unpack_from(attr, 32)[0]
            first = False
            if ret:
                return ret, got
    # The jhash constants every map shares (about 0.5 MB), made by a first walk elsewhere.
    other = cl.create(c.BPF_MAP_TYPE_HASH, 4, 8, n)
    for start in range(0, n, 1000):
        ks = list(range(start, start + 1000))
        assert batch(emu, U, other, keys_of(*ks), b"\x01" * 8000, 1000)[:2] == (0, 1000)
    assert cl.next_key(other, None, 4)[0] == 0
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert walk() == (-2, n)                # ENOENT at the end, every element once
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 20 * n                        # the order: about 70 bytes an element
