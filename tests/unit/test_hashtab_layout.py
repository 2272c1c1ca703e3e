"""bpfemu.maps.hashtab's storage: slots, value chunks, bucket heads (no privileges needed).

What the kernel does with the same operations is checked by tests/differential; here the
emulator-only properties of the column layout: a program's live view of a value survives
the map growing, it stays on the element's memory as the kernel's pointer would (a
replaced HASH element becomes the CPU's spare), the sparse bucket heads of huge maps give
the same order as the array, and a map never holds more slots than the kernel's elements.
"""
import ctypes
import errno
import struct

import pytest

from bpfemu import Emulator
from bpfemu.maps import hashtab
from bpfemu.maps_api import Map
from bpfemu.progs import DataPlane
from bpfemu.uapi import consts as c

from tests.support import Client

HASH, PERCPU_HASH = c.BPF_MAP_TYPE_HASH, c.BPF_MAP_TYPE_PERCPU_HASH
LRU_HASH, LRU_PERCPU_HASH = c.BPF_MAP_TYPE_LRU_HASH, c.BPF_MAP_TYPE_LRU_PERCPU_HASH
NO_PREALLOC = c.BPF_F_NO_PREALLOC


@pytest.fixture
def env():
    emu = Emulator(nr_cpus=2, seed=7)
    cl = Client(emu)
    yield emu, cl, DataPlane(emu)
    cl.close_all()


def k(n):
    return struct.pack("<I", n)


@pytest.mark.parametrize("value_size,n", [(8, 3000), (512, 9000)], ids=["arena", "chunks"])
@pytest.mark.parametrize("map_type,flags", [
    (HASH, 0), (HASH, NO_PREALLOC), (PERCPU_HASH, 0), (PERCPU_HASH, NO_PREALLOC),
    (LRU_HASH, 0), (LRU_PERCPU_HASH, 0)])
def test_views_survive_the_map_growing(env, map_type, flags, value_size, n):
    """Values sit in fixed-size chunks (one for a small map, 64 KiB ones past ARENA_BYTES):
    thousands of inserts after a lookup neither break the view (no BufferError) nor detach
    it from the element."""
    emu, cl, dp = env
    fd = cl.create(map_type, 4, value_size, n, flags)
    assert fd >= 0
    m = emu.map_of(fd)
    a = b"A" * value_size
    assert dp.update_elem(fd, k(0), a) == 0
    view = dp.lookup_elem(fd, k(0))
    for i in range(1, n):
        m.ops.map_update_elem_sys(m, k(i), bytes(m.value_size_sys), 0)
    assert (len(m.chunks) > 1) == (value_size == 512)
    assert (m.arena is not None) == (value_size == 8)
    view[0:2] = b"xy"
    assert bytes(dp.lookup_elem(fd, k(0))) == b"xy" + a[2:]
    if map_type in (PERCPU_HASH, LRU_PERCPU_HASH):
        # a syscall update of a per-CPU element is in place: the view sees it
        assert cl.update(fd, k(0), b"\x01" * value_size + b"\x02" * value_size) == 0
        assert bytes(view) == b"\x01" * value_size
    else:
        assert cl.lookup(fd, k(0), value_size) == (0, b"xy" + a[2:])


def test_replaced_hash_element_becomes_the_cpus_spare(env):
    """alloc_htab_elem() with an old element (prealloc): the new version takes this CPU's
    spare and the old element becomes the spare, so a pointer to the old element sees the
    old value until the next replace on that CPU reuses it."""
    emu, cl, dp = env
    fd = cl.create(HASH, 4, 8, 4)
    assert dp.update_elem(fd, k(1), b"A" * 8) == 0
    old = dp.lookup_elem(fd, k(1))
    assert dp.update_elem(fd, k(1), b"B" * 8) == 0
    assert bytes(old) == b"A" * 8                       # the old element, now CPU 0's spare
    assert bytes(dp.lookup_elem(fd, k(1))) == b"B" * 8
    emu.cpu = 1
    assert dp.update_elem(fd, k(1), b"C" * 8) == 0      # CPU 1's spare: old is untouched
    assert bytes(old) == b"A" * 8
    emu.cpu = 0
    assert dp.update_elem(fd, k(1), b"D" * 8) == 0      # CPU 0's spare is the old element
    assert bytes(old) == b"D" * 8
    assert cl.lookup(fd, k(1), 8) == (0, b"D" * 8)


def test_deleted_element_is_reused_first(env):
    """A freed element goes on top of the freelist and the next insert takes it."""
    emu, cl, dp = env
    for flags in (0, NO_PREALLOC):
        fd = cl.create(HASH, 4, 8, 4, flags)
        assert dp.update_elem(fd, k(1), b"A" * 8) == 0
        assert dp.update_elem(fd, k(2), b"B" * 8) == 0
        stale = dp.lookup_elem(fd, k(1))
        assert dp.delete_elem(fd, k(1)) == 0
        assert dp.update_elem(fd, k(3), b"C" * 8) == 0
        assert bytes(stale) == b"C" * 8


def test_percpu_program_insert_zeroes_a_reused_slot(env):
    """DEVIATION(percpu-padding)'s rule holds for reused slots too: a program-side insert
    into PERCPU_HASH zeroes every CPU's bytes, padding included."""
    emu, cl, dp = env
    fd = cl.create(PERCPU_HASH, 4, 4, 4)
    assert cl.update(fd, k(1), b"\xee" * 16) == 0
    assert cl.delete(fd, k(1)) == 0
    emu.cpu = 1
    assert dp.update_elem(fd, k(2), b"\x11\x22\x33\x44") == 0
    assert cl.lookup(fd, k(2), 16) == (0, bytes(8) + b"\x11\x22\x33\x44" + bytes(4))


def test_deleted_element_is_reused_first_through_decoded_calls(env):
    """The same through a caller's loop of syscalls on pinned buffers (htab_fastpath.py's
    delete and update): the element deleted last is the one the next new key takes, though
    its unlink from the bucket list waited; a replaced one is the spare or freed, as in
    test_replaced_hash_element_becomes_the_cpus_spare."""
    emu, cl, dp = env
    for flags in (0, NO_PREALLOC):
        fd = cl.create(HASH, 4, 8, 64, flags)
        key, value = ctypes.create_string_buffer(4), ctypes.create_string_buffer(8)
        elem, delete = ctypes.create_string_buffer(168), ctypes.create_string_buffer(168)
        struct.pack_into("<IIQQ", elem, 0, fd, 0, ctypes.addressof(key), ctypes.addressof(value))
        struct.pack_into("<IIQ", delete, 0, fd, 0, ctypes.addressof(key))
        emu.mem.pin(key, value)
        for i in range(1, 9):
            key.raw, value.raw = k(i), bytes([i]) * 8
            assert emu.bpf(c.BPF_MAP_UPDATE_ELEM, elem, 32) == 0
        stale = [dp.lookup_elem(fd, k(i)) for i in (3, 5)]
        for i in (3, 5):
            key.raw = k(i)
            assert emu.bpf(c.BPF_MAP_DELETE_ELEM, delete, 16) == 0
        assert emu.map_of(fd).deleted                   # not unlinked yet
        for i in (20, 21):
            key.raw, value.raw = k(i), bytes([i]) * 8
            assert emu.bpf(c.BPF_MAP_UPDATE_ELEM, elem, 32) == 0
        assert [bytes(v) for v in stale] == [bytes([21]) * 8, bytes([20]) * 8]
        # A replace: the old element becomes this CPU's spare (preallocated), or is freed
        # and taken by the next new key (NO_PREALLOC).
        old = dp.lookup_elem(fd, k(20))
        key.raw, value.raw = k(20), b"R" * 8
        assert emu.bpf(c.BPF_MAP_UPDATE_ELEM, elem, 32) == 0
        assert bytes(old) == bytes([20]) * 8 and bytes(dp.lookup_elem(fd, k(20))) == b"R" * 8
        key.raw, value.raw = k(30), b"N" * 8
        assert emu.bpf(c.BPF_MAP_UPDATE_ELEM, elem, 32) == 0
        assert bytes(old) == (b"N" * 8 if flags else bytes([20]) * 8)
        emu.mem.unpin(key, value)


@pytest.mark.parametrize("flags", [0, NO_PREALLOC])
def test_slots_never_exceed_the_kernels_elements(env, flags):
    """max_entries elements (+ one spare per CPU when preallocated, + one in flight for a
    NO_PREALLOC replace), however the map is churned."""
    emu, cl, dp = env
    n = 50
    fd = cl.create(HASH, 4, 8, n, flags)
    m = emu.map_of(fd)
    for rnd in range(3):
        for cpu in (0, 1):
            emu.cpu = cpu
            for i in range(n):
                assert dp.update_elem(fd, k(i + rnd), bytes([i]) * 8) in (0, -errno.E2BIG)
            for i in range(0, n, 3):
                dp.delete_elem(fd, k(i + rnd))
    assert m.n_slots <= m.max_slots == n + (2 if not flags else 1)
    live = set(m.elems.values())
    spare = {s for s in (m.extra_elems or []) if s >= 0}
    free, deleted = set(m.free_slots), set(m.deleted)   # deleted: not unlinked yet
    assert deleted, "the last round's deletes wait for a walk or an insert"
    groups = [live, spare, free, deleted]
    assert sum(map(len, groups)) == len(set().union(*groups)) == m.n_slots


def _walk(emu, fd):
    m = emu.map_of(fd)
    out, key = [], None
    while True:
        try:
            key = m.ops.map_get_next_key(m, key)
        except OSError:
            return out
        out.append(key)


def test_sparse_heads_give_the_array_order(monkeypatch):
    """Two maps with the same seed, one with array heads and one with SparseHeads (forced by
    lowering HEADS_ARRAY_MAX): same GET_NEXT_KEY walk, also after deleting along the walk
    and re-inserting."""
    dense, sparse = Emulator(seed=3), Emulator(seed=3)
    fd_d = Client(dense).create(HASH, 4, 8, 5000)
    monkeypatch.setattr(hashtab, "HEADS_ARRAY_MAX", 16)
    fd_s = Client(sparse).create(HASH, 4, 8, 5000)
    md, ms = dense.map_of(fd_d), sparse.map_of(fd_s)
    assert not md.sparse and ms.sparse and isinstance(ms.heads, hashtab.SparseHeads)
    for m in (md, ms):
        for i in range(0, 9000, 3):
            m.ops.map_update_elem_sys(m, k(i), k(i) * 2, 0)
        for i in range(0, 9000, 7):
            try:
                m.ops.map_delete_elem(m, k(i))
            except OSError:
                pass
    assert _walk(dense, fd_d) == _walk(sparse, fd_s)
    order = _walk(dense, fd_d)
    # walk and delete every other key, then re-insert some: orders still agree
    for m in (md, ms):
        for i, nxt in enumerate(order):
            if i % 2:
                m.ops.map_delete_elem(m, nxt)
        for i in range(1, 600, 5):
            m.ops.map_update_elem_sys(m, k(i), bytes(8), 0)
    assert _walk(dense, fd_d) == _walk(sparse, fd_s)
    assert len(sparse.map_of(fd_s).heads) == len({
        ms.elem_hash[s] & ms.bucket_mask for s in ms.elems.values()})


def test_sparse_heads_batch_dump(monkeypatch):
    """LOOKUP_BATCH walks whole buckets through the same helper: same dump either way."""
    monkeypatch.setattr(hashtab, "HEADS_ARRAY_MAX", 16)
    dumps = []
    for emu in (Emulator(seed=5), Emulator(seed=5)):
        m = Map.create(emu, HASH, 4, 4, 1000)
        assert emu.map_of(m.fd).sparse == (not dumps)    # the first sparse, then dense
        for i in range(700):
            m[k(i)] = k(i)
        dumps.append(m.items_lookup_batch(chunk=50))
        monkeypatch.setattr(hashtab, "HEADS_ARRAY_MAX", 1 << 20)
    assert dumps[0] == dumps[1] and len(dumps[0]) == 700


def test_huge_no_prealloc_map_is_cheap_and_walks_in_bucket_order():
    """2^27 entries without preallocation: no per-bucket array, and the walk visits the
    few elements in bucket order (each bucket's list from its head: the newest first)."""
    emu = Emulator(seed=11)
    fd = Client(emu).create(HASH, 4, 8, 1 << 27, NO_PREALLOC)
    assert fd >= 0
    m = emu.map_of(fd)
    assert m.sparse and m.n_slots == 0 and not m.chunks
    keys = [k(i * 7919) for i in range(200)]
    for key in keys:
        m.ops.map_update_elem_sys(m, key, key * 2, 0)
    mask = m.n_buckets - 1
    pos = {key: i for i, key in enumerate(keys)}
    want = sorted(keys, key=lambda key: (m.hash_fn(key, m.hashrnd) & mask, -pos[key]))
    assert _walk(emu, fd) == want
    for key in _walk(emu, fd):              # delete along the walk
        m.ops.map_delete_elem(m, key)
    assert _walk(emu, fd) == [] and len(m.heads) == 0


def test_array_heads_skip_long_empty_runs():
    """A 2^20-bucket map with array heads and three elements far apart."""
    emu = Emulator(seed=1)
    fd = Client(emu).create(HASH, 4, 8, 1 << 20, NO_PREALLOC)
    m = emu.map_of(fd)
    assert not m.sparse and len(m.heads) == (1 << 20) + 2     # and two -1 sentinels
    keys = [k(1), k(2), k(3)]
    for key in keys:
        m.ops.map_update_elem_sys(m, key, bytes(8), 0)
    mask = m.n_buckets - 1
    assert _walk(emu, fd) == sorted(keys, key=lambda key: m.hash_fn(key, m.hashrnd) & mask)
    assert hashtab.htab_next_bucket(m, m.n_buckets - 1) in (None, m.n_buckets - 1)


@pytest.mark.parametrize("items", [
    [-1, 255, -1, -1, 65535, 0x00FFFFFF, 0x7FFFFFFF, -1, 0x01FFFFFF, 0xFF, -1],
    [0x00FFFFFF, -1, -1, -1, 0x0000FFFF, 0x00FFFF00, 0x7FFFFF7F, 0x7F000000],
    [-1] * 9, [], [0, 1, 2], [-1, 0xFF] * 5 + [-1] * 3,
], ids=["mixed", "ff-bytes", "empty-buckets", "no-buckets", "full", "alternating"])
def test_listed_heads_cuts_out_exactly_the_empty_buckets(items):
    """The -1 items are cut out of the heads' bytes: items whose bytes include 0xff runs
    next to a -1 (255, 0xFFFF, 0xFFFFFF, ...) must come through whole and in order."""
    from array import array
    heads = array("i", items)
    assert hashtab._listed_heads(heads) == [x for x in items if x >= 0]


@pytest.mark.parametrize("map_type,flags", [(HASH, 0), (HASH, NO_PREALLOC), (PERCPU_HASH, 0),
                                            (LRU_HASH, 0)])
def test_walk_order_is_the_walk(map_type, flags):
    """htab_walk_order() lists every key as the step by step walk over the bucket lists
    gives them, and a walk placed in it (walk_keys[0]) moves along it one step a call,
    without the bucket-list step (walk_steps) ever running."""
    emu = Emulator(seed=3)
    cl = Client(emu)
    fd = cl.create(map_type, 4, 8, 4096, flags)
    m = emu.map_of(fd)
    for i in range(3000):
        m.ops.map_update_elem_sys(m, k(i * 2654435761 & 0xFFFFFFFF), bytes(m.value_size_sys), 0)
    for i in range(0, 3000, 7):                 # deleted while pending
        m.ops.map_delete_elem(m, k(i * 2654435761 & 0xFFFFFFFF))
    # A walk through decoded calls on pinned buffers: its first call links every element
    # and takes the order, and every step then follows the order.
    key, nxt = ctypes.create_string_buffer(4), ctypes.create_string_buffer(4)
    first = ctypes.create_string_buffer(struct.pack("<IIQQ", fd, 0, 0, ctypes.addressof(nxt)), 168)
    step = ctypes.create_string_buffer(
        struct.pack("<IIQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(nxt)), 168)
    emu.mem.pin(key, nxt)
    walked = []
    ret = emu.bpf(c.BPF_MAP_GET_NEXT_KEY, first, 24)
    while ret == 0:
        walked.append(nxt.raw)
        assert m.walk_keys[0] == len(walked) and m.walk_steps == 0
        ctypes.memmove(key, nxt, 4)
        ret = emu.bpf(c.BPF_MAP_GET_NEXT_KEY, step, 24)
    assert ret == -errno.ENOENT
    assert m.walk_keys is hashtab.NO_WALK       # let go at the end of the walk
    by_lists = [m.elem_key[l] for b in range(m.n_buckets) for l in hashtab.htab_bucket_elems(m, b)]
    assert len(by_lists) == len(m.elems) and walked == by_lists
    assert hashtab.htab_walk_order(m) == [1] + by_lists + [None]
    emu.mem.unpin(key, nxt)
    cl.close_all()


def test_walk_by_the_function_follows_the_order_and_lets_it_go():
    """htab_map_get_next_key() itself (what unpinned calls run): a first call that links the
    whole map takes the order, each call moves along it, and the end lets it go."""
    emu = Emulator(seed=5)
    cl = Client(emu)
    fd = cl.create(HASH, 4, 8, 2048, 0)
    m = emu.map_of(fd)
    for i in range(1500):
        m.ops.map_update_elem_sys(m, k(i * 40503), bytes(8), 0)
    key = m.ops.map_get_next_key(m, None)
    walked = [key]
    assert m.walk_keys[0] == 1
    while True:
        try:
            key = m.ops.map_get_next_key(m, key)
        except OSError as e:
            assert e.errno == errno.ENOENT
            break
        walked.append(key)
        assert m.walk_keys[0] == len(walked)
    assert m.walk_keys is hashtab.NO_WALK
    assert walked == [m.elem_key[l] for b in range(m.n_buckets)
                      for l in hashtab.htab_bucket_elems(m, b)]
    cl.close_all()
