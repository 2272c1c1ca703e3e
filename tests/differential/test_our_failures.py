"""Failures of the emulator itself never escape bpf(): Python out of memory is ENOMEM, any
other exception of ours EFAULT, each reported by an EmulatorFault warning with its traceback,
and the emulator stays usable.
"""
import ctypes
import errno
import os
import resource
import struct
import warnings

import pytest

from bpfemu import Emulator
from bpfemu.errors import EmulatorFault
from bpfemu.fastpath import NO_CALL
from bpfemu.maps import hashtab
from bpfemu.uapi import consts as c
from tests.support import NCPU, Client, elem_attr, in_forked_child

HASH = c.BPF_MAP_TYPE_HASH


def _raising(exc):
    def op(*args, **kw):
        raise exc
    return op


@pytest.mark.parametrize("exc,err", [(MemoryError(), errno.ENOMEM),
                                     (AssertionError("broken"), errno.EFAULT),
                                     (KeyError(b"k"), errno.EFAULT)])
@pytest.mark.parametrize("path", ["checked", "decoded", "last"])
@pytest.mark.parametrize("cmd", [c.BPF_MAP_UPDATE_ELEM, c.BPF_MAP_LOOKUP_ELEM])
def test_exception_of_ours_becomes_an_errno_and_a_warning(exc, err, path, cmd):
    """Every way through the entry: the whole entry (the map's op fails), a decoded call,
    and the call made last (locked for an update, lockless for a lookup). The decoded-call
    cache on whatever --no-decoded-calls says: it is two of the paths under test."""
    emu = Emulator(nr_cpus=NCPU, seed=1, decoded_calls=True)
    cl = Client(emu)
    fd = cl.create(HASH, 4, 8, 8)
    m = emu.map_of(fd)
    key = ctypes.create_string_buffer(struct.pack("<I", 1), 4)
    value = ctypes.create_string_buffer(8)
    attr = ctypes.create_string_buffer(elem_attr(fd, ctypes.addressof(key),
                                                 ctypes.addressof(value)), 168)
    ops = m.ops
    saved = (ops.map_update_elem_sys, ops.map_lookup_elem_sys)
    if path == "checked":
        ops.map_update_elem_sys = ops.map_lookup_elem_sys = _raising(exc)
    else:
        for _ in range(2):                      # decoded, then built on its first reuse
            assert emu.bpf(cmd, attr, 32) in (0, -errno.ENOENT)
        calls = emu.decoded_calls
        for call in calls.calls.values():
            call.run = _raising(exc)
        last = calls.last
        calls.last = last[:4] + (_raising(exc),) + last[5:]
        if path == "decoded":
            calls.last = NO_CALL
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            assert emu.bpf(cmd, attr, 32) == -err
        assert len(w) == 1 and w[0].category is EmulatorFault
        assert type(exc).__name__ in str(w[0].message)        # the traceback
    finally:
        ops.map_update_elem_sys, ops.map_lookup_elem_sys = saved
    emu.forget_decoded_calls()
    assert emu.lock.acquire(False)             # not left held
    emu.lock.release()
    assert cl.update(fd, struct.pack("<I", 2), b"\x01" * 8) == 0
    assert cl.lookup(fd, struct.pack("<I", 2), 8) == (0, b"\x01" * 8)
    emu.close_all()


def test_out_of_memory_is_enomem_in_a_child():
    """A real exhaustion: a child with little address space fills a map without
    preallocation until Python's memory runs out. Every call returns; the first failure is
    ENOMEM and inserted nothing; with memory again, the map works."""
    def body():
        emu = Emulator(nr_cpus=NCPU, seed=1)
        cl = Client(emu)
        fd = cl.create(HASH, 4, 65536, 100000, c.BPF_F_NO_PREALLOC)
        with open("/proc/self/statm") as f:
            vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (vm + (96 << 20), resource.RLIM_INFINITY))
        key = ctypes.create_string_buffer(4)
        value = ctypes.create_string_buffer(65536)
        attr = ctypes.create_string_buffer(elem_attr(fd, ctypes.addressof(key),
                                                     ctypes.addressof(value)), 168)
        rets = []
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            for i in range(100000):
                key.raw = struct.pack("<I", i)
                ret = emu.bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32)
                rets.append(ret)
                if ret != 0:
                    break
        ok = rets[-1] == -errno.ENOMEM and len(rets) > 10
        dattr = ctypes.create_string_buffer(elem_attr(fd, ctypes.addressof(key)), 168)
        # Memory again: the failed call left nothing half-done behind it.
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2)
        n = len(rets) - 1
        ok = ok and len(cl.keys(fd, 4)) == n
        dels = []
        for i in range(n + 1):
            key.raw = struct.pack("<I", i)
            dels.append(emu.bpf(c.BPF_MAP_DELETE_ELEM, dattr, 16))
        key.raw = struct.pack("<I", 7)
        again = emu.bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32)
        ok = ok and set(dels[:n]) == {0} and dels[n] == -errno.ENOENT and again == 0
        if not ok:
            return (rets[-3:], len(rets), [str(x.message)[:300] for x in w[:2]],
                    set(dels[:n]), dels[n], again)
        return None
    in_forked_child(body)


def test_failures_around_the_decoded_entry_are_answered(monkeypatch):
    """fastpath: the copy of the attr's bytes before the entry and the keeping of the
    decoded call after it fail inside bpf() too: the copy's failure is the call's ENOMEM
    (nothing done), the keeping's is reported and the call's own result stands."""
    from bpfemu import fastpath
    emu = Emulator(nr_cpus=NCPU, seed=1, decoded_calls=True)     # the cache is under test
    cl = Client(emu)
    fd = cl.create(HASH, 4, 8, 8)
    key = ctypes.create_string_buffer(struct.pack("<I", 1), 4)
    value = ctypes.create_string_buffer(b"\x11" * 8, 8)
    raw = elem_attr(fd, ctypes.addressof(key), ctypes.addressof(value))

    monkeypatch.setattr(fastpath.DecodedCalls, "_remember", _raising(MemoryError()))
    with pytest.warns(EmulatorFault):
        assert emu.bpf(c.BPF_MAP_UPDATE_ELEM, bytearray(raw), 32) == 0
    assert cl.lookup(fd, struct.pack("<I", 1), 8) == (0, b"\x11" * 8)
    monkeypatch.undo()

    monkeypatch.setattr(fastpath, "bytes", _raising(MemoryError()), raising=False)
    key.raw = struct.pack("<I", 2)
    with pytest.warns(EmulatorFault):
        assert emu.bpf(c.BPF_MAP_UPDATE_ELEM, bytearray(raw), 32) == -errno.ENOMEM
    monkeypatch.undo()
    assert cl.lookup(fd, struct.pack("<I", 2), 8)[0] == -errno.ENOENT
    assert emu.bpf(c.BPF_MAP_UPDATE_ELEM, bytearray(raw), 32) == 0
