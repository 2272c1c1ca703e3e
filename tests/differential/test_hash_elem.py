"""HASH and PERCPU_HASH element commands, on the emulator and the live kernel.

Every test body runs on both backends (the ``client`` fixture) and asserts the result the
reference tables give (docs/linux-6.18.md: #element-commands, #element-positions-and-capacity), all
of them live-kernel observations; where a test compares the two backends directly (the
``both`` fixture) the live kernel's answer is the expectation. Errno paths are exercised in
check order, and pairs of faults show which check comes first.
"""
import os
import random

import pytest

from bpfemu.uapi import consts as c
from tests.support import NCPU, Buf, dirty_tail_result, readonly_address

from tests.differential.hash_support import (BAD_FLAGS, CLOSED_FD, CONFIG_IDS, CONFIGS, DELETE,
                                             E2BIG, EBADF, EEXIST, EFAULT, EINVAL, ENOENT,
                                             EPERM, HASH, LOOKUP, LOOKUP_AND_DELETE,
                                             MINUS_ONE_FD, NEXT_KEY, NONE_PAGE, PERCPU_HASH,
                                             UPDATE, Cliff, Walker, attr_with_tail,
                                             bad_pointers, call, round_up, sys_value_size, u64)

F_LOCK = c.BPF_F_LOCK
ANY, NOEXIST, EXIST = c.BPF_ANY, c.BPF_NOEXIST, c.BPF_EXIST


@pytest.fixture(params=CONFIGS, ids=CONFIG_IDS)
def cfg(request):
    return request.param


@pytest.fixture
def pipe_fd():
    r, w = os.pipe()
    yield r
    os.close(r)
    os.close(w)


def make(cl, cfg, key_size=8, value_size=8, max_entries=8, flags=0):
    _, map_type, map_flags = cfg
    fd = cl.create(map_type, key_size, value_size, max_entries, map_flags | flags)
    assert fd >= 0, fd
    return fd


def vsz(cfg, value_size=8):
    return sys_value_size(cfg[1], value_size)


def val(cfg, seed, value_size=8):
    """A value buffer for the syscall: random bytes, padding included for per-CPU maps."""
    return random.Random(seed).randbytes(vsz(cfg, value_size))


class Elem:
    """Key and value buffers for one call, guarded on both sides."""

    def __init__(self, key=b"", key_size=8, value=b"", value_size=8):
        self.k = Buf(key, key_size)
        self.v = Buf(value, value_size)

    def intact(self):
        return self.k.guards_intact() and self.v.guards_intact()


# --- MAP_LOOKUP_ELEM (docs: #element-commands) ----------------------------------------

def test_lookup_checks_in_order(client, cfg, pipe_fd):
    fd = make(client, cfg)
    vs = vsz(cfg)
    value = val(cfg, 1)
    assert client.update(fd, u64(1), value) == 0
    e = Elem(u64(1), 8, b"", vs)

    # 1. CHECK_ATTR: bytes 32..167 must be zero, before anything else (even a bad fd).
    for off in (32, 40, 100, 167):
        assert call(client, LOOKUP, fd, e.k.addr, e.v.addr, tail={off: 1}) == dirty_tail_result(client, off)
        assert call(client, LOOKUP, CLOSED_FD, e.k.addr, e.v.addr, tail={off: 1}) == dirty_tail_result(client, off)
    # The hole at offsets 4..7 is not checked.
    assert call(client, LOOKUP, fd, e.k.addr, e.v.addr, pad=0xFFFFFFFF) == 0
    assert e.v.data == value
    # 2. flags & ~BPF_F_LOCK -> EINVAL before the fd is looked at (6.18 order).
    for flags in [1, 2] + BAD_FLAGS:
        assert call(client, LOOKUP, fd, e.k.addr, e.v.addr, flags) == -EINVAL
        assert call(client, LOOKUP, CLOSED_FD, e.k.addr, e.v.addr, flags) == -EINVAL
        assert call(client, LOOKUP, pipe_fd, 0, 0, flags) == -EINVAL
    # 3. fd: closed -> EBADF, -1 -> EBADF, not a map -> EINVAL; F_LOCK alone is not checked yet.
    assert call(client, LOOKUP, CLOSED_FD, e.k.addr, e.v.addr, F_LOCK) == -EBADF
    assert call(client, LOOKUP, CLOSED_FD, e.k.addr, e.v.addr) == -EBADF
    assert call(client, LOOKUP, MINUS_ONE_FD, e.k.addr, e.v.addr) == -EBADF
    assert call(client, LOOKUP, pipe_fd, e.k.addr, e.v.addr) == -EINVAL
    assert call(client, LOOKUP, pipe_fd, 0, 0, F_LOCK) == -EINVAL
    # 4. a write-only fd cannot read: EPERM before F_LOCK and before the key is read.
    wfd = make(client, cfg, flags=c.BPF_F_WRONLY)
    assert call(client, LOOKUP, wfd, e.k.addr, e.v.addr) == -EPERM
    assert call(client, LOOKUP, wfd, e.k.addr, e.v.addr, F_LOCK) == -EPERM
    assert call(client, LOOKUP, wfd, 0, 0) == -EPERM
    assert call(client, LOOKUP, wfd, 0, 0, 1) == -EINVAL          # flags still come first
    # 5. F_LOCK without a spin lock -> EINVAL, before the key is copied.
    assert call(client, LOOKUP, fd, e.k.addr, e.v.addr, F_LOCK) == -EINVAL
    for _, bad in bad_pointers(output=False):
        assert call(client, LOOKUP, fd, bad, e.v.addr, F_LOCK) == -EINVAL
    # 6. the key copy faults -> EFAULT (the value pointer does not matter yet).
    for _, bad in bad_pointers(output=False):
        assert call(client, LOOKUP, fd, bad, e.v.addr) == -EFAULT
        assert call(client, LOOKUP, fd, bad, 0) == -EFAULT
    # 7. a missing key -> ENOENT without touching the value pointer.
    missing = Buf(u64(2))
    for _, bad in bad_pointers(output=True):
        assert call(client, LOOKUP, fd, missing.addr, bad) == -ENOENT
    # 8. an existing key with a value pointer that cannot be written -> EFAULT.
    for _, bad in bad_pointers(output=True):
        assert call(client, LOOKUP, fd, e.k.addr, bad) == -EFAULT
    assert e.intact()
    # The element is still there and unchanged.
    assert client.lookup(fd, u64(1), vs) == (0, value)


# --- MAP_UPDATE_ELEM (docs: #element-commands) ----------------------------------------

def test_update_checks_in_order(client, cfg, pipe_fd):
    fd = make(client, cfg, max_entries=2)
    vs = vsz(cfg)
    value = val(cfg, 2)
    e = Elem(u64(7), 8, value, vs)

    # 1. CHECK_ATTR first.
    for off in (32, 33, 167):
        assert call(client, UPDATE, fd, e.k.addr, e.v.addr, tail={off: 0x80}) == dirty_tail_result(client, off)
        assert call(client, UPDATE, CLOSED_FD, e.k.addr, e.v.addr, tail={off: 1}) == dirty_tail_result(client, off)
    # 2. the fd comes before any flag check: bad fd + bad flags -> EBADF (not EINVAL).
    for flags in [0, F_LOCK] + BAD_FLAGS:
        assert call(client, UPDATE, CLOSED_FD, e.k.addr, e.v.addr, flags) == -EBADF
        assert call(client, UPDATE, MINUS_ONE_FD, 0, 0, flags) == -EBADF
        assert call(client, UPDATE, pipe_fd, 0, 0, flags) == -EINVAL
    # 3. a read-only fd cannot write: EPERM before F_LOCK, flags and pointers.
    rfd = make(client, cfg, flags=c.BPF_F_RDONLY)
    for flags in [0, F_LOCK] + BAD_FLAGS:
        assert call(client, UPDATE, rfd, e.k.addr, e.v.addr, flags) == -EPERM
        assert call(client, UPDATE, rfd, 0, 0, flags) == -EPERM
    # 4. F_LOCK (alone or with other bits) without a spin lock -> EINVAL before the key copy.
    for flags in (F_LOCK, F_LOCK | NOEXIST, F_LOCK | EXIST, 5, 7, F_LOCK | 1 << 63):
        assert call(client, UPDATE, fd, e.k.addr, e.v.addr, flags) == -EINVAL
        assert call(client, UPDATE, fd, 0, 0, flags) == -EINVAL
    # 5. key copy, then value copy -> EFAULT, both before the map's own flag check.
    for _, bad in bad_pointers(output=False):
        for flags in (ANY, NOEXIST, EXIST, 3, 8, 16, 1 << 32, 1 << 63):
            assert call(client, UPDATE, fd, bad, e.v.addr, flags) == -EFAULT
            assert call(client, UPDATE, fd, e.k.addr, bad, flags) == -EFAULT
            assert call(client, UPDATE, fd, bad, bad, flags) == -EFAULT
    # Inputs are only read: a read-only page is a fine source for key and value.
    ro = readonly_address()
    assert call(client, UPDATE, fd, ro, ro) == 0
    assert client.lookup(fd, bytes(8), vs) == (0, bytes(vs))
    assert client.delete(fd, bytes(8)) == 0
    # 6. the map's flag check, then NOEXIST / EXIST.
    for flags in BAD_FLAGS:
        if flags & F_LOCK:
            continue
        assert call(client, UPDATE, fd, e.k.addr, e.v.addr, flags) == -EINVAL
    assert call(client, UPDATE, fd, e.k.addr, e.v.addr, EXIST) == -ENOENT
    assert call(client, UPDATE, fd, e.k.addr, e.v.addr, NOEXIST) == 0
    assert call(client, UPDATE, fd, e.k.addr, e.v.addr, NOEXIST) == -EEXIST
    assert call(client, UPDATE, fd, e.k.addr, e.v.addr, 3) == -EINVAL
    assert call(client, UPDATE, fd, e.k.addr, e.v.addr, EXIST) == 0
    assert call(client, UPDATE, fd, e.k.addr, e.v.addr, ANY) == 0
    assert e.intact()
    # None of the failed calls changed the map: one key with its value.
    assert client.keys(fd, 8) == [u64(7)]
    assert client.lookup(fd, u64(7), vs) == (0, value)


# --- MAP_DELETE_ELEM (docs: #element-commands) ----------------------------------------

def test_delete_checks_in_order(client, cfg, pipe_fd):
    fd = make(client, cfg)
    vs = vsz(cfg)
    assert client.update(fd, u64(3), val(cfg, 3)) == 0
    k = Buf(u64(3))

    # 1. CHECK_ATTR covers bytes 16..167: the value/next_key field and flags must be zero.
    for tail in ({16: 1}, {23: 0x80}, {24: 1}, {31: 0x80}, {32: 1}, {167: 1}):
        assert call(client, DELETE, fd, k.addr, tail=tail) == dirty_tail_result(client, tail)
        assert call(client, DELETE, CLOSED_FD, 0, tail=tail) == dirty_tail_result(client, tail)
    for flags in [ANY + 1, EXIST, F_LOCK] + BAD_FLAGS:
        assert call(client, DELETE, fd, k.addr, flags=flags) == -EINVAL
        assert call(client, DELETE, CLOSED_FD, k.addr, flags=flags) == -EINVAL
    assert call(client, DELETE, fd, k.addr, value=k.addr) == -EINVAL
    # 2. fd.
    assert call(client, DELETE, CLOSED_FD, k.addr) == -EBADF
    assert call(client, DELETE, MINUS_ONE_FD, 0) == -EBADF
    assert call(client, DELETE, pipe_fd, 0) == -EINVAL
    # 3. read-only fd -> EPERM before the key is read; a write-only fd may delete.
    rfd = make(client, cfg, flags=c.BPF_F_RDONLY)
    assert call(client, DELETE, rfd, k.addr) == -EPERM
    assert call(client, DELETE, rfd, 0) == -EPERM
    wfd = make(client, cfg, flags=c.BPF_F_WRONLY)
    assert client.update(wfd, u64(3), val(cfg, 3)) == 0
    assert call(client, DELETE, wfd, k.addr) == 0
    assert call(client, DELETE, wfd, k.addr) == -ENOENT
    # 4. key copy -> EFAULT.
    for _, bad in bad_pointers(output=False):
        assert call(client, DELETE, fd, bad) == -EFAULT
    # The hole at 4..7 is not checked.
    assert call(client, DELETE, fd, k.addr, pad=0xFFFFFFFF) == 0
    # 5. missing -> ENOENT.
    assert call(client, DELETE, fd, k.addr) == -ENOENT
    assert client.lookup(fd, u64(3), vs) == (-ENOENT, None)
    assert client.keys(fd, 8) == []
    assert k.guards_intact()


# --- MAP_GET_NEXT_KEY (docs: #element-commands) ---------------------------------------

def test_get_next_key_checks_in_order(client, cfg, pipe_fd):
    fd = make(client, cfg)
    k = Buf(u64(1))
    n = Buf(size=8)

    # Empty map: NULL key and a missing key both end with ENOENT, whatever next_key is.
    for key in (0, k.addr):
        assert call(client, NEXT_KEY, fd, key, n.addr) == -ENOENT
        for _, bad in bad_pointers(output=True):
            assert call(client, NEXT_KEY, fd, key, bad) == -ENOENT
    assert n.data == bytes(8)

    assert client.update(fd, u64(1), val(cfg, 1)) == 0
    # 1. CHECK_ATTR covers bytes 24..167, i.e. the flags field.
    for flags in [1, EXIST, F_LOCK] + BAD_FLAGS:
        assert call(client, NEXT_KEY, fd, k.addr, n.addr, flags) == -EINVAL
        assert call(client, NEXT_KEY, CLOSED_FD, k.addr, n.addr, flags) == -EINVAL
    for tail in ({32: 1}, {167: 2}):
        assert call(client, NEXT_KEY, fd, k.addr, n.addr, tail=tail) == dirty_tail_result(client, tail)
    # 2. fd.
    assert call(client, NEXT_KEY, CLOSED_FD, 0, n.addr) == -EBADF
    assert call(client, NEXT_KEY, MINUS_ONE_FD, 0, n.addr) == -EBADF
    assert call(client, NEXT_KEY, pipe_fd, 0, n.addr) == -EINVAL
    # 3. write-only fd -> EPERM, before the key is read; read-only fds may walk.
    wfd = make(client, cfg, flags=c.BPF_F_WRONLY)
    assert call(client, NEXT_KEY, wfd, 0, n.addr) == -EPERM
    assert call(client, NEXT_KEY, wfd, NONE_PAGE, 0) == -EPERM
    rfd = make(client, cfg, flags=c.BPF_F_RDONLY)
    assert call(client, NEXT_KEY, rfd, 0, n.addr) == -ENOENT
    # 4. a non-NULL key is copied -> EFAULT (even though the map has a next element).
    for name, bad in bad_pointers(output=False):
        if bad:
            assert call(client, NEXT_KEY, fd, bad, n.addr) == -EFAULT
    # 5. NULL key -> first key; the only key -> ENOENT; a missing key -> first key again.
    assert call(client, NEXT_KEY, fd, 0, n.addr, pad=0xFFFFFFFF) == 0
    assert n.data == u64(1)
    assert call(client, NEXT_KEY, fd, k.addr, n.addr) == -ENOENT
    miss = Buf(u64(99))
    n2 = Buf(size=8)
    assert call(client, NEXT_KEY, fd, miss.addr, n2.addr) == 0
    assert n2.data == u64(1)
    # 6. next_key is written only when there is a next key: at the end, a bad pointer is
    #    still ENOENT; with a next key it is EFAULT.
    for _, bad in bad_pointers(output=True):
        assert call(client, NEXT_KEY, fd, k.addr, bad) == -ENOENT
        assert call(client, NEXT_KEY, fd, 0, bad) == -EFAULT
        assert call(client, NEXT_KEY, fd, miss.addr, bad) == -EFAULT
    assert client.update(fd, u64(2), val(cfg, 2)) == 0
    first, second = client.keys(fd, 8)
    fk = Buf(first)
    for _, bad in bad_pointers(output=True):
        assert call(client, NEXT_KEY, fd, fk.addr, bad) == -EFAULT
    sk = Buf(second)
    for _, bad in bad_pointers(output=True):
        assert call(client, NEXT_KEY, fd, sk.addr, bad) == -ENOENT
    assert k.guards_intact() and n.guards_intact() and n2.guards_intact()


def test_get_next_key_of_missing_key_is_first(client, cfg):
    fd = make(client, cfg, max_entries=64)
    for i in range(40):
        assert client.update(fd, u64(i * 7 + 1), val(cfg, i)) == 0
    walk = client.keys(fd, 8)
    assert sorted(walk) == sorted(u64(i * 7 + 1) for i in range(40))
    for missing in (0, 2, 1000, 2**64 - 1):
        assert client.next_key(fd, u64(missing), 8) == (0, walk[0])
    # A deleted key is a missing key: the walk restarts.
    assert client.delete(fd, walk[5]) == 0
    assert client.next_key(fd, walk[5], 8) == (0, walk[0])


# --- MAP_LOOKUP_AND_DELETE_ELEM (docs: #element-commands) ----------------------------

def test_lookup_and_delete_checks_in_order(client, cfg, pipe_fd):
    fd = make(client, cfg, max_entries=2)
    vs = vsz(cfg)
    value = val(cfg, 4)
    assert client.update(fd, u64(4), value) == 0
    e = Elem(u64(4), 8, b"", vs)

    # 1. CHECK_ATTR.
    for off in (32, 167):
        assert call(client, LOOKUP_AND_DELETE, fd, e.k.addr, e.v.addr,
                    tail={off: 1}) == dirty_tail_result(client, off)
        assert call(client, LOOKUP_AND_DELETE, CLOSED_FD, 0, 0, tail={off: 1}) == dirty_tail_result(client, off)
    # 2. flags & ~F_LOCK before the fd.
    for flags in [1, 2] + BAD_FLAGS:
        assert call(client, LOOKUP_AND_DELETE, fd, e.k.addr, e.v.addr, flags) == -EINVAL
        assert call(client, LOOKUP_AND_DELETE, CLOSED_FD, e.k.addr, e.v.addr, flags) == -EINVAL
    # 3. fd.
    assert call(client, LOOKUP_AND_DELETE, CLOSED_FD, e.k.addr, e.v.addr, F_LOCK) == -EBADF
    assert call(client, LOOKUP_AND_DELETE, MINUS_ONE_FD, 0, 0) == -EBADF
    assert call(client, LOOKUP_AND_DELETE, pipe_fd, 0, 0, F_LOCK) == -EINVAL
    # 4. needs read and write: read-only and write-only fds -> EPERM, before F_LOCK.
    for mode in (c.BPF_F_RDONLY, c.BPF_F_WRONLY):
        xfd = make(client, cfg, flags=mode)
        assert call(client, LOOKUP_AND_DELETE, xfd, e.k.addr, e.v.addr) == -EPERM
        assert call(client, LOOKUP_AND_DELETE, xfd, 0, 0, F_LOCK) == -EPERM
        assert call(client, LOOKUP_AND_DELETE, xfd, 0, 0, 1) == -EINVAL
    # 5. F_LOCK -> EINVAL before the key is read.
    for _, bad in bad_pointers(output=False):
        assert call(client, LOOKUP_AND_DELETE, fd, bad, e.v.addr, F_LOCK) == -EINVAL
    # 6. key copy -> EFAULT.
    for _, bad in bad_pointers(output=False):
        assert call(client, LOOKUP_AND_DELETE, fd, bad, e.v.addr) == -EFAULT
    # 7. missing -> ENOENT, the value pointer untouched.
    miss = Buf(u64(5))
    for _, bad in bad_pointers(output=True):
        assert call(client, LOOKUP_AND_DELETE, fd, miss.addr, bad) == -ENOENT
    assert client.lookup(fd, u64(4), vs) == (0, value)
    # 8. success copies the value out and removes the key.
    assert call(client, LOOKUP_AND_DELETE, fd, e.k.addr, e.v.addr, pad=0xFFFFFFFF) == 0
    assert e.v.data == value and e.intact()
    assert client.lookup(fd, u64(4), vs) == (-ENOENT, None)
    assert call(client, LOOKUP_AND_DELETE, fd, e.k.addr, e.v.addr) == -ENOENT


@pytest.mark.parametrize("bad", ["null", "unmapped", "kernel", "prot_none", "readonly"])
def test_lookup_and_delete_bad_value_loses_element(client, cfg, bad):
    """The element is unlinked before the value is copied out: EFAULT, and it is gone."""
    fd = make(client, cfg, max_entries=2)
    vs = vsz(cfg)
    assert client.update(fd, u64(1), val(cfg, 1)) == 0
    assert client.update(fd, u64(2), val(cfg, 2)) == 0
    assert client.update(fd, u64(3), val(cfg, 3)) == -E2BIG
    ptr = dict(bad_pointers(output=True))[bad]
    k = Buf(u64(1))
    assert call(client, LOOKUP_AND_DELETE, fd, k.addr, ptr) == -EFAULT
    assert client.lookup(fd, u64(1), vs) == (-ENOENT, None)
    assert client.keys(fd, 8) == [u64(2)]
    assert client.lookup_and_delete(fd, u64(1), vs) == (-ENOENT, None)
    # Its slot was freed: exactly one new key fits again.
    assert client.update(fd, u64(3), val(cfg, 3)) == 0
    assert client.update(fd, u64(4), val(cfg, 4)) == -E2BIG


# --- invalid flags on every command that has a flags field ----------------------------

@pytest.mark.parametrize("flags", BAD_FLAGS, ids=[hex(f) for f in BAD_FLAGS])
@pytest.mark.parametrize("cmd", [LOOKUP, UPDATE, DELETE, NEXT_KEY, LOOKUP_AND_DELETE],
                         ids=["lookup", "update", "delete", "next_key", "lookup_and_delete"])
def test_invalid_flags_einval(client, cfg, cmd, flags):
    fd = make(client, cfg)
    vs = vsz(cfg)
    value = val(cfg, 9)
    assert client.update(fd, u64(9), value) == 0
    e = Elem(u64(9), 8, bytes(vs), vs)
    if cmd == UPDATE:
        e.v.set(val(cfg, 10))
    assert call(client, cmd, fd, e.k.addr, e.v.addr, flags) == -EINVAL
    # Nothing was written and nothing changed.
    assert e.intact()
    if cmd != UPDATE:
        assert e.v.data == bytes(vs)
    assert client.lookup(fd, u64(9), vs) == (0, value)
    assert client.keys(fd, 8) == [u64(9)]


def test_f_lock_einval_on_lookup_update_lookup_and_delete(client, cfg):
    fd = make(client, cfg)
    vs = vsz(cfg)
    assert client.update(fd, u64(1), val(cfg, 1)) == 0
    for cmd in (LOOKUP, UPDATE, LOOKUP_AND_DELETE):
        e = Elem(u64(1), 8, val(cfg, 2), vs)
        assert call(client, cmd, fd, e.k.addr, e.v.addr, F_LOCK) == -EINVAL
    assert client.lookup(fd, u64(1), vs) == (0, val(cfg, 1))


# --- capacity (docs: #element-positions-and-capacity) ---------------------------------

@pytest.mark.parametrize("max_entries", [1, 2, 8, 130, 1000])
def test_capacity(client, cfg, max_entries):
    fd = make(client, cfg, key_size=4, value_size=8, max_entries=max_entries)
    vs = vsz(cfg)
    w = Walker(client.b, 4, vs)
    key = lambda i: (i * 2654435761 & 0xFFFFFFFF).to_bytes(4, "little")   # noqa: E731
    for i in range(max_entries):
        assert w.update(fd, key(i), val(cfg, i), NOEXIST if i % 2 else ANY) == 0, i
    new = key(max_entries)
    # Full: a new key is E2BIG with ANY and NOEXIST; EXIST on a missing key is ENOENT
    # (the flag checks come before the capacity check); NOEXIST on an existing key EEXIST.
    assert w.update(fd, new, val(cfg, -1), ANY) == -E2BIG
    assert w.update(fd, new, val(cfg, -1), NOEXIST) == -E2BIG
    assert w.update(fd, new, val(cfg, -1), EXIST) == -ENOENT
    assert w.update(fd, key(0), val(cfg, -1), NOEXIST) == -EEXIST
    # Replacing existing keys always works when full (50 times, both flags).
    for j in range(50):
        i = j % max_entries
        assert w.update(fd, key(i), val(cfg, 1000 + j), EXIST if j % 2 else ANY) == 0
    assert client.lookup(fd, new, vs) == (-ENOENT, None)
    # Delete one: exactly one new insert fits.
    assert w.delete(fd, key(0)) == 0
    assert w.update(fd, new, val(cfg, 5), NOEXIST) == 0
    assert w.update(fd, key(max_entries + 1), val(cfg, 6), ANY) == -E2BIG
    # The same through lookup_and_delete.
    assert client.lookup_and_delete(fd, new, vs) == (0, val(cfg, 5))
    assert w.update(fd, key(max_entries + 2), val(cfg, 7), ANY) == 0
    assert w.update(fd, key(max_entries + 3), val(cfg, 8), ANY) == -E2BIG
    expected = {key(i) for i in range(1, max_entries)} | {key(max_entries + 2)}
    walk = w.keys(fd)
    assert len(walk) == max_entries and set(walk) == expected
    # Empty it and fill it again: capacity is back to max_entries.
    for k in walk:
        assert w.delete(fd, k) == 0
    assert w.keys(fd) == []
    for i in range(max_entries):
        assert w.update(fd, key(10_000 + i), val(cfg, i), NOEXIST) == 0
    assert w.update(fd, new, val(cfg, 0), ANY) == -E2BIG


def test_capacity_failed_update_changes_nothing(client, cfg):
    fd = make(client, cfg, max_entries=3)
    vs = vsz(cfg)
    for i in range(3):
        assert client.update(fd, u64(i), val(cfg, i)) == 0
    before = client.keys(fd, 8)
    assert client.update(fd, u64(3), val(cfg, 3)) == -E2BIG
    assert client.update(fd, u64(0), val(cfg, 9), NOEXIST) == -EEXIST
    assert client.update(fd, u64(3), val(cfg, 9), EXIST) == -ENOENT
    assert client.keys(fd, 8) == before
    for i in range(3):
        assert client.lookup(fd, u64(i), vs) == (0, val(cfg, i))


# --- the bytes read and written (docs: #per-cpu-values) -------------------------------

@pytest.mark.parametrize("value_size", [1, 4, 12, 13, 16, 100])
def test_value_bytes_written(client, cfg, value_size):
    """HASH writes exactly value_size bytes; PERCPU_HASH round_up(value_size, 8) * NCPU,
    the padding included. A canary past that survives."""
    fd = make(client, cfg, value_size=value_size)
    vs = vsz(cfg, value_size)
    if cfg[1] == PERCPU_HASH:
        assert vs == round_up(value_size, 8) * NCPU
    else:
        assert vs == value_size
    value = val(cfg, value_size, value_size)
    assert client.update(fd, u64(1), value) == 0
    canary = bytes([0x5A]) * 24
    out = Buf(b"\xee" * vs + canary)
    k = Buf(u64(1))
    assert call(client, LOOKUP, fd, k.addr, out.addr) == 0
    assert out.data == value + canary
    assert out.guards_intact()
    # lookup_and_delete writes the same extent.
    out2 = Buf(b"\x11" * vs + canary)
    assert call(client, LOOKUP_AND_DELETE, fd, k.addr, out2.addr) == 0
    assert out2.data == value + canary


@pytest.mark.parametrize("value_size", [4, 12, 13])
def test_percpu_padding_stored_and_returned(client, value_size):
    """Per-CPU slots are round_up(value_size, 8) bytes; the padding is stored on update and
    returned on lookup, for new and for existing keys, prealloc or not."""
    for flags in (0, c.BPF_F_NO_PREALLOC):
        fd = client.create(PERCPU_HASH, 4, value_size, 4, flags)
        assert fd >= 0
        slot = round_up(value_size, 8)
        vs = slot * NCPU
        first = b"".join(bytes([0x10 + cpu]) * value_size
                         + bytes([0xE0 + cpu]) * (slot - value_size) for cpu in range(NCPU))
        assert client.update(fd, b"\1\0\0\0", first) == 0
        assert client.lookup(fd, b"\1\0\0\0", vs) == (0, first)
        second = random.Random(value_size).randbytes(vs)
        assert client.update(fd, b"\1\0\0\0", second, EXIST) == 0
        assert client.lookup(fd, b"\1\0\0\0", vs) == (0, second)
        assert client.lookup_and_delete(fd, b"\1\0\0\0", vs) == (0, second)
        # A new element takes the new buffer whole, padding included.
        assert client.update(fd, b"\1\0\0\0", first, NOEXIST) == 0
        assert client.lookup(fd, b"\1\0\0\0", vs) == (0, first)
        client.close(fd)


def test_hash_update_reads_only_value_size(client):
    """HASH with value_size 13 reads 13 bytes: a value that ends right before an
    inaccessible page is fine; the canary past value_size is never read or stored."""
    fd = client.create(HASH, 4, 13, 4)
    cliff = Cliff()
    cliff.fill(0x77)
    value = bytes(range(1, 14))
    k = Buf(b"\1\0\0\0")
    assert call(client, UPDATE, fd, k.addr, cliff.put(13, value)) == 0
    assert client.lookup(fd, b"\1\0\0\0", 13) == (0, value)
    assert call(client, UPDATE, fd, k.addr, cliff.at(12)) == -EFAULT
    assert client.lookup(fd, b"\1\0\0\0", 13) == (0, value)


@pytest.mark.parametrize("key_size,value_size", [(1, 1), (3, 4), (5, 13), (13, 12), (64, 8)])
def test_exact_extents(client, cfg, key_size, value_size):
    """Each pointer is accessed for exactly its size: key_size for key and next_key, the
    syscall value size for the value. With one byte less room the call faults."""
    fd = make(client, cfg, key_size=key_size, value_size=value_size)
    vs = vsz(cfg, value_size)
    cliff = Cliff()
    key = bytes(range(7, 7 + key_size))
    value = val(cfg, key_size, value_size)
    kb, vb = Buf(key), Buf(value)
    # Inputs: key and value read up to the cliff edge.
    assert call(client, UPDATE, fd, cliff.put(key_size, key), vb.addr) == 0
    assert call(client, UPDATE, fd, cliff.at(key_size - 1), vb.addr) == -EFAULT
    assert call(client, UPDATE, fd, kb.addr, cliff.put(vs, value)) == 0
    assert call(client, UPDATE, fd, kb.addr, cliff.at(vs - 1)) == -EFAULT
    assert call(client, LOOKUP, fd, cliff.put(key_size, key), vb.addr) == 0
    assert call(client, LOOKUP, fd, cliff.at(key_size - 1), vb.addr) == -EFAULT
    assert call(client, NEXT_KEY, fd, cliff.put(key_size, key), vb.addr) == -ENOENT
    assert call(client, NEXT_KEY, fd, cliff.at(key_size - 1), vb.addr) == -EFAULT
    # Outputs: value and next_key written up to the cliff edge.
    cliff.fill()
    assert call(client, LOOKUP, fd, kb.addr, cliff.at(vs)) == 0
    assert cliff.tail(vs) == value
    cliff.fill()
    assert call(client, NEXT_KEY, fd, 0, cliff.at(key_size)) == 0
    assert cliff.tail(key_size) == key
    assert call(client, NEXT_KEY, fd, 0, cliff.at(key_size - 1)) == -EFAULT
    assert call(client, LOOKUP, fd, kb.addr, cliff.at(vs - 1)) == -EFAULT
    assert call(client, DELETE, fd, cliff.put(key_size, key)) == 0
    assert call(client, UPDATE, fd, kb.addr, vb.addr) == 0
    assert call(client, DELETE, fd, cliff.at(key_size - 1)) == -EFAULT
    cliff.fill()
    assert call(client, LOOKUP_AND_DELETE, fd, kb.addr, cliff.at(vs)) == 0
    assert cliff.tail(vs) == value


@pytest.mark.parametrize("cmd", [LOOKUP, LOOKUP_AND_DELETE, NEXT_KEY],
                         ids=["lookup", "lookup_and_delete", "next_key"])
def test_partial_write_before_fault(both, cfg, cmd):
    """An output buffer that runs into an inaccessible page: the call fails with EFAULT;
    the bytes that did fit are compared with the kernel's (copy_to_user may write a prefix)."""
    results = []
    for cl in both:
        fd = make(cl, cfg, key_size=24, value_size=40)
        vs = vsz(cfg, 40)
        key = bytes(range(24))
        assert cl.update(fd, key, val(cfg, 40, 40)) == 0
        cliff = Cliff()
        cliff.fill()
        kb = Buf(key)
        size = 24 if cmd == NEXT_KEY else vs
        room = size // 2 + 3
        ret = call(cl, cmd, fd, 0 if cmd == NEXT_KEY else kb.addr, cliff.at(room))
        results.append((ret, cliff.tail(room), cl.keys(fd, 24)))
    assert results[0][0] == -EFAULT
    assert results[0] == results[1]


# --- key sizes ------------------------------------------------------------------------

@pytest.mark.parametrize("key_size", [1, 3, 4, 5, 8, 13, 64])
def test_key_sizes(client, cfg, key_size):
    value_size = 12
    fd = make(client, cfg, key_size=key_size, value_size=value_size, max_entries=16)
    vs = vsz(cfg, value_size)
    rng = random.Random(key_size)
    keys = []
    while len(keys) < 16:
        k = rng.randbytes(key_size)
        if k not in keys:
            keys.append(k)
    for i, k in enumerate(keys):
        assert client.update(fd, k, val(cfg, i, value_size), NOEXIST) == 0
    assert client.update(fd, b"\xfe" * key_size if b"\xfe" * key_size not in keys
                         else b"\xfd" * key_size, val(cfg, 0, value_size)) == -E2BIG
    walk = client.keys(fd, key_size)
    assert sorted(walk) == sorted(keys)
    for i, k in enumerate(keys):
        assert client.lookup(fd, k, vs) == (0, val(cfg, i, value_size))
    # Keys are compared on all key_size bytes: flipping any byte makes a different key.
    for pos in range(key_size):
        other = bytearray(keys[0])
        other[pos] ^= 0x01
        if bytes(other) not in keys:
            assert client.lookup(fd, bytes(other), vs) == (-ENOENT, None)
    for i, k in enumerate(keys[:8]):
        assert client.delete(fd, k) == 0
    assert sorted(client.keys(fd, key_size)) == sorted(keys[8:])
    for i, k in enumerate(keys[8:]):
        assert client.lookup_and_delete(fd, k, vs) == (0, val(cfg, i + 8, value_size))
    assert client.keys(fd, key_size) == []


def test_key_bytes_round_trip(both, cfg):
    """The walk returns the very key bytes that were stored (same bytes on both sides)."""
    outs = []
    for cl in both:
        fd = make(cl, cfg, key_size=13, value_size=4, max_entries=32, flags=c.BPF_F_ZERO_SEED)
        rng = random.Random(13)
        for i in range(32):
            assert cl.update(fd, rng.randbytes(13), val(cfg, i, 4)) == 0
        walk = cl.keys(fd, 13)
        outs.append([(k, cl.lookup(fd, k, vsz(cfg, 4))) for k in walk])
    assert outs[0] == outs[1]


# --- odds and ends ----------------------------------------------------------------------

def test_next_key_in_place(client, cfg):
    """test_maps.c walks with the same buffer as key and next_key: the key is copied in
    before next_key is written, so this steps through the map."""
    fd = make(client, cfg, max_entries=16)
    for i in range(10):
        assert client.update(fd, u64(i * 3), val(cfg, i)) == 0
    walk = client.keys(fd, 8)
    buf = Buf(size=8)
    assert call(client, NEXT_KEY, fd, 0, buf.addr) == 0
    seen = [buf.data]
    while call(client, NEXT_KEY, fd, buf.addr, buf.addr) == 0:
        seen.append(buf.data)
    assert seen == walk and buf.data == walk[-1] and buf.guards_intact()


def test_lookup_into_key_buffer(client, cfg):
    """LOOKUP with value == key: the key is read first, then the value overwrites it."""
    fd = make(client, cfg, key_size=8, value_size=8)
    vs = vsz(cfg)
    value = val(cfg, 3)
    assert client.update(fd, u64(3), value) == 0
    buf = Buf(u64(3), max(vs, 8))
    assert call(client, LOOKUP, fd, buf.addr, buf.addr) == 0
    assert buf.data[:vs] == value and buf.guards_intact()


@pytest.mark.parametrize("prog_flag", [c.BPF_F_RDONLY_PROG, c.BPF_F_WRONLY_PROG])
def test_prog_only_access_flags_do_not_restrict_syscalls(client, cfg, prog_flag):
    """BPF_F_RDONLY_PROG / WRONLY_PROG restrict programs only (docs: #fds-and-permissions)."""
    fd = make(client, cfg, flags=prog_flag)
    vs = vsz(cfg)
    assert client.update(fd, u64(1), val(cfg, 1)) == 0
    assert client.lookup(fd, u64(1), vs) == (0, val(cfg, 1))
    assert client.keys(fd, 8) == [u64(1)]
    assert client.lookup_and_delete(fd, u64(1), vs) == (0, val(cfg, 1))
    assert client.update(fd, u64(1), val(cfg, 1)) == 0
    assert client.delete(fd, u64(1)) == 0


def test_short_attr_size_zero_fills(client, cfg):
    """A size shorter than the element attr leaves the rest zero (docs: #the-entry):
    a missing value pointer is NULL, missing flags are 0."""
    fd = make(client, cfg)
    vs = vsz(cfg)
    value = val(cfg, 1)
    k, v = Buf(u64(1)), Buf(value)
    attr = lambda flags=0: attr_with_tail(fd, k.addr, v.addr, flags)   # noqa: E731
    assert client.bpf(UPDATE, attr(NOEXIST), 24) == 0          # flags cut off: BPF_ANY
    assert client.bpf(UPDATE, attr(NOEXIST), 24) == 0
    assert client.bpf(UPDATE, attr(NOEXIST), 32) == -EEXIST
    assert client.bpf(UPDATE, attr(), 16) == -EFAULT           # value pointer cut off: NULL
    assert client.bpf(UPDATE, attr(), 8) == -EFAULT            # key pointer cut off too
    out = Buf(size=vs)
    lk = attr_with_tail(fd, k.addr, out.addr, 1)
    assert client.bpf(LOOKUP, lk, 24) == 0 and out.data == value   # bad flags cut off
    assert client.bpf(LOOKUP, lk, 32) == -EINVAL
    assert client.bpf(LOOKUP, lk, 16) == -EFAULT               # value NULL, key exists
    nk = Buf(size=8)
    assert client.bpf(NEXT_KEY, attr_with_tail(fd, 0, nk.addr, 1), 24) == 0
    assert nk.data == u64(1)
    assert client.bpf(NEXT_KEY, attr_with_tail(fd, 0, nk.addr), 16) == -EFAULT
    assert client.bpf(NEXT_KEY, attr_with_tail(fd, k.addr, nk.addr), 16) == -ENOENT
    assert client.bpf(DELETE, attr_with_tail(fd, k.addr, 0xdead, 1), 16) == 0
    assert client.bpf(DELETE, attr_with_tail(fd, k.addr), 8) == -EFAULT


def test_the_other_backends_map_fd_is_not_a_map(both, cfg):
    """Emulated map fds are ordinary (memfd) fds to the kernel and kernel map fds are
    foreign to the emulator: open fds that are not maps here, so EINVAL on both sides."""
    emu, host = both
    fds = [make(cl, cfg) for cl in both]
    k, v = Buf(u64(1)), Buf(val(cfg, 1))
    for cl, foreign in ((emu, fds[1]), (host, fds[0])):
        for cmd in (LOOKUP, UPDATE, DELETE, NEXT_KEY, LOOKUP_AND_DELETE):
            assert call(cl, cmd, foreign, k.addr, v.addr if cmd != DELETE else 0) == -EINVAL
