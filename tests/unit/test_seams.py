"""The two seams for speed can be switched off, and nothing but speed changes.

The same random element calls, through reused attr buffers (what a caller's loop sends, so
that the decoded-call cache serves most of them), on four emulators: the columnar or the
simple hash store, with or without decoded calls. Every result, errno and byte written back
must be the same as on the simple store without the cache: the executable definition.
"""
import ctypes
import random
import struct

import pytest

from bpfemu import Emulator
from bpfemu.fastpath import DecodedCall, LastCall
from bpfemu.uapi import consts as c

VARIANTS = [(store, decoded) for store in ("columnar", "simple") for decoded in (True, False)]
MAP_KINDS = [(c.BPF_MAP_TYPE_HASH, 0), (c.BPF_MAP_TYPE_HASH, c.BPF_F_NO_PREALLOC),
             (c.BPF_MAP_TYPE_PERCPU_HASH, 0), (c.BPF_MAP_TYPE_LRU_HASH, 0)]


class LoopCaller:
    """One emulator, one map, and the buffers a caller's loop reuses."""

    def __init__(self, store, decoded, map_type, flags, pin):
        self.emu = Emulator(nr_cpus=2, seed=9, store=store, decoded_calls=decoded)
        create = ctypes.create_string_buffer(
            struct.pack("<IIIII", map_type, 4, 8, 64, flags | c.BPF_F_ZERO_SEED), 168)
        self.fd = self.emu.bpf(c.BPF_MAP_CREATE, create, 168)
        assert self.fd >= 0
        self.vs = 16 if map_type == c.BPF_MAP_TYPE_PERCPU_HASH else 8
        self.key = ctypes.create_string_buffer(4)
        self.next = ctypes.create_string_buffer(4)
        self.value = ctypes.create_string_buffer(self.vs)
        self.attrs = {}
        if pin:
            self.emu.mem.pin(self.key, self.next, self.value)

    def attr(self, cmd, flags=0, first=False):
        """The same attr object for the same call, every time."""
        name = (cmd, flags, first)
        if name not in self.attrs:
            key = 0 if first else ctypes.addressof(self.key)
            ptr = ctypes.addressof(self.next if cmd == c.BPF_MAP_GET_NEXT_KEY else self.value)
            self.attrs[name] = ctypes.create_string_buffer(
                struct.pack("<IIQQQ", self.fd, 0, key, ptr, flags), 168)
        return self.attrs[name]

    def call(self, op, key, value, flags):
        self.key.raw = key
        self.value.raw = value[:self.vs]
        if op == "update":
            ret = self.emu.bpf(c.BPF_MAP_UPDATE_ELEM, self.attr(c.BPF_MAP_UPDATE_ELEM, flags), 32)
        elif op == "lookup":
            ret = self.emu.bpf(c.BPF_MAP_LOOKUP_ELEM, self.attr(c.BPF_MAP_LOOKUP_ELEM), 32)
        elif op == "delete":
            ret = self.emu.bpf(c.BPF_MAP_DELETE_ELEM, self.attr(c.BPF_MAP_DELETE_ELEM), 16)
        else:
            first = op == "first_key"
            ret = self.emu.bpf(c.BPF_MAP_GET_NEXT_KEY, self.attr(c.BPF_MAP_GET_NEXT_KEY,
                                                               first=first), 24)
        return ret, self.value.raw, self.next.raw


@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "unpinned"])
@pytest.mark.parametrize("map_type,flags", MAP_KINDS)
def test_stores_and_decoded_calls_change_nothing_but_speed(map_type, flags, pin):
    rng = random.Random(map_type * 31 + flags + pin)
    callers = [LoopCaller(store, decoded, map_type, flags, pin) for store, decoded in VARIANTS]
    keys = [struct.pack("<I", i) for i in range(90)]           # more than the 64 entries
    ops = ["update"] * 4 + ["lookup", "delete", "next_key", "first_key"]
    for step in range(3000):
        op = rng.choice(ops)
        key = rng.choice(keys)
        value = rng.randbytes(16)
        flags_ = rng.choice([c.BPF_ANY, c.BPF_ANY, c.BPF_NOEXIST, c.BPF_EXIST])
        results = [cl.call(op, key, value, flags_) for cl in callers]
        assert results[1:] == results[:-1], (step, op, key, flags_)
    # Where the cache was on, it holds decoded calls, run again (built on their first reuse).
    cached = callers[0].emu.decoded_calls
    assert cached is not None and callers[1].emu.decoded_calls is None
    assert LastCall(*cached.last).run is not None
    assert all(isinstance(call, DecodedCall) for call in cached.calls.values())
    assert any(call.run is not None for call in cached.calls.values())
