"""A batch command copies each of its buffers at once (bpfemu/batch_cmds.py): a few
process_vm_readv/writev calls for a whole unpinned batch, none for pinned buffers."""
import ctypes
import struct

import pytest

import bpfemu.memory as memory
from bpfemu import Emulator
from bpfemu.uapi import consts as c

N = 256


@pytest.fixture
def syscalls(monkeypatch):
    count = [0]
    real_r, real_w = memory._process_vm_readv, memory._process_vm_writev

    def readv(*a):
        count[0] += 1
        return real_r(*a)

    def writev(*a):
        count[0] += 1
        return real_w(*a)
    monkeypatch.setattr(memory, "_process_vm_readv", readv)
    monkeypatch.setattr(memory, "_process_vm_writev", writev)
    return count


@pytest.mark.parametrize("map_type", [c.BpfMapType.BPF_MAP_TYPE_HASH,
                                      c.BpfMapType.BPF_MAP_TYPE_ARRAY])
@pytest.mark.parametrize("pin", [False, True])
def test_batch_copies(syscalls, map_type, pin):
    emu = Emulator(seed=1)
    fd = emu.bpf(c.BPF_MAP_CREATE, ctypes.create_string_buffer(
        struct.pack("<IIII", map_type, 4, 8, 1024), 168), 168)
    keys = ctypes.create_string_buffer(struct.pack(f"<{N}I", *range(N)), 4 * N)
    values = ctypes.create_string_buffer(struct.pack(f"<{N}Q", *range(N)), 8 * N)
    out = ctypes.create_string_buffer(4)
    if pin:
        emu.mem.pin(keys, values, out)
    ka, va, oa = ctypes.addressof(keys), ctypes.addressof(values), ctypes.addressof(out)

    def batch(cmd, out_batch, vals):
        attr = ctypes.create_string_buffer(struct.pack("<QQQQII", 0, out_batch, ka, vals, N, fd),
                                           168)
        syscalls[0] = 0
        assert emu.bpf(cmd, attr, 168) == 0
        return syscalls[0]

    limit = 0 if pin else 2
    assert batch(c.BPF_MAP_UPDATE_BATCH, 0, va) <= limit
    if map_type == c.BpfMapType.BPF_MAP_TYPE_HASH:
        assert batch(c.BPF_MAP_DELETE_BATCH, 0, 0) <= limit
