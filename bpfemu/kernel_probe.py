"""What a kernel's bpf() map ABI looks like from user space, read through any backend.

``probe(backend)`` sends the same fixed set of calls to whatever implements the bpf()
contract (the live kernel, or an Emulator on a profile) and returns the answers, grouped by
the kernel property each group reveals: where ``union bpf_attr`` ends, where each command's
last field ends (CHECK_ATTR), which map types, map flags and element flags a kernel accepts,
which commands each emulated map type supports, and how big ``struct bpf_map_info`` is.
Two backends with equal probes agree on all of it; ``derive(facts)`` reads a profile's
numbers off a kernel's probe. scripts/probe_kernel.py runs it; docs/kernels.md lists what
it found on Linux 6.1, 6.12 and 6.18.
"""
import ctypes
import errno
import struct

from .uapi.consts import BpfCmd as C, BpfMapType as T

PAGE = 4096
BAD_FD = 0x7FFFFF00         # never open: fdget() fails with EBADF
SWEEP_END = 256             # byte offsets probed, past every kernel's union bpf_attr

# Each probed command: (offset of its fd field or None, base attr fields as (offset, fmt, value)).
# The base makes the handler fail at a known, early point (EBADF, ENOENT), so a non-zero byte
# anywhere shows whether CHECK_ATTR (EINVAL) or the tail check (E2BIG) saw it first.
_SWEEPS = {
    C.BPF_MAP_LOOKUP_ELEM: [(0, "<I", BAD_FD)],
    C.BPF_MAP_UPDATE_ELEM: [(0, "<I", BAD_FD)],
    C.BPF_MAP_DELETE_ELEM: [(0, "<I", BAD_FD)],
    C.BPF_MAP_GET_NEXT_KEY: [(0, "<I", BAD_FD)],
    C.BPF_MAP_LOOKUP_AND_DELETE_ELEM: [(0, "<I", BAD_FD)],
    C.BPF_MAP_FREEZE: [(0, "<I", BAD_FD)],
    C.BPF_MAP_LOOKUP_BATCH: [(36, "<I", BAD_FD)],
    C.BPF_MAP_LOOKUP_AND_DELETE_BATCH: [(36, "<I", BAD_FD)],
    C.BPF_MAP_UPDATE_BATCH: [(36, "<I", BAD_FD)],
    C.BPF_MAP_DELETE_BATCH: [(36, "<I", BAD_FD)],
    C.BPF_OBJ_GET_INFO_BY_FD: [(0, "<I", BAD_FD)],
    C.BPF_MAP_GET_NEXT_ID: [(0, "<I", 0x7FFFFFF0)],
    C.BPF_MAP_GET_FD_BY_ID: [(0, "<I", 0x7FFFFFF0)],
    C.BPF_OBJ_PIN: [(0, "<QI", (None, BAD_FD))],     # None: the address of NO_SUCH_PATH
    C.BPF_OBJ_GET: [(0, "<Q", None)],
    # key_size + value_size past KMALLOC_MAX_SIZE is E2BIG in htab_map_alloc_check(), after the
    # flag checks and before the name, offload, BTF and exclusive-hash checks: a byte of a field
    # the kernel ignores or checks late answers E2BIG, a byte CHECK_ATTR rejects answers EINVAL.
    C.BPF_MAP_CREATE: [(0, "<IIII", (T.BPF_MAP_TYPE_HASH, 4, 1 << 23, 1))],
}
NO_SUCH_PATH = ctypes.create_string_buffer(b"/nonexistent-bpfemu-probe/x")
RELATIVE_PATH = ctypes.create_string_buffer(b"nonexistent-bpfemu-probe/x")   # path_fd matters

EMULATED_TYPES = (T.BPF_MAP_TYPE_HASH, T.BPF_MAP_TYPE_ARRAY, T.BPF_MAP_TYPE_PERCPU_HASH,
                  T.BPF_MAP_TYPE_PERCPU_ARRAY, T.BPF_MAP_TYPE_LRU_HASH,
                  T.BPF_MAP_TYPE_LRU_PERCPU_HASH)


def _name(err: int) -> str:
    if err >= 0:
        return "ok"
    return errno.errorcode.get(-err, "ENOTSUPP" if -err == 524 else f"E{-err}")


def _rle(items) -> str:
    """"EBADF*44 EINVAL*212": a sweep's answers, run-length encoded to stay readable."""
    out, prev, n = [], None, 0
    for it in items:
        if it == prev:
            n += 1
            continue
        if prev is not None:
            out.append(f"{prev}*{n}")
        prev, n = it, 1
    if prev is not None:
        out.append(f"{prev}*{n}")
    return " ".join(out)


class _Caller:
    def __init__(self, backend):
        self.b = backend
        self.attr = ctypes.create_string_buffer(PAGE)

    def call(self, cmd, fields=(), size=PAGE, poke=None):
        ctypes.memset(self.attr, 0, PAGE)
        for off, fmt, val in fields:
            if val is None or (isinstance(val, tuple) and val[0] is None):
                val = (ctypes.addressof(NO_SUCH_PATH),) + (val[1:] if val else ())
            struct.pack_into(fmt, self.attr, off, *(val if isinstance(val, tuple) else (val,)))
        if poke is not None:
            off, byte = poke
            self.attr[off] = self.attr.raw[off] | byte
        r = self.b.bpf(cmd, self.attr, size)
        if r >= 0 and cmd in (C.BPF_MAP_CREATE, C.BPF_MAP_GET_FD_BY_ID, C.BPF_OBJ_GET):
            self.b.close(r)
        return r

    def create(self, map_type, key=4, value=8, entries=4, flags=0):
        ctypes.memset(self.attr, 0, PAGE)
        struct.pack_into("<IIIII", self.attr, 0, map_type, key, value, entries, flags)
        return self.b.bpf(C.BPF_MAP_CREATE, self.attr, 72)


def attr_size(c: _Caller) -> int:
    """sizeof(union bpf_attr): the first byte whose being non-zero is E2BIG (the tail check)."""
    for off in range(SWEEP_END):
        if c.call(C.BPF_MAP_GET_NEXT_ID, _SWEEPS[C.BPF_MAP_GET_NEXT_ID], poke=(off, 1)) == -errno.E2BIG:
            return off
    return SWEEP_END


def sweeps(c: _Caller) -> dict:
    """Per command, the answer to a non-zero byte at each offset of a page-sized attr.

    Bytes of a pointer in the base ("ptr") are not poked: what a changed address points at
    depends on the process's memory map, not on the kernel."""
    def answer(cmd, base, off):
        if any(val is None or (isinstance(val, tuple) and val[0] is None)
               for at, _, val in base if at <= off < at + 8):
            return "ptr"
        return _name(c.call(cmd, base, poke=(off, 0x80)))
    return {C(cmd).name: _rle(answer(cmd, base, off) for off in range(SWEEP_END))
            for cmd, base in _SWEEPS.items()}


def map_types(c: _Caller) -> dict:
    """MAP_CREATE of each type number, with arguments a hash or array would accept."""
    return {str(t): _name(c.create(t, 4, 4, 1)) for t in range(40)}


def map_flags(c: _Caller) -> dict:
    """MAP_CREATE of each emulated type with each single map_flags bit."""
    out = {}
    for t in EMULATED_TYPES:
        entries = 4 if t not in (T.BPF_MAP_TYPE_LRU_HASH, T.BPF_MAP_TYPE_LRU_PERCPU_HASH) else 16
        out[T(t).name] = " ".join(_name(c.create(t, 4, 8, entries, 1 << bit)) for bit in range(24))
    return out


def _with_map(c: _Caller, t, fn):
    fd = c.create(t, 4, 8, 16)
    if fd < 0:
        return _name(fd)
    try:
        return fn(fd)
    finally:
        c.b.close(fd)


def elem_commands(c: _Caller) -> dict:
    """Element and batch commands on each emulated type: each flag bit, and plain support."""
    key = ctypes.create_string_buffer(8)
    val = ctypes.create_string_buffer(8 * 512)
    out_batch = ctypes.create_string_buffer(8)
    keys = ctypes.create_string_buffer(8 * 16)
    vals = ctypes.create_string_buffer(8 * 16 * 512)
    count = 4
    out = {}
    ka, va = ctypes.addressof(key), ctypes.addressof(val)

    def elem(fd, cmd, flags):
        # The element exists before each call (the delete commands remove it).
        c.call(C.BPF_MAP_UPDATE_ELEM, [(0, "<IIQQQ", (fd, 0, ka, va, 0))], size=32)
        if cmd == C.BPF_MAP_DELETE_ELEM:        # its last field is key: flags past it
            return _name(c.call(cmd, [(0, "<IIQQQ", (fd, 0, ka, 0, flags))], size=32))
        return _name(c.call(cmd, [(0, "<IIQQQ", (fd, 0, ka, va, flags))], size=32))

    def batch(fd, cmd, elem_flags, flags):
        c.call(C.BPF_MAP_UPDATE_ELEM, [(0, "<IIQQQ", (fd, 0, ka, va, 0))], size=32)
        return _name(c.call(cmd, [(0, "<QQQQIIQQ", (0, ctypes.addressof(out_batch), ctypes.addressof(keys),
                                                    ctypes.addressof(vals), count, fd, elem_flags,
                                                    flags))], size=56))

    for t in EMULATED_TYPES:
        row = {}
        for cmd in (C.BPF_MAP_LOOKUP_ELEM, C.BPF_MAP_UPDATE_ELEM,
                    C.BPF_MAP_LOOKUP_AND_DELETE_ELEM, C.BPF_MAP_DELETE_ELEM):
            row[C(cmd).name] = _with_map(c, t, lambda fd: " ".join(
                elem(fd, cmd, 1 << bit) if bit >= 0 else elem(fd, cmd, 0) for bit in range(-1, 8)))
        for cmd in (C.BPF_MAP_LOOKUP_BATCH, C.BPF_MAP_LOOKUP_AND_DELETE_BATCH,
                    C.BPF_MAP_UPDATE_BATCH, C.BPF_MAP_DELETE_BATCH):
            row[C(cmd).name] = _with_map(c, t, lambda fd: " ".join(
                [batch(fd, cmd, 0, 0)] + [batch(fd, cmd, 1 << bit, 0) for bit in range(8)]
                + [batch(fd, cmd, 0, 1)]))
        out[T(t).name] = row
    return out


def obj_file_flags(c: _Caller) -> dict:
    """OBJ_PIN and OBJ_GET of a relative path with each single file_flags bit and path_fd a
    closed fd: which flags exist (BPF_F_PATH_FD reads path_fd: EBADF; unknown: EINVAL)."""
    def flags(fd, cmd, path_fd):
        return " ".join(_name(c.call(cmd, [(0, "<QIIi", (ctypes.addressof(RELATIVE_PATH), fd,
                                                          1 << bit, path_fd))], size=24))
                        for bit in range(24))
    out = {}
    # path_fd 0 (stdin, not a directory) is zero for CHECK_ATTR on a kernel without path_fd.
    for path_fd in (BAD_FD, 0):
        out[f"BPF_OBJ_PIN path_fd={path_fd:#x}"] = _with_map(
            c, T.BPF_MAP_TYPE_HASH, lambda fd: flags(fd, C.BPF_OBJ_PIN, path_fd))
        out[f"BPF_OBJ_GET path_fd={path_fd:#x}"] = flags(0, C.BPF_OBJ_GET, path_fd)
    return out


def freeze(c: _Caller) -> str:
    """MAP_FREEZE through a read-write fd twice, then through a read-only fd (BPF_F_RDONLY)
    of another map twice: whether freezing needs write permission."""
    out = []
    for flags in (0, 0x8):                      # BPF_F_RDONLY: the fd cannot write
        fd = c.create(T.BPF_MAP_TYPE_ARRAY, 4, 8, 4, flags)
        try:
            out += [_name(c.call(C.BPF_MAP_FREEZE, [(0, "<I", fd)], size=4)) for _ in range(2)]
        finally:
            c.b.close(fd)
    return " ".join(out)


def map_info(c: _Caller) -> dict:
    """OBJ_GET_INFO_BY_FD: info_len written back for a page-sized buffer, and for each
    offset of that buffer, whether a non-zero byte there is E2BIG (the info tail check)."""
    info = ctypes.create_string_buffer(PAGE)

    def get(fd, poke):
        ctypes.memset(info, 0, PAGE)
        if poke is not None:
            info[poke] = 1
        r = c.call(C.BPF_OBJ_GET_INFO_BY_FD, [(0, "<IIQ", (fd, 512, ctypes.addressof(info)))],
                   size=16)
        return r, struct.unpack_from("<I", c.attr, 4)[0]

    def echo(fd):
        # 88 bytes of 0x5a in: which come back as given and which the kernel rewrites.
        ctypes.memset(info, 0x5A, 88)
        r = c.call(C.BPF_OBJ_GET_INFO_BY_FD, [(0, "<IIQ", (fd, 88, ctypes.addressof(info)))],
                   size=16)
        out = bytearray(info.raw[:88])
        out[4:8] = b"\xee" * 4                   # the map id depends on the run
        return f"{_name(r)} {out.hex()}"

    def run(fd):
        r, written = get(fd, None)
        tail = _rle("E2BIG" if get(fd, off)[0] == -errno.E2BIG else "-" for off in range(256))
        return {"ret": _name(r), "info_len": written, "tail": tail, "echo": echo(fd)}

    return _with_map(c, T.BPF_MAP_TYPE_HASH, run)


def probe(backend) -> dict:
    c = _Caller(backend)
    return {"attr_size": attr_size(c), "sweeps": sweeps(c), "map_types": map_types(c),
            "map_flags": map_flags(c), "elem_commands": elem_commands(c), "obj_file_flags": obj_file_flags(c),
            "freeze": freeze(c), "map_info": map_info(c)}


def differences(expected: dict, actual: dict, emulated_types=EMULATED_TYPES) -> list:
    """Where two probes differ, as "group/key: expected != actual" lines. MAP_CREATE of a map
    type the emulator does not emulate is left out (DEVIATION(map-types) in map_cmds)."""
    out = []
    for group in expected:
        if group == "release":
            continue
        e, a = expected[group], actual.get(group)
        if not isinstance(e, dict):
            if e != a:
                out.append(f"{group}: {e!r} != {a!r}")
            continue
        for key in e:
            if group == "map_types" and int(key) not in emulated_types:
                continue
            ev, av = e[key], (a or {}).get(key)
            if isinstance(ev, dict):
                out += [f"{group}/{key}/{k}: {ev[k]!r} != {(av or {}).get(k)!r}"
                        for k in ev if ev[k] != (av or {}).get(k)]
            elif ev != av:
                out.append(f"{group}/{key}: {ev!r} != {av!r}")
    return out

