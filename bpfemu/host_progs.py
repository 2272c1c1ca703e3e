"""HostDataPlane: the program side of maps on the live kernel, by running real BPF programs.

The twin of ``bpfemu.progs.DataPlane`` for differential tests: the same methods, but each call
runs a tiny hand-assembled BPF program that calls the real helper on the real map.

Programs are ``BPF_PROG_TYPE_SYSCALL`` programs, run with ``BPF_PROG_TEST_RUN``. That type was
chosen because it needs no packet and no attachment, and because its context is a plain buffer
that the kernel copies in before the run *and back out after it*
(bpf_prog_test_run_syscall()): the key, the value, the flags and the CPU go in through the
context, and the helper's return value, the found flag and the value read come back through it.
One program per (operation, map) therefore serves every key. On 6.18 SYSCALL programs must be
loaded with BPF_F_SLEEPABLE; the helpers behave the same (the map helpers run under RCU either
way), and the LRU lookup still marks the element.

A test run executes on the CPU the calling thread runs on (migration is disabled for the run),
so the program side follows ``os.sched_setaffinity`` exactly like the syscall side does. Pin
the process to one CPU to make per-CPU slots and LRU lists deterministic.

The context layout every program uses::

    0   s64  result: the helper's return value (update, delete) or 1/0 for found/not found
    8   u64  argument: update flags, or the fetch-add delta
    16  u64  the old value fetched by fetch_add
    24  u32  cpu for lookup_percpu_elem
    32  key  (key_size rounded up to 8)
    ..  value (value_size rounded up to 8): in for update and writes, out for lookups

The key and an update's value are copied from the context to the stack before the call, since
helpers want stack (or map value) pointers; that limits key + value to the 512-byte BPF stack.
"""
import ctypes
import os
import struct

from .errors import BpfError
from .host import HostKernel
from .profile import host_possible_cpus
from .progs import check_atomic, typed_view
from .uapi.consts import BpfCmd as C
from .uapi.consts import BpfMapType as T

__all__ = ["HostDataPlane", "HostValueView"]

BPF_PROG_TYPE_SYSCALL = 31
BPF_F_SLEEPABLE = 1 << 4
BPF_PSEUDO_MAP_FD = 1
MAX_BPF_STACK = 512

# enum bpf_func_id
BPF_FUNC_map_lookup_elem = 1
BPF_FUNC_map_update_elem = 2
BPF_FUNC_map_delete_elem = 3
BPF_FUNC_map_lookup_percpu_elem = 195

# Opcodes (class | mode/op | size), as in include/uapi/linux/bpf.h
_LD_IMM64 = 0x18            # BPF_LD | BPF_IMM | BPF_DW
_MOV64_X = 0xBF             # BPF_ALU64 | BPF_MOV | BPF_X
_MOV64_K = 0xB7             # BPF_ALU64 | BPF_MOV | BPF_K
_ADD64_K = 0x07             # BPF_ALU64 | BPF_ADD | BPF_K
_JEQ_K = 0x15               # BPF_JMP | BPF_JEQ | BPF_K
_CALL = 0x85                # BPF_JMP | BPF_CALL
_EXIT = 0x95                # BPF_JMP | BPF_EXIT
_LDX = {8: 0x79, 4: 0x61, 2: 0x69, 1: 0x71}     # BPF_LDX | BPF_MEM | size
_STX = {8: 0x7B, 4: 0x63, 2: 0x6B, 1: 0x73}     # BPF_STX | BPF_MEM | size
_ATOMIC = {8: 0xDB, 4: 0xC3}                    # BPF_STX | BPF_ATOMIC | size
_BPF_ADD_FETCH = 0x01                           # imm: BPF_ADD | BPF_FETCH

R0, R1, R2, R3, R4, R6, R10 = 0, 1, 2, 3, 4, 6, 10

CTX_RET, CTX_ARG, CTX_OLD, CTX_CPU, CTX_KEY = 0, 8, 16, 24, 32

_PERCPU_TYPES = (T.BPF_MAP_TYPE_PERCPU_HASH, T.BPF_MAP_TYPE_LRU_PERCPU_HASH,
                 T.BPF_MAP_TYPE_PERCPU_ARRAY, T.BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE)

_libc = ctypes.CDLL(None, use_errno=True)


def current_cpu() -> int:
    """sched_getcpu(): the CPU this thread is running on now."""
    return _libc.sched_getcpu()


def _round8(n: int) -> int:
    return (n + 7) & ~7


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | (src << 4), off, imm)


def _ld_map_fd(reg: int, fd: int) -> bytes:
    return _insn(_LD_IMM64, reg, BPF_PSEUDO_MAP_FD, 0, fd) + _insn(0)


def _copy(dst: int, doff: int, src: int, soff: int, n: int) -> list:
    """Copy n bytes with loads and stores through r1, widest chunks first."""
    out, i = [], 0
    for size in (8, 4, 2, 1):
        while n - i >= size:
            out.append(_insn(_LDX[size], R1, src, soff + i))
            out.append(_insn(_STX[size], dst, R1, doff + i))
            i += size
    return out


class _MapInfo:
    __slots__ = ("type", "id", "key_size", "value_size", "max_entries", "map_flags",
                 "key8", "value8", "percpu")


class HostValueView:
    """What ``HostDataPlane.lookup_elem`` returns: the element's value on the CPU the lookup
    ran on (``cpu``), read through the syscall (which never marks LRU elements), and
    writable through programs.

    Differences from the emulator's live memoryview, inherent in going through the kernel:
    reading after the element was deleted gives the last bytes read (a kernel pointer would
    see the freed or reused element), and each write or fetch_add runs a fresh program
    lookup, which marks an LRU element again (equivalent unless the element's LRU node was
    moved to another list in between, which clears the mark).
    """

    def __init__(self, dp, fd: int, key: bytes, cpu: int, data: bytes, percpu_cpu=None):
        self._dp = dp
        self.fd = fd
        self.key = key
        self.cpu = cpu                  # the CPU the program ran on
        self.percpu_cpu = percpu_cpu    # the slot asked for by lookup_percpu_elem, or None
        self._data = data

    def __len__(self) -> int:
        return len(self._data)

    def tobytes(self) -> bytes:
        data = self._dp._read_slot(self)
        if data is not None:
            self._data = data
        return self._data

    __bytes__ = tobytes

    def __getitem__(self, i):
        return self.tobytes()[i]

    def __setitem__(self, i, data) -> None:
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self._data))
            if step != 1:
                raise ValueError("only contiguous writes")
            data = bytes(data)
            if len(data) != stop - start:
                raise ValueError("a view cannot change size")
        else:
            start, data = i, bytes([data])
        self._dp._write(self, start, data)

    def __eq__(self, other) -> bool:
        return self.tobytes() == bytes(other)

    def __repr__(self) -> str:
        return f"HostValueView({self.tobytes().hex()})"


class HostDataPlane:
    """The program side of maps on the live kernel (same methods as progs.DataPlane)."""

    def __init__(self, host: HostKernel | None = None):
        self.host = host if host is not None else HostKernel()
        self._progs: dict[tuple, tuple] = {}     # (op, map id, extra) -> (prog fd, ctx buffer)
        self._info_buf = ctypes.create_string_buffer(80)
        self._info_attr = ctypes.create_string_buffer(16)
        self._run_attr = ctypes.create_string_buffer(80)
        self.log = ctypes.create_string_buffer(1 << 16)
        self.nr_cpus = host_possible_cpus()

    # -- plumbing ---------------------------------------------------------------------------

    def _info(self, fd: int) -> _MapInfo:
        """BPF_OBJ_GET_INFO_BY_FD: the map's id (programs are cached per map, not per fd)."""
        buf, attr = self._info_buf, self._info_attr
        ctypes.memset(buf, 0, 80)
        struct.pack_into("<IIQ", attr, 0, fd, 80, ctypes.addressof(buf))
        ret = self.host.bpf(C.BPF_OBJ_GET_INFO_BY_FD, attr, 16)
        if ret < 0:
            raise BpfError(-ret)
        info = _MapInfo()
        (info.type, info.id, info.key_size, info.value_size, info.max_entries,
         info.map_flags) = struct.unpack_from("<6I", buf, 0)
        info.key8 = _round8(info.key_size)
        info.value8 = _round8(info.value_size)
        info.percpu = info.type in _PERCPU_TYPES
        return info

    def _load(self, fd: int, body: list, name: bytes) -> int:
        code = b"".join(body)
        insns = ctypes.create_string_buffer(code, len(code))
        lic = ctypes.create_string_buffer(b"GPL")
        attr = ctypes.create_string_buffer(168)
        struct.pack_into("<IIQQIIQII16s", attr, 0, BPF_PROG_TYPE_SYSCALL, len(code) // 8,
                         ctypes.addressof(insns), ctypes.addressof(lic), 1, len(self.log),
                         ctypes.addressof(self.log), 0, BPF_F_SLEEPABLE, name)
        pfd = self.host.bpf(C.BPF_PROG_LOAD, attr, 168)
        if pfd < 0:
            raise BpfError(-pfd, f"BPF_PROG_LOAD: {os.strerror(-pfd)}: "
                                 f"{self.log.value.decode(errors='replace').strip()[-500:]}")
        return pfd

    def _prog(self, op: str, fd: int, info: _MapInfo, extra=None):
        """The program for op on this map, loaded on first use. Returns (prog fd, ctx)."""
        cache_key = (op, info.id, extra)
        entry = self._progs.get(cache_key)
        if entry is not None:
            return entry
        k8, v8 = info.key8, info.value8
        if k8 + (v8 if op == "update" else 0) > MAX_BPF_STACK:
            raise ValueError("key and value do not fit on the 512-byte BPF stack")
        val = CTX_KEY + k8
        body = [_insn(_MOV64_X, R6, R1)]
        body += _copy(R10, -k8, R6, CTX_KEY, k8)             # key -> stack
        if op == "update":
            body += _copy(R10, -k8 - v8, R6, val, v8)        # value (with padding) -> stack
        body.append(_ld_map_fd(R1, fd))
        body += [_insn(_MOV64_X, R2, R10), _insn(_ADD64_K, R2, 0, 0, -k8)]
        if op in ("update", "delete"):
            if op == "update":
                body += [_insn(_MOV64_X, R3, R10), _insn(_ADD64_K, R3, 0, 0, -k8 - v8),
                         _insn(_LDX[8], R4, R6, CTX_ARG),
                         _insn(_CALL, imm=BPF_FUNC_map_update_elem)]
            else:
                body.append(_insn(_CALL, imm=BPF_FUNC_map_delete_elem))
            body += [_insn(_STX[8], R6, R0, CTX_RET), _insn(_MOV64_K, R0), _insn(_EXIT)]
        else:
            percpu_lookup = extra is not None and extra[0] == "percpu"
            if percpu_lookup:
                body += [_insn(_LDX[4], R3, R6, CTX_CPU),
                         _insn(_CALL, imm=BPF_FUNC_map_lookup_percpu_elem)]
            else:
                body.append(_insn(_CALL, imm=BPF_FUNC_map_lookup_elem))
            if op == "lookup":
                found = _copy(R6, val, R0, 0, info.value_size)
            elif op == "write":
                offset, n = extra[1], extra[2]
                found = []
                # ctx loads must be aligned to their size: copy chunk by chunk from val + i.
                i = 0
                for size in (8, 4, 2, 1):
                    while n - i >= size:
                        found.append(_insn(_LDX[size], R1, R6, val + i))
                        found.append(_insn(_STX[size], R0, R1, offset + i))
                        i += size
            elif op == "fetch_add":
                offset, size = extra[1], extra[2]
                found = [_insn(_LDX[8], R1, R6, CTX_ARG),
                         _insn(_ATOMIC[size], R0, R1, offset, _BPF_ADD_FETCH),
                         _insn(_STX[8], R6, R1, CTX_OLD)]
            else:
                raise AssertionError(op)
            found += [_insn(_MOV64_K, R1, 0, 0, 1), _insn(_STX[8], R6, R1, CTX_RET),
                      _insn(_MOV64_K, R0), _insn(_EXIT)]
            body.append(_insn(_JEQ_K, R0, 0, len(found), 0))   # NULL: skip to 'not found'
            body += found
            body += [_insn(_MOV64_K, R1, 0, 0, 0), _insn(_STX[8], R6, R1, CTX_RET),
                     _insn(_MOV64_K, R0), _insn(_EXIT)]
        pfd = self._load(fd, body, b"bpfemu_" + op.encode()[:8])
        ctx = ctypes.create_string_buffer(CTX_KEY + k8 + v8)
        entry = (pfd, ctx)
        self._progs[cache_key] = entry
        return entry

    def _run(self, pfd: int, ctx) -> None:
        attr = self._run_attr
        ctypes.memset(attr, 0, 80)
        struct.pack_into("<I", attr, 0, pfd)
        struct.pack_into("<IIQ", attr, 40, len(ctx), 0, ctypes.addressof(ctx))
        ret = self.host.bpf(C.BPF_PROG_TEST_RUN, attr, 80)
        if ret < 0:
            raise BpfError(-ret, "BPF_PROG_TEST_RUN failed")

    @staticmethod
    def _key(info: _MapInfo, key) -> bytes:
        key = bytes(key)
        if len(key) < info.key_size:
            raise ValueError(f"key buffer has {len(key)} bytes, the map needs {info.key_size}")
        return key[:info.key_size]

    def _lookup(self, fd, key, percpu_cpu):
        info = self._info(fd)
        k = self._key(info, key)
        extra = None if percpu_cpu is None else ("percpu",)
        pfd, ctx = self._prog("lookup", fd, info, extra)
        ctypes.memset(ctx, 0, len(ctx))
        ctypes.memmove(ctypes.addressof(ctx) + CTX_KEY, k, len(k))
        if percpu_cpu is not None:
            struct.pack_into("<I", ctx, CTX_CPU, percpu_cpu & 0xFFFFFFFF)
        cpu = current_cpu()
        self._run(pfd, ctx)
        if not struct.unpack_from("<q", ctx, CTX_RET)[0]:
            return None
        val = CTX_KEY + info.key8
        data = ctx.raw[val:val + info.value_size]
        return HostValueView(self, fd, k, cpu, data, percpu_cpu)

    def _read_slot(self, view: HostValueView):
        """The view's bytes now, through the syscall lookup (it never marks LRU nodes)."""
        info = self._info(view.fd)
        buf_len = info.value8 * self.nr_cpus if info.percpu else info.value_size
        key = ctypes.create_string_buffer(view.key, len(view.key))
        val = ctypes.create_string_buffer(max(buf_len, 1))
        attr = ctypes.create_string_buffer(32)
        struct.pack_into("<IIQQQ", attr, 0, view.fd, 0, ctypes.addressof(key),
                         ctypes.addressof(val), 0)
        if self.host.bpf(C.BPF_MAP_LOOKUP_ELEM, attr, 32) != 0:
            return None
        if not info.percpu:
            return val.raw[:info.value_size]
        slot = view.cpu if view.percpu_cpu is None else view.percpu_cpu
        off = slot * info.value8
        return val.raw[off:off + info.value_size]

    def _write(self, view: HostValueView, offset: int, data: bytes) -> None:
        info = self._info(view.fd)
        if offset < 0 or offset + len(data) > info.value_size:
            raise ValueError("write past the value")
        self._check_cpu(view, info)
        self._run_on_elem(view, info, ("write", offset, len(data)), data=data)

    @staticmethod
    def _check_cpu(view: HostValueView, info: _MapInfo) -> None:
        """A view of "this CPU's slot" can only be written from that CPU."""
        if info.percpu and view.percpu_cpu is None:
            cpu = current_cpu()
            if cpu != view.cpu:
                raise RuntimeError(f"the view is CPU {view.cpu}'s slot; now on CPU {cpu}")

    def _run_on_elem(self, view, info, extra, *, data=b"", arg=0):
        """Run the write/fetch_add program for view's element; (found, old value)."""
        percpu = view.percpu_cpu is not None
        op = extra[0]
        pfd, ctx = self._prog(op, view.fd, info, ("percpu" if percpu else "cur",) + extra[1:])
        ctypes.memset(ctx, 0, len(ctx))
        ctypes.memmove(ctypes.addressof(ctx) + CTX_KEY, view.key, len(view.key))
        if data:
            ctypes.memmove(ctypes.addressof(ctx) + CTX_KEY + info.key8, data, len(data))
        struct.pack_into("<Q", ctx, CTX_ARG, arg & 0xFFFFFFFFFFFFFFFF)
        if percpu:
            struct.pack_into("<I", ctx, CTX_CPU, view.percpu_cpu & 0xFFFFFFFF)
        self._run(pfd, ctx)
        found = struct.unpack_from("<q", ctx, CTX_RET)[0]
        return found, struct.unpack_from("<Q", ctx, CTX_OLD)[0]

    # -- helpers ----------------------------------------------------------------------------

    def lookup_elem(self, fd: int, key, as_type=None):
        """bpf_map_lookup_elem() in a program: a HostValueView, or None; with ``as_type`` (a
        ctypes Structure) its fields read and written through the view (progs.typed_view)."""
        view = self._lookup(fd, key, None)
        return view if view is None or as_type is None else typed_view(view, as_type)

    def lookup_percpu_elem(self, fd: int, key, cpu: int):
        """bpf_map_lookup_percpu_elem() in a program: a HostValueView of cpu's slot, or None."""
        return self._lookup(fd, key, cpu)

    def update_elem(self, fd: int, key, value, flags: int = 0) -> int:
        """bpf_map_update_elem() in a program: 0 or a negative errno. ``value`` may be longer
        than value_size: bytes up to the next multiple of 8 are placed after the value on
        the program's stack (that is all a helper can ever see past the value)."""
        info = self._info(fd)
        k = self._key(info, key)
        v = bytes(value)
        if len(v) < info.value_size:
            raise ValueError(f"value buffer has {len(v)} bytes, the map needs {info.value_size}")
        v = v[:info.value8]
        pfd, ctx = self._prog("update", fd, info)
        ctypes.memset(ctx, 0, len(ctx))
        ctypes.memmove(ctypes.addressof(ctx) + CTX_KEY, k, len(k))
        ctypes.memmove(ctypes.addressof(ctx) + CTX_KEY + info.key8, v, len(v))
        struct.pack_into("<Q", ctx, CTX_ARG, flags & 0xFFFFFFFFFFFFFFFF)
        self._run(pfd, ctx)
        return struct.unpack_from("<q", ctx, CTX_RET)[0]

    def delete_elem(self, fd: int, key) -> int:
        """bpf_map_delete_elem() in a program: 0 or a negative errno."""
        info = self._info(fd)
        k = self._key(info, key)
        pfd, ctx = self._prog("delete", fd, info)
        ctypes.memset(ctx, 0, len(ctx))
        ctypes.memmove(ctypes.addressof(ctx) + CTX_KEY, k, len(k))
        self._run(pfd, ctx)
        return struct.unpack_from("<q", ctx, CTX_RET)[0]

    def fetch_add(self, view: HostValueView, offset: int, size: int, delta: int) -> int:
        """BPF_ATOMIC | BPF_FETCH | BPF_ADD on the view's field: the previous value. Runs
        lookup + atomic add in one program on the view's CPU."""
        check_atomic(offset, size)
        info = self._info(view.fd)
        if offset + size > info.value_size:
            raise ValueError(f"atomic access past the value: {offset}+{size} > {info.value_size}")
        self._check_cpu(view, info)
        found, old = self._run_on_elem(view, info, ("fetch_add", offset, size), arg=delta)
        if not found:
            raise LookupError("the element is gone (a kernel pointer would hit freed memory)")
        return old & ((1 << (8 * size)) - 1)

    def lookup_fetch_add(self, fd: int, key, offset: int, size: int, delta: int):
        """lookup_elem() then fetch_add() in one program: the old value, or None if missing."""
        check_atomic(offset, size)
        info = self._info(fd)
        k = self._key(info, key)
        if offset + size > info.value_size:
            raise ValueError(f"atomic access past the value: {offset}+{size} > {info.value_size}")
        view = HostValueView(self, fd, k, current_cpu(), b"")
        found, old = self._run_on_elem(view, info, ("fetch_add", offset, size), arg=delta)
        return (old & ((1 << (8 * size)) - 1)) if found else None

    def close(self) -> None:
        """Unload every program (they hold references on their maps)."""
        for pfd, _ in self._progs.values():
            os.close(pfd)
        self._progs.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
