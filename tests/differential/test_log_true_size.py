"""log_true_size (PROG_LOAD) and btf_log_true_size (BTF_LOAD) are written back only into an
attr long enough to have them: a caller that passes a shorter size (libbpf's BTF_LOAD passes
28, ending at btf_log_level) must find the bytes after its attr untouched, as on Linux
(finalize_log() and bpf_check() test uattr_size first)."""
import ctypes
import struct

import pytest

from bpfemu.uapi.consts import BpfCmd as C

BTF = (struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 16, 16, 5)
       + struct.pack("<IIII", 1, 1 << 24, 4, 32) + b"\0u32\0")
INSNS = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)
GUARD = 0xA5


def _call(backend, cmd, head: bytes, size: int):
    attr = ctypes.create_string_buffer(bytes(head).ljust(168, b"\0") + bytes([GUARD]) * 8, 176)
    for i in range(size, 176):
        attr[i] = GUARD                          # what the caller has after its attr
    ret = backend.bpf(cmd, ctypes.addressof(attr), size)
    if ret >= 0:
        backend.close(ret)
    return ret, attr.raw


@pytest.mark.parametrize("size", [28, 32, 40])
def test_btf_log_true_size_only_inside_the_attr(backend, size):
    blob = ctypes.create_string_buffer(BTF, len(BTF))
    head = struct.pack("<QQIII", ctypes.addressof(blob), 0, len(BTF), 0, 0)
    ret, raw = _call(backend, C.BPF_BTF_LOAD, head, size)
    assert ret >= 0
    expected_tail = bytes(4) if size >= 32 else bytes([GUARD]) * 4
    assert raw[28:32] == expected_tail
    assert raw[size:] == bytes([GUARD]) * (176 - size)


@pytest.mark.parametrize("size", [128, 140, 144, 148])
def test_prog_log_true_size_only_inside_the_attr(backend, size):
    insns = ctypes.create_string_buffer(INSNS, len(INSNS))
    lic = ctypes.create_string_buffer(b"GPL")
    head = struct.pack("<IIQQ", 1, 2, ctypes.addressof(insns), ctypes.addressof(lic))
    ret, raw = _call(backend, C.BPF_PROG_LOAD, head, size)
    assert ret >= 0
    expected_tail = bytes(4) if size >= 144 else bytes([GUARD]) * 4
    assert raw[140:144] == expected_tail
    assert raw[size:] == bytes([GUARD]) * (176 - size)
