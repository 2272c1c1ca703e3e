"""What each bpf() command reads and writes in user memory, and an strace-style rendering.

``call_layout`` knows, per command, which attr fields are pointers, how many bytes the
kernel may read or write through each (this needs the map's type, key_size and value_size:
``MapMeta``), which attr fields are fds and map ids (translated on replay), and which attr
bytes the kernel writes back. The ranges are what the kernel *may* touch for this attr:
an over-approximation is harmless (a buffer that was never read is recreated anyway, one that
was never written compares equal before and after), an omission would make replay fault.

Sources: docs/linux-6.18.md (#the-entry: layouts and write-backs; the command sections: copies).
"""
import os
import struct
from dataclasses import dataclass, field

from ..maps.core import PERCPU_VALUE_TYPES, round_up
from ..uapi.consts import BpfCmd as C
from ..uapi.consts import BpfMapType as T
from ..uapi.consts import ElemFlags, MapFlags

ATTR_SIZE = 168
MAP_INFO_SIZE = 104
PATH_MAX = 4096
PAGE_SIZE = 4096
# A buffer longer than this is recorded only up to here (the rest as unmapped). Only absurd
# batch counts over mapped memory reach it; see abi/README.md.
MAX_BUFFER = 16 << 20

HASH_TYPES = frozenset({T.BPF_MAP_TYPE_HASH, T.BPF_MAP_TYPE_PERCPU_HASH, T.BPF_MAP_TYPE_LRU_HASH,
                        T.BPF_MAP_TYPE_LRU_PERCPU_HASH})
LRU_TYPES = frozenset({T.BPF_MAP_TYPE_LRU_HASH, T.BPF_MAP_TYPE_LRU_PERCPU_HASH})

ELEM_CMDS = frozenset({C.BPF_MAP_LOOKUP_ELEM, C.BPF_MAP_UPDATE_ELEM, C.BPF_MAP_DELETE_ELEM,
                       C.BPF_MAP_GET_NEXT_KEY, C.BPF_MAP_LOOKUP_AND_DELETE_ELEM})
BATCH_CMDS = frozenset({C.BPF_MAP_LOOKUP_BATCH, C.BPF_MAP_LOOKUP_AND_DELETE_BATCH,
                        C.BPF_MAP_UPDATE_BATCH, C.BPF_MAP_DELETE_BATCH})
# Commands whose successful result is a new map fd.
FD_RESULT_CMDS = frozenset({C.BPF_MAP_CREATE, C.BPF_MAP_GET_FD_BY_ID, C.BPF_OBJ_GET})
# Commands whose successful result is a new fd of another kind of object.
OBJ_RESULT_CMDS = {C.BPF_BTF_LOAD: "btf", C.BPF_PROG_LOAD: "prog"}
# Maps whose values are fds in (update) and ids out (lookup): the kind of object.
FD_VALUE_MAPS = {T.BPF_MAP_TYPE_PROG_ARRAY: "prog", T.BPF_MAP_TYPE_ARRAY_OF_MAPS: "map",
                 T.BPF_MAP_TYPE_HASH_OF_MAPS: "map"}
BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE = 1, 2
BPF_LD_IMM64 = 0x18                        # BPF_LD | BPF_IMM | BPF_DW
# The kernel reads at most this many instructions (BPF_COMPLEXITY_LIMIT_INSNS).
MAX_INSNS = 1_000_000


def cmd_name(cmd: int) -> str:
    try:
        return C(cmd).name
    except ValueError:
        return str(cmd)


def map_type_name(t: int) -> str:
    try:
        return T(t).name
    except ValueError:
        return str(t)


@dataclass
class MapMeta:
    """What the decoder needs to know about a map behind an fd."""
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int = 0
    id: int = 0

    def value_size_sys(self, nr_cpus: int) -> int:
        """bpf_map_value_size(): the syscall's per-element value buffer."""
        if self.map_type in PERCPU_VALUE_TYPES:
            return round_up(self.value_size, 8) * nr_cpus
        return self.value_size

    @classmethod
    def from_create_attr(cls, attr: bytes, nr_cpus: int) -> "MapMeta":
        map_type, ks, vs, n, flags = struct.unpack_from("<5I", attr, 0)
        if map_type in LRU_TYPES and flags & MapFlags.BPF_F_NO_COMMON_LRU:
            n = round_up(n, nr_cpus) if round_up(n, nr_cpus) <= 0xFFFFFFFF else n // nr_cpus * nr_cpus
        return cls(map_type, ks, vs, n, flags & ~0x10018)

    @classmethod
    def from_info(cls, info: bytes) -> "MapMeta":
        t, mid, ks, vs, n, flags = struct.unpack_from("<6I", info, 0)
        return cls(t, ks, vs, n, flags, mid)

    def to_json(self) -> dict:
        return {"type": self.map_type, "id": self.id, "key_size": self.key_size,
                "value_size": self.value_size, "max_entries": self.max_entries,
                "map_flags": self.map_flags}

    @classmethod
    def from_json(cls, d: dict) -> "MapMeta":
        return cls(d["type"], d["key_size"], d["value_size"], d["max_entries"],
                   d.get("map_flags", 0), d.get("id", 0))


@dataclass
class BufSpec:
    field: str          # the attr field that points at it ("key", "values", "info.hash", ...)
    addr: int
    length: int
    access: str         # "r", "w" or "rw"


@dataclass
class Layout:
    """Everything the recorder and replayer need to know about one call's attr."""
    bufs: list = field(default_factory=list)          # BufSpec
    attr_out: list = field(default_factory=list)      # (offset, length) the kernel may write back
    fd_fields: list = field(default_factory=list)     # (name, offset): u32 fds that matter
    id_fields: list = field(default_factory=list)     # (name, offset): u32 map ids (in and out)
    map_fd: int | None = None                         # the map the call is about, if any


# Pointer fields of each command: (name, offset). Used for relocation and rendering.
PTR_FIELDS = {
    C.BPF_MAP_CREATE: (("excl_prog_hash", 80),),
    C.BPF_MAP_LOOKUP_ELEM: (("key", 8), ("value", 16)),
    C.BPF_MAP_UPDATE_ELEM: (("key", 8), ("value", 16)),
    C.BPF_MAP_DELETE_ELEM: (("key", 8),),
    C.BPF_MAP_GET_NEXT_KEY: (("key", 8), ("next_key", 16)),
    C.BPF_MAP_LOOKUP_AND_DELETE_ELEM: (("key", 8), ("value", 16)),
    C.BPF_OBJ_GET_INFO_BY_FD: (("info", 8),),
    C.BPF_OBJ_PIN: (("pathname", 0),),
    C.BPF_OBJ_GET: (("pathname", 0),),
    C.BPF_BTF_LOAD: (("btf", 0), ("btf_log_buf", 8)),
    C.BPF_PROG_LOAD: (("insns", 8), ("license", 16), ("log_buf", 32), ("func_info", 80),
                      ("line_info", 96), ("fd_array", 120)),
}
for _c in BATCH_CMDS:
    PTR_FIELDS[_c] = (("in_batch", 0), ("out_batch", 8), ("keys", 16), ("values", 24))
# Pointers inside buffers: buffer field -> ((name, offset within the buffer), ...).
NESTED_PTRS = {"info": (("info.hash", 88),)}
# Map ids inside written buffers: buffer field -> offsets of u32 ids.
NESTED_IDS = {"info": (4,)}


def _u32(b, off):
    return struct.unpack_from("<I", b, off)[0]


def _u64(b, off):
    return struct.unpack_from("<Q", b, off)[0]


def attr168(before: bytes, size: int) -> bytes:
    """The union as the kernel sees it: the first min(size, 168) bytes, zero-extended."""
    n = min(size, ATTR_SIZE, len(before))
    return before[:n] + bytes(ATTR_SIZE - n)


def call_layout(cmd: int, attr: bytes, lookup_map, nr_cpus: int, strlen=None) -> Layout:
    """The memory a call with this (zero-extended, 168-byte) attr may touch.

    ``lookup_map(fd)`` returns the MapMeta of a map fd or None; ``strlen(addr)`` the length
    of the NUL-terminated string at addr including its NUL (None if unreadable): it is needed
    for OBJ_PIN/OBJ_GET pathnames only.
    """
    L = Layout()
    if cmd == C.BPF_MAP_CREATE:
        flags = _u32(attr, 16)
        if _u32(attr, 0) in (T.BPF_MAP_TYPE_ARRAY_OF_MAPS, T.BPF_MAP_TYPE_HASH_OF_MAPS):
            L.fd_fields.append(("inner_map_fd", 20))
        if _u32(attr, 52) or _u32(attr, 56):
            L.fd_fields.append(("btf_fd", 48))
        if flags & MapFlags.BPF_F_TOKEN_FD:
            L.fd_fields.append(("map_token_fd", 76))
        ptr, n = _u64(attr, 80), _u32(attr, 88)
        if ptr and n == 32:
            L.bufs.append(BufSpec("excl_prog_hash", ptr, 32, "r"))
        return L
    if cmd in ELEM_CMDS or cmd == C.BPF_MAP_FREEZE:
        fd = _u32(attr, 0)
        L.fd_fields.append(("map_fd", 0))
        L.map_fd = fd
        if cmd == C.BPF_MAP_FREEZE:
            return L
        m = lookup_map(fd)
        if m is None:
            return L
        key, value = _u64(attr, 8), _u64(attr, 16)
        vs = m.value_size_sys(nr_cpus)
        if cmd == C.BPF_MAP_GET_NEXT_KEY:
            if key:
                L.bufs.append(BufSpec("key", key, m.key_size, "r"))
            L.bufs.append(BufSpec("next_key", value, m.key_size, "w"))
            return L
        L.bufs.append(BufSpec("key", key, m.key_size, "r"))
        if cmd == C.BPF_MAP_UPDATE_ELEM:
            L.bufs.append(BufSpec("value", value, vs, "r"))
        elif cmd in (C.BPF_MAP_LOOKUP_ELEM, C.BPF_MAP_LOOKUP_AND_DELETE_ELEM):
            L.bufs.append(BufSpec("value", value, vs, "w"))
        return L
    if cmd in BATCH_CMDS:
        fd = _u32(attr, 36)
        L.fd_fields.append(("map_fd", 36))
        L.map_fd = fd
        L.attr_out.append((32, 4))
        m = lookup_map(fd)
        if m is None:
            return L
        in_batch, out_batch, keys, values = struct.unpack_from("<4Q", attr, 0)
        count = _u32(attr, 32)
        ks, vs = m.key_size, m.value_size_sys(nr_cpus)
        token = 4 if m.map_type in HASH_TYPES else m.key_size
        if cmd in (C.BPF_MAP_LOOKUP_BATCH, C.BPF_MAP_LOOKUP_AND_DELETE_BATCH):
            n = min(count, m.max_entries)
            if in_batch:
                L.bufs.append(BufSpec("in_batch", in_batch, token, "r"))
            L.bufs.append(BufSpec("out_batch", out_batch, token, "w"))
            L.bufs.append(BufSpec("keys", keys, n * ks, "w"))
            L.bufs.append(BufSpec("values", values, n * vs, "w"))
        elif cmd == C.BPF_MAP_UPDATE_BATCH:
            L.bufs.append(BufSpec("keys", keys, count * ks, "r"))
            L.bufs.append(BufSpec("values", values, count * vs, "r"))
        else:
            L.bufs.append(BufSpec("keys", keys, count * ks, "r"))
        return L
    if cmd == C.BPF_OBJ_GET_INFO_BY_FD:
        fd, info_len, info = _u32(attr, 0), _u32(attr, 4), _u64(attr, 8)
        L.fd_fields.append(("bpf_fd", 0))
        L.map_fd = fd
        L.attr_out.append((4, 4))
        if lookup_map(fd) is None or info_len > PAGE_SIZE:
            return L
        L.bufs.append(BufSpec("info", info, info_len, "rw" if info_len else "r"))
        return L
    if cmd == C.BPF_MAP_GET_NEXT_ID:
        L.id_fields.append(("start_id", 0))
        L.id_fields.append(("next_id", 4))
        L.attr_out.append((4, 4))
        return L
    if cmd == C.BPF_MAP_GET_FD_BY_ID:
        L.id_fields.append(("map_id", 0))
        return L
    if cmd == C.BPF_BTF_LOAD:
        btf, log_buf, btf_size, log_size, log_level = struct.unpack_from("<QQIII", attr, 0)
        if _u32(attr, 32) & MapFlags.BPF_F_TOKEN_FD:
            L.fd_fields.append(("btf_token_fd", 36))
        L.bufs.append(BufSpec("btf", btf, btf_size, "r"))
        if log_buf and log_size and log_level:
            L.bufs.append(BufSpec("btf_log_buf", log_buf, log_size, "w"))
        return L
    if cmd == C.BPF_PROG_LOAD:
        insn_cnt, insns, license_ = _u32(attr, 4), _u64(attr, 8), _u64(attr, 16)
        log_level, log_size, log_buf = _u32(attr, 24), _u32(attr, 28), _u64(attr, 32)
        if insns and insn_cnt <= MAX_INSNS:
            L.bufs.append(BufSpec("insns", insns, insn_cnt * 8, "r"))
        if license_:
            n = strlen(license_) if strlen is not None else None
            L.bufs.append(BufSpec("license", license_, min(n, 128) if n else 1, "r"))
        if log_buf and log_size and log_level:
            L.bufs.append(BufSpec("log_buf", log_buf, log_size, "w"))
        func_info, fi_cnt, fi_rec = _u64(attr, 80), _u32(attr, 88), _u32(attr, 76)
        line_info, li_cnt, li_rec = _u64(attr, 96), _u32(attr, 104), _u32(attr, 92)
        if fi_cnt or li_cnt:
            L.fd_fields.append(("prog_btf_fd", 72))
        if func_info and fi_cnt and fi_cnt * fi_rec <= MAX_BUFFER:
            L.bufs.append(BufSpec("func_info", func_info, fi_cnt * fi_rec, "r"))
        if line_info and li_cnt and li_cnt * li_rec <= MAX_BUFFER:
            L.bufs.append(BufSpec("line_info", line_info, li_cnt * li_rec, "r"))
        fd_array, fd_array_cnt = _u64(attr, 120), _u32(attr, 148)
        if fd_array and fd_array_cnt:
            L.bufs.append(BufSpec("fd_array", fd_array, fd_array_cnt * 4, "r"))
        return L
    if cmd in (C.BPF_OBJ_PIN, C.BPF_OBJ_GET):
        path, bpf_fd, file_flags = _u64(attr, 0), _u32(attr, 8), _u32(attr, 12)
        if cmd == C.BPF_OBJ_PIN:
            L.fd_fields.append(("bpf_fd", 8))
            L.map_fd = bpf_fd
        if file_flags & MapFlags.BPF_F_PATH_FD:
            L.fd_fields.append(("path_fd", 16))
        if path:
            n = strlen(path) if strlen is not None else None
            L.bufs.append(BufSpec("pathname", path, n if n else 1, "r"))
        return L
    return L


def embedded_fds(cmd: int, field: str, data: bytes, map_type: int | None) -> list:
    """fds carried inside a read buffer, as (offset, kind): map fds in the 64-bit immediate
    loads of a program (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE: the imm of the first half),
    an fd_array, and the program or map fd an update puts into a PROG_ARRAY or map-in-map."""
    out = []
    if cmd == C.BPF_PROG_LOAD and field == "insns":
        i, n = 0, len(data) // 8
        while i < n:
            code, regs = data[8 * i], data[8 * i + 1]
            if code == BPF_LD_IMM64:
                if regs >> 4 in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE):
                    out.append((8 * i + 4, "map"))
                i += 2
            else:
                i += 1
    elif cmd == C.BPF_PROG_LOAD and field == "fd_array":
        out = [(off, "map") for off in range(0, len(data) - 3, 4)]
    elif cmd == C.BPF_MAP_UPDATE_ELEM and field == "value" and map_type in FD_VALUE_MAPS:
        if len(data) >= 4:
            out.append((0, FD_VALUE_MAPS[map_type]))
    return out


def info_hash_buf(info_addr: int, info_before: bytes) -> BufSpec | None:
    """The digest buffer an OBJ_GET_INFO_BY_FD may write through info.hash."""
    if len(info_before) >= 100:
        h, hs = _u64(info_before, 88), _u32(info_before, 96)
        if h and hs == 32:
            return BufSpec("info.hash", h, 32, "w")
    return None


# --- rendering ----------------------------------------------------------------------------

def hexbytes(b: bytes, limit: int | None = 16) -> str:
    """``[01 00 00 00]``; past ``limit`` bytes, ``[01 02 ... (+N bytes)]``."""
    if limit is not None and len(b) > limit:
        return "[" + b[:limit].hex(" ") + f" ... (+{len(b) - limit} bytes)]"
    return "[" + b.hex(" ") + "]"


def _flag_names(value: int, enum, zero: str = "0") -> str:
    if value == 0:
        return zero
    names, rest = [], value
    for m in enum:
        if m.value and value & m.value == m.value and rest & m.value:
            names.append(m.name)
            rest &= ~m.value
    if rest:
        names.append(hex(rest))
    return "|".join(names)


def elem_flags_str(flags: int) -> str:
    if flags == ElemFlags.BPF_NOEXIST:
        return "BPF_NOEXIST"
    if flags == ElemFlags.BPF_EXIST:
        return "BPF_EXIST"
    if flags & ElemFlags.BPF_F_LOCK and (flags & ~4) in (0, 1, 2):
        low = {0: "BPF_ANY", 1: "BPF_NOEXIST", 2: "BPF_EXIST"}[flags & ~4]
        return f"{low}|BPF_F_LOCK" if flags & ~4 else "BPF_F_LOCK"
    if flags == 0:
        return "BPF_ANY"
    return hex(flags)


def map_flags_str(flags: int) -> str:
    return _flag_names(flags, MapFlags)


def _errstr(name: str) -> str:
    from .format import errno_number
    n = errno_number(name)
    return f"{name} ({os.strerror(n)})"


class _Bufs:
    """The recorded buffers of one record, by field name."""

    def __init__(self, rec: dict):
        self.read = {b["field"]: b for b in rec.get("read", ())}
        self.written = {b["field"]: b for b in rec.get("written", ())}

    def show(self, name: str, addr: int) -> str:
        if addr == 0:
            return "NULL"
        b = self.written.get(name) or self.read.get(name)
        if b is None:
            return hex(addr)
        data = bytes.fromhex(b.get("after", b.get("bytes", b.get("before", ""))))
        if not data and not b.get("unmapped"):
            return hex(addr)
        if b.get("unmapped"):
            if sum(n for _, n in b["unmapped"]) >= len(data):
                return f"{hex(addr)} (unmapped)"
            return f"{hexbytes(data)} (partly unmapped)"
        if b.get("readonly") and name in self.written:
            return f"{hexbytes(data)} (read-only)"
        return hexbytes(data)


def render_call(rec: dict, *, after: bool = True, result: str | None = None) -> str:
    """``bpf(BPF_MAP_UPDATE_ELEM, {map_fd=3, key=[..], value=[..], flags=BPF_NOEXIST}, 32) = -1 EEXIST``.

    Non-authoritative: a human view of the record's bytes. ``result`` overrides the rendered
    return value (the replayer uses it to show what the backend answered).
    """
    if rec.get("call") == "close":
        args = f"close({rec['fd']})"
    elif rec.get("call") == "fs":
        mode = f", {rec['mode']:#o}" if "mode" in rec else ""
        to = f", \"{rec['to']}\"" if "to" in rec else ""
        args = f"{rec['op']}(\"{rec['path']}\"{to}{mode})"
    else:
        args = f"bpf({cmd_name(rec['cmd'])}, {render_attr(rec, after=after)}, {rec['size']})"
    if result is None:
        result = render_result(rec.get("ret", 0), rec.get("errno"))
    return f"{args} = {result}"


def render_result(ret: int, errno_name: str | None) -> str:
    if errno_name:
        return f"-1 {_errstr(errno_name)}"
    return str(ret)


def render_attr(rec: dict, *, after: bool = True) -> str:
    a = rec["attr"]
    size = rec["size"]
    if a.get("addr") in ("0x0", None) and not a.get("before"):
        return "NULL"
    before = bytes.fromhex(a.get("before", ""))
    aft = bytes.fromhex(a.get("after", a.get("before", "")))
    if a.get("unmapped") and len(before) == 0:
        return f"{a['addr']} (unmapped)"
    if not before and size > PAGE_SIZE:
        return f"{a['addr']}"                  # E2BIG before anything is read
    u = attr168(before, size)
    ua = attr168(aft, max(size, len(aft))) if after else u
    bufs = _Bufs(rec)
    cmd = rec["cmd"]
    parts = _render_fields(cmd, u, ua, bufs, size)
    end = _last_field_end(cmd)
    tail = u[end:min(size, ATTR_SIZE)] if end and size > end else b""
    if tail and any(tail):
        parts.append(f"/* bytes {end}..{min(size, ATTR_SIZE) - 1} */ {hexbytes(tail, 24)}")
    if size > ATTR_SIZE and len(before) > ATTR_SIZE and any(before[ATTR_SIZE:]):
        parts.append(f"/* bytes {ATTR_SIZE}..{len(before) - 1} */ {hexbytes(before[ATTR_SIZE:], 24)}")
    text = "{" + ", ".join(parts) + "}"
    if a.get("unmapped"):
        text += f" /* unmapped from byte {a['unmapped'][0][0]} */"
    return text


def _last_field_end(cmd: int) -> int:
    from ..syscall import LINUX_6_18_LAST_FIELD_END
    return LINUX_6_18_LAST_FIELD_END.get(cmd, 0)


def _inout(name: str, before: int, after: int) -> str:
    return f"{name}={before}" if before == after else f"{name}={before} => {after}"


def _render_fields(cmd, u, ua, bufs, size) -> list:
    if cmd == C.BPF_MAP_CREATE:
        (mt, ks, vs, n, fl, inner, numa) = struct.unpack_from("<7I", u, 0)
        name = u[28:44]
        parts = [f"map_type={map_type_name(mt)}", f"key_size={ks}", f"value_size={vs}",
                 f"max_entries={n}", f"map_flags={map_flags_str(fl)}"]
        extra = [("inner_map_fd", inner), ("numa_node", numa)]
        if any(name):
            parts_name = name.split(b"\0")[0] if b"\0" in name else name
            extra.append(("map_name", '"' + parts_name.decode("latin-1").encode(
                "unicode_escape").decode() + '"' + ("" if b"\0" in name else "...")))
        (ifindex, btf_fd, bk, bv, bvm) = struct.unpack_from("<5I", u, 44)
        extra += [("map_ifindex", ifindex), ("btf_fd", btf_fd), ("btf_key_type_id", bk),
                  ("btf_value_type_id", bv), ("btf_vmlinux_value_type_id", bvm),
                  ("map_extra", _u64(u, 64)), ("value_type_btf_obj_fd", _u32(u, 72)),
                  ("map_token_fd", _u32(u, 76))]
        h = _u64(u, 80)
        if h:
            extra.append(("excl_prog_hash", bufs.show("excl_prog_hash", h)))
        extra.append(("excl_prog_hash_size", _u32(u, 88)))
        for k, v in extra:
            if v:
                parts.append(f"{k}={v}")
        return parts
    if cmd in ELEM_CMDS:
        fd, key, value, flags = _u32(u, 0), _u64(u, 8), _u64(u, 16), _u64(u, 24)
        parts = [f"map_fd={fd}", f"key={bufs.show('key', key)}"]
        if cmd == C.BPF_MAP_GET_NEXT_KEY:
            parts.append(f"next_key={bufs.show('next_key', value)}")
        elif cmd != C.BPF_MAP_DELETE_ELEM:
            parts.append(f"value={bufs.show('value', value)}")
            parts.append(f"flags={elem_flags_str(flags)}")
        pad = _u32(u, 4)
        if pad:
            parts.insert(1, f"/* pad */ {pad:#x}")
        return parts
    if cmd == C.BPF_MAP_FREEZE:
        return [f"map_fd={_u32(u, 0)}"]
    if cmd in BATCH_CMDS:
        inb, outb, keys, values = struct.unpack_from("<4Q", u, 0)
        fields = [f"in_batch={bufs.show('in_batch', inb)}",
                  f"out_batch={bufs.show('out_batch', outb)}",
                  f"keys={bufs.show('keys', keys)}"]
        if cmd != C.BPF_MAP_DELETE_BATCH:
            fields.append(f"values={bufs.show('values', values)}")
        fields += [_inout("count", _u32(u, 32), _u32(ua, 32)), f"map_fd={_u32(u, 36)}",
                   f"elem_flags={elem_flags_str(_u64(u, 40))}", f"flags={_u64(u, 48):#x}"]
        return ["batch={" + ", ".join(fields) + "}"]
    if cmd == C.BPF_OBJ_GET_INFO_BY_FD:
        info = _u64(u, 8)
        return ["info={" + ", ".join([f"bpf_fd={_u32(u, 0)}",
                                      _inout("info_len", _u32(u, 4), _u32(ua, 4)),
                                      f"info={bufs.show('info', info)}"]) + "}"]
    if cmd == C.BPF_MAP_GET_NEXT_ID:
        return [f"start_id={_u32(u, 0)}", _inout("next_id", _u32(u, 4), _u32(ua, 4)),
                f"open_flags={_u32(u, 8)}"]
    if cmd == C.BPF_MAP_GET_FD_BY_ID:
        return [f"map_id={_u32(u, 0)}", f"next_id={_u32(u, 4)}",
                f"open_flags={map_flags_str(_u32(u, 8))}"]
    if cmd in (C.BPF_OBJ_PIN, C.BPF_OBJ_GET):
        path = _u64(u, 0)
        b = bufs.read.get("pathname")
        if path == 0:
            shown = "NULL"
        elif b is not None and not b.get("unmapped"):
            s = bytes.fromhex(b["bytes"]).split(b"\0")[0]
            shown = '"' + s.decode("latin-1").encode("unicode_escape").decode() + '"'
        else:
            shown = hex(path) + (" (unmapped)" if b is not None else "")
        return [f"pathname={shown}", f"bpf_fd={_u32(u, 8)}",
                f"file_flags={map_flags_str(_u32(u, 12))}", f"path_fd={struct.unpack_from('<i', u, 16)[0]}"]
    n = min(size, ATTR_SIZE)
    return [f"/* bytes 0..{n - 1} */ {hexbytes(u[:n], 24)}"] if n else []
