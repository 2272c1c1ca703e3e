"""A decoded update or delete on a pinned key (and a delete on an unpinned one) runs the map's
op straight from the decoded-call cache's frame (fastpath.DirectOp): no Python frame of the
decoded call's own in between, which costs more than the rest of what it does. The results
are the entry's (the differential suite checks them); this checks the frames."""
import ctypes
import errno
import struct
import sys

import pytest

from bpfemu import Emulator
from bpfemu.uapi import consts as c

HASH_TYPES = {"hash": c.BPF_MAP_TYPE_HASH, "lru_hash": c.BPF_MAP_TYPE_LRU_HASH}


def _callers_of(names, fn):
    """fn(), and the names of the functions that called any function named in names."""
    seen = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_name in names:
            seen.append(frame.f_back.f_code.co_name)
    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return seen


def _map(map_type, pin_key: bool):
    emu = Emulator(nr_cpus=2, seed=1, decoded_calls=True)   # the cache is what is tested
    create = ctypes.create_string_buffer(struct.pack("<IIII", map_type, 4, 8, 64), 168)
    fd = emu.bpf(c.BPF_MAP_CREATE, create, 168)
    assert fd >= 0
    key, value = ctypes.create_string_buffer(4), ctypes.create_string_buffer(8)
    elem = ctypes.create_string_buffer(struct.pack(
        "<IIQQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(value), 0), 168)
    if pin_key:
        emu.mem.pin(key, value)
    return emu, key, value, elem


@pytest.mark.parametrize("name", HASH_TYPES)
def test_decoded_pinned_update_and_delete_call_the_op_directly(name):
    emu, key, value, elem = _map(HASH_TYPES[name], pin_key=True)
    ops = {"htab_map_update_elem", "htab_lru_map_update_elem",
           "htab_map_delete_elem", "htab_lru_map_delete_elem"}

    def calls():
        for k in range(6):                      # decoded from the second call on
            key.raw = struct.pack("<I", k)
            value.raw = struct.pack("<Q", k + 100)
            assert emu.bpf(c.BPF_MAP_UPDATE_ELEM, elem, 32) == 0
        for k in range(6):
            key.raw = struct.pack("<I", k)
            assert emu.bpf(c.BPF_MAP_DELETE_ELEM, elem, 16) == 0
        assert emu.bpf(c.BPF_MAP_DELETE_ELEM, elem, 16) == -errno.ENOENT
    callers = _callers_of(ops, calls)
    assert len(callers) == 13
    # The first call of each command goes through the entry, the second through a decoded
    # call kept (built then); every later one is the call made last: sys_bpf calls the op.
    assert callers[2:6] == ["sys_bpf"] * 4
    assert callers[8:] == ["sys_bpf"] * 5


def test_decoded_unpinned_delete_calls_the_op_directly():
    emu, key, value, elem = _map(c.BPF_MAP_TYPE_HASH, pin_key=False)
    for k in range(4):
        key.raw = struct.pack("<I", k)
        assert emu.bpf(c.BPF_MAP_UPDATE_ELEM, elem, 32) == 0

    def deletes():
        for k in range(4):
            key.raw = struct.pack("<I", k)
            assert emu.bpf(c.BPF_MAP_DELETE_ELEM, elem, 16) == 0
    callers = _callers_of({"htab_map_delete_elem"}, deletes)
    assert callers[2:] == ["sys_bpf"] * 2
