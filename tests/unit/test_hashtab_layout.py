"""The hash maps' stores (maps/htab_store.py, maps/htab_columns.py), through their interface
(no privileges needed).

What the kernel does with the same operations is checked by tests/differential; here what
it cannot show, on both stores: a program's live view of a value survives the map growing
and stays on the element's memory as the kernel's pointer would (a replaced HASH element
becomes the CPU's spare), a map never takes more elements than the kernel has, huge maps
(bucket heads kept sparse) walk in bucket order; and for the columnar store, that its walk
orders and its elements waiting to be linked give the simple store's walks, changes midway
included.
"""
import ctypes
import errno
import struct

import pytest

from bpfemu import Emulator
from bpfemu.maps import htab_columns, htab_store
from bpfemu.maps.htab_store import MISS
from bpfemu.maps.jhash import htab_hash_func
from bpfemu.maps_api import Map
from bpfemu.progs import DataPlane
from bpfemu.uapi import consts as c

from tests.support import Client

HASH, PERCPU_HASH = c.BPF_MAP_TYPE_HASH, c.BPF_MAP_TYPE_PERCPU_HASH
LRU_HASH, LRU_PERCPU_HASH = c.BPF_MAP_TYPE_LRU_HASH, c.BPF_MAP_TYPE_LRU_PERCPU_HASH
NO_PREALLOC = c.BPF_F_NO_PREALLOC


STORES = ["columnar", "simple"]


@pytest.fixture(params=STORES)
def env(request):
    emu = Emulator(nr_cpus=2, seed=7, store=request.param)
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
    """Thousands of inserts after a lookup neither break the view (no BufferError: the
    columnar store's values sit in fixed-size chunks, one for a small map, 64 KiB ones past
    ARENA_BYTES) nor detach it from the element."""
    emu, cl, dp = env
    fd = cl.create(map_type, 4, value_size, n, flags)
    assert fd >= 0
    m = emu.map_of(fd)
    a = b"A" * value_size
    assert dp.update_elem(fd, k(0), a) == 0
    view = dp.lookup_elem(fd, k(0))
    for i in range(1, n):
        m.ops.map_update_elem_sys(m, k(i), bytes(m.value_size_sys), 0)
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


class _Stop(BaseException):
    """Stands for an exception that stops a call half-way (bpfemu/undo.py)."""


@pytest.mark.parametrize("reuse", ["freed", "spare"])
def test_stopped_update_gives_back_the_taken_elements_bytes(env, reuse, monkeypatch):
    """An update stopped after it took an element and copied its value in (store.alloc(value),
    store.swap_extra_elem(..., value)) is rolled back whole, that element's bytes too: a stale
    pointer into it (a freed element, or the replaced element that became this CPU's spare)
    reads what it read before the call."""
    emu, cl, dp = env
    fd = cl.create(HASH, 4, 8, 4)
    assert dp.update_elem(fd, k(1), b"A" * 8) == 0
    stale = dp.lookup_elem(fd, k(1))
    if reuse == "freed":
        assert dp.delete_elem(fd, k(1)) == 0
        key, link = k(3), "add_head"                    # a new key takes the freed element
    else:
        assert dp.update_elem(fd, k(1), b"B" * 8) == 0  # the A element: CPU 0's spare now
        key, link = k(1), "replace"                     # replacing again takes the spare
    store = emu.map_of(fd).store

    def stop(*args):
        raise _Stop
    monkeypatch.setattr(store, link, stop)              # stopped after the value copy
    with pytest.raises(_Stop):
        cl.update(fd, key, b"Z" * 8)
    monkeypatch.undo()
    assert bytes(stale) == b"A" * 8
    assert emu.undo == []


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
    """The same through a caller's loop of syscalls on pinned buffers (decoded calls): the
    element deleted last is the one the next new key takes; a replaced one is the spare or
    freed, as in test_replaced_hash_element_becomes_the_cpus_spare."""
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
def test_elements_never_exceed_the_kernels(env, flags):
    """max_entries elements (+ one spare per CPU when preallocated, + one in flight for a
    NO_PREALLOC replace), however the map is churned: no element number the store hands
    out (store.alloc) reaches past that."""
    emu, cl, dp = env
    n = 50
    fd = cl.create(HASH, 4, 8, n, flags)
    m = emu.map_of(fd)
    # As once a program holds a pointer into an element: replaces take each CPU's own spare
    # (without, CPU 0's serve them all: hashtab.alloc_htab_elem).
    m.prog_views = True
    taken = set()
    alloc = m.store.alloc

    def counting_alloc(*value):
        l = alloc(*value)
        taken.add(l)
        return l
    m.store.alloc = counting_alloc
    for rnd in range(3):
        for cpu in (0, 1):
            emu.cpu = cpu
            for i in range(n):
                assert dp.update_elem(fd, k(i + rnd), bytes([i]) * 8) in (0, -errno.E2BIG)
            for i in range(0, n, 3):
                dp.delete_elem(fd, k(i + rnd))
    limit = n + (2 if not flags else 1)
    assert len(taken) == limit and taken == set(range(limit))


def _walk(emu, fd):
    m = emu.map_of(fd)
    out, key = [], None
    while True:
        try:
            key = m.ops.map_get_next_key(m, key)
        except OSError:
            return out
        out.append(key)


# Where each store stops keeping its bucket heads in an array.
_DENSE_MAX = {"columnar": (htab_columns, "HEADS_ARRAY_MAX"), "simple": (htab_store, "DENSE_MAX")}


@pytest.mark.parametrize("store", STORES)
def test_sparse_heads_give_the_array_order(monkeypatch, store):
    """Two maps with the same seed, one with its bucket heads in an array and one sparse
    (forced by lowering the store's limit): same GET_NEXT_KEY walk, also after deleting
    along the walk and re-inserting."""
    dense, sparse = Emulator(seed=3, store=store), Emulator(seed=3, store=store)
    fd_d = Client(dense).create(HASH, 4, 8, 5000)
    monkeypatch.setattr(*_DENSE_MAX[store], 16)
    fd_s = Client(sparse).create(HASH, 4, 8, 5000)
    md, ms = dense.map_of(fd_d), sparse.map_of(fd_s)
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


@pytest.mark.parametrize("store", STORES)
def test_sparse_heads_batch_dump(monkeypatch, store):
    """LOOKUP_BATCH walks whole buckets through the same store operations: same dump
    either way."""
    monkeypatch.setattr(*_DENSE_MAX[store], 16)
    dumps = []
    for emu in (Emulator(seed=5, store=store), Emulator(seed=5, store=store)):
        m = Map.create(emu, HASH, 4, 4, 1000)
        for i in range(700):
            m[k(i)] = k(i)
        dumps.append(m.items_lookup_batch(chunk=50))
        monkeypatch.setattr(*_DENSE_MAX[store], 1 << 20)
    assert dumps[0] == dumps[1] and len(dumps[0]) == 700


@pytest.mark.parametrize("store", STORES)
def test_huge_no_prealloc_map_walks_in_bucket_order(store):
    """2^27 entries without preallocation: the walk visits the few elements in bucket
    order (each bucket's list from its head: the newest first)."""
    emu = Emulator(seed=11, store=store)
    fd = Client(emu).create(HASH, 4, 8, 1 << 27, NO_PREALLOC)
    assert fd >= 0
    m = emu.map_of(fd)
    keys = [k(i * 7919) for i in range(200)]
    for key in keys:
        m.ops.map_update_elem_sys(m, key, key * 2, 0)
    mask = m.n_buckets - 1
    pos = {key: i for i, key in enumerate(keys)}
    hash_fn = htab_hash_func(4)
    want = sorted(keys, key=lambda key: (hash_fn(key, m.hashrnd) & mask, -pos[key]))
    assert _walk(emu, fd) == want
    for key in _walk(emu, fd):              # delete along the walk
        m.ops.map_delete_elem(m, key)
    assert _walk(emu, fd) == [] and m.store.next_bucket(0) is None


@pytest.mark.parametrize("store", STORES)
def test_long_empty_runs_of_buckets(store):
    """A 2^20-bucket map with three elements far apart: next_bucket finds each, and the
    last bucket's successor is none."""
    emu = Emulator(seed=1, store=store)
    fd = Client(emu).create(HASH, 4, 8, 1 << 20, NO_PREALLOC)
    m = emu.map_of(fd)
    keys = [k(1), k(2), k(3)]
    for key in keys:
        m.ops.map_update_elem_sys(m, key, bytes(8), 0)
    mask = m.n_buckets - 1
    hash_fn = htab_hash_func(4)
    buckets = sorted(hash_fn(key, m.hashrnd) & mask for key in keys)
    assert _walk(emu, fd) == sorted(keys, key=lambda key: hash_fn(key, m.hashrnd) & mask)
    found, b = [], 0
    while (b := m.store.next_bucket(b)) is not None:
        found.append(b)
        b += 1
    assert found == buckets
    assert m.store.next_bucket(m.n_buckets - 1) in (None, m.n_buckets - 1)
    assert m.store.bucket_elems(m.n_buckets) == []


@pytest.mark.parametrize("items", [
    [-1, 255, -1, -1, 65535, 0x00FFFFFF, 0x7FFFFFFF, -1, 0x01FFFFFF, 0xFF, -1],
    [0x00FFFFFF, -1, -1, -1, 0x0000FFFF, 0x00FFFF00, 0x7FFFFF7F, 0x7F000000],
    [-1] * 9, [], [0, 1, 2], [-1, 0xFF] * 5 + [-1] * 3,
], ids=["mixed", "ff-bytes", "empty-buckets", "no-buckets", "full", "alternating"])
def test_listed_heads_cuts_out_exactly_the_empty_buckets(items):
    """The columnar store's -1 items are cut out of the heads' bytes: items whose bytes
    include 0xff runs next to a -1 (255, 0xFFFF, 0xFFFFFF, ...) must come through whole and
    in order."""
    from array import array
    heads = array("i", items)
    assert htab_columns._listed_heads(heads) == [x for x in items if x >= 0]


def _count_hints(m) -> list:
    """A counter of the walk steps the store answered itself (walk_hint, not MISS)."""
    answered = [0]
    hint = m.store.walk_hint

    def counting_hint(key):
        found = hint(key)
        answered[0] += found is not MISS
        return found
    m.store.walk_hint = counting_hint
    return answered


def _function_walk(m, key=None):
    """A walk through htab_map_get_next_key() itself (what unpinned calls run), one key per
    next(), from key; it ends with ENOENT."""
    while True:
        try:
            key = m.ops.map_get_next_key(m, key)
        except OSError as e:
            assert e.errno == errno.ENOENT
            return
        yield key


def _full_walk(m, key=None):
    return list(_function_walk(m, key))


class _PinnedBufs:
    """A walk's key buffers and an update's, pinned together once (pinning forgets every
    decoded call), and the attrs that name them."""

    def __init__(self, emu, fd, value_size):
        self.emu = emu
        self.key, self.nxt = ctypes.create_string_buffer(4), ctypes.create_string_buffer(4)
        self.first = ctypes.create_string_buffer(
            struct.pack("<IIQQ", fd, 0, 0, ctypes.addressof(self.nxt)), 168)
        self.step = ctypes.create_string_buffer(struct.pack(
            "<IIQQ", fd, 0, ctypes.addressof(self.key), ctypes.addressof(self.nxt)), 168)
        self.ukey = ctypes.create_string_buffer(4)
        self.uval = ctypes.create_string_buffer(value_size)
        self.update = ctypes.create_string_buffer(struct.pack(
            "<IIQQQ", fd, 0, ctypes.addressof(self.ukey), ctypes.addressof(self.uval), 0), 168)
        emu.mem.pin(self.key, self.nxt, self.ukey, self.uval)

    def insert(self, key):
        """An update through the same attr object each time: a decoded call from its second
        call on."""
        self.ukey.raw = key
        assert self.emu.bpf(c.BPF_MAP_UPDATE_ELEM, self.update, 32) == 0


def _change(bufs, m, change, ahead, step):
    """One change made to a map mid-walk (the same on both maps of the test below)."""
    ops = m.ops
    value = bytes(m.value_size_sys)
    if change == "insert":
        ops.map_update_elem_sys(m, k(0xF0000000 + step), value, 0)
    elif change == "decoded-insert":            # decoded before the walk
        bufs.insert(k(0xD0000000 + step))
    elif change == "replace":                   # a HASH element moves to its bucket's head
        ops.map_update_elem_sys(m, ahead, b"\1" * len(value), 0)
    elif change == "delete":
        ops.map_delete_elem(m, ahead)
    elif change == "lookup-and-delete":
        ops.map_lookup_and_delete_elem(m, ahead, 0)
    elif change == "replaces-to-compaction":
        # Enough replaces of one key for the columnar store's waiting list to be compacted
        # back to its length when the walk was ordered: only the order being dropped keeps
        # the walk right.
        for _ in range(m.store.count() + 4200):
            ops.map_update_elem_sys(m, ahead, value, 0)
    elif change == "evicting-inserts":          # LRU: new keys in a full map evict
        for i in range(200):
            ops.map_update_elem_sys(m, k(0xE0000000 + 1000 * step + i), value, 0)


_CHANGES = ["none", "insert", "decoded-insert", "replace", "delete", "lookup-and-delete",
            "replaces-to-compaction"]


@pytest.mark.parametrize("refilled", [False, True], ids=["fresh", "refilled"])
@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "function"])
@pytest.mark.parametrize("map_type,flags,change", [
    (map_type, flags, change)
    for map_type, flags in [(HASH, 0), (HASH, NO_PREALLOC), (PERCPU_HASH, 0), (LRU_HASH, 0)]
    for change in _CHANGES + (["evicting-inserts"] if map_type == LRU_HASH else [])])
def test_walk_of_waiting_elements_is_the_simple_stores_walk(map_type, flags, change, pinned,
                                                           refilled):
    """A walk that starts on a columnar map whose elements all wait to be linked orders
    them by their hashes without linking them. It must give the keys the simple store
    gives: the same map on the simple store is walked beside it, with the same changes
    made to both midway (each a case where the order must go). A map filled, emptied and
    filled again takes its elements in no run (freed ones, LIFO)."""
    max_entries = 512
    n = max_entries if change == "evicting-inserts" else 400
    maps, clients = [], []
    for store in STORES:
        emu = Emulator(seed=11, store=store)    # the same hash seed for both maps
        cl = Client(emu)
        clients.append(cl)
        fd = cl.create(map_type, 4, 8, max_entries, flags)
        m = emu.map_of(fd)
        for rnd in range(2 if refilled else 1):
            keys = [k(i * 2654435761 + rnd & 0xFFFFFFFF) for i in range(n)]
            for key in keys:
                m.ops.map_update_elem_sys(m, key, bytes(m.value_size_sys), 0)
            if refilled and rnd == 0:
                for key in keys:
                    m.ops.map_delete_elem(m, key)
                assert _full_walk(m) == []      # reads the (empty) lists
        bufs = _PinnedBufs(emu, fd, m.value_size_sys)
        if change == "decoded-insert":
            bufs.insert(k(0xC0000000))          # checked, then decoded
            bufs.insert(k(0xC0000001))
        maps.append((emu, bufs, fd, m))
    emu, bufs, fd, m = maps[0]
    twin = maps[1][3]
    n += 2 * (change == "decoded-insert")
    waiting = m.store.waiting()
    assert len(waiting) == m.store.count() == n         # nothing listed yet
    # A fresh HASH map takes never-used elements in order (a run), a refilled one its freed
    # elements, LIFO; LRU nodes come off the LRU's lists, in either order.
    if map_type != LRU_HASH:
        assert htab_columns._is_run(waiting) != refilled
    answered = _count_hints(m)

    def steps(bufs, m):
        """A walk, one key per next(); the walk's own key buffer passed back each time."""
        if not pinned:
            yield from _function_walk(m)
            return
        key, nxt = bufs.key, bufs.nxt
        ret = bufs.emu.bpf(c.BPF_MAP_GET_NEXT_KEY, bufs.first, 24)
        while ret == 0:
            yield nxt.raw
            ctypes.memmove(key, nxt, 4)
            ret = bufs.emu.bpf(c.BPF_MAP_GET_NEXT_KEY, bufs.step, 24)
        assert ret == -errno.ENOENT

    walkers = [steps(b, mm) for _, b, _, mm in maps]
    walks = [[next(w)] for w in walkers]
    assert answered[0] == 1 and len(m.store.waiting()) == n      # ordered, not linked
    for step_no in range(1, 10**6):
        if step_no % 50 == 0 and change != "none" and step_no < 300:
            ahead = walks[1][-1]                # three steps ahead, on the simple twin
            for _ in range(3):
                try:
                    ahead = twin.ops.map_get_next_key(twin, ahead)
                except OSError:
                    break
            for _, b, _, mm in maps:
                _change(b, mm, change, ahead, step_no)
        got = [next(w, None) for w in walkers]
        assert got[0] == got[1], (step_no, change)
        if got[0] is None:
            break
        for walk, key in zip(walks, got):
            walk.append(key)
    assert walks[0] == walks[1]
    whole = change in ("none", "replace", "replaces-to-compaction")
    assert len(walks[0]) >= (n - 10 if whole else 100)
    if change == "none":
        assert len(m.store.waiting()) == n          # the walk never linked them
        assert answered[0] == n + 1                 # every step, and the end
    for cl in clients:
        cl.close_all()


def _twin_maps(map_type, build):
    """The same map on the columnar and on the simple store, given the same hash seed and
    the same operations (build(m))."""
    out = []
    for store in STORES:
        emu = Emulator(seed=13, store=store)
        cl = Client(emu)
        m = emu.map_of(cl.create(map_type, 4, 8, 512, 0))
        build(m)
        out.append((cl, m))
    return out


@pytest.mark.parametrize("map_type", [HASH, PERCPU_HASH, LRU_HASH])
def test_next_key_of_a_key_in_a_map_of_waiting_elements(map_type):
    """Only a walk from the start (NULL or a key not in the map) orders waiting elements;
    the key after a key in the map comes from the lists, as for any map."""
    def build(m):
        for i in range(300):
            m.ops.map_update_elem_sys(m, k(i * 7919), bytes(m.value_size_sys), 0)
    (cl_a, a), (cl_b, b) = _twin_maps(map_type, build)
    assert len(a.store.waiting()) == 300
    for i in (5, 150, 299):
        assert a.ops.map_get_next_key(a, k(i * 7919)) == b.ops.map_get_next_key(b, k(i * 7919))
    assert _full_walk(a, k(3)) == _full_walk(b, k(3))             # 3 is not in the map
    cl_a.close_all()
    cl_b.close_all()


def _listed_then_waiting(m):
    """Keys 0-99 listed (a read of the lists links them), then keys 100-299 waiting."""
    for i in range(300):
        if i == 100:
            m.store.next_bucket(0)
        m.ops.map_update_elem_sys(m, k(i), bytes(m.value_size_sys), 0)


@pytest.mark.parametrize("map_type", [HASH, PERCPU_HASH, LRU_HASH])
def test_stale_waiting_entries_are_not_waiting_elements(map_type):
    """Listed elements and stale entries of the waiting list (elements unlinked while
    waiting) can add up to the map's count: such a map is not all waiting, and its walk
    links first."""
    def build(m):
        _listed_then_waiting(m)
        for i in range(100, 300, 2):
            m.ops.map_lookup_and_delete_elem(m, k(i), 0)
    (cl_a, a), (cl_b, b) = _twin_maps(map_type, build)
    assert len(a.store.waiting()) == 100 and a.store.count() == 200
    assert _full_walk(a) == _full_walk(b)
    assert len(_full_walk(b)) == 200
    cl_a.close_all()
    cl_b.close_all()


@pytest.mark.parametrize("emptied", ["linked-then-deleted", "deleted", "unlinked-waiting"])
def test_a_map_emptied_and_refilled_is_ordered_again(emptied):
    """Elements ordered once are not ordered again, but once they have stopped waiting
    (linked, or the map emptied), a map filled with new ones has them ordered by the next
    walk, unlinked. Emptied: its elements linked (as a batch command does), then taken out
    one by one; deleted while waiting; unlinked while waiting, then the lists read."""
    def build(m):
        for i in range(200):
            m.ops.map_update_elem_sys(m, k(i), bytes(8), 0)
    (cl_a, a), (cl_b, b) = _twin_maps(HASH, build)
    a.ops.map_get_next_key(a, None)
    assert len(a.store.waiting()) == 200        # ordered, unlinked
    for m in (a, b):
        m.ops.map_update_elem_sys(m, k(1000), bytes(8), 0)
    if emptied == "linked-then-deleted":
        a.store.next_bucket(0)                  # reads the lists
        assert not a.store.waiting()
    for m in (a, b):
        for i in list(range(200)) + [1000]:
            if emptied == "deleted":
                m.ops.map_delete_elem(m, k(i))
            else:
                m.ops.map_lookup_and_delete_elem(m, k(i), 0)
    if emptied == "unlinked-waiting":
        assert not a.store.waiting()
        assert a.store.next_bucket(0) is None
    for m in (a, b):
        for i in range(200):
            m.ops.map_update_elem_sys(m, k(5000 + i), bytes(8), 0)
    answered = _count_hints(a)
    walked = _full_walk(a)
    assert answered[0] == 201 and len(a.store.waiting()) == 200
    assert walked == _full_walk(b) and len(walked) == 200
    cl_a.close_all()
    cl_b.close_all()
