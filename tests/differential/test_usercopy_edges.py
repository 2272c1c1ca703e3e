"""Byte-level edges of the kernel's user copies, side by side with the live kernel:

- bpf_check_uarg_tail_zero() reads a must-be-zero tail word by word: a non-zero word it can
  read gives E2BIG even when the range runs on into an unmapped page (EFAULT only when the
  fault comes first); for the attr past the union and for `info` past struct bpf_map_info.
- put_user() of a 4-byte field (batch.count, next_id) that straddles into an unmapped page
  writes nothing at all.
- Batch lookups copy key, value, key, value... (per element for arrays, per bucket for hash
  maps): overlapping `keys` and `values` buffers end with the bytes of that order.
"""
import ctypes
import mmap
import os
import struct

import pytest

from bpfemu.uapi import consts as c
from tests.differential.abi_support import (ARRAY, E2BIG, EFAULT, HASH, LOOKUP_AND_DELETE_BATCH,
                                            LOOKUP_BATCH, LRU_HASH, PERCPU_ARRAY, PERCPU_HASH,
                                            batch_attr, get_info, id_attr, sys_value_size,
                                            values_of, keys_of, fill)
from tests.support import map_create_attr

PAGE = 4096
ATTR = 168
_keep = []


def page_before_hole() -> int:
    """A read-write page followed by a PROT_NONE one (reserved, so nothing maps there)."""
    m = mmap.mmap(-1, 2 * PAGE)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    libc = ctypes.CDLL(None)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(addr + PAGE, PAGE, 0) == 0
    _keep.append(m)
    return addr


def _close(backend, ret):
    if ret >= 0:
        backend.close(ret)
    return min(ret, 0)


# --- tail checks ---------------------------------------------------------------------------

@pytest.mark.parametrize("nonzero_at", [168, 175, 176, 200, 4087])
def test_attr_tail_nonzero_before_hole_is_e2big(backend, nonzero_at):
    base = page_before_hole()
    ctypes.memset(base, 0, PAGE)
    attr = base + 8                             # size 4096: the tail's last 8 bytes are in the hole
    ctypes.memmove(attr, map_create_attr(c.BPF_MAP_TYPE_HASH, 4, 8, 4), 92)
    ctypes.memset(attr + nonzero_at, 1, 1)
    assert _close(backend, backend.bpf(c.BPF_MAP_CREATE, attr, PAGE)) == -E2BIG


def test_attr_tail_zero_up_to_hole_is_efault(backend):
    base = page_before_hole()
    ctypes.memset(base, 0, PAGE)
    attr = base + 64
    ctypes.memmove(attr, map_create_attr(c.BPF_MAP_TYPE_HASH, 4, 8, 4), 92)
    assert _close(backend, backend.bpf(c.BPF_MAP_CREATE, attr, PAGE)) == -EFAULT


@pytest.mark.parametrize("nonzero", [True, False])
def test_info_tail_runs_into_hole(client, nonzero):
    fd = client.create(HASH, 4, 8, 4)
    assert fd >= 0
    base = page_before_hole()
    ctypes.memset(base, 0, PAGE)
    info = base + PAGE - 160                    # info_len 300 runs 140 bytes into the hole
    if nonzero:
        ctypes.memset(info + 150, 7, 1)         # a word of the tail that can be read
    attr = ctypes.create_string_buffer(struct.pack("<IIQ", fd, 300, info), ATTR)
    ret = client.b.bpf(c.BPF_OBJ_GET_INFO_BY_FD, attr, 16)
    assert ret == (-E2BIG if nonzero else -EFAULT)
    assert struct.unpack_from("<I", attr, 4)[0] == 300        # info_len not written back
    assert ctypes.string_at(info, 104) == bytes(104)          # nothing written


# --- put_user of 4 bytes straddling into a hole ----------------------------------------------

def test_next_id_straddling_hole_writes_nothing(client):
    fd = client.create(HASH, 4, 8, 4)
    assert fd >= 0
    base = page_before_hole()
    attr = base + PAGE - 6                      # next_id at 4: two bytes mapped, two in the hole
    ctypes.memmove(attr, id_attr(0)[:4] + b"\xaa\xaa", 6)
    assert client.b.bpf(c.BPF_MAP_GET_NEXT_ID, attr, 6) == -EFAULT
    assert ctypes.string_at(attr, 6) == bytes(4) + b"\xaa\xaa"


@pytest.mark.parametrize("cmd", [LOOKUP_BATCH, LOOKUP_AND_DELETE_BATCH])
@pytest.mark.parametrize("map_type", [HASH, ARRAY])
def test_batch_count_straddling_hole_writes_nothing(client, cmd, map_type):
    fd = client.create(map_type, 4, 8, 4)
    assert fd >= 0
    base = page_before_hole()
    attr = base + PAGE - 34                     # count at 32: two bytes mapped, two in the hole
    ctypes.memmove(attr, batch_attr(0, count=3)[:34], 34)
    # map_fd (at 36) is past the 34 bytes copied, so it reads as 0: the map goes on fd 0.
    saved = os.dup(0)
    os.dup2(fd, 0)
    try:
        ret = client.b.bpf(cmd, attr, 34)
    finally:
        os.dup2(saved, 0)
        os.close(saved)
    if map_type == ARRAY and cmd == LOOKUP_AND_DELETE_BATCH:
        assert ret == -524                      # ENOTSUPP before anything is written
    else:
        assert ret == -EFAULT
    assert ctypes.string_at(attr + 32, 2) == b"\x03\x00"


# --- batch output buffers that overlap ------------------------------------------------------

# Arrays have no LOOKUP_AND_DELETE_BATCH.
OVERLAP_CASES = [(t, LOOKUP_BATCH) for t in (HASH, PERCPU_HASH, LRU_HASH, ARRAY, PERCPU_ARRAY)] + \
    [(t, LOOKUP_AND_DELETE_BATCH) for t in (HASH, PERCPU_HASH, LRU_HASH)]


@pytest.mark.parametrize("shift", [0, 4, 12, -8])
@pytest.mark.parametrize("map_type,cmd", OVERLAP_CASES)
def test_overlapping_keys_and_values(both, map_type, cmd, shift):
    n = 12
    vs = sys_value_size(map_type, 8)
    seen = []
    for cl in both:
        flags = c.BPF_F_ZERO_SEED if map_type not in (ARRAY, PERCPU_ARRAY) else 0
        fd = cl.create(map_type, 4, 8, n, flags)
        assert fd >= 0
        keys = keys_of(n)
        fill(cl, fd, keys, values_of(map_type, 8, n, seed=3))
        area = ctypes.create_string_buffer(b"\x5a" * (64 + n * (4 + vs) + 64))
        ukeys = ctypes.addressof(area) + 64
        uvalues = ukeys + shift                 # values start inside (or before) the keys
        out = ctypes.create_string_buffer(8)
        attr = ctypes.create_string_buffer(batch_attr(fd, 0, ctypes.addressof(out), ukeys,
                                                      uvalues, n), ATTR)
        ret = cl.b.bpf(cmd, attr, 56)
        seen.append((ret, struct.unpack_from("<I", attr, 32)[0], area.raw, out.raw))
    assert seen[0] == seen[1]
