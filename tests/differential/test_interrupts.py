"""A bpf() call is atomic with respect to Ctrl-C and other signals whose handler raises.

Each command runs once per interruption point: a trace function counts the lines (and, in
the entry, the bytecodes) the emulator executes and raises SIGINT at the k-th one, for every
k the call has. The call must then have had its whole effect, as on a reference emulator
that was not interrupted (same return value, same map contents, same fds and ids), the
KeyboardInterrupt must come right after the call, the lock must be free, and the emulator
must go on behaving like the reference (fill to capacity, walk, empty).
"""
import ctypes
import os
import signal
import struct
import sys
import time

import pytest

import bpfemu
from bpfemu import Emulator
from bpfemu.uapi import consts as c
from tests.support import NCPU, Client, elem_attr
from tests.support import lock_is_free as support_lock_is_free

PKG = os.path.dirname(bpfemu.__file__)
# The entry: __sys_bpf and the decoded-call cache in front of it.
ENTRY = (os.path.join(PKG, "syscall.py"), os.path.join(PKG, "fastpath.py"))
HASH, LRU_HASH, ARRAY = c.BPF_MAP_TYPE_HASH, c.BPF_MAP_TYPE_LRU_HASH, c.BPF_MAP_TYPE_ARRAY
PERCPU_HASH = c.BPF_MAP_TYPE_PERCPU_HASH
MAX_POINTS = 3000


def k32(i):
    return struct.pack("<I", i)


class Scenario:
    """A map in a known state, then one call. Holds on to the buffers the call uses."""

    def __init__(self, map_type, max_entries, fill, flags=0):
        self.map_type, self.max_entries, self.fill, self.flags = map_type, max_entries, fill, flags

    def setup(self, emu):
        cl = Client(emu)
        fd = cl.create(self.map_type, 4, 8, self.max_entries, self.flags)
        assert fd >= 0
        for i in range(self.fill):
            assert cl.update(fd, k32(i), struct.pack("<Q", i * 3)) == 0
        return cl, fd


def vsize(map_type):
    return 8 * NCPU if map_type in (PERCPU_HASH,) else 8


def elem_call(cmd, key, value=b"", flags=0, repeat=0, pin=False):
    """An element command; repeat > 0 makes the interrupted call a decoded one (the same attr
    sent before), pin=True the folded fast path on pinned buffers."""
    size = 16 if cmd == c.BPF_MAP_DELETE_ELEM else 32

    def run(emu, cl, fd):
        kb = ctypes.create_string_buffer(k32(40), 4)     # earlier calls: another key
        vb = ctypes.create_string_buffer(value.ljust(64, b"\0"), 64)
        attr = ctypes.create_string_buffer(
            elem_attr(fd, ctypes.addressof(kb), ctypes.addressof(vb) if size > 16 else 0,
                      flags), 168)
        if pin:
            emu.mem.pin(kb, vb, attr)
        for _ in range(repeat):
            emu.bpf(cmd, attr, size)
        kb.raw = key
        return lambda keep=(kb, vb): emu.bpf(cmd, attr, size)
    return run


def batch_call(cmd, keys, values, count):
    def run(emu, cl, fd):
        kb = ctypes.create_string_buffer(b"".join(keys).ljust(4 * count, b"\0"), 4 * count)
        vb = ctypes.create_string_buffer(b"".join(values).ljust(8 * NCPU * count, b"\0"),
                                         8 * NCPU * count)
        out = ctypes.create_string_buffer(8)
        attr = ctypes.create_string_buffer(struct.pack("<QQQQIIQQ", 0, ctypes.addressof(out),
                                                       ctypes.addressof(kb), ctypes.addressof(vb),
                                                       count, fd, 0, 0), 168)
        return lambda keep=(kb, vb, out): emu.bpf(cmd, attr, 56)
    return run


def create_call(emu, cl, fd):
    attr = ctypes.create_string_buffer(struct.pack("<IIII", HASH, 4, 8, 16), 168)
    return lambda: emu.bpf(c.BPF_MAP_CREATE, attr, 168)


def close_call(emu, cl, fd):
    return lambda: emu.close(fd)


U, L, D, LD = (c.BPF_MAP_UPDATE_ELEM, c.BPF_MAP_LOOKUP_ELEM, c.BPF_MAP_DELETE_ELEM,
               c.BPF_MAP_LOOKUP_AND_DELETE_ELEM)
V = b"\x77" * 8
CASES = {
    "update-new": (Scenario(HASH, 8, 4), elem_call(U, k32(9), V)),
    "update-replace": (Scenario(HASH, 8, 4), elem_call(U, k32(2), V)),
    "update-full-e2big": (Scenario(HASH, 4, 4), elem_call(U, k32(9), V)),
    "update-decoded": (Scenario(HASH, 8, 4), elem_call(U, k32(2), V, repeat=2)),
    "update-pinned-new": (Scenario(HASH, 8, 4), elem_call(U, k32(9), V, repeat=0, pin=True)),
    "update-pinned-decoded": (Scenario(HASH, 8, 4), elem_call(U, k32(3), V, repeat=2, pin=True)),
    "update-lru-evicts": (Scenario(LRU_HASH, 8, 8), elem_call(U, k32(50), V)),
    "update-percpu": (Scenario(PERCPU_HASH, 8, 4), elem_call(U, k32(9), V * NCPU)),
    "update-array": (Scenario(ARRAY, 8, 0), elem_call(U, k32(3), V)),
    "delete": (Scenario(HASH, 8, 6), elem_call(D, k32(2))),
    "delete-pinned-decoded": (Scenario(HASH, 8, 6), elem_call(D, k32(2), repeat=1, pin=True)),
    "delete-lru": (Scenario(LRU_HASH, 8, 6), elem_call(D, k32(2))),
    "lookup-and-delete": (Scenario(HASH, 8, 6), elem_call(LD, k32(3))),
    "update-batch": (Scenario(HASH, 8, 2), batch_call(c.BPF_MAP_UPDATE_BATCH,
                                                      [k32(i) for i in (5, 1, 6)], [V] * 3, 3)),
    "delete-batch": (Scenario(HASH, 8, 6), batch_call(c.BPF_MAP_DELETE_BATCH,
                                                      [k32(i) for i in (5, 1, 9)], [], 3)),
    "lookup-and-delete-batch": (Scenario(HASH, 8, 6),
                                batch_call(c.BPF_MAP_LOOKUP_AND_DELETE_BATCH, [], [], 8)),
    "lookup-and-delete-batch-lru": (Scenario(LRU_HASH, 8, 6),
                                    batch_call(c.BPF_MAP_LOOKUP_AND_DELETE_BATCH, [], [], 8)),
    "create": (Scenario(HASH, 8, 1), create_call),
    "close": (Scenario(HASH, 8, 3), close_call),
}


def snapshot(emu):
    """Everything a caller can see: fds, ids, and each map's walk and values."""
    cl = Client(emu)
    fds = sorted(emu.fds.files)
    state = {"fds": [fd - fds[0] for fd in fds], "ids": sorted(emu.map_idr.objs)}
    for fd in fds:
        m = emu.map_of(fd)
        vs = m.value_size_sys
        keys = cl.keys(fd, 4)
        state[fd - fds[0]] = [(k, cl.lookup(fd, k, vs)) for k in keys]
    return state


def follow_up(emu):
    """Use every map to its capacity and back: a lost slot or a leaked node shows here."""
    cl = Client(emu)
    out = []
    for fd in sorted(emu.fds.files):
        m = emu.map_of(fd)
        vs = m.value_size_sys
        out.append([cl.update(fd, k32(1000 + i), b"\x01" * vs) for i in range(m.max_entries + 2)])
        out.append(cl.keys(fd, 4))
        out.append([cl.delete(fd, k) for k in cl.keys(fd, 4)])
        out.append(cl.keys(fd, 4))
    return out


def run_case(name, k):
    """Run case name, raising SIGINT at its k-th point (None: never; 0: do not even make the
    call). Returns (the call's result or "interrupted", points seen, emulator)."""
    scenario, make_call = CASES[name]
    emu = Emulator(nr_cpus=NCPU, seed=11)
    cl, fd = scenario.setup(emu)
    call = make_call(emu, cl, fd)
    if k == 0:
        return None, 0, emu
    seen = 0

    def local(frame, event, arg):
        nonlocal seen
        if event in ("line", "opcode"):
            seen += 1
            if seen == k:
                signal.raise_signal(signal.SIGINT)
        return local

    def tracer(frame, event, arg):
        if frame.f_code.co_filename.startswith(PKG):
            if frame.f_code.co_filename in ENTRY:
                frame.f_trace_opcodes = True
            return local
        return None

    got_interrupt = False
    result = "interrupted"
    sys.settrace(tracer)
    try:
        result = call()
    except KeyboardInterrupt:
        got_interrupt = True
    finally:
        sys.settrace(None)
    # A deferred handler runs right after the call: wait for it.
    deadline = time.monotonic() + 5
    while k is not None and k <= seen and not got_interrupt and time.monotonic() < deadline:
        try:
            time.sleep(0.001)
        except KeyboardInterrupt:
            got_interrupt = True
    if k is not None and k <= seen:
        assert got_interrupt, "the SIGINT was lost"
    return result, seen, emu


def lock_is_free(emu) -> bool:
    return support_lock_is_free(emu.lock)


@pytest.fixture(autouse=True)
def sigint_raises():
    old = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


@pytest.mark.parametrize("name", list(CASES))
def test_interrupted_call_is_whole(name):
    _, _, before = run_case(name, 0)
    not_at_all = (snapshot(before), follow_up(before))
    before.close_all()
    result, points, ref = run_case(name, None)
    whole = (snapshot(ref), follow_up(ref))
    ref.close_all()
    assert points > 10 and (not_at_all != whole or name.endswith("e2big"))
    bad = []
    for k in range(1, min(points, MAX_POINTS) + 1):
        got, _, emu = run_case(name, k)
        if not lock_is_free(emu):
            bad.append((k, "lock held"))
            continue
        seen = (snapshot(emu), follow_up(emu))
        # The KeyboardInterrupt may come before the call (nothing done) or after it, before
        # its return value reaches the caller (as after a real syscall).
        if not (got in (result, "interrupted") and seen == whole
                or got == "interrupted" and seen == not_at_all):
            bad.append((k, got, result, seen[0]))
        emu.close_all()
    assert bad == []
