"""Helpers for the differential tests of arrays, batches, info, ids, freeze and pinning.

Raw attr builders (the bytes are what is under test), calls that return the attr as the
call left it (the kernel writes batch.count, info_len and next_id back into it), a private
bpffs mounted for the test, and the user-side filesystem operations (unlink, mkdir) done
the way each backend needs them.
"""
import ctypes
import os
import random
import struct
import tempfile

import pytest

from bpfemu import Emulator
from bpfemu.uapi import consts as c
from tests.support import (E2BIG, EACCES, EBADF, EBADFD, EBUSY, EEXIST, EFAULT,  # noqa: F401
                           EINVAL, ENOENT, ENOMEM, ENOSPC, ENOTDIR, ENOTSUPP, EPERM, NCPU, PAGE,
                           PERCPU_TYPES, Buf, Client, attr_buf, host_unavailable_reason,
                           round_up, sys_value_size, u32, u64)

HASH, ARRAY = c.BPF_MAP_TYPE_HASH, c.BPF_MAP_TYPE_ARRAY
PERCPU_HASH, PERCPU_ARRAY = c.BPF_MAP_TYPE_PERCPU_HASH, c.BPF_MAP_TYPE_PERCPU_ARRAY
LRU_HASH, LRU_PERCPU_HASH = c.BPF_MAP_TYPE_LRU_HASH, c.BPF_MAP_TYPE_LRU_PERCPU_HASH
HASH_TYPES = [HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH]
ARRAY_TYPES = [ARRAY, PERCPU_ARRAY]
ALL_TYPES = HASH_TYPES + ARRAY_TYPES
TYPE_IDS = {HASH: "hash", ARRAY: "array", PERCPU_HASH: "percpu_hash",
            PERCPU_ARRAY: "percpu_array", LRU_HASH: "lru_hash",
            LRU_PERCPU_HASH: "lru_percpu_hash"}

LOOKUP_BATCH = c.BPF_MAP_LOOKUP_BATCH
LOOKUP_AND_DELETE_BATCH = c.BPF_MAP_LOOKUP_AND_DELETE_BATCH
UPDATE_BATCH = c.BPF_MAP_UPDATE_BATCH
DELETE_BATCH = c.BPF_MAP_DELETE_BATCH
BATCH_CMDS = [LOOKUP_BATCH, LOOKUP_AND_DELETE_BATCH, UPDATE_BATCH, DELETE_BATCH]
CMD_IDS = {LOOKUP_BATCH: "lookup", LOOKUP_AND_DELETE_BATCH: "lookup_and_delete",
           UPDATE_BATCH: "update", DELETE_BATCH: "delete"}

CLOSED_FD = 0x7FFF0000
KERNEL_ADDR = 0xFFFF_FFFF_8100_0000


def call(backend, cmd, attr: bytes, size=168, tail=None):
    """One raw bpf(): (result, the 168+ attr bytes as the call left them)."""
    buf = attr_buf(attr, max(size, 168))
    for off, byte in (tail or {}).items():
        buf[off] = byte
    ret = backend.bpf(cmd, buf, size)
    return ret, buf.raw


def batch_attr(fd, in_batch=0, out_batch=0, keys=0, values=0, count=0, elem_flags=0, flags=0):
    return struct.pack("<QQQQIIQQ", in_batch, out_batch, keys, values, count & 0xFFFFFFFF,
                       fd & 0xFFFFFFFF, elem_flags & (2**64 - 1), flags & (2**64 - 1))


def batch(backend, cmd, fd, size=56, tail=None, **kw):
    """A batch command: (result, batch.count as written back)."""
    ret, raw = call(backend, cmd, batch_attr(fd, **kw), size, tail)
    return ret, struct.unpack_from("<I", raw, 32)[0]


def info_attr(fd, info_len, info):
    return struct.pack("<IIQ", fd & 0xFFFFFFFF, info_len & 0xFFFFFFFF, info)


def get_info(backend, fd, info_len=104, init=b"", size=None):
    """OBJ_GET_INFO_BY_FD with a guarded buffer of max(info_len, len(init)) bytes:
    (result, info_len written back, the buffer's bytes, guards intact)."""
    buf = Buf(init, size=size if size is not None else max(info_len, len(init)))
    ret, raw = call(backend, c.BPF_OBJ_GET_INFO_BY_FD, info_attr(fd, info_len, buf.addr), 16)
    return ret, struct.unpack_from("<I", raw, 4)[0], buf.data, buf.guards_intact()


def map_id(backend, fd) -> int:
    ret, _, data, _ = get_info(backend, fd)
    assert ret == 0, ret
    return struct.unpack_from("<I", data, 4)[0]


def id_attr(start_id=0, next_id=0, open_flags=0, token_fd=0):
    return struct.pack("<IIIi", start_id & 0xFFFFFFFF, next_id & 0xFFFFFFFF,
                       open_flags & 0xFFFFFFFF, token_fd)


def get_next_id(backend, start_id, size=8, **kw):
    """(result, next_id as written back)."""
    ret, raw = call(backend, c.BPF_MAP_GET_NEXT_ID, id_attr(start_id, **kw), size)
    return ret, struct.unpack_from("<I", raw, 4)[0]


def live_ids(backend, cmd=c.BPF_MAP_GET_NEXT_ID):
    """Every id a *_GET_NEXT_ID command walks, from 0 to its ENOENT."""
    ids, start = [], 0
    while True:
        ret, raw = call(backend, cmd, id_attr(start), 8)
        if ret:
            assert ret == -ENOENT
            return ids
        start = struct.unpack_from("<I", raw, 4)[0]
        ids.append(start)


def map_ids(backend):
    return live_ids(backend, c.BPF_MAP_GET_NEXT_ID)


def prog_ids(backend):
    return live_ids(backend, c.BPF_PROG_GET_NEXT_ID)


def wait_gone(backend, ids, x) -> bool:
    """Whether id x leaves ids(backend) within 5 s (the kernel frees ids from a work queue)."""
    import time
    deadline = time.monotonic() + 5
    while x in ids(backend) and time.monotonic() < deadline:
        time.sleep(0.01)
    return x not in ids(backend)


def get_fd_by_id(backend, map_id, open_flags=0, size=12, **kw):
    ret, _ = call(backend, c.BPF_MAP_GET_FD_BY_ID, id_attr(map_id, open_flags=open_flags, **kw),
                  size)
    return ret


def freeze(backend, fd, size=4, tail=None):
    return call(backend, c.BPF_MAP_FREEZE, u32(fd), size, tail)[0]


def obj_attr(pathname=0, bpf_fd=0, file_flags=0, path_fd=0):
    return struct.pack("<QIIi", pathname, bpf_fd & 0xFFFFFFFF, file_flags & 0xFFFFFFFF, path_fd)


def path_ptr(path):
    """A C string for a path, kept alive by the returned buffer: (buffer, address)."""
    b = ctypes.create_string_buffer(os.fsencode(path))
    return b, ctypes.addressof(b)


def pin(backend, fd, path, file_flags=0, path_fd=0, size=20):
    _b, addr = path_ptr(path)
    return call(backend, c.BPF_OBJ_PIN, obj_attr(addr, fd, file_flags, path_fd), size)[0]


def obj_get(backend, path, file_flags=0, path_fd=0, bpf_fd=0, size=20):
    _b, addr = path_ptr(path)
    return call(backend, c.BPF_OBJ_GET, obj_attr(addr, bpf_fd, file_flags, path_fd), size)[0]


def keys_of(n, key_size=4, start=0):
    return [struct.pack("<I", start + i).ljust(key_size, b"\0")[:key_size] for i in range(n)]


def values_of(map_type, value_size, n, seed):
    rnd = random.Random(seed)
    vs = sys_value_size(map_type, value_size)
    return [rnd.randbytes(vs) for _ in range(n)]


def split(blob: bytes, size: int):
    return [blob[i:i + size] for i in range(0, len(blob), size)]


def fill(cl: Client, fd, keys, values):
    for k, v in zip(keys, values):
        assert cl.update(fd, k, v) == 0


# --- a private bpffs -------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
MNT_DETACH = 2


@pytest.fixture
def bpffs_mount():
    """A fresh bpffs mounted on a temporary directory, for this test only."""
    if host_unavailable_reason():
        pytest.skip(f"live kernel bpf() not permitted here: {host_unavailable_reason()}")
    d = tempfile.mkdtemp(prefix="bpfemu-bpffs-")
    if _libc.mount(b"bpf", d.encode(), b"bpf", 0, None) != 0:
        err = ctypes.get_errno()
        os.rmdir(d)
        pytest.skip(f"cannot mount a bpffs here: {os.strerror(err)}")
    try:
        yield d
    finally:
        _libc.umount2(d.encode(), MNT_DETACH)
        os.rmdir(d)


class BpffsSide:
    """One backend with its client and the user-side view of its bpffs."""

    def __init__(self, backend, root):
        self.b = backend
        self.cl = Client(backend)
        self.root = root
        self.emu = isinstance(backend, Emulator)

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def unlink(self, path):
        if self.emu:
            self.b.bpffs.unlink(path)
        else:
            os.unlink(path)

    def mkdir(self, path, mode=0o700):
        if self.emu:
            self.b.bpffs.mkdir(path, mode)
        else:
            os.mkdir(path, mode)

    def close_all(self):
        self.cl.close_all()
