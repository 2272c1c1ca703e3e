"""Raw bpf() calls built field by field, with real buffers, on any backend.

Scenarios (scenarios.py) are written with this: every call is a genuine bpf(cmd, attr, size)
with ctypes buffers for the attr and each pointer, so the same scenario runs on the live
kernel, on an Emulator and through a Recorder. Output buffers are pre-filled with 0xA5 so
what the call wrote is visible in a trace.

A pointer argument may be ``None`` (NULL), an ``int`` (a raw address: see ``no_access_page``
and ``readonly_page``), ``bytes`` (a new buffer holding them) or ``Out(n)`` (a new n-byte
output buffer).
"""
import ctypes
import mmap
import os
import struct

from ..emulator import Emulator
from ..uapi.consts import BpfCmd as C
from ..uapi.consts import BpfMapType as T
from .recorder import _unwrap, backend_nr_cpus, fs_op, set_cpu

FILL = 0xA5
ATTR = 168


class Out:
    """An output buffer of n bytes (pre-filled with 0xA5, or with ``fill``)."""

    def __init__(self, n: int, fill: bytes | None = None):
        self.n = n
        self.fill = fill


_leak = []
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_pages = {}


def no_access_page() -> int:
    """The address of a page no access reaches (PROT_NONE, so it is a fault for the kernel and
    the emulator alike, and no later mmap can land there the way one could on a hole)."""
    if "unmapped" not in _pages:
        m = mmap.mmap(-1, 4096)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
        assert _libc.mprotect(addr, 4096, 0) == 0
        _leak.append(m)
        _pages["unmapped"] = addr
    return _pages["unmapped"]


def readonly_page() -> int:
    """The address of a mapped, read-only page of zeros."""
    if "readonly" not in _pages:
        m = mmap.mmap(-1, 4096)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
        assert _libc.mprotect(addr, 4096, mmap.PROT_READ) == 0
        _leak.append(m)
        _pages["readonly"] = addr
    return _pages["readonly"]


def edge_buffer(data: bytes) -> int:
    """``data`` placed at the very end of a page followed by an inaccessible (PROT_NONE) one,
    so a copy that runs past it faults there."""
    m = mmap.mmap(-1, 2 * 4096)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    _leak.append(m)
    addr = base + 4096 - len(data)
    ctypes.memmove(addr, data, len(data))
    assert _libc.mprotect(base + 4096, 4096, 0) == 0
    return addr


def u32(x):
    return struct.pack("<I", x & 0xFFFFFFFF)


def u64(x):
    return struct.pack("<Q", x & (2**64 - 1))


def create_attr(map_type, key_size, value_size, max_entries, map_flags=0, *, numa_node=0,
                name=b"", inner_map_fd=0, map_ifindex=0, btf_fd=0, btf_key_type_id=0,
                btf_value_type_id=0, btf_vmlinux_value_type_id=0, map_extra=0,
                value_type_btf_obj_fd=0, map_token_fd=0, excl_prog_hash=0,
                excl_prog_hash_size=0) -> bytes:
    return struct.pack("<IIIIIII16sIIIIIQiiQI", map_type & 0xFFFFFFFF, key_size & 0xFFFFFFFF,
                       value_size & 0xFFFFFFFF, max_entries & 0xFFFFFFFF, map_flags & 0xFFFFFFFF,
                       inner_map_fd & 0xFFFFFFFF, numa_node & 0xFFFFFFFF,
                       bytes(name).ljust(16, b"\0")[:16], map_ifindex, btf_fd & 0xFFFFFFFF,
                       btf_key_type_id, btf_value_type_id, btf_vmlinux_value_type_id, map_extra,
                       value_type_btf_obj_fd, map_token_fd, excl_prog_hash, excl_prog_hash_size)


class Caller:
    """Builds attrs and buffers and calls ``backend.bpf``; remembers the map fds it made."""

    def __init__(self, backend):
        self.b = backend
        self.ncpu = backend_nr_cpus(backend)
        self.fds: list[int] = []
        self._keep = []
        self.is_emulator = isinstance(_unwrap(backend), Emulator)

    # -- memory --------------------------------------------------------------------------
    def ptr(self, x) -> int:
        if x is None:
            return 0
        if isinstance(x, int):
            return x
        if isinstance(x, Out):
            data = (x.fill if x.fill is not None else bytes([FILL])) * x.n
            data = data[:x.n]
        else:
            data = bytes(x)
        buf = ctypes.create_string_buffer(data, max(len(data), 1))
        self._keep.append(buf)
        return ctypes.addressof(buf)

    def read(self, addr: int, n: int) -> bytes:
        return ctypes.string_at(addr, n)

    # -- the raw call ----------------------------------------------------------------------
    def call(self, cmd: int, attr: bytes, size: int | None = None, *, buf_len=None) -> int:
        """bpf(cmd, attr, size): attr in a zero-filled buffer of at least 168 (and ``size``,
        up to a page) bytes. ``size`` defaults to len(attr)."""
        size = len(attr) if size is None else size
        n = max(ATTR, len(attr), min(size & 0xFFFFFFFF, 4096) if size >= 0 else 0)
        if buf_len is not None:
            n = buf_len
        buf = ctypes.create_string_buffer(n)
        ctypes.memmove(buf, attr, min(len(attr), n))
        self.last_attr = buf
        ret = self.b.bpf(cmd, buf, size)
        # The call's buffers stay alive until the next call, so results can be read.
        self._prev, self._keep = self._keep, []
        return ret

    def attr_u32(self, off: int) -> int:
        return struct.unpack_from("<I", self.last_attr, off)[0]

    # -- maps ------------------------------------------------------------------------------
    def create(self, map_type, key_size, value_size, max_entries, map_flags=0, *, size=ATTR,
               **kw) -> int:
        fd = self.call(C.BPF_MAP_CREATE, create_attr(map_type, key_size, value_size, max_entries,
                                                     map_flags, **kw), size)
        if fd >= 0:
            self.fds.append(fd)
        return fd

    def close(self, fd: int) -> int:
        if fd in self.fds:
            self.fds.remove(fd)
        return self.b.close(fd)

    def close_all(self) -> None:
        for fd in list(self.fds):
            self.close(fd)

    def value_size_sys(self, map_type, value_size) -> int:
        if map_type in (T.BPF_MAP_TYPE_PERCPU_HASH, T.BPF_MAP_TYPE_LRU_PERCPU_HASH,
                        T.BPF_MAP_TYPE_PERCPU_ARRAY):
            return (value_size + 7) // 8 * 8 * self.ncpu
        return value_size

    # -- element commands --------------------------------------------------------------------
    def _elem(self, cmd, fd, key, value, flags=0, size=32, pad=0) -> int:
        attr = struct.pack("<IIQQQ", fd & 0xFFFFFFFF, pad, self.ptr(key), self.ptr(value),
                           flags & (2**64 - 1))
        return self.call(cmd, attr, size)

    def update(self, fd, key, value, flags=0, *, size=32, pad=0) -> int:
        return self._elem(C.BPF_MAP_UPDATE_ELEM, fd, key, value, flags, size, pad)

    def lookup(self, fd, key, value_size, flags=0, *, size=32, value=None, pad=0):
        """(ret, value bytes or None)."""
        v = self.ptr(Out(value_size)) if value is None else value
        ret = self._elem(C.BPF_MAP_LOOKUP_ELEM, fd, key, v, flags, size, pad)
        return ret, (self.read(v, value_size) if ret == 0 and value is None else None)

    def delete(self, fd, key, *, size=16, value=0, flags=0) -> int:
        attr = struct.pack("<IIQQQ", fd & 0xFFFFFFFF, 0, self.ptr(key), value, flags)
        return self.call(C.BPF_MAP_DELETE_ELEM, attr, size)

    def lookup_and_delete(self, fd, key, value_size, flags=0, *, value=None, size=32):
        v = self.ptr(Out(value_size)) if value is None else value
        ret = self._elem(C.BPF_MAP_LOOKUP_AND_DELETE_ELEM, fd, key, v, flags, size)
        return ret, (self.read(v, value_size) if ret == 0 and value is None else None)

    def next_key(self, fd, key, key_size, *, next_key=None, size=24, flags=0):
        nk = self.ptr(Out(key_size)) if next_key is None else next_key
        attr = struct.pack("<IIQQQ", fd & 0xFFFFFFFF, 0, self.ptr(key), nk, flags)
        ret = self.call(C.BPF_MAP_GET_NEXT_KEY, attr, size)
        return ret, (self.read(nk, key_size) if ret == 0 and next_key is None else None)

    def walk(self, fd, key_size, limit=1 << 16) -> list:
        """Every key in GET_NEXT_KEY order, from NULL to ENOENT."""
        out, cur = [], None
        while len(out) < limit:
            ret, nxt = self.next_key(fd, cur, key_size)
            if ret != 0:
                break
            out.append(nxt)
            cur = nxt
        return out

    def freeze(self, fd, *, size=4, pad=0) -> int:
        return self.call(C.BPF_MAP_FREEZE, struct.pack("<II", fd & 0xFFFFFFFF, pad), size)

    # -- batch -------------------------------------------------------------------------------
    def batch(self, cmd, fd, *, in_batch=None, out_batch=None, keys=None, values=None,
              count=0, elem_flags=0, flags=0, size=56):
        """(ret, count after). Pointers as for any call."""
        attr = struct.pack("<QQQQIIQQ", self.ptr(in_batch), self.ptr(out_batch), self.ptr(keys),
                           self.ptr(values), count & 0xFFFFFFFF, fd & 0xFFFFFFFF,
                           elem_flags & (2**64 - 1), flags & (2**64 - 1))
        ret = self.call(cmd, attr, size)
        return ret, self.attr_u32(32)

    def lookup_batch(self, fd, key_size, value_size_sys, count, *, token=None, delete=False,
                     token_size=4, elem_flags=0, flags=0):
        """(ret, count, keys, values, out token) with fresh output buffers."""
        keys = self.ptr(Out(count * key_size))
        values = self.ptr(Out(count * value_size_sys))
        outb = self.ptr(Out(token_size))
        cmd = C.BPF_MAP_LOOKUP_AND_DELETE_BATCH if delete else C.BPF_MAP_LOOKUP_BATCH
        ret, n = self.batch(cmd, fd, in_batch=token, out_batch=outb, keys=keys, values=values,
                            count=count, elem_flags=elem_flags, flags=flags)
        return (ret, n, self.read(keys, count * key_size), self.read(values, count * value_size_sys),
                self.read(outb, token_size))

    # -- objects -------------------------------------------------------------------------------
    def info(self, fd, info_len=104, *, info=None, data=None, size=16):
        """(ret, info_len after, the info buffer's bytes after)."""
        if info is None:
            n = max(info_len, 1) if info_len <= 4096 else 8
            info = self.ptr(data if data is not None else bytes(n))
            n = len(data) if data is not None else n
        else:
            n = 0
        ret = self.call(C.BPF_OBJ_GET_INFO_BY_FD,
                        struct.pack("<IIQ", fd & 0xFFFFFFFF, info_len & 0xFFFFFFFF, info), size)
        return ret, self.attr_u32(4), (self.read(info, n) if n else b"")

    def map_id(self, fd) -> int:
        ret, _, data = self.info(fd)
        assert ret == 0, ret
        return struct.unpack_from("<I", data, 4)[0]

    def next_id(self, start_id, *, size=8, next_id=0, open_flags=0):
        ret = self.call(C.BPF_MAP_GET_NEXT_ID, struct.pack("<III", start_id & 0xFFFFFFFF,
                                                             next_id, open_flags), size)
        return ret, self.attr_u32(4)

    def fd_by_id(self, map_id, open_flags=0, *, size=12, token_fd=0) -> int:
        fd = self.call(C.BPF_MAP_GET_FD_BY_ID, struct.pack("<IIIi", map_id & 0xFFFFFFFF, 0,
                                                           open_flags, token_fd), size)
        if fd >= 0:
            self.fds.append(fd)
        return fd

    def pin(self, path, fd, file_flags=0, path_fd=0, *, size=20) -> int:
        p = self.ptr(os.fsencode(path) + b"\0") if isinstance(path, str) else self.ptr(path)
        return self.call(C.BPF_OBJ_PIN, struct.pack("<QIIi", p, fd & 0xFFFFFFFF, file_flags,
                                                    path_fd), size)

    def obj_get(self, path, file_flags=0, path_fd=0, *, bpf_fd=0, size=20) -> int:
        p = self.ptr(os.fsencode(path) + b"\0") if isinstance(path, str) else self.ptr(path)
        fd = self.call(C.BPF_OBJ_GET, struct.pack("<QIIi", p, bpf_fd, file_flags, path_fd), size)
        if fd >= 0:
            self.fds.append(fd)
        return fd

    # -- the environment -------------------------------------------------------------------------
    def set_cpu(self, cpu: int) -> None:
        set_cpu(self.b, cpu)

    def fs(self, op: str, path: str, mode: int = 0o700, to: str | None = None) -> int:
        """unlink/mkdir/rmdir/rename/link on the backend's bpffs (recorded when recording):
        0 or -errno."""
        fs = getattr(self.b, "fs", None)
        if fs is not None and not isinstance(self.b, Emulator):
            return fs(op, path, mode) if to is None else fs(op, path, mode, to)
        return fs_op(self.b, op, path, mode, to)
