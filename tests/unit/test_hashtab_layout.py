"""bpfemu.maps.hashtab's storage: slots, value chunks, bucket heads (no privileges needed).

What the kernel does with the same operations is checked by tests/differential; here the
emulator-only properties of the column layout: a program's live view of a value survives
the map growing, it stays on the element's memory as the kernel's pointer would (a
replaced HASH element becomes the CPU's spare), the sparse bucket heads of huge maps give
the same order as the array, and a map never holds more slots than the kernel's elements.
"""
import ctypes
import errno
import itertools
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
    gives them, and a walk placed in it (item 0) moves along it one step a call,
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


@pytest.mark.parametrize("listed_first", [0, 100], ids=["all-pending", "some-listed"])
def test_walk_by_the_function_follows_the_order_and_lets_it_go(listed_first):
    """htab_map_get_next_key() itself (what unpinned calls run): a first call on a map
    whose elements are all pending orders them without linking them; one that links most
    of the map takes the order of the lists. Each call then moves along the order, and the
    end lets it go."""
    emu = Emulator(seed=5)
    cl = Client(emu)
    fd = cl.create(HASH, 4, 8, 2048, 0)
    m = emu.map_of(fd)
    for i in range(1500):
        if i == listed_first:
            hashtab.htab_sync_buckets(m)        # the ones so far are listed
        m.ops.map_update_elem_sys(m, k(i * 40503), bytes(8), 0)
    walked = []
    for key in _function_walk(m):
        walked.append(key)
        assert m.walk_keys[0] == len(walked)
        # Every element stays pending (unlinked) through a walk that started with all of
        # them pending; otherwise the first call linked them.
        assert len(m.pending) == (1500 if not listed_first else 0)
    assert m.walk_keys is hashtab.NO_WALK
    assert len(m.pending) == (1500 if not listed_first else 0)
    # Elements ordered once are linked by the next walk, not ordered again: a caller that
    # adds a key and starts a walk, again and again, would sort the map every time.
    m.ops.map_update_elem_sys(m, k(7), bytes(8), 0)
    again = _function_walk(m)
    first = next(again)
    assert not m.pending
    assert sorted([first] + list(again)) == sorted(walked + [k(7)])
    assert walked == [m.elem_key[l] for b in range(m.n_buckets)
                      for l in hashtab.htab_bucket_elems(m, b) if m.elem_key[l] != k(7)]
    cl.close_all()


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
        """An update through the same attr object each time: a decoded call, with the op
        folded in (htab_fastpath.py) from its second call on."""
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
    elif change == "lookup-and-delete":         # unlinked at once, pending stays as long
        ops.map_lookup_and_delete_elem(m, ahead, 0)
    elif change == "replaces-to-compaction":
        # Enough replaces of one key for pending to be compacted back to its length
        # when the walk was ordered: only the order being dropped keeps the walk right.
        for _ in range(len(m.elems) + 4200):
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
def test_walk_of_unlisted_elements_is_the_walk_of_the_lists(map_type, flags, change, pinned,
                                                           refilled):
    """A walk that starts on a map whose elements are all pending orders them by their
    hashes without linking them (htab_pending_walk_order). It must give the keys the
    bucket lists give: the same map, its elements listed before the walk, is walked beside
    it, with the same changes made to both midway (each a case where the order must go).
    A map filled, emptied and filled again takes its slots in no run (freed ones, LIFO)."""
    max_entries = 512
    n = max_entries if change == "evicting-inserts" else 400
    maps, clients = [], []
    for listed in (False, True):
        emu = Emulator(seed=11)                 # the same hash seed for both maps
        cl = Client(emu)
        clients.append(cl)
        fd = cl.create(map_type, 4, 8, max_entries, flags)
        m = emu.map_of(fd)
        for rnd in range(2 if refilled else 1):
            for i in range(n):
                m.ops.map_update_elem_sys(m, k(i * 2654435761 + rnd & 0xFFFFFFFF),
                                          bytes(m.value_size_sys), 0)
            if refilled and rnd == 0:
                for key in list(m.elems):
                    m.ops.map_delete_elem(m, key)
                hashtab.htab_sync_buckets(m)    # what a walk of the empty map would do
        bufs = _PinnedBufs(emu, fd, m.value_size_sys)
        if change == "decoded-insert":
            bufs.insert(k(0xC0000000))          # decoded, then with the op folded in
            bufs.insert(k(0xC0000001))
        if listed:
            hashtab.htab_sync_buckets(m)
        maps.append((emu, bufs, fd, m))
    emu, bufs, fd, m = maps[0]
    n += 2 * (change == "decoded-insert")
    assert len(m.pending) == len(m.elems) == n          # nothing listed yet
    # A fresh HASH map takes never-used slots in order (a run), a refilled one its freed
    # slots, LIFO; LRU nodes come off the LRU's lists, in either order.
    if map_type != LRU_HASH:
        assert hashtab._is_run(m.pending) != refilled

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
    assert m.pending_ordered and m.walk_keys[0] == 1     # ordered, not linked
    assert not maps[1][3].pending_ordered
    for step_no in range(1, 10**6):
        if step_no % 50 == 0 and change != "none" and step_no < 300:
            order = m.walk_keys
            ahead = order[order[0] + 3] if order is not hashtab.NO_WALK else walks[0][-1]
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
        assert len(m.pending) == n                  # the walk never linked them
    for cl in clients:
        cl.close_all()


def _twin_maps(map_type, build):
    """Two maps given the same hash seed and the same operations (build(m)); the second
    one's elements are then listed (htab_sync_buckets), the first one's left as they are."""
    out = []
    for listed in (False, True):
        emu = Emulator(seed=13)
        cl = Client(emu)
        m = emu.map_of(cl.create(map_type, 4, 8, 512, 0))
        build(m)
        if listed:
            hashtab.htab_sync_buckets(m)
        out.append((cl, m))
    return out


@pytest.mark.parametrize("map_type", [HASH, PERCPU_HASH, LRU_HASH])
def test_next_key_of_a_key_in_an_unlisted_map(map_type):
    """Only a walk from the start (NULL or a key not in the map) orders unlisted elements;
    the key after a key in the map comes from the lists, as for any map."""
    def build(m):
        for i in range(300):
            m.ops.map_update_elem_sys(m, k(i * 7919), bytes(m.value_size_sys), 0)
    (cl_a, a), (cl_b, b) = _twin_maps(map_type, build)
    assert len(a.pending) == 300
    for i in (5, 150, 299):
        assert a.ops.map_get_next_key(a, k(i * 7919)) == b.ops.map_get_next_key(b, k(i * 7919))
    assert _full_walk(a, k(3)) == _full_walk(b, k(3))             # 3 is not in the map
    cl_a.close_all()
    cl_b.close_all()


def _listed_then_pending(m):
    """Keys 0-99 listed, then keys 100-299 pending."""
    for i in range(300):
        if i == 100:
            hashtab.htab_sync_buckets(m)
        m.ops.map_update_elem_sys(m, k(i), bytes(m.value_size_sys), 0)


@pytest.mark.parametrize("map_type", [HASH, PERCPU_HASH, LRU_HASH])
def test_stale_pending_entries_are_not_unlisted_elements(map_type):
    """Listed elements and stale pending entries (elements unlinked while pending) can add
    up to the map's count: such a map is not all pending, and its walk links first."""
    def build(m):
        _listed_then_pending(m)
        for i in range(100, 300, 2):
            m.ops.map_lookup_and_delete_elem(m, k(i), 0)
    (cl_a, a), (cl_b, b) = _twin_maps(map_type, build)
    assert len(a.pending) == len(a.elems) == 200 and a.pending_stale == 100
    assert _full_walk(a) == _full_walk(b)
    assert len(_full_walk(b)) == 200
    cl_a.close_all()
    cl_b.close_all()


@pytest.mark.parametrize("emptied", ["linked-then-deleted", "deleted", "unlinked-pending"])
def test_a_map_emptied_and_refilled_is_ordered_again(emptied):
    """Elements ordered once are not ordered again, but once they have left pending (linked,
    or the map emptied), a map filled with new ones has them ordered by the next walk,
    unlinked. Emptied: its elements linked (as a batch command does), then taken out one
    by one; deleted while pending (the lists reset whole); unlinked while pending, then
    the lists read (every pending entry stale)."""
    def build(m):
        for i in range(200):
            m.ops.map_update_elem_sys(m, k(i), bytes(8), 0)
    (cl_a, a), (cl_b, b) = _twin_maps(HASH, build)
    a.ops.map_get_next_key(a, None)
    assert a.pending_ordered                    # ordered, unlinked
    for m in (a, b):
        m.ops.map_update_elem_sys(m, k(1000), bytes(8), 0)
    if emptied == "linked-then-deleted":
        hashtab.htab_sync_buckets(a)
        assert not a.pending
    for m in (a, b):
        for i in list(range(200)) + [1000]:
            if emptied == "deleted":
                m.ops.map_delete_elem(m, k(i))
            else:
                m.ops.map_lookup_and_delete_elem(m, k(i), 0)
    if emptied == "unlinked-pending":
        assert a.pending_stale == len(a.pending) == 201
        hashtab.htab_sync_buckets(a)
        assert not a.pending
    for m in (a, b):
        for i in range(200):
            m.ops.map_update_elem_sys(m, k(5000 + i), bytes(8), 0)
    hashtab.htab_sync_buckets(b)
    walked = _full_walk(a)
    assert a.pending_ordered and len(a.pending) == 200
    assert walked == _full_walk(b) and len(walked) == 200
    cl_a.close_all()
    cl_b.close_all()


@pytest.mark.parametrize("map_type", [HASH, PERCPU_HASH])
def test_listed_elements_deleted_beside_pending_ones(map_type):
    """A map whose listed elements were all deleted (their unlinking waits: ``deleted``)
    and whose live elements are all pending: its walk is the pending elements' order, and
    each step from a key waits on the deletes (they are unlinked first)."""
    def build(m):
        _listed_then_pending(m)
        for i in range(100):
            m.ops.map_delete_elem(m, k(i))
    (cl_a, a), (cl_b, b) = _twin_maps(map_type, build)
    assert len(a.pending) == len(a.elems) == 200 and len(a.deleted) == 100
    walked = list(itertools.islice(_function_walk(a), 400))
    assert walked == _full_walk(b) and len(walked) == 200
    cl_a.close_all()
    cl_b.close_all()
