"""Recorder: wraps any backend (bpf() and close()) and writes a trace as the calls happen.

    rec = Recorder(HostKernel(), "out.jsonl.gz")
    fd = rec.bpf(BPF_MAP_CREATE, attr, 168)     # forwarded, then recorded (flushed)
    rec.close(fd)
    rec.finish()                                # writes the end line

Before each call the recorder decodes the attr (decode.call_layout) to learn which user
buffers the kernel may read or write, and snapshots them; after the call it snapshots the
attr and the written buffers again. Map fds are tracked from MAP_CREATE, MAP_GET_FD_BY_ID and
OBJ_GET results and forgotten on close(); an fd it has not seen is looked up on the backend
with BPF_OBJ_GET_INFO_BY_FD (an extra call that is not recorded).

The record is written, and flushed, when the call returns: a crash loses at most the call in
flight. Nothing about the call itself changes: the backend receives the caller's own attr
object and pointers. (One exception: a read-only ``bytes`` attr is copied into a writable
buffer first, as HostKernel does anyway.)
"""
import ctypes
import os
import platform
import struct

from .. import __version__
from ..emulator import Emulator
from ..memory import ProcessMemory
from ..profile import host_possible_cpus
from ..uapi.consts import BpfCmd as C
from . import decode
from .decode import (FD_RESULT_CMDS, OBJ_RESULT_CMDS, MapMeta, call_layout, embedded_fds,
                     info_hash_buf)
from .format import FS_OPS, FS_TWO_PATHS, Header, TraceWriter, result_fields
from .probe import ProcessProbe, Snapshot, buffer_address, probe_for

_libc = ctypes.CDLL(None, use_errno=True)
_sched_getcpu = _libc.sched_getcpu
_sched_getcpu.restype = ctypes.c_int
_EFAULT = 14


def _unwrap(backend):
    """The innermost backend (through Recorders and similar wrappers with .backend)."""
    seen = 0
    while hasattr(backend, "backend") and seen < 8:
        backend = backend.backend
        seen += 1
    return backend


def backend_nr_cpus(backend) -> int:
    b = _unwrap(backend)
    if isinstance(b, Emulator):
        return b.nr_cpus
    return host_possible_cpus()


def backend_map_meta(backend, fd: int) -> MapMeta | None:
    """The map behind fd on this backend, or None (closed, not a map). Out of band: for an
    Emulator it reads the emulated map; otherwise it calls BPF_OBJ_GET_INFO_BY_FD."""
    b = _unwrap(backend)
    if isinstance(b, Emulator):
        try:
            m = b.map_of(fd)
        except KeyError:
            return None
        return MapMeta(m.map_type, m.key_size, m.value_size, m.max_entries, m.map_flags, m.id)
    if fd < 0 or fd > 0x7FFFFFFF:
        return None
    info = ctypes.create_string_buffer(decode.MAP_INFO_SIZE)
    attr = ctypes.create_string_buffer(decode.ATTR_SIZE)
    struct.pack_into("<IIQ", attr, 0, fd, decode.MAP_INFO_SIZE, ctypes.addressof(info))
    if b.bpf(C.BPF_OBJ_GET_INFO_BY_FD, attr, 16) != 0:
        return None
    return MapMeta.from_info(info.raw)


# Where bpf_prog_info and bpf_btf_info keep the object's id (a 16-byte info reaches both).
_OBJ_ID_OFFSET = {"prog": 4, "btf": 12}


def backend_obj_id(backend, fd: int, kind: str) -> int | None:
    """The id of the program or BTF object behind fd (OBJ_GET_INFO_BY_FD), or None."""
    info = ctypes.create_string_buffer(16)
    attr = ctypes.create_string_buffer(decode.ATTR_SIZE)
    struct.pack_into("<IIQ", attr, 0, fd, 16, ctypes.addressof(info))
    if backend.bpf(C.BPF_OBJ_GET_INFO_BY_FD, attr, 16) != 0:
        return None
    return struct.unpack_from("<I", info.raw, _OBJ_ID_OFFSET[kind])[0]


def fd_is_open(fd: int) -> bool:
    if fd < 0 or fd > 0x7FFFFFFF:
        return False
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _hex_addr(a: int) -> str:
    return hex(a)


def snapshot_json(snap: Snapshot, key: str, extra: dict | None = None) -> dict:
    d = {"addr": _hex_addr(snap.addr), key: snap.data.hex()}
    if snap.length != len(snap.data):
        d["len"] = snap.length
    if snap.unmapped:
        d["unmapped"] = [list(r) for r in snap.unmapped]
    if snap.readonly:
        d["readonly"] = [list(r) for r in snap.readonly]
    if extra:
        d.update(extra)
    return d


class Recorder:
    """A backend that forwards every call to ``backend`` and records it to ``path``."""

    def __init__(self, backend, path, *, scenario: str | None = None, mem=None,
                 header_extra: dict | None = None, fsync: bool = False,
                 bpffs_root: str | None = None):
        self.backend = backend
        inner = _unwrap(backend)
        self._emu = inner if isinstance(inner, Emulator) else None
        if mem is None:
            mem = self._emu.mem if self._emu is not None else ProcessMemory()
        self.probe = probe_for(mem)
        self._process = isinstance(self.probe, ProcessProbe)
        self.nr_cpus = backend_nr_cpus(backend)
        self.maps: dict[int, MapMeta] = {}
        self.objs: dict[int, str] = {}          # fds of programs and BTF objects -> kind
        self.seq = 0
        if self._emu is not None:
            release = f"bpfemu-emulator (Linux {self._emu.profile.release} profile)"
            arch, page = "x86_64", self._emu.profile.page_size
            kind = "emulator"
        else:
            release, arch = platform.release(), platform.machine()
            page, kind = os.sysconf("SC_PAGE_SIZE"), "kernel"
        if bpffs_root is None and self._emu is not None and hasattr(self._emu, "bpffs"):
            bpffs_root = self._emu.bpffs.root
        self.bpffs_root = bpffs_root
        header_extra = dict(header_extra or {})
        if bpffs_root is not None:
            header_extra["bpffs_root"] = bpffs_root
        self.header = Header(kernel_release=release, arch=arch, page_size=page,
                             possible_cpus=self.nr_cpus, recorder="bpfemu",
                             recorder_version=__version__, backend=kind, scenario=scenario,
                             extra=header_extra)
        self.writer = TraceWriter(path, self.header, fsync=fsync)
        self.path = path

    # -- what the wrapped backend offers besides bpf()/close() ---------------------------
    def __getattr__(self, name):
        if name == "backend":
            raise AttributeError(name)
        return getattr(self.backend, name)

    @property
    def cpu(self) -> int:
        return self.current_cpu()

    @cpu.setter
    def cpu(self, cpu: int) -> None:
        set_cpu(self.backend, cpu)

    def current_cpu(self) -> int:
        if self._emu is not None:
            return self._emu.cpu
        return _sched_getcpu()

    # -- map tracking --------------------------------------------------------------------
    def _lookup_map(self, fd: int) -> MapMeta | None:
        m = self.maps.get(fd)
        if m is not None:
            return m
        if fd in self.objs:                     # a program's or BTF's info is no map's
            return None
        if not fd_is_open(fd):
            return None
        m = backend_map_meta(self.backend, fd)
        if m is not None:
            self.maps[fd] = m
        return m

    def _result_map_meta(self, fd: int) -> MapMeta | None:
        """The map behind an fd a call returned (the caller's fd: see intercept/tracing.py)."""
        return backend_map_meta(self.backend, fd)

    def _fd_file(self, fd: int) -> int | None:
        """The token of the open file behind fd (one per open file description), for traces
        of process trees (intercept/tracing.py); None here: in one process the fd number
        names the file."""
        return None

    def _fd_entry(self, fd: int, extra: dict) -> dict:
        """An entry of a record's ``fds``: the fd, its kind and, where known, its file."""
        kind = self._fd_kind(fd)
        d = dict(extra, fd=fd, kind=kind)
        if kind in ("map", "btf", "prog"):
            token = self._fd_file(fd)
            if token is not None:
                d["file"] = token
        return d

    def _fd_kind(self, fd: int) -> str:
        if fd in self.objs:
            return self.objs[fd]
        if fd in self.maps or self._lookup_map(fd) is not None:
            return "map"
        return "file" if fd_is_open(fd) else "closed"

    # -- the attr --------------------------------------------------------------------------
    def _attr_ref(self, attr):
        """(what to pass to the backend, its address, the Python buffer or None)."""
        if type(attr) is int:
            return attr, attr, None
        addr = buffer_address(attr)
        if addr is None:
            # A read-only (or empty) buffer: give the call a writable copy, as HostKernel does.
            data = bytes(memoryview(attr).cast("B"))
            attr = ctypes.create_string_buffer(data, max(len(data), 1))
            addr = ctypes.addressof(attr)
            return attr, addr, attr
        return attr, addr, attr

    def _read_attr(self, addr: int, pybuf, n: int) -> Snapshot:
        if pybuf is not None and self._emu is not None:
            # The emulator reads a Python attr buffer as the buffer, not as memory: past
            # its end is unmapped (DEVIATION(attr-buffer) in syscall.py).
            data = bytes(memoryview(pybuf).cast("B"))
            if n <= len(data):
                return Snapshot(addr, data[:n])
            return Snapshot(addr, data, [(len(data), n - len(data))], length=n)
        return self.probe.read(addr, n)

    # -- the calls -------------------------------------------------------------------------
    def bpf(self, cmd: int, attr, size: int) -> int:
        call_attr, addr, pybuf = self._attr_ref(attr)
        size32 = size & 0xFFFFFFFF
        n_attr = size32 if size32 <= decode.PAGE_SIZE else 0
        before = self._read_attr(addr, pybuf, n_attr)
        union = decode.attr168(before.data, size32 if not before.unmapped else
                               min(size32, before.unmapped[0][0]))
        layout = call_layout(cmd, union, self._lookup_map, self.nr_cpus, self.probe.strlen)
        out_end = max((o + n for o, n in layout.attr_out), default=0)
        attr_len = max(n_attr, out_end)
        if attr_len > n_attr:
            before = self._read_attr(addr, pybuf, attr_len)
        fds = [self._fd_entry(struct.unpack_from("<I", union, off)[0],
                              {"field": name, "off": off})
               for name, off in layout.fd_fields]
        bufs = [b for b in layout.bufs if b.length > 0 or b.access == "r"]
        snaps = []
        for b in bufs:
            n = min(b.length, decode.MAX_BUFFER)
            snap = self.probe.read(b.addr, n)
            if b.length > n:                   # beyond what we record (see abi/README.md)
                snap.unmapped.append((n, b.length - n))
                snap.length = b.length
            snaps.append((b, snap))
            if b.field == "info":
                hb = info_hash_buf(b.addr, snap.data)
                if hb is not None:
                    snaps.append((hb, self.probe.read(hb.addr, hb.length)))
        cpu = self.current_cpu()

        ret = self.backend.bpf(cmd, call_attr, size)

        after = self._read_attr(addr, pybuf, attr_len)
        faulted = ret == -_EFAULT
        read, written = [], []
        for b, snap in snaps:
            extra = {"field": b.field}
            if "r" in b.access:
                d = snapshot_json(snap, "bytes", extra)
                inner = embedded_fds(cmd, b.field, snap.data, self._map_type(layout.map_fd))
                if inner:
                    d["fds"] = [self._fd_entry(fd, {"off": off})
                                for off, kind in inner
                                for fd in struct.unpack_from("<I", snap.data, off)]
                read.append(d)
            if "w" in b.access:
                post = self.probe.read(b.addr, len(snap.data)).data if snap.data else b""
                if faulted:
                    snap.readonly = self.probe.readonly(b.addr, len(snap.data))
                d = snapshot_json(snap, "before", extra)
                d["after"] = post.hex()
                written.append(d)
        if faulted and layout.attr_out and not (pybuf is not None and self._emu is not None):
            before.readonly = self.probe.readonly(addr, attr_len)
        rret, rerr = result_fields(ret)
        rec = {"seq": self.seq, "call": "bpf", "cmd": int(cmd), "name": decode.cmd_name(cmd),
               "size": size32, "cpu": cpu,
               "attr": snapshot_json(before, "before", {"after": after.data.hex()}),
               "read": read, "written": written, "fds": fds, "ret": rret, "errno": rerr}
        if layout.map_fd is not None and layout.map_fd in self.maps:
            rec["map_type"] = self.maps[layout.map_fd].map_type
        if cmd in FD_RESULT_CMDS and ret >= 0:
            meta = self._result_map_meta(ret)
            if meta is None and cmd == C.BPF_MAP_CREATE:
                meta = MapMeta.from_create_attr(union, self.nr_cpus)
            if meta is not None:
                self.maps[ret] = meta
                rec["map"] = meta.to_json()
                rec["map_type"] = meta.map_type
        if cmd in OBJ_RESULT_CMDS and ret >= 0:
            kind = OBJ_RESULT_CMDS[cmd]
            self.objs[ret] = kind
            self.maps.pop(ret, None)
            rec["obj"] = {"kind": kind, "id": backend_obj_id(self.backend, ret, kind)}
        if (cmd in FD_RESULT_CMDS or cmd in OBJ_RESULT_CMDS) and ret >= 0:
            token = self._fd_file(ret)
            if token is not None:
                rec["file"] = token             # the open file the new fd is
        rec["strace"] = decode.render_call(rec)
        self.seq += 1
        self.writer.write(rec)
        return ret

    def _map_type(self, fd) -> int | None:
        m = self.maps.get(fd) if fd is not None else None
        return m.map_type if m is not None else None

    def close(self, fd: int) -> int:
        kind = self._fd_kind(fd)
        cpu = self.current_cpu()
        ret = self.backend.close(fd)
        if ret == 0:
            self.maps.pop(fd, None)
            self.objs.pop(fd, None)
        rret, rerr = result_fields(ret)
        rec = {"seq": self.seq, "call": "close", "fd": fd, "kind": kind, "cpu": cpu,
               "ret": rret, "errno": rerr}
        rec["strace"] = decode.render_call(rec)
        self.seq += 1
        self.writer.write(rec)
        return ret

    def fs(self, op: str, path: str, mode: int = 0o700, to: str | None = None) -> int:
        """unlink, mkdir, rmdir, rename or link (to ``to``) on the bpffs the backend pins
        into (recorded): 0 or -errno. These change what OBJ_PIN and OBJ_GET see, so a replay
        must do them too."""
        if op not in FS_OPS or (op in FS_TWO_PATHS) != (to is not None):
            raise ValueError(f"unknown filesystem operation {op!r} (or its paths)")
        cpu = self.current_cpu()
        ret = fs_op(self.backend, op, path, mode, to)
        rret, rerr = result_fields(ret)
        rec = {"seq": self.seq, "call": "fs", "op": op, "path": path, "cpu": cpu,
               "ret": rret, "errno": rerr}
        if op == "mkdir":
            rec["mode"] = mode
        if to is not None:
            rec["to"] = to
        rec["strace"] = decode.render_call(rec)
        self.seq += 1
        self.writer.write(rec)
        return ret

    def close_all_maps(self) -> None:
        """Close every map fd the recorder knows is open (recorded, like any close)."""
        for fd in sorted(self.maps):
            self.close(fd)

    def finish(self) -> None:
        """Write the end line and close the file."""
        self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.finish()


def set_cpu(backend, cpu: int) -> None:
    """Run the next calls on ``cpu``: the emulator's current CPU, or pin this process."""
    b = _unwrap(backend)
    if isinstance(b, Emulator):
        b.cpu = cpu
    else:
        os.sched_setaffinity(0, {cpu})


def fs_op(backend, op: str, path: str, mode: int = 0o700, to: str | None = None) -> int:
    """A filesystem operation on the bpffs the backend's OBJ_PIN/OBJ_GET see: 0 or -errno."""
    b = _unwrap(backend)
    fs = b.bpffs if isinstance(b, Emulator) else os
    try:
        if op == "mkdir":
            fs.mkdir(path, mode)
        elif op in FS_TWO_PATHS:
            getattr(fs, op)(path, to)
        else:
            getattr(fs, op)(path)
        return 0
    except OSError as e:
        return -e.errno
