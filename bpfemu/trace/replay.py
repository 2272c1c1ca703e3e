"""Replay a trace onto a backend and report every difference.

For each record the replayer recreates the memory the call used: the attr and every buffer
the call read or wrote, with their recorded contents, at their recorded addresses, with the
recorded holes (unmapped) and read-only ranges. For the emulator that memory is a
``ReplayArena`` (an ArenaMemory: a simulated address space) given to ``Emulator(mem=...)``;
for the live kernel it is real pages of this process (hostmem.HostPages). The call then runs
with the attr's own address, on the recorded CPU (``emu.cpu``, or the process pinned with
sched_setaffinity), and its result, the attr afterwards and every written buffer are compared
with the record.

What cannot be identical between two runs is translated, and the comparison expects the
translated values:
- map fds: a recorded map fd becomes the fd the backend returned for the same MAP_CREATE,
  MAP_GET_FD_BY_ID or OBJ_GET; an fd that was closed when recorded becomes one that is closed
  here, one that was open but not a BPF object becomes an fd of /dev/null. Fd results are
  compared as "both succeeded".
- map ids (MAP_GET_NEXT_ID, MAP_GET_FD_BY_ID, bpf_map_info.id): recorded ids of maps the trace
  created become the ids the backend gave those maps; other ids are kept.
- pointers, on the live kernel only, when a record had to be relocated (see hostmem.py).
"""
import os
import struct
import sys
import time
from dataclasses import dataclass, field

from ..emulator import Emulator
from ..errors import BpfError
from ..host import HostKernel
from ..memory import ArenaMemory
from ..uapi.consts import BpfCmd as C
from . import decode
from .decode import (FD_RESULT_CMDS, FD_VALUE_MAPS, NESTED_IDS, NESTED_PTRS, OBJ_RESULT_CMDS,
                     PTR_FIELDS, hexbytes, render_call)

# fd kinds the trace made (map, BTF and program fds): translated to the replay's own fds.
OBJ_KINDS = frozenset({"map", "btf", "prog"})
from .format import Trace, TraceError, errno_name, record_result
from .unordered import UnorderedWalks, is_unordered

# An fd number that is never open (above any RLIMIT_NOFILE the kernel allows, below INT_MAX).
_now = time.perf_counter
CLOSED_FD = 0x7FFFFFF0
# A map id no map has (ids are handed out from 1 upwards and wrap only at INT_MAX).
NO_SUCH_ID = 0x7FFFFFFE
_EFAULT = 14


class ReplayArena(ArenaMemory):
    """An ArenaMemory holding one record's memory at a time, plus the read-only ranges the
    recorded process had: a write stops at the first byte it cannot write (read-only or
    unmapped), leaving the bytes before it written, as in a real process.
    """

    def __init__(self):
        super().__init__()
        self._ro: list[tuple[int, int]] = []
        self._runs: list[tuple[int, int, bytearray]] = []

    def load(self, segments, readonly) -> None:
        """Replace the contents by these (addr, bytes) segments (merged where they overlap
        or touch) and these read-only (start, end) ranges."""
        runs = []
        for a, data in sorted(segments, key=lambda s: s[0]):
            end = a + len(data)
            if runs and a <= runs[-1][1]:
                s0, e0, buf = runs[-1]
                if end > e0:
                    buf.extend(bytes(end - e0))
                    e0 = end
                buf[a - s0:end - s0] = data
                runs[-1] = (s0, e0, buf)
            else:
                runs.append((a, end, bytearray(data)))
        self._runs = runs
        self._regions = {s: buf for s, _, buf in runs}
        self._ro = list(readonly)

    def _find(self, addr: int, n: int):
        for s, e, buf in self._runs:
            if s <= addr and addr + n <= e:
                return buf, addr - s
        raise BpfError(_EFAULT)

    def read(self, addr: int, n: int) -> bytes:
        if n == 0:
            return b""
        buf, off = self._find(addr, n)
        return bytes(buf[off:off + n])

    def write(self, addr: int, data) -> None:
        """Like a real process's memory (and ProcessMemory's process_vm_writev): the bytes up
        to the first one that cannot be written are written, then EFAULT."""
        n = len(data)
        if n == 0:
            return
        for s, e, buf in self._runs:
            if s <= addr < e:
                break
        else:
            raise BpfError(_EFAULT)
        end = min(e, addr + n)
        for rs, re_ in self._ro:
            if rs < end and addr < re_:
                end = max(min(end, rs), addr)
        buf[addr - s:end - s] = data[:end - addr]
        if end < addr + n:
            raise BpfError(_EFAULT)

    def map(self, addr, data_or_size):
        addr = super().map(addr, data_or_size)
        self._runs.append((addr, addr + len(self._regions[addr]), self._regions[addr]))
        return addr


# --- one record's memory, as a working copy -------------------------------------------------

class _Buf:
    __slots__ = ("field", "addr", "before", "after", "unmapped", "readonly", "fds")

    def __init__(self, field, addr, before, after, unmapped, readonly, fds=()):
        self.field, self.addr = field, addr
        self.before, self.after = before, after
        self.unmapped, self.readonly = unmapped, readonly
        self.fds = fds          # fds carried inside the bytes: [{"off", "fd", "kind"}]

    def mapped_parts(self):
        """(offset, length) runs of the buffer that are mapped (all within ``before``)."""
        n = len(self.before)
        if not self.unmapped:
            return [(0, n)] if n else []
        out, pos = [], 0
        for o, l in sorted(self.unmapped):
            if o >= n:
                break
            if o > pos:
                out.append((pos, o - pos))
            pos = max(pos, o + l)
        if pos < n:
            out.append((pos, n - pos))
        return out


def _work(rec):
    """The record's attr and buffers as mutable copies (attr first)."""
    a = rec["attr"]
    attr = _Buf("attr", int(a["addr"], 16), bytearray.fromhex(a["before"]),
                bytearray.fromhex(a["after"]), a.get("unmapped", ()), a.get("readonly", ()))
    bufs = {}
    for b in rec.get("read", ()):
        key = (b["field"], b["addr"])
        bufs[key] = _Buf(b["field"], int(b["addr"], 16), bytearray.fromhex(b["bytes"]), None,
                         b.get("unmapped", ()), b.get("readonly", ()), b.get("fds", ()))
    for b in rec.get("written", ()):
        key = (b["field"], b["addr"])
        prev = bufs.get(key)
        w = _Buf(b["field"], int(b["addr"], 16), bytearray.fromhex(b["before"]),
                 bytearray.fromhex(b["after"]), b.get("unmapped", ()), b.get("readonly", ()))
        if prev is not None and len(prev.before) > len(w.before):
            # info: read info_len bytes, written min(info_len, 104): keep the longer before.
            w.before = prev.before
            w.after = w.after + prev.before[len(w.after):]
            w.unmapped = prev.unmapped or w.unmapped
        bufs[key] = w
    return attr, list(bufs.values())


def _patch_u32(buf: bytearray, off: int, value: int):
    if buf is not None and off + 4 <= len(buf):
        struct.pack_into("<I", buf, off, value & 0xFFFFFFFF)


def _get_u32(buf, off):
    return struct.unpack_from("<I", buf, off)[0] if off + 4 <= len(buf) else None


def _segments(items):
    segs, ro, holes = [], [], []
    for b in items:
        for o, l in b.mapped_parts():
            segs.append((b.addr + o, bytes(b.before[o:o + l])))
        for o, l in b.unmapped:
            holes.append((b.addr + o, b.addr + o + l))
        for o, l in b.readonly:
            ro.append((b.addr + o, b.addr + o + l))
    return segs, ro, holes


# --- targets: where the calls go -------------------------------------------------------------

class EmulatorTarget:
    name = "emulator"

    def __init__(self, emu: Emulator, header):
        if emu.nr_cpus != header.possible_cpus:
            raise TraceError(None, None, f"the trace was recorded with {header.possible_cpus} "
                             f"possible CPUs, the emulator has {emu.nr_cpus}")
        self.emu = emu
        self.mem = ReplayArena()
        emu.mem = self.mem

    def plan(self, items):
        return None

    def fill(self, items):
        segs, ro, _holes = _segments(items)
        self.mem.load(segs, ro)

    def read(self, addr, n):
        return self.mem.read(addr, n)

    def bpf(self, cmd, attr_addr, size):
        return self.emu.bpf(cmd, attr_addr, size)

    def close(self, fd):
        return self.emu.close(fd)

    def fs(self, op, path, mode, to=None):
        from .caller import fs_op
        return fs_op(self.emu, op, path, mode, to)

    def needs_bpffs(self):
        pass

    def set_cpu(self, cpu):
        if cpu is not None and cpu != self.emu.cpu and 0 <= cpu < self.emu.nr_cpus:
            self.emu.cpu = cpu

    def map_id(self, fd):
        try:
            return self.emu.map_of(fd).id
        except KeyError:
            return None

    def map_keys(self, fd) -> set:
        """Every key of the map behind fd now, out of band (its own get_next_key op)."""
        m = self.emu.map_of(fd)
        keys, key = set(), None
        while True:
            try:
                key = bytes(m.ops.map_get_next_key(m, key))
            except BpfError:
                return keys
            if key in keys:             # a walk never repeats itself; do not loop
                return keys
            keys.add(key)

    def map_items(self, fd) -> dict:
        """{key: value} of the map behind fd now, out of band (its syscall lookup op)."""
        m = self.emu.map_of(fd)
        out = {}
        for k in self.map_keys(fd):
            try:
                value = m.ops.map_lookup_elem_sys(m, k)
            except BpfError:
                continue
            if value is not None:
                out[k] = bytes(value)
        return out

    def reconcile(self, fd, deletes, updates) -> None:
        """Delete these keys and store these {key: value}s (syscall layout), out of band."""
        m = self.emu.map_of(fd)
        for k in deletes:
            m.ops.map_delete_elem(m, k)
        for k, v in updates.items():
            m.ops.map_update_elem_sys(m, k, v, 0)
    def obj_id(self, fd, kind):
        f = self.emu.fds.others.get(fd)
        return f.obj.id if f is not None else None

    def finish(self):
        self.emu.close_all()


class HostTarget:
    """Any backend that reads real addresses of this process (HostKernel by default)."""
    name = "kernel"

    def __init__(self, backend, header):
        from ..profile import host_possible_cpus
        from .hostmem import HostPages
        self.backend = backend
        self.pages = HostPages()
        self.ncpu = host_possible_cpus()
        if header.possible_cpus != self.ncpu:
            raise TraceError(None, None, f"the trace was recorded with {header.possible_cpus} "
                             f"possible CPUs, this machine has {self.ncpu}")
        self.saved_affinity = os.sched_getaffinity(0)
        self.cpu = None
        self.mounted = None
        self.subpage_holes = 0
        self.bpffs_root = header.extra.get("bpffs_root")

    def needs_bpffs(self):
        """Before the first pin, get or fs record: a bpffs where the trace pinned."""
        if self.bpffs_root:
            self.mounted = ensure_bpffs(self.bpffs_root)
            self.bpffs_root = None

    def plan(self, items):
        segs, _ro, holes = _segments(items)
        ends = {a + len(d) for a, d in segs}
        # Real memory faults a page at a time: a hole that begins inside a page the record
        # also needs (a trace made on an ArenaMemory) cannot be reproduced exactly.
        self.subpage_holes += sum(1 for s, _ in holes if s % 4096 and s in ends)
        return self.pages.plan([(a, len(d)) for a, d in segs], holes)

    def fill(self, items):
        segs, ro, _holes = _segments(items)
        self.pages.fill(segs, ro)

    def read(self, addr, n):
        return self.pages.read(addr, n)

    def bpf(self, cmd, attr_addr, size):
        return self.backend.bpf(cmd, attr_addr, size)

    def close(self, fd):
        return self.backend.close(fd)

    def fs(self, op, path, mode, to=None):
        from .caller import fs_op
        return fs_op(self.backend, op, path, mode, to)

    def set_cpu(self, cpu):
        if cpu is None or cpu == self.cpu:
            return
        try:
            os.sched_setaffinity(0, {cpu})
            self.cpu = cpu
        except OSError:
            pass

    def map_id(self, fd):
        from .recorder import backend_map_meta
        m = backend_map_meta(self.backend, fd)
        return m.id if m is not None else None

    def map_keys(self, fd) -> set:
        """Every key of the map behind fd now: a GET_NEXT_KEY walk in buffers of our own."""
        import ctypes
        from .recorder import backend_map_meta
        m = backend_map_meta(self.backend, fd)
        n = m.key_size if m is not None else 0
        key, nxt = ctypes.create_string_buffer(max(n, 1)), ctypes.create_string_buffer(max(n, 1))
        attr = ctypes.create_string_buffer(24)
        keys, first = set(), True
        while m is not None:
            struct.pack_into("<IIQQ", attr, 0, fd, 0, 0 if first else ctypes.addressof(key),
                             ctypes.addressof(nxt))
            if self.backend.bpf(C.BPF_MAP_GET_NEXT_KEY, attr, 24) != 0 or nxt.raw[:n] in keys:
                break
            keys.add(nxt.raw[:n])
            key.raw, first = nxt.raw, False
        return keys

    def map_items(self, fd) -> dict:
        """{key: value} of the map behind fd now: LOOKUP_ELEM in buffers of our own."""
        import ctypes
        from ..profile import host_possible_cpus
        from .recorder import backend_map_meta
        m = backend_map_meta(self.backend, fd)
        if m is None:
            return {}
        vs = m.value_size_sys(host_possible_cpus())
        key, value = ctypes.create_string_buffer(max(m.key_size, 1)), ctypes.create_string_buffer(vs)
        attr = ctypes.create_string_buffer(32)
        out = {}
        for k in self.map_keys(fd):
            key.raw = k
            struct.pack_into("<IIQQQ", attr, 0, fd, 0, ctypes.addressof(key),
                             ctypes.addressof(value), 0)
            if self.backend.bpf(C.BPF_MAP_LOOKUP_ELEM, attr, 32) == 0:
                out[k] = value.raw[:vs]
        return out

    def reconcile(self, fd, deletes, updates) -> None:
        """Delete these keys and store these {key: value}s: DELETE/UPDATE_ELEM calls."""
        import ctypes
        attr = ctypes.create_string_buffer(32)
        for k in deletes:
            key = ctypes.create_string_buffer(k, len(k))
            struct.pack_into("<IIQQQ", attr, 0, fd, 0, ctypes.addressof(key), 0, 0)
            self.backend.bpf(C.BPF_MAP_DELETE_ELEM, attr, 32)
        for k, v in updates.items():
            key, value = ctypes.create_string_buffer(k, len(k)), ctypes.create_string_buffer(v, len(v))
            struct.pack_into("<IIQQQ", attr, 0, fd, 0, ctypes.addressof(key),
                             ctypes.addressof(value), 0)
            self.backend.bpf(C.BPF_MAP_UPDATE_ELEM, attr, 32)
    def obj_id(self, fd, kind):
        from .recorder import backend_obj_id
        return backend_obj_id(self.backend, fd, kind)

    def finish(self):
        self.pages.release()
        if self.mounted:
            unmount_bpffs(*self.mounted)
        try:
            os.sched_setaffinity(0, self.saved_affinity)
        except OSError:
            pass


# --- results ---------------------------------------------------------------------------------

def _first_diff(a: bytes, b: bytes) -> int:
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return i
    return min(len(a), len(b))


@dataclass
class Difference:
    path: str
    record: int                 # record number in the file (the header is line 1)
    seq: int
    call: str                   # the recorded call, rendered
    replayed: str               # what the backend answered, rendered
    items: list = field(default_factory=list)   # (what, expected, actual) strings

    def __str__(self) -> str:
        lines = [f"{self.path}: record {self.record} (seq {self.seq}): {self.call}",
                 f"    replayed: = {self.replayed}"]
        for what, exp, act in self.items:
            lines.append(f"    {what}:")
            lines.append(f"        expected {exp}")
            lines.append(f"        actual   {act}")
        return "\n".join(lines)


def _bytes_item(what, addr, exp: bytes, act: bytes):
    i = _first_diff(exp, act)
    lo = max(0, i - 8) & ~7
    hi = lo + 32
    where = f"{what} @{addr:#x}, {len(exp)} bytes, first difference at byte {i}"
    if lo or len(exp) > hi:
        where += f" (bytes {lo}..{min(hi, len(exp)) - 1} shown)"
    return (where, hexbytes(exp[lo:hi], None), hexbytes(act[lo:hi], None))


@dataclass
class ReplayReport:
    path: str
    backend: str
    records: int = 0
    bpf_calls: int = 0
    closes: int = 0
    fs_ops: int = 0
    differing: int = 0                          # records with at least one difference
    differences: list = field(default_factory=list)   # the first max_diffs Difference objects
    warnings: list = field(default_factory=list)
    relocated: int = 0
    truncated: bool = False                     # the trace ends early: later calls not checked
    relaxed: list = field(default_factory=list)  # checks relaxed, and why (one line each)
    seconds: float = 0.0
    call_seconds: float = 0.0                   # of which inside the backend's bpf()

    @property
    def ok(self) -> bool:
        return self.differing == 0

    def summary(self) -> str:
        s = (f"{self.path}: {self.records} records ({self.bpf_calls} bpf, {self.closes} close) "
             f"replayed on the {self.backend}: "
             + ("no differences" if self.ok else f"{self.differing} differ"))
        if self.relocated:
            s += f"; {self.relocated} relocated"
        if self.truncated:
            s += "; INCOMPLETE: the trace ends early"
        return s

    def relaxed_notes(self) -> list:
        return [f"{self.path}: {note}" for note in self.relaxed]


# --- the replayer ----------------------------------------------------------------------------

class Replayer:
    def __init__(self, target, path: str):
        self.t = target
        self.path = path
        self.fd_map: dict[int, int] = {}        # recorded map fd -> backend fd
        self.fd_type: dict[int, int] = {}       # recorded map fd -> map type
        self.id_map: dict[int, int] = {}        # recorded map id -> backend map id
        self.prog_id_map: dict[int, int] = {}   # recorded program id -> backend program id
        self._devnull = None
        self.call_seconds = 0.0                 # time inside the backend's bpf()
        self.fd_meta: dict[int, dict] = {}      # recorded map fd -> its recorded "map"
        self.unordered = UnorderedWalks(target.map_keys, target.map_items)

    # fds -------------------------------------------------------------------------------
    def _file_fd(self) -> int:
        if self._devnull is None:
            self._devnull = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        return self._devnull

    @staticmethod
    def _key(fd: int, token=None):
        """What names a recorded open file: its file token when the trace has one (a trace
        of a process tree, where fd numbers are per process and dup()/fork()/SCM_RIGHTS
        give one file many numbers), else its fd number."""
        return fd if token is None else ("file", token)

    def translate_fd(self, fd: int, kind: str, token=None) -> int:
        if kind in OBJ_KINDS:
            key = self._key(fd, token)
            if key in self.fd_map:
                return self.fd_map[key]
            return CLOSED_FD
        if kind == "closed":
            if fd > 0x7FFFFFFF:
                return fd               # negative as an int: never open
            from .recorder import fd_is_open
            return CLOSED_FD if fd_is_open(fd) else fd
        if kind == "file":
            from .recorder import fd_is_open
            if fd_is_open(fd) and fd not in self.fd_map.values() and self.t.map_id(fd) is None:
                return fd
            return self._file_fd()
        return fd

    # map ids ---------------------------------------------------------------------------
    def translate_id(self, i: int) -> int:
        """An id given to MAP_GET_FD_BY_ID: ours are translated; 0 and ids >= INT_MAX are
        kept (their errors do not depend on the live maps); any other id was not one of the
        trace's maps, so it becomes one that no map has here either."""
        if i in self.id_map:
            return self.id_map[i]
        if i == 0 or i >= 0x7FFFFFFF:
            return i
        return NO_SUCH_ID

    def translate_start_id(self, i: int) -> int:
        """A MAP_GET_NEXT_ID start: order-preserving against the trace's own ids, so "the
        next live id after it" names the same map (or none) on the backend."""
        if i in self.id_map or i >= 0x7FFFFFFF or not self.id_map:
            return self.id_map.get(i, i)
        below = [r for r in self.id_map if r < i]
        if below:
            return self.id_map[max(below)]
        return max(self.id_map[min(self.id_map)] - 1, 0)

    # one record ------------------------------------------------------------------------
    def run_bpf(self, n: int, rec: dict):
        cmd, size = rec["cmd"], rec["size"]
        attr, bufs = _work(rec)
        exp_after = attr.after
        for f in rec.get("fds", ()):
            new = self.translate_fd(f["fd"], f["kind"], f.get("file"))
            if new != f["fd"]:
                _patch_u32(attr.before, f["off"], new)
                _patch_u32(exp_after, f["off"], new)
        ok = rec["errno"] is None
        if cmd == C.BPF_MAP_GET_NEXT_ID:
            v = _get_u32(attr.before, 0)
            if v is not None:
                new = self.translate_start_id(v)
                _patch_u32(attr.before, 0, new)
                _patch_u32(exp_after, 0, new)
            v = _get_u32(exp_after, 4)
            if ok and v in self.id_map:
                _patch_u32(exp_after, 4, self.id_map[v])
        elif cmd == C.BPF_MAP_GET_FD_BY_ID:
            v = _get_u32(attr.before, 0)
            if v is not None:
                new = self.translate_id(v)
                _patch_u32(attr.before, 0, new)
                _patch_u32(exp_after, 0, new)
        for b in bufs:
            for f in b.fds:                     # map fds in instructions, fds as map values
                _patch_u32(b.before, f["off"], self.translate_fd(f["fd"], f["kind"],
                                                                 f.get("file")))
        kind = FD_VALUE_MAPS.get(rec.get("map_type"))
        if ok and kind is not None and cmd == C.BPF_MAP_LOOKUP_ELEM:
            ids = self.id_map if kind == "map" else self.prog_id_map
            for b in bufs:                      # the value a fd map gives out is an id
                v = _get_u32(b.after, 0) if b.field == "value" and b.after is not None else None
                if v in ids:
                    _patch_u32(b.after, 0, ids[v])
        if ok:
            for b in bufs:
                for off in NESTED_IDS.get(b.field, ()):
                    v = _get_u32(b.after, off) if b.after is not None else None
                    if v in self.id_map:
                        _patch_u32(b.after, off, self.id_map[v])

        if cmd in (C.BPF_OBJ_PIN, C.BPF_OBJ_GET):
            self.t.needs_bpffs()
        rfd = self._map_fd(rec)
        unordered = rfd in self.fd_map and is_unordered(self.fd_meta.get(rfd))
        if unordered and cmd == C.BPF_MAP_LOOKUP_AND_DELETE_BATCH:
            before_batch = self.unordered.snapshot(self.fd_map[rfd])
        reloc = self.t.plan([attr] + bufs)
        if reloc is not None:
            self._relocate(cmd, attr, bufs, reloc)
        self.t.fill([attr] + bufs)
        self.t.set_cpu(rec.get("cpu"))
        t0 = _now()
        ret = self.t.bpf(cmd, attr.addr, size)
        self.call_seconds += _now() - t0

        items = []
        expected = record_result(rec)
        if (cmd in FD_RESULT_CMDS or cmd in OBJ_RESULT_CMDS) and expected >= 0 and ret >= 0:
            self._learn(rec, ret)
        elif ret != expected:
            items.append(("return value", decode.render_result(*_res(expected)),
                          decode.render_result(*_res(ret))))
            if (cmd in FD_RESULT_CMDS or cmd in OBJ_RESULT_CMDS) and ret >= 0:
                self.t.close(ret)           # a map the trace does not have: do not keep it
        if len(attr.before):
            act = self._read_back(attr)
            if act != bytes(exp_after[:len(act)]) or len(act) != len(exp_after):
                items.append(_bytes_item("attr after the call", attr.addr, bytes(exp_after), act))
        for b in bufs:
            if b.after is None:
                continue
            act = self._read_back(b)
            if act != bytes(b.after):
                items.append(_bytes_item(b.field, b.addr, bytes(b.after), act))
        if unordered and cmd == C.BPF_MAP_GET_NEXT_KEY:
            items = self.unordered.step(rec, rfd, self.fd_map[rfd], expected, ret, items)
        elif unordered and cmd == C.BPF_MAP_LOOKUP_BATCH:
            items = self.unordered.batch(rec, rfd, self.fd_map[rfd],
                                         self.fd_meta[rfd]["key_size"], expected, ret, items)
        elif unordered and cmd == C.BPF_MAP_LOOKUP_AND_DELETE_BATCH:
            bfd = self.fd_map[rfd]
            self.unordered.walks_disturbed()
            items = self.unordered.batch(
                rec, rfd, bfd, self.fd_meta[rfd]["key_size"], expected, ret, items,
                contents_before=before_batch, reconcile=lambda dels, ups: self.t.reconcile(bfd, dels, ups))
        else:
            self.unordered.other_call(cmd)
        if not items:
            return None
        return Difference(self.path, n, rec.get("seq", n - 1), render_call(rec),
                          decode.render_result(*_res(ret)), items)

    @classmethod
    def _map_fd(cls, rec):
        """The recorded map file the call is about (its key: see _key)."""
        for f in rec.get("fds", ()):
            if f.get("field") == "map_fd" and f.get("kind") == "map":
                return cls._key(f["fd"], f.get("file"))
        return None

    def _read_back(self, b: _Buf) -> bytes:
        out = bytearray(b.after if b.after is not None else b.before)
        for o, l in b.mapped_parts():
            out[o:o + l] = self.t.read(b.addr + o, l)
        return bytes(out)

    def _relocate(self, cmd, attr, bufs, reloc):
        for name, off in PTR_FIELDS.get(cmd, ()):
            for buf in (attr.before, attr.after):
                if off + 8 <= len(buf):
                    p = struct.unpack_from("<Q", buf, off)[0]
                    if p:
                        struct.pack_into("<Q", buf, off, reloc(p))
        for b in bufs:
            for name, off in NESTED_PTRS.get(b.field, ()):
                for buf in (b.before, b.after):
                    if buf is not None and off + 8 <= len(buf):
                        p = struct.unpack_from("<Q", buf, off)[0]
                        if p:
                            struct.pack_into("<Q", buf, off, reloc(p))
        for b in [attr] + bufs:
            b.addr = reloc(b.addr)

    def _learn(self, rec, fd):
        rfd = self._key(rec["ret"], rec.get("file"))
        self.fd_map[rfd] = fd
        obj = rec.get("obj")
        if obj is not None and obj.get("kind") == "prog" and obj.get("id"):
            bid = self.t.obj_id(fd, "prog")
            if bid is not None:
                self.prog_id_map[obj["id"]] = bid
        m = rec.get("map")
        if m is not None:
            self.fd_meta[rfd] = m
            self.fd_type[rfd] = m.get("type")
            rid = m.get("id")
            if rid:
                bid = self.t.map_id(fd)
                if bid is not None:
                    self.id_map[rid] = bid

    def run_close(self, n: int, rec: dict):
        self.unordered.other_call(None)
        fd, kind, token = rec["fd"], rec.get("kind", "map"), rec.get("file")
        self.t.set_cpu(rec.get("cpu"))
        ret = self.t.close(self.translate_fd(fd, kind, token))
        expected = record_result(rec)
        if ret == 0 and kind in OBJ_KINDS:
            self.fd_map.pop(self._key(fd, token), None)
        if ret != expected:
            return Difference(self.path, n, rec.get("seq", n - 1), render_call(rec),
                              decode.render_result(*_res(ret)),
                              [("return value", decode.render_result(*_res(expected)),
                                decode.render_result(*_res(ret)))])
        return None

    def run_fs(self, n: int, rec: dict):
        self.t.needs_bpffs()
        ret = self.t.fs(rec["op"], rec["path"], rec.get("mode", 0o700), rec.get("to"))
        expected = record_result(rec)
        if ret != expected:
            return Difference(self.path, n, rec.get("seq", n - 1), render_call(rec),
                              decode.render_result(*_res(ret)),
                              [("return value", decode.render_result(*_res(expected)),
                                decode.render_result(*_res(ret)))])
        return None

    def finish(self):
        if isinstance(self.t, HostTarget):
            for fd in self.fd_map.values():     # maps the trace left open: not ours to keep
                self.t.close(fd)
            self.fd_map.clear()
        if self._devnull is not None:
            os.close(self._devnull)
            self._devnull = None


def _res(ret: int):
    return (-1, errno_name(-ret)) if ret < 0 else (ret, None)


def is_bpffs(path: str) -> bool:
    path = os.path.realpath(path)
    try:
        with open("/proc/self/mounts") as f:
            return any(line.split()[1] == path and line.split()[2] == "bpf" for line in f)
    except OSError:
        return False


def ensure_bpffs(root: str):
    """Mount a bpffs at root for a replay onto the kernel unless one is there already.
    Returns (root, created the directory?) when it mounted one, else None."""
    import ctypes
    if is_bpffs(root):
        return None
    created = False
    if not os.path.isdir(root):
        os.makedirs(root, exist_ok=True)
        created = True
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"bpf", os.fsencode(root), b"bpf", 0, None) != 0:
        err = ctypes.get_errno()
        if created:
            os.rmdir(root)
        raise TraceError(None, None, f"the trace pins under {root}, which is not a bpffs, and "
                         f"mounting one there failed: {os.strerror(err)}")
    return root, created


def unmount_bpffs(root: str, created: bool) -> None:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.umount2(os.fsencode(root), 2)      # MNT_DETACH
    if created:
        try:
            os.rmdir(root)
        except OSError:
            pass


def trace_profile(header) -> str | None:
    """The profile of the kernel a trace was recorded on ("6.1.0-57-amd64" -> "6.1", an
    emulator's "bpfemu-emulator (Linux 6.12 profile)" -> "6.12"), or None if bpfemu has none."""
    import re
    from ..profile import profile_name_for_release
    m = re.search(r"Linux (\d+\.\d+) profile", header.kernel_release)
    return profile_name_for_release(m.group(1) if m else header.kernel_release)


def new_emulator(header, profile=None, **kw) -> Emulator:
    """The Emulator a trace replays onto: its CPUs, seed 0, its bpffs root, and the profile of
    the kernel it was recorded on unless another is asked for (None: the trace's kernel's,
    else the default profile)."""
    kw["profile"] = profile or trace_profile(header)
    root = header.extra.get("bpffs_root")
    if root:
        try:
            return Emulator(nr_cpus=header.possible_cpus, seed=0, bpffs_root=root, **kw)
        except TypeError:
            pass
    return Emulator(nr_cpus=header.possible_cpus, seed=0, **kw)


def make_target(backend, header, profile=None):
    if backend is None or backend == "emulator":
        return EmulatorTarget(new_emulator(header, profile), header)
    if backend == "kernel":
        return HostTarget(HostKernel(), header)
    if isinstance(backend, Emulator):
        return EmulatorTarget(backend, header)
    return HostTarget(backend, header)


def replay(trace, backend="emulator", *, max_diffs: int | None = 50, progress=None,
           on_record=None, profile=None) -> ReplayReport:
    """Replay ``trace`` (a path or an open Trace) onto ``backend``: "emulator" (a fresh
    Emulator(mem=ReplayArena(), nr_cpus from the header, seed=0, on ``profile``, by default the
    profile of the kernel the trace was recorded on)), "kernel", an Emulator
    (its ``mem`` is replaced by a ReplayArena), or any backend that reads real memory.

    ``on_record(rec, difference_or_None)`` is called after every record; ``progress(done,
    fraction)`` every 1000 records. Raises TraceError on bad input.
    """
    t = trace if isinstance(trace, Trace) else Trace(trace)
    try:
        target = make_target(backend, t.header, profile)
    except TraceError as e:
        raise TraceError(t.path, None, e.message) from None
    rep = ReplayReport(path=t.path, backend=target.name)
    r = Replayer(target, t.path)
    start = time.perf_counter()
    n = None
    try:
        for n, rec in t.records():
            rep.records += 1
            try:
                if rec["call"] == "bpf":
                    rep.bpf_calls += 1
                    diff = r.run_bpf(n, rec)
                elif rec["call"] == "close":
                    rep.closes += 1
                    diff = r.run_close(n, rec)
                else:
                    rep.fs_ops += 1
                    diff = r.run_fs(n, rec)
            except TraceError as e:
                raise TraceError(t.path, n, e.message) from None
            except (KeyError, ValueError, TypeError) as e:
                raise TraceError(t.path, n, f"malformed record ({type(e).__name__}: {e})") from None
            if diff is not None:
                rep.differing += 1
                if max_diffs is None or len(rep.differences) < max_diffs:
                    rep.differences.append(diff)
            if on_record is not None:
                on_record(rec, diff, r)
            if progress is not None and rep.records % 1000 == 0:
                progress(rep.records, t.progress())
    finally:
        rep.seconds = time.perf_counter() - start
        rep.call_seconds = r.call_seconds
        rep.relaxed = r.unordered.notes()
        r.finish()
        target.finish()
        if isinstance(target, HostTarget):
            rep.relocated = target.pages.relocated
            if target.subpage_holes:
                rep.warnings.append(
                    f"{t.path}: {target.subpage_holes} buffers end in a fault inside a page "
                    "(recorded on a simulated address space); real memory faults only at page "
                    "boundaries, so those calls may read or write further on the kernel")
    rep.warnings.extend(t.warnings)
    rep.truncated = not t.ended
    return rep


def print_progress_factory(stream=sys.stderr, label=""):
    """A progress callback that redraws one line on a terminal (and prints nothing elsewhere)."""
    if not stream.isatty():
        return None

    def progress(done, fraction):
        pct = f" {fraction * 100:5.1f}%" if fraction is not None else ""
        stream.write(f"\r{label} {done} records{pct}")
        stream.flush()
    return progress
