"""Batch calls that reuse one attr buffer (bpfemu/batch_fastpath.py), emulator against the kernel.

A batch call that repeats an earlier one's command, size and attr bytes is a decoded call on
the emulator: the front end (CHECK_ATTR, the fd, its permission, ENOTSUPP) is skipped and the
map type's handler runs on the attr as decoded. Every call here goes through one attr buffer
per backend; between calls the test changes one field at a time (count, flags, elem_flags,
in_batch, out_batch, the keys pointer, the fd, the size) or only the bytes behind the
pointers, and compares with the kernel the return value, the attr's bytes after the call (the
count written back), and every byte of the keys, values and token buffers (guards included).
Where the attr is the same as the call before on the emulator, the call must have been
decoded (no command handler ran): a decoded path that skipped a check that can still fail
shows up as a difference from the kernel.
"""
import ctypes
import struct

import pytest

from bpfemu import Emulator
from bpfemu.uapi import consts as c

from tests.differential.test_decoded_calls import count_handlers
from tests.support import unmapped_address

HASH, ARRAY, LRU_HASH = c.BPF_MAP_TYPE_HASH, c.BPF_MAP_TYPE_ARRAY, c.BPF_MAP_TYPE_LRU_HASH
UPDATE_BATCH, LOOKUP_BATCH = c.BPF_MAP_UPDATE_BATCH, c.BPF_MAP_LOOKUP_BATCH
DELETE_BATCH, LOOKUP_AND_DELETE_BATCH = c.BPF_MAP_DELETE_BATCH, c.BPF_MAP_LOOKUP_AND_DELETE_BATCH
FREEZE = c.BPF_MAP_FREEZE
EPERM, ENOENT, EBADF, EFAULT, EINVAL, E2BIG, ENOSPC, ENOTSUPP = 1, 2, 9, 14, 22, 7, 28, 524
N = 16                                          # elements the buffers have room for
GUARD = 16


class BatchCaller:
    """One backend's batch buffers: one attr, keys, values, in and out tokens."""

    def __init__(self, b, fd, pin):
        self.b, self.fd = b, fd
        self.keys = ctypes.create_string_buffer(4 * N + GUARD)
        self.values = ctypes.create_string_buffer(8 * N + GUARD)
        self.tin = ctypes.create_string_buffer(4 + GUARD)
        self.tout = ctypes.create_string_buffer(4 + GUARD)
        for buf in (self.keys, self.values, self.tin, self.tout):
            ctypes.memset(buf, 0xA5, len(buf))
        self.attr = ctypes.create_string_buffer(168)
        self.is_emu = isinstance(b, Emulator)
        self.caching = self.is_emu and b.decoded_calls is not None
        if pin and self.is_emu:
            b.mem.pin(self.keys, self.values, self.tin, self.tout, self.attr)
        self.records = {}                       # cmd -> (size, attr bytes) the emulator decodes
        self.set()

    def set(self, count=N, in_batch=None, out_batch=True, keys=True, values=True,
            elem_flags=0, flags=0, fd=None):
        """The attr's fields; True: this caller's own buffer, None: NULL, an int: that."""
        def ptr(x, buf):
            return ctypes.addressof(buf) if x is True else (x or 0)
        struct.pack_into("<QQQQIIQQ", self.attr, 0, ptr(in_batch, self.tin),
                         ptr(out_batch, self.tout), ptr(keys, self.keys),
                         ptr(values, self.values), count, self.fd if fd is None else fd,
                         elem_flags, flags)

    def set_count(self, count):
        struct.pack_into("<I", self.attr, 32, count)

    def call(self, cmd, size=56):
        """(ret, the count after, keys, values, out token); self.decoded: no handler ran,
        self.repeat: the command's last call that passed the front end (no EBADF or EPERM:
        the only front-end errors here) had this size and these attr bytes."""
        made = (size, self.attr.raw)
        self.repeat = self.records.get(cmd) == made
        if self.is_emu:
            checked = count_handlers(self.b)
        ret = self.b.bpf(cmd, self.attr, size)
        self.decoded = self.is_emu and checked[0] == 0
        if ret not in (-EBADF, -EPERM):
            self.records[cmd] = made
        after = self.attr.raw
        assert after[:32] == made[1][:32] and after[36:] == made[1][36:]   # count alone
        return ret, after[32:36], self.keys.raw, self.values.raw, self.tout.raw

    def forget(self):
        """A freeze or a close forgot every decoded call."""
        self.records.clear()


class Pair:
    def __init__(self, both, map_type, max_entries, pin, flags=c.BPF_F_ZERO_SEED):
        self.backends = [cl.b for cl in both]
        self.fds = []
        for b in self.backends:
            attr = ctypes.create_string_buffer(168)
            struct.pack_into("<IIIII", attr, 0, map_type, 4, 8, max_entries,
                             0 if map_type == ARRAY else flags)
            fd = b.bpf(c.BPF_MAP_CREATE, attr, 168)
            assert fd >= 0, fd
            self.fds.append(fd)
        self.callers = [BatchCaller(b, fd, pin) for b, fd in zip(self.backends, self.fds)]
        self.emu, self.host = self.callers

    def each(self, method, *args, **kw):
        for cl in self.callers:
            getattr(cl, method)(*args, **kw)

    def keys(self, *ks):
        for cl in self.callers:
            struct.pack_into(f"<{len(ks)}I", cl.keys, 0, *ks)

    def values(self, *vs):
        for cl in self.callers:
            struct.pack_into(f"<{len(vs)}Q", cl.values, 0, *vs)

    def token(self, t):
        for cl in self.callers:
            struct.pack_into("<I", cl.tin, 0, t)

    def carry_token(self):
        """in_batch := out_batch, as a caller's walk does."""
        for cl in self.callers:
            ctypes.memmove(cl.tin, cl.tout, 4)

    def do(self, cmd, size=56, decoded=None):
        """cmd on both: the same result, count written back and buffers. decoded=None: the
        emulator's call must be decoded if its attr repeats the command's call before;
        True/False: must (not) be decoded. Returns the kernel's ret and count."""
        res = [cl.call(cmd, size) for cl in self.callers]
        assert res[0] == res[1], (cmd, size, res[0][:2], res[1][:2])
        emu = self.emu
        if emu.caching and (emu.repeat if decoded is None else decoded is not None):
            # A repeat must be decoded. (A call that is no repeat of the command's call
            # before may still be: it can repeat one decoded earlier, which stays valid.)
            want = True if decoded is None else decoded
            assert emu.decoded == want, (cmd, "decoded" if emu.decoded else "checked")
        ret, count = res[1][:2]
        return ret, struct.unpack("<I", count)[0]


@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "unpinned"])
def test_update_and_delete_batches_field_by_field(both, pin):
    """UPDATE_BATCH and DELETE_BATCH through one attr: repeats with new keys behind the same
    pointers are decoded, and each field changed in between is checked as the kernel does."""
    p = Pair(both, HASH, 24, pin)
    p.each("set", count=8)
    p.keys(*range(8))
    p.values(*range(100, 108))
    assert p.do(UPDATE_BATCH) == (0, 8)
    p.keys(*range(8, 16))
    assert p.do(UPDATE_BATCH) == (0, 8)            # the same attr bytes: decoded
    p.keys(*range(16, 24))
    assert p.do(UPDATE_BATCH) == (0, 8)
    p.keys(*range(24, 32))
    assert p.do(UPDATE_BATCH) == (-E2BIG, 0)       # the map is full: E2BIG at the first
    assert p.do(UPDATE_BATCH) == (0, 0)            # count 0 written back: nothing to do
    p.each("set_count", 8)
    assert p.do(UPDATE_BATCH) == (-E2BIG, 0)
    # count: 3 of the keys already in the map are replaced
    p.keys(0, 1, 2)
    p.each("set_count", 3)
    assert p.do(UPDATE_BATCH) == (0, 3)
    assert p.do(UPDATE_BATCH) == (0, 3)
    # elem_flags: anything but BPF_F_LOCK is EINVAL, and BPF_F_LOCK on a map without a
    # spin lock too; every repeat fails again, count untouched
    for ef in (c.BPF_NOEXIST, c.BPF_F_LOCK, 1 << 40):
        p.each("set", count=3, elem_flags=ef)
        assert p.do(UPDATE_BATCH) == (-EINVAL, 3)
        assert p.do(UPDATE_BATCH) == (-EINVAL, 3)
        assert p.do(DELETE_BATCH) == (-EINVAL, 3)
        assert p.do(DELETE_BATCH) == (-EINVAL, 3)
    # flags (the generic batches do not look at it); count 0 does nothing
    p.each("set", count=3, flags=1)
    assert p.do(UPDATE_BATCH)[0] == p.do(UPDATE_BATCH)[0]
    p.each("set", count=0)
    assert p.do(UPDATE_BATCH) == (0, 0)
    assert p.do(UPDATE_BATCH) == (0, 0)
    assert p.do(DELETE_BATCH) == (0, 0)
    assert p.do(DELETE_BATCH) == (0, 0)
    # the keys pointer: unmapped, then NULL (EFAULT every time, count 0 written back),
    # then back to the keys
    bad = unmapped_address()
    for keys in (bad, None):
        p.each("set", count=2, keys=keys)
        assert p.do(DELETE_BATCH) == (-EFAULT, 0)
        p.each("set_count", 2)
        assert p.do(DELETE_BATCH) == (-EFAULT, 0)
    p.each("set", count=2)
    p.keys(3, 4)
    assert p.do(DELETE_BATCH) == (0, 2)
    assert p.do(DELETE_BATCH) == (-ENOENT, 0)
    # the values pointer of an update, unmapped
    p.each("set", count=2, values=bad)
    p.keys(40, 41)
    assert p.do(UPDATE_BATCH) == (-EFAULT, 0)
    p.each("set_count", 2)
    assert p.do(UPDATE_BATCH) == (-EFAULT, 0)
    # deletes: present keys, then the same keys again (ENOENT at the first), a partial one
    p.each("set", count=4)
    p.keys(5, 6, 7, 8)
    assert p.do(DELETE_BATCH) == (0, 4)
    assert p.do(DELETE_BATCH) == (-ENOENT, 0)
    p.each("set_count", 4)
    p.keys(9, 10, 5, 11)
    assert p.do(DELETE_BATCH) == (-ENOENT, 2)
    # the fd: a bad one, then the right one again
    p.each("set", count=2, fd=1000)
    assert p.do(DELETE_BATCH, decoded=False) == (-EBADF, 2)
    assert p.do(DELETE_BATCH, decoded=False) == (-EBADF, 2)
    p.each("set", count=2)
    p.keys(12, 13)
    assert p.do(DELETE_BATCH) == (0, 2)
    # the size: 40 leaves elem_flags and flags out, 48 flags
    p.each("set", count=2, elem_flags=c.BPF_NOEXIST)
    p.keys(14, 15)
    assert p.do(DELETE_BATCH, 40) == (0, 2)
    p.keys(16, 17)
    assert p.do(DELETE_BATCH, 40) == (0, 2)
    assert p.do(DELETE_BATCH, 48) == (-EINVAL, 2)
    assert p.do(DELETE_BATCH, 48) == (-EINVAL, 2)
    p.each("set", count=2, flags=1)
    p.keys(18, 19)
    assert p.do(DELETE_BATCH, 48) == (0, 2)
    p.keys(20, 21)
    assert p.do(DELETE_BATCH, 48) == (0, 2)
    p.keys(0, 1)
    assert p.do(DELETE_BATCH, 56) == (0, 2)          # the generic batches ignore flags
    assert p.do(DELETE_BATCH, 56) == (-ENOENT, 0)


@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "unpinned"])
@pytest.mark.parametrize("map_type", [HASH, LRU_HASH], ids=["hash", "lru_hash"])
def test_lookup_batches_through_one_attr(both, map_type, pin):
    """A walk with LOOKUP_BATCH and LOOKUP_AND_DELETE_BATCH: the token behind in_batch changes
    on every call, the attr does not (decoded); count, flags, elem_flags and the pointers
    changed in between are checked as the kernel does."""
    p = Pair(both, map_type, 64, pin)
    p.each("set", count=16)
    p.keys(*range(16))
    p.values(*range(200, 216))
    assert p.do(UPDATE_BATCH) == (0, 16)
    p.keys(*range(16, 32))
    assert p.do(UPDATE_BATCH) == (0, 16)
    for cmd in (LOOKUP_BATCH, LOOKUP_AND_DELETE_BATCH):
        p.each("set", count=4, in_batch=None)
        p.do(cmd)
        p.each("set", count=4, in_batch=True)
        p.carry_token()
        p.do(cmd)
        seen = 0
        while True:
            p.carry_token()
            p.each("set_count", 4)
            ret, cnt = p.do(cmd)
            assert p.emu.decoded or not p.emu.caching
            seen += 1
            if ret != 0:
                break
            assert seen < 40
        assert ret == -ENOENT
        # a token past the last bucket: ENOENT with nothing copied
        p.token(1 << 20)
        p.each("set_count", 4)
        assert p.do(cmd) == (-ENOENT, 0)
        # count 1: ENOSPC where a bucket holds more than one element, else one element
        p.token(0)
        p.each("set_count", 1)
        p.do(cmd)
        p.each("set_count", 1)
        p.do(cmd)
        # flags, elem_flags: EINVAL every time
        for fields in ({"flags": 1}, {"elem_flags": c.BPF_F_LOCK}, {"elem_flags": 2}):
            p.each("set", count=4, in_batch=True, **fields)
            assert p.do(cmd)[0] == -EINVAL
            assert p.do(cmd)[0] == -EINVAL
        # unmapped in_batch, out_batch, keys, values, each on its own, then NULL out_batch
        # and keys (a map refilled first: a delete batch may have emptied it)
        bad = unmapped_address()
        for field, ptr in (("in_batch", bad), ("out_batch", bad), ("keys", bad),
                           ("values", bad), ("out_batch", None), ("keys", None)):
            p.each("set", count=16)
            p.keys(*range(32, 48))
            p.do(UPDATE_BATCH)
            p.token(0)
            p.each("set", **{"count": 4, "in_batch": True, field: ptr})
            first = p.do(cmd)
            assert first[0] == -EFAULT, (field, first)
            p.token(0)
            p.each("set_count", 4)
            p.do(cmd)
        p.each("set", count=16)
        p.keys(*range(16))
        p.do(UPDATE_BATCH)


def test_array_batches_and_not_supported(both):
    """ARRAY: UPDATE_BATCH and LOOKUP_BATCH repeated, and DELETE_BATCH and
    LOOKUP_AND_DELETE_BATCH (ENOTSUPP after the fd and permission checks, before anything is
    read), decoded when repeated whatever the pointers hold."""
    p = Pair(both, ARRAY, 8, True)
    p.each("set", count=4)
    p.keys(0, 1, 2, 3)
    p.values(1, 2, 3, 4)
    assert p.do(UPDATE_BATCH) == (0, 4)
    p.keys(4, 5, 6, 7)
    assert p.do(UPDATE_BATCH) == (0, 4)
    p.keys(6, 7, 8, 9)
    assert p.do(UPDATE_BATCH) == (-E2BIG, 2)       # index 8: out of range at the third
    p.each("set_count", 4)
    assert p.do(UPDATE_BATCH) == (-E2BIG, 2)
    for cmd in (DELETE_BATCH, LOOKUP_AND_DELETE_BATCH):
        p.each("set", count=4)
        assert p.do(cmd) == (-ENOTSUPP, 4)
        assert p.do(cmd) == (-ENOTSUPP, 4)
        p.each("set", count=4, keys=unmapped_address(), elem_flags=7, flags=3)
        assert p.do(cmd) == (-ENOTSUPP, 4)
        assert p.do(cmd) == (-ENOTSUPP, 4)
        p.each("set", count=4, fd=1000)
        assert p.do(cmd, decoded=False) == (-EBADF, 4)
    p.each("set", count=3, in_batch=None)
    p.do(LOOKUP_BATCH)
    p.each("set", count=3, in_batch=True)
    for _ in range(4):
        p.carry_token()
        p.each("set_count", 3)
        p.do(LOOKUP_BATCH)


def test_frozen_and_closed_maps_stop_decoded_batches(both):
    """A decoded UPDATE_BATCH is EPERM once the map is frozen (LOOKUP_BATCH still works), and
    EBADF once its fd is closed."""
    p = Pair(both, HASH, 16, True)
    p.each("set", count=2)
    p.keys(1, 2)
    assert p.do(UPDATE_BATCH) == (0, 2)
    p.keys(3, 4)
    assert p.do(UPDATE_BATCH) == (0, 2)
    attrs = [ctypes.create_string_buffer(struct.pack("<I", fd), 168) for fd in p.fds]
    assert [b.bpf(FREEZE, a, 4) for b, a in zip(p.backends, attrs)] == [0, 0]
    p.each("forget")
    p.keys(5, 6)
    assert p.do(UPDATE_BATCH, decoded=False) == (-EPERM, 2)
    assert p.do(UPDATE_BATCH, decoded=False) == (-EPERM, 2)
    assert p.do(DELETE_BATCH, decoded=False) == (-EPERM, 2)
    p.each("set", count=4, in_batch=None)
    p.do(LOOKUP_BATCH)
    p.each("set_count", 4)
    p.do(LOOKUP_BATCH)
    assert p.emu.decoded or not p.emu.caching
    for b, fd in zip(p.backends, p.fds):
        b.close(fd)
    p.each("forget")
    p.each("set_count", 4)
    assert p.do(LOOKUP_BATCH, decoded=False) == (-EBADF, 4)
    assert p.do(LOOKUP_BATCH, decoded=False) == (-EBADF, 4)


@pytest.mark.parametrize("cmd", [UPDATE_BATCH, LOOKUP_BATCH, DELETE_BATCH,
                                 LOOKUP_AND_DELETE_BATCH])
def test_count_into_a_read_only_buffer_attr(cmd):
    """An attr passed as a read-only Python buffer (bytes, a read-only memoryview) cannot take
    the count: EFAULT before anything changes, on the first call and on its repeats
    (DEVIATION(attr-buffer): such a buffer is treated as unmapped memory)."""
    emu = Emulator(nr_cpus=2, seed=1)
    attr = ctypes.create_string_buffer(168)
    struct.pack_into("<IIIII", attr, 0, HASH, 4, 8, 16, 0)
    fd = emu.bpf(c.BPF_MAP_CREATE, attr, 168)
    keys = ctypes.create_string_buffer(struct.pack("<II", 1, 2))
    values = ctypes.create_string_buffer(16)
    out = ctypes.create_string_buffer(4)
    emu.mem.pin(keys, values, out)
    upd = struct.pack("<QQQQIIQQ", 0, 0, ctypes.addressof(keys), ctypes.addressof(values), 2,
                      fd, 0, 0)
    assert emu.bpf(UPDATE_BATCH, bytearray(upd), 56) == 0
    raw = struct.pack("<QQQQIIQQ", 0, ctypes.addressof(out), ctypes.addressof(keys),
                      ctypes.addressof(values), 2, fd, 0, 0)
    for attr in (raw, memoryview(bytearray(raw)).toreadonly()):
        for _ in range(3):
            assert emu.bpf(cmd, attr, 56) == -EFAULT
    n = ctypes.create_string_buffer(168)
    struct.pack_into("<IIQQ", n, 0, fd, 0, 0, ctypes.addressof(out))
    assert emu.bpf(c.BPF_MAP_GET_NEXT_KEY, n, 24) == 0          # both keys still there
    assert emu.bpf(DELETE_BATCH, bytearray(upd), 56) == 0


def test_a_count_change_alone_is_decoded(both):
    """The front end does not read batch.count: a call whose attr differs from a decoded one
    in its count alone is decoded with the new count (the last, shorter batch of a range);
    one that differs in another field too goes through the entry."""
    p = Pair(both, HASH, 64, True)
    p.values(*range(300, 316))
    first = 0
    for i, count in enumerate((8, 3, 5, 8, 1, 16)):
        p.keys(*range(first, first + count))
        p.each("set_count", count)
        assert p.do(UPDATE_BATCH, decoded=None if i == 0 else True) == (0, count)
        first += count
    p.keys(*range(0, 16))
    for i, count in enumerate((4, 2, 6)):
        p.each("set", count=count)
        assert p.do(DELETE_BATCH, decoded=None if i == 0 else True) == (0, count)
        p.keys(*range(4, 16) if i == 0 else range(6, 16))
    assert p.do(DELETE_BATCH) == (-ENOENT, 0)           # key 6 went with the last
    p.each("set", count=3, keys=unmapped_address())     # count and keys: not decoded
    assert p.do(DELETE_BATCH, decoded=False) == (-EFAULT, 0)
    q = Pair(both, ARRAY, 8, True)
    for i, count in enumerate((4, 7, 1)):
        q.each("set", count=count)
        assert q.do(DELETE_BATCH, decoded=None if i == 0 else True) == (-ENOTSUPP, count)


def test_a_recount_raced_by_a_forget_is_not_kept(monkeypatch):
    """A batch call remade for a new count is made without the lock: if the decoded calls
    are forgotten meanwhile (here: the map's fd closed by another thread at that moment),
    the remade call must not stay behind to serve later calls."""
    from bpfemu import fastpath
    emu = Emulator(nr_cpus=2, seed=1)
    if emu.decoded_calls is None:
        pytest.skip("decoded calls are off")
    create = ctypes.create_string_buffer(struct.pack("<IIII", HASH, 4, 8, 16), 168)
    fd = emu.bpf(c.BPF_MAP_CREATE, create, 168)
    keys = ctypes.create_string_buffer(4 * N)
    attr = ctypes.create_string_buffer(
        struct.pack("<QQQQII", 0, 0, ctypes.addressof(keys), 0, 2, fd), 168)
    emu.mem.pin(keys, attr)
    assert emu.bpf(DELETE_BATCH, attr, 56) == -ENOENT          # checked: decoded from now on
    recounted = fastpath.recounted

    def racing(*args):
        build = recounted(*args)
        emu.close(fd)                           # the other thread's close, right then
        return build
    monkeypatch.setattr(fastpath, "recounted", racing)
    struct.pack_into("<I", attr, 32, 3)
    emu.bpf(DELETE_BATCH, attr, 56)             # raced the close: either outcome
    monkeypatch.undo()
    struct.pack_into("<I", attr, 32, 3)
    assert emu.bpf(DELETE_BATCH, attr, 56) == -EBADF
