"""The decoded calls of ARRAY and PERCPU_ARRAY on pinned buffers (maps/array_fastpath.py):
the same results as the entry, and the two outcomes that are not a copy (a lookup out of
range, a delete) returned as -errno without a BpfError made inside: raising one costs more
than the kernel's whole call."""
import ctypes
import errno
import struct

import pytest

from bpfemu import Emulator
from bpfemu.errors import BpfError
from bpfemu.uapi import consts as c

TYPES = [c.BPF_MAP_TYPE_ARRAY, c.BPF_MAP_TYPE_PERCPU_ARRAY]


@pytest.fixture
def count_errors(monkeypatch):
    made = [0]
    init = BpfError.__init__

    def counted(self, *args, **kw):
        made[0] += 1
        init(self, *args, **kw)
    monkeypatch.setattr(BpfError, "__init__", counted)
    return made


def pinned_array(map_type, entries=8):
    emu = Emulator(nr_cpus=2, seed=1, decoded_calls=True)      # the decoded calls are tested
    create = ctypes.create_string_buffer(struct.pack("<IIII", map_type, 4, 8, entries), 168)
    fd = emu.bpf(c.BPF_MAP_CREATE, create, 168)
    assert fd >= 0
    key, nxt = ctypes.create_string_buffer(4), ctypes.create_string_buffer(4)
    value = ctypes.create_string_buffer(16)
    elem = ctypes.create_string_buffer(struct.pack(
        "<IIQQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(value), 0), 168)
    gnk = ctypes.create_string_buffer(struct.pack(
        "<IIQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(nxt)), 168)
    emu.mem.pin(key, nxt, value)
    return emu, key, nxt, value, elem, gnk


@pytest.mark.parametrize("map_type", TYPES, ids=["array", "percpu_array"])
def test_decoded_miss_and_delete_make_no_error_inside(map_type, count_errors):
    emu, key, _, value, elem, _ = pinned_array(map_type)
    value.raw = b"\x07" * 16
    for k in (3, 8, 3, 1 << 31, 8):              # decoded after the first call
        key.raw = struct.pack("<I", k)
        assert emu.bpf(c.BPF_MAP_LOOKUP_ELEM, elem, 32) == (0 if k < 8 else -errno.ENOENT)
    assert value.raw[:8] == bytes(8)               # the last hit copied zeros; misses nothing
    for _ in range(3):
        assert emu.bpf(c.BPF_MAP_DELETE_ELEM, elem, 16) == -errno.EINVAL
    emu.bpf(c.BPF_MAP_DELETE_ELEM, elem, 16)
    made = count_errors[0]
    for _ in range(5):
        assert emu.bpf(c.BPF_MAP_LOOKUP_ELEM, elem, 32) == -errno.ENOENT
        assert emu.bpf(c.BPF_MAP_DELETE_ELEM, elem, 16) == -errno.EINVAL
    assert count_errors[0] == made


@pytest.mark.parametrize("map_type", TYPES, ids=["array", "percpu_array"])
def test_decoded_walk_steps_and_ends_as_the_entry_does(map_type):
    emu, key, nxt, _, _, gnk = pinned_array(map_type, entries=4)
    seen = []
    for k in (0, 1, 2, 3, 7, 0):
        key.raw = struct.pack("<I", k)
        ret = emu.bpf(c.BPF_MAP_GET_NEXT_KEY, gnk, 24)
        seen.append((ret, struct.unpack("<I", nxt.raw)[0] if ret == 0 else None))
    assert seen == [(0, 1), (0, 2), (0, 3), (-errno.ENOENT, None), (0, 0), (0, 1)]
