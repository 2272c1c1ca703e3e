"""BTF objects: struct btf and its verifier, btf_parse() of kernel/bpf/btf.c in Python.

BPF_BTF_LOAD hands the kernel a raw BTF blob; btf_parse() checks it in this order and the
first failure is the syscall's errno: the header (btf_parse_hdr, btf_check_sec_info), the
string section (btf_parse_str_sec), every type's fixed part and trailing data
(btf_check_all_metas: one check_meta per kind), then every type that refers to others,
resolved depth first (btf_check_all_types: loops are EEXIST, chains deeper than 32 E2BIG),
and last the order of type tags among modifiers (btf_check_type_tags). The facts are
written down in docs/btf.md.

bpfemu/btf.py is something else: a reader of trusted BTF (the kernel's own) used to check
our uapi layouts. This module judges untrusted BTF the way the kernel does.
"""
from __future__ import annotations

import errno
import struct

from .errors import ENOTSUPP, BpfError

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
BTF_HDR_SIZE = 24                   # sizeof(struct btf_header)
BTF_MAX_SIZE = 16 * 1024 * 1024
BTF_MAX_TYPE = 0x000FFFFF
BTF_MAX_NAME_OFFSET = 0x00FFFFFF
BTF_INFO_MASK = 0x9F00FFFF
BTF_INT_MASK = 0x0FFFFFFF
BTF_INT_SIGNED, BTF_INT_CHAR, BTF_INT_BOOL = 1, 2, 4
BTF_VAR_STATIC, BTF_VAR_GLOBAL_ALLOCATED = 0, 1
BTF_FUNC_GLOBAL = 1
MAX_RESOLVE_DEPTH = 32
KSYM_NAME_LEN = 512
BITS_PER_U128 = 128

(UNKN, INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC,
 FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64) = range(20)
BTF_KIND_MAX = ENUM64

MODIFIERS = frozenset({TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG})
HAS_SIZE = frozenset({INT, STRUCT, UNION, ENUM, DATASEC, FLOAT, ENUM64})
NEEDS_RESOLVE = MODIFIERS | {PTR, STRUCT, UNION, ARRAY, VAR, FUNC, DECL_TAG, DATASEC}
RESOLVE_SOURCE_ONLY = frozenset({VAR, DATASEC, DECL_TAG})

_EINVAL = errno.EINVAL
_HDR = struct.Struct("<HBBIIIII")
_U32X3 = struct.Struct("<III")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")

# The kernel's isalpha()/isalnum()/isprint() (lib/ctype.c, Latin-1): letters include
# 0xc0-0xff except 0xd7 and 0xf7; printable includes 0xa0-0xff.
_ALPHA = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                   + bytes(range(0xC0, 0xD7)) + bytes(range(0xD8, 0xF7))
                   + bytes(range(0xF8, 0x100)))
_ALNUM = _ALPHA | frozenset(b"0123456789")
_IDENT_FIRST = _ALPHA | frozenset(b"_.")
_IDENT_REST = _ALNUM | frozenset(b"_.")
_PRINT = frozenset(range(0x20, 0x7F)) | frozenset(range(0xA0, 0x100))


def _bits_roundup_bytes(bits: int) -> int:
    return (bits + 7) >> 3


class BtfType:
    """struct btf_type with its trailing data, as read from the blob."""
    __slots__ = ("name_off", "info", "size_type", "kind", "vlen", "kflag", "extra")

    def __init__(self, name_off: int, info: int, size_type: int):
        self.name_off = name_off
        self.info = info
        self.size_type = size_type      # size for sized kinds, else a type id
        self.kind = (info >> 24) & 0x1F
        self.vlen = info & 0xFFFF
        self.kflag = bool(info >> 31)
        self.extra = ()                 # per kind: int_data, (type, index_type, nelems), members...

    @property
    def size(self) -> int:
        return self.size_type

    @property
    def type(self) -> int:
        return self.size_type


class Btf:
    """struct btf: the blob, its parsed types (index 0 is void), and its object fields."""

    def __init__(self, data: bytes, *, name: str = "", kernel_btf: bool = False):
        self.data = data
        self.data_size = len(data)
        self.types: list = [None]
        self.strings = b""
        self.hdr = (0,) * 8
        self.resolved_ids: list = []
        self.resolved_sizes: list = []
        self.id = 0
        self.refcnt = 1
        self.name = name
        self.kernel_btf = kernel_btf

    def put(self, emu) -> None:
        """btf_put(): the last reference frees the object and its id."""
        self.refcnt -= 1
        if self.refcnt == 0:
            emu.btf_idr.remove(self.id)

    # --- lookups the map code uses ------------------------------------------------------------

    def type_by_id(self, type_id: int):
        """btf_type_by_id(): None past the last type; id 0 is void (None here, too)."""
        if 0 < type_id < len(self.types):
            return self.types[type_id]
        return None

    def name_by_offset(self, off: int) -> bytes:
        end = self.strings.find(b"\0", off)
        return self.strings[off:end]

    def type_id_size(self, type_id: int):
        """btf_type_id_size(): (the type that has the size, its id, the size), or None for void,
        fwd, func, func_proto and anything that does not resolve to a size."""
        t = self.type_by_id(type_id)
        sized = self._own_size(t, type_id)
        if sized is not None or t is None or (t.kind not in MODIFIERS and t.kind != VAR):
            return sized
        type_id = self.resolved_ids[type_id]       # a modifier or var: what it resolved to
        return self._own_size(self.type_by_id(type_id), type_id)

    def _own_size(self, t, type_id: int):
        """(t, type_id, size) for a type with a size of its own (a sized kind, an array, a
        pointer), else None."""
        if t is None or _nosize(t):
            return None
        if t.kind in HAS_SIZE:
            return t, type_id, t.size
        if t.kind == ARRAY:
            return t, type_id, self.resolved_sizes[type_id]
        if t.kind == PTR:
            return t, type_id, 8
        return None


def _nosize(t) -> bool:
    return t.kind in (FWD, FUNC, FUNC_PROTO)


# --- names --------------------------------------------------------------------------------------

def btf_name_offset_valid(btf: Btf, off: int) -> bool:
    return off <= BTF_MAX_NAME_OFFSET and off < btf.hdr[7]


def _name_at(btf: Btf, off: int) -> bytes:
    return btf.name_by_offset(off)


def btf_name_valid_identifier(btf: Btf, off: int) -> bool:
    """An identifier: a letter, '_' or '.' first, then letters, digits, '_' or '.'
    (compilers name local copies "f.llvm.123"), under 512 bytes."""
    name = _name_at(btf, off)
    if not name or name[0] not in _IDENT_FIRST:
        return False
    if len(name) > KSYM_NAME_LEN:
        return False
    return all(c in _IDENT_REST for c in name[1:])


def btf_name_valid_section(btf: Btf, off: int) -> bool:
    """A section name: non-empty, printable characters, under 512 bytes."""
    name = _name_at(btf, off)
    if not name or len(name) > KSYM_NAME_LEN:
        return False
    return all(c in _PRINT for c in name)


# --- btf_parse -----------------------------------------------------------------------------------

def btf_parse(data: bytes) -> Btf:
    """btf_parse() after the copy-in: the verified object, or BpfError with the kernel's errno."""
    btf = Btf(bytes(data))
    btf_parse_hdr(btf)
    btf_parse_str_sec(btf)
    btf_parse_type_sec(btf)
    btf_check_type_tags(btf)
    btf_parse_struct_metas(btf)
    return btf


def btf_parse_hdr(btf: Btf) -> None:
    data, size = btf.data, btf.data_size
    if size < 8:                                        # offsetofend(struct btf_header, hdr_len)
        raise BpfError(_EINVAL)
    hdr_len = _U32.unpack_from(data, 4)[0]
    if size < hdr_len:
        raise BpfError(_EINVAL)
    if hdr_len > BTF_HDR_SIZE and any(data[BTF_HDR_SIZE:hdr_len]):
        raise BpfError(errno.E2BIG)                     # "Unsupported btf_header"
    head = data[:min(hdr_len, BTF_HDR_SIZE)].ljust(BTF_HDR_SIZE, b"\0")
    btf.hdr = magic, version, flags, _, type_off, type_len, str_off, str_len = _HDR.unpack(head)
    if magic != BTF_MAGIC:
        raise BpfError(_EINVAL)
    if version != BTF_VERSION:
        raise BpfError(ENOTSUPP)
    if flags:
        raise BpfError(ENOTSUPP)
    if size == hdr_len:
        raise BpfError(_EINVAL)                         # "No data"
    btf_check_sec_info(btf, size, hdr_len)


def btf_check_sec_info(btf: Btf, size: int, hdr_len: int) -> None:
    """The type and string sections, sorted by offset, must tile the data after the header."""
    _, _, _, _, type_off, type_len, str_off, str_len = btf.hdr
    secs = sorted([(type_off, type_len), (str_off, str_len)],
                  key=lambda s: (_s32(s[0]), _s32(s[1])))
    expected_total = (size - hdr_len) & 0xFFFFFFFF
    total = 0
    for off, length in secs:
        if expected_total < off:
            raise BpfError(_EINVAL)                     # "Invalid section offset"
        if total != off:
            raise BpfError(_EINVAL)                     # a gap, or an overlap
        if expected_total - total < length:
            raise BpfError(_EINVAL)                     # "Total section length too long"
        total += length
    if expected_total != total:
        raise BpfError(_EINVAL)                         # "Unsupported section found"


def _s32(x: int) -> int:
    """btf_sec_info_cmp() compares (int)(x - y): a plain order for offsets below 2 GiB."""
    return x - (1 << 32) if x >= 1 << 31 else x


def btf_parse_str_sec(btf: Btf) -> None:
    _, _, _, hdr_len, _, _, str_off, str_len = btf.hdr
    start = hdr_len + str_off
    if start + str_len != btf.data_size:
        raise BpfError(_EINVAL)                         # "String section is not at the end"
    strings = btf.data[start:start + str_len]
    if not str_len or str_len - 1 > BTF_MAX_NAME_OFFSET or strings[-1]:
        raise BpfError(_EINVAL)
    if strings[0]:
        raise BpfError(_EINVAL)
    btf.strings = strings


def btf_parse_type_sec(btf: Btf) -> None:
    _, _, _, hdr_len, type_off, type_len, _, _ = btf.hdr
    if type_off & 3:
        raise BpfError(_EINVAL)                         # "Unaligned type_off"
    if not type_len:
        raise BpfError(_EINVAL)                         # "No type found"
    btf_check_all_metas(btf)
    btf_check_all_types(btf)


# --- pass 1: check_meta -------------------------------------------------------------------------

def btf_check_all_metas(btf: Btf) -> None:
    _, _, _, hdr_len, type_off, type_len, _, _ = btf.hdr
    data = btf.data
    cur = hdr_len + type_off
    end = cur + type_len
    while cur < end:
        cur += btf_check_meta(btf, data, cur, end - cur)


def btf_check_meta(btf: Btf, data: bytes, pos: int, meta_left: int) -> int:
    """One type: its 12-byte head, then its kind's trailing data. Returns the bytes used."""
    if meta_left < 12:
        raise BpfError(_EINVAL)
    t = BtfType(*_U32X3.unpack_from(data, pos))
    meta_left -= 12
    if t.info & ~BTF_INFO_MASK:
        raise BpfError(_EINVAL)
    if t.kind > BTF_KIND_MAX or t.kind == UNKN:
        raise BpfError(_EINVAL)
    if not btf_name_offset_valid(btf, t.name_off):
        raise BpfError(_EINVAL)
    used = _CHECK_META[t.kind](btf, t, data, pos + 12, meta_left)
    btf.types.append(t)
    return 12 + used


def _int_check_meta(btf, t, data, pos, meta_left):
    if meta_left < 4:
        raise BpfError(_EINVAL)
    if t.vlen or t.kflag:
        raise BpfError(_EINVAL)
    int_data = _U32.unpack_from(data, pos)[0]
    if int_data & ~BTF_INT_MASK:
        raise BpfError(_EINVAL)
    nr_bits = (int_data & 0xFF) + ((int_data >> 16) & 0xFF)
    if nr_bits > BITS_PER_U128:
        raise BpfError(_EINVAL)
    if _bits_roundup_bytes(nr_bits) > t.size:
        raise BpfError(_EINVAL)
    encoding = (int_data >> 24) & 0x0F
    if encoding and encoding not in (BTF_INT_SIGNED, BTF_INT_CHAR, BTF_INT_BOOL):
        raise BpfError(ENOTSUPP)
    t.extra = int_data
    return 4


def _ref_type_check_meta(btf, t, data, pos, meta_left):
    """PTR and the modifiers: no trailing data; only typedef and type_tag carry a name."""
    if t.vlen:
        raise BpfError(_EINVAL)
    if t.kflag:
        raise BpfError(_EINVAL)
    if t.type > BTF_MAX_TYPE:
        raise BpfError(_EINVAL)
    if t.kind == TYPEDEF:
        if not t.name_off or not btf_name_valid_identifier(btf, t.name_off):
            raise BpfError(_EINVAL)
    elif t.kind == TYPE_TAG:
        if not _name_at(btf, t.name_off):
            raise BpfError(_EINVAL)
    elif t.name_off:
        raise BpfError(_EINVAL)
    return 0


def _array_check_meta(btf, t, data, pos, meta_left):
    if meta_left < 12:
        raise BpfError(_EINVAL)
    if t.name_off or t.vlen or t.kflag or t.size:
        raise BpfError(_EINVAL)
    elem_type, index_type, nelems = _U32X3.unpack_from(data, pos)
    if not elem_type or elem_type > BTF_MAX_TYPE:
        raise BpfError(_EINVAL)
    if not index_type or index_type > BTF_MAX_TYPE:
        raise BpfError(_EINVAL)
    t.extra = (elem_type, index_type, nelems)
    return 12


def _struct_check_meta(btf, t, data, pos, meta_left):
    is_union = t.kind == UNION
    meta_needed = t.vlen * 12
    if meta_left < meta_needed:
        raise BpfError(_EINVAL)
    if t.name_off and not btf_name_valid_identifier(btf, t.name_off):
        raise BpfError(_EINVAL)
    members = []
    last_offset = 0
    for i in range(t.vlen):
        name_off, mtype, moff = _U32X3.unpack_from(data, pos + 12 * i)
        if not btf_name_offset_valid(btf, name_off):
            raise BpfError(_EINVAL)
        if name_off and not btf_name_valid_identifier(btf, name_off):
            raise BpfError(_EINVAL)
        if not mtype or mtype > BTF_MAX_TYPE:
            raise BpfError(_EINVAL)                     # a member cannot be void
        offset = moff & 0xFFFFFF if t.kflag else moff
        if is_union and offset:
            raise BpfError(_EINVAL)
        if t.size < _bits_roundup_bytes(offset):
            raise BpfError(_EINVAL)
        if not is_union and last_offset > offset:
            raise BpfError(_EINVAL)
        last_offset = offset
        members.append((name_off, mtype, moff))
    t.extra = members
    return meta_needed


def _enum_check_meta(btf, t, data, pos, meta_left, entry=8):
    meta_needed = t.vlen * entry
    if meta_left < meta_needed:
        raise BpfError(_EINVAL)
    if t.size > 8 or not t.size or t.size & (t.size - 1):
        raise BpfError(_EINVAL)
    if t.name_off and not btf_name_valid_identifier(btf, t.name_off):
        raise BpfError(_EINVAL)
    for i in range(t.vlen):
        name_off = _U32.unpack_from(data, pos + entry * i)[0]
        if not btf_name_offset_valid(btf, name_off):
            raise BpfError(_EINVAL)
        if not name_off or not btf_name_valid_identifier(btf, name_off):
            raise BpfError(_EINVAL)
    return meta_needed


def _enum64_check_meta(btf, t, data, pos, meta_left):
    return _enum_check_meta(btf, t, data, pos, meta_left, entry=12)


def _fwd_check_meta(btf, t, data, pos, meta_left):
    if t.vlen:
        raise BpfError(_EINVAL)
    if t.type:
        raise BpfError(_EINVAL)
    if not t.name_off or not btf_name_valid_identifier(btf, t.name_off):
        raise BpfError(_EINVAL)
    return 0


def _func_check_meta(btf, t, data, pos, meta_left):
    if not t.name_off or not btf_name_valid_identifier(btf, t.name_off):
        raise BpfError(_EINVAL)
    if t.vlen > BTF_FUNC_GLOBAL:
        raise BpfError(_EINVAL)                         # "Invalid func linkage": extern too
    if t.kflag:
        raise BpfError(_EINVAL)
    return 0


def _func_proto_check_meta(btf, t, data, pos, meta_left):
    meta_needed = t.vlen * 8
    if meta_left < meta_needed:
        raise BpfError(_EINVAL)
    if t.name_off or t.kflag:
        raise BpfError(_EINVAL)
    t.extra = [struct.unpack_from("<II", data, pos + 8 * i) for i in range(t.vlen)]
    return meta_needed


def _var_check_meta(btf, t, data, pos, meta_left):
    if meta_left < 4:
        raise BpfError(_EINVAL)
    if t.vlen or t.kflag:
        raise BpfError(_EINVAL)
    if not t.name_off or not btf_name_valid_identifier(btf, t.name_off):
        raise BpfError(_EINVAL)
    if not t.type or t.type > BTF_MAX_TYPE:
        raise BpfError(_EINVAL)
    linkage = _U32.unpack_from(data, pos)[0]
    if linkage not in (BTF_VAR_STATIC, BTF_VAR_GLOBAL_ALLOCATED):
        raise BpfError(_EINVAL)
    return 4


def _datasec_check_meta(btf, t, data, pos, meta_left):
    meta_needed = t.vlen * 12
    if meta_left < meta_needed:
        raise BpfError(_EINVAL)
    if not t.size or t.kflag:
        raise BpfError(_EINVAL)
    if not t.name_off or not btf_name_valid_section(btf, t.name_off):
        raise BpfError(_EINVAL)
    last_end = total = 0
    vsis = []
    for i in range(t.vlen):
        vtype, voff, vsize = _U32X3.unpack_from(data, pos + 12 * i)
        if not vtype or vtype > BTF_MAX_TYPE:
            raise BpfError(_EINVAL)
        if voff < last_end or voff >= t.size:
            raise BpfError(_EINVAL)
        if not vsize or vsize > t.size:
            raise BpfError(_EINVAL)
        last_end = voff + vsize
        if last_end > t.size:
            raise BpfError(_EINVAL)
        total += vsize
        vsis.append((vtype, voff, vsize))
    if t.size < total:
        raise BpfError(_EINVAL)
    t.extra = vsis
    return meta_needed


def _float_check_meta(btf, t, data, pos, meta_left):
    if t.vlen or t.kflag:
        raise BpfError(_EINVAL)
    if t.size not in (2, 4, 8, 12, 16):
        raise BpfError(_EINVAL)
    return 0


def _decl_tag_check_meta(btf, t, data, pos, meta_left):
    if meta_left < 4:
        raise BpfError(_EINVAL)
    if not _name_at(btf, t.name_off):
        raise BpfError(_EINVAL)
    if t.vlen or t.kflag:
        raise BpfError(_EINVAL)
    component_idx = _I32.unpack_from(data, pos)[0]
    if component_idx < -1:
        raise BpfError(_EINVAL)
    t.extra = component_idx
    return 4


_CHECK_META = {
    INT: _int_check_meta, PTR: _ref_type_check_meta, ARRAY: _array_check_meta,
    STRUCT: _struct_check_meta, UNION: _struct_check_meta, ENUM: _enum_check_meta,
    FWD: _fwd_check_meta, TYPEDEF: _ref_type_check_meta, VOLATILE: _ref_type_check_meta,
    CONST: _ref_type_check_meta, RESTRICT: _ref_type_check_meta, FUNC: _func_check_meta,
    FUNC_PROTO: _func_proto_check_meta, VAR: _var_check_meta, DATASEC: _datasec_check_meta,
    FLOAT: _float_check_meta, DECL_TAG: _decl_tag_check_meta, TYPE_TAG: _ref_type_check_meta,
    ENUM64: _enum64_check_meta,
}

# --- pass 2: resolve ------------------------------------------------------------------------------

NOT_VISITED, VISITED, RESOLVED = 0, 1, 2
RESOLVE_TBD, RESOLVE_PTR, RESOLVE_STRUCT_OR_ARRAY = 0, 1, 2


class _Env:
    """struct btf_verifier_env: the resolve stack and each type's visit state."""

    def __init__(self, btf: Btf):
        n = len(btf.types)
        self.btf = btf
        self.visit = [NOT_VISITED] * n
        self.stack: list = []                # [type, type_id, next_member]
        self.mode = RESOLVE_TBD
        btf.resolved_ids = [0] * n
        btf.resolved_sizes = [0] * n
        # Types that need no resolving count as resolved from the start (env_resolve_init).
        for i in range(1, n):
            if btf.types[i].kind not in NEEDS_RESOLVE:
                self.visit[i] = RESOLVED

    def is_sink(self, t) -> bool:
        """env_type_is_resolve_sink()"""
        if t is None:
            return True                      # void
        if self.mode == RESOLVE_TBD:
            return t.kind not in NEEDS_RESOLVE
        if self.mode == RESOLVE_PTR:
            return t.kind not in MODIFIERS and t.kind != PTR
        return t.kind not in MODIFIERS and t.kind not in (ARRAY, STRUCT, UNION)

    def is_resolved(self, type_id: int) -> bool:
        return type_id == 0 or self.visit[type_id] == RESOLVED

    def push_unless_resolved(self, t, type_id: int) -> bool:
        """Push t (and say so) unless it is a resolve sink or resolved already: how a
        *_resolve() defers to the type it points to before finishing itself."""
        if self.is_sink(t) or self.is_resolved(type_id):
            return False
        self.push(t, type_id)
        return True

    def push(self, t, type_id: int) -> None:
        """env_stack_push(): E2BIG past 32 deep, EEXIST when the type is on the stack already."""
        if len(self.stack) == MAX_RESOLVE_DEPTH:
            raise BpfError(errno.E2BIG)
        if self.visit[type_id] != NOT_VISITED:
            raise BpfError(errno.EEXIST)     # "Loop detected"
        self.visit[type_id] = VISITED
        self.stack.append([t, type_id, 0])
        if self.mode == RESOLVE_TBD:
            if t.kind == PTR:
                self.mode = RESOLVE_PTR
            elif t.kind in (STRUCT, UNION, ARRAY):
                self.mode = RESOLVE_STRUCT_OR_ARRAY

    def pop_resolved(self, resolved_id: int, resolved_size: int) -> None:
        _, type_id, _ = self.stack.pop()
        self.btf.resolved_ids[type_id] = resolved_id
        self.btf.resolved_sizes[type_id] = resolved_size
        self.visit[type_id] = RESOLVED


def btf_check_all_types(btf: Btf) -> None:
    env = _Env(btf)
    for type_id in range(1, len(btf.types)):
        t = btf.types[type_id]
        if t.kind in NEEDS_RESOLVE and not env.is_resolved(type_id):
            btf_resolve(env, t, type_id)
        if t.kind == FUNC_PROTO:
            btf_func_proto_check(env, t)


def btf_resolve(env: _Env, t, type_id: int) -> None:
    env.mode = RESOLVE_TBD
    env.push(t, type_id)
    try:
        while env.stack:
            v = env.stack[-1]
            _RESOLVE[v[0].kind](env, v)
    finally:
        env.stack.clear()
    if not btf_resolve_valid(env, t, type_id):
        raise BpfError(_EINVAL)                         # "Invalid resolve state"


def btf_resolve_valid(env: _Env, t, type_id: int) -> bool:
    btf = env.btf
    if not env.is_resolved(type_id):
        return False
    if t.kind in (STRUCT, UNION, DATASEC):
        return not btf.resolved_ids[type_id] and not btf.resolved_sizes[type_id]
    if t.kind in (DECL_TAG, FUNC):
        return bool(btf.resolved_ids[type_id]) and not btf.resolved_sizes[type_id]
    if t.kind in MODIFIERS or t.kind in (PTR, VAR):
        r = _type_id_resolve(btf, type_id)
        return r is not None and r.kind not in MODIFIERS and r.kind not in (VAR, DATASEC)
    if t.kind == ARRAY:
        elem = btf.type_id_size(t.extra[0])
        return (elem is not None and elem[0].kind not in MODIFIERS
                and t.extra[2] * elem[2] == btf.resolved_sizes[type_id])
    return False


def _type_id_resolve(btf: Btf, type_id: int):
    """btf_type_id_resolve(): the type a modifier, ptr or var was resolved to (void: None is
    returned as a sentinel object that is no modifier)."""
    rid = btf.resolved_ids[type_id]
    t = btf.type_by_id(rid)
    return t if t is not None else _VOID


class _Void:
    kind = UNKN


_VOID = _Void()


def _follow_to_ptr(env: _Env, next_id: int):
    """If next_id is a modifier that was resolved to a ptr not resolved itself, continue there."""
    btf = env.btf
    nt = btf.type_by_id(next_id)
    if nt is not None and nt.kind in MODIFIERS:
        rid = btf.resolved_ids[next_id]
        rt = btf.type_by_id(rid)
        if rt is not None and rt.kind == PTR and not env.is_sink(rt) and not env.is_resolved(rid):
            env.push(rt, rid)
            return True
    return False


def _sized_or_sizeless(env: _Env, next_id: int, nt) -> int:
    """The id a modifier or ptr resolves to: the type with a size it leads to, or else (for
    "typedef void new_void", "const void", a pointer to a fwd or a func_proto) what the
    resolved next type resolves to, which must be void, a fwd or a func_proto (EINVAL)."""
    btf = env.btf
    sized = btf.type_id_size(next_id)
    if sized is not None:
        return sized[1]
    if env.is_resolved(next_id):
        next_id = btf.resolved_ids[next_id]     # btf_type_id_resolve()
        nt = btf.type_by_id(next_id)
    if nt is not None and nt.kind not in (FWD, FUNC_PROTO):
        raise BpfError(_EINVAL)                 # "Invalid type_id"
    return next_id


def _modifier_resolve(env: _Env, v) -> None:
    btf = env.btf
    t = v[0]
    next_id = t.type
    nt = btf.type_by_id(next_id)
    if next_id and (nt is None or nt.kind in RESOLVE_SOURCE_ONLY):
        raise BpfError(_EINVAL)
    if env.push_unless_resolved(nt, next_id):
        return
    next_id = _sized_or_sizeless(env, next_id, nt)
    env.pop_resolved(next_id, 0)


def _var_resolve(env: _Env, v) -> None:
    btf = env.btf
    t = v[0]
    next_id = t.type
    nt = btf.type_by_id(next_id)
    if nt is None or nt.kind in RESOLVE_SOURCE_ONLY:
        raise BpfError(_EINVAL)
    if env.push_unless_resolved(nt, next_id):
        return
    if _follow_to_ptr(env, next_id):
        return
    sized = btf.type_id_size(next_id)
    if sized is None:
        raise BpfError(_EINVAL)
    env.pop_resolved(sized[1], 0)


def _ptr_resolve(env: _Env, v) -> None:
    btf = env.btf
    t = v[0]
    next_id = t.type
    nt = btf.type_by_id(next_id)
    if next_id and (nt is None or nt.kind in RESOLVE_SOURCE_ONLY):
        raise BpfError(_EINVAL)
    if env.push_unless_resolved(nt, next_id):
        return
    if _follow_to_ptr(env, next_id):
        return
    next_id = _sized_or_sizeless(env, next_id, nt)
    env.pop_resolved(next_id, 0)


def _array_resolve(env: _Env, v) -> None:
    btf = env.btf
    t = v[0]
    elem_id, index_id, nelems = t.extra
    # The index type: an int of regular size.
    it = btf.type_by_id(index_id)
    if it is None or it.kind in RESOLVE_SOURCE_ONLY or _nosize(it):
        raise BpfError(_EINVAL)
    if env.push_unless_resolved(it, index_id):
        return
    sized = btf.type_id_size(index_id)
    if sized is None or sized[0].kind != INT or not _int_is_regular(sized[0]):
        raise BpfError(_EINVAL)
    # The element type.
    et = btf.type_by_id(elem_id)
    if et is None or et.kind in RESOLVE_SOURCE_ONLY or _nosize(et):
        raise BpfError(_EINVAL)
    if env.push_unless_resolved(et, elem_id):
        return
    sized = btf.type_id_size(elem_id)
    if sized is None:
        raise BpfError(_EINVAL)
    elem_t, elem_id, elem_size = sized
    if elem_t.kind == INT and not _int_is_regular(elem_t):
        raise BpfError(_EINVAL)
    if nelems and elem_size > 0xFFFFFFFF // nelems:
        raise BpfError(_EINVAL)                         # "Array size overflows U32_MAX"
    env.pop_resolved(elem_id, elem_size * nelems)


def _int_is_regular(t) -> bool:
    """btf_type_int_is_regular(): whole bytes, no bit offset, and 1, 2, 4, 8 or 16 of them
    (the bits, not the type's size: an 8-bit int of size 4 counts)."""
    nr_bits = t.extra & 0xFF
    return not (nr_bits & 7 or (t.extra >> 16) & 0xFF
                or _bits_roundup_bytes(nr_bits) not in (1, 2, 4, 8, 16))


def _struct_resolve(env: _Env, v) -> None:
    btf = env.btf
    t = v[0]
    members = t.extra
    if v[2]:
        # The member pushed last is resolved now: check it before going on.
        _, mtype, _ = members[v[2] - 1]
        _check_member(env, t, members[v[2] - 1], btf.type_by_id(mtype))
    for i in range(v[2], len(members)):
        member = members[i]
        mtype = member[1]
        mt = btf.type_by_id(mtype)
        if mt is None or _nosize(mt) or mt.kind in RESOLVE_SOURCE_ONLY:
            raise BpfError(_EINVAL)                     # "Invalid member"
        if not env.is_sink(mt) and not env.is_resolved(mtype):
            v[2] = i + 1
            env.push(mt, mtype)
            return
        _check_member(env, t, member, mt)
    env.pop_resolved(0, 0)


def _check_member(env: _Env, st, member, mt) -> None:
    """check_member / check_kflag_member of the member's type, through modifiers."""
    btf = env.btf
    _, mtype, moff = member
    if mt.kind in (FWD, FUNC, FUNC_PROTO, VAR, DATASEC, DECL_TAG):
        raise BpfError(_EINVAL)                         # "Unsupported check_member"
    sized = btf.type_id_size(mtype)                     # modifiers: the type they stand for
    if sized is None:
        raise BpfError(_EINVAL)                         # "Invalid member"
    mt, _, size = sized
    if st.kflag:
        bit_off, bitfield = moff & 0xFFFFFF, moff >> 24
    else:
        bit_off, bitfield = moff, 0
    if mt.kind == INT:
        int_data = mt.extra
        if st.kflag:
            if not _int_is_regular(mt):
                raise BpfError(_EINVAL)
            if not bitfield:
                if bit_off & 7:
                    raise BpfError(_EINVAL)
                bitfield = int_data & 0xFF
            elif bitfield > int_data & 0xFF:
                raise BpfError(_EINVAL)
            nr_bits = bitfield
        else:
            bit_off += (int_data >> 16) & 0xFF
            nr_bits = int_data & 0xFF
        _check_fits(st, bit_off, nr_bits)
        return
    if mt.kind in (ENUM, ENUM64) and bitfield:
        if bitfield > mt.size * 8:
            raise BpfError(_EINVAL)
        _check_fits(st, bit_off, bitfield)
        return
    if bitfield:
        raise BpfError(_EINVAL)                         # "Invalid member bitfield_size"
    if bit_off & 7:
        raise BpfError(_EINVAL)                         # "Member is not byte aligned"
    if st.size - (bit_off >> 3) < size:
        raise BpfError(_EINVAL)                         # "Member exceeds struct_size"


def _check_fits(st, bit_off: int, nr_bits: int) -> None:
    bytes_offset = bit_off >> 3
    nr_copy_bits = nr_bits + (bit_off & 7)
    if nr_copy_bits > BITS_PER_U128:
        raise BpfError(_EINVAL)
    if st.size < bytes_offset or st.size - bytes_offset < _bits_roundup_bytes(nr_copy_bits):
        raise BpfError(_EINVAL)                         # "Member exceeds struct_size"


def _func_resolve(env: _Env, v) -> None:
    btf_func_check(env, v[0])
    env.pop_resolved(v[0].type, 0)


def btf_func_check(env: _Env, t) -> None:
    proto = env.btf.type_by_id(t.type)
    if proto is None or proto.kind != FUNC_PROTO:
        raise BpfError(_EINVAL)
    for name_off, arg_type in proto.extra:
        if not name_off and arg_type:
            raise BpfError(_EINVAL)


def _decl_tag_resolve(env: _Env, v) -> None:
    btf = env.btf
    t = v[0]
    next_id = t.type
    nt = btf.type_by_id(next_id)
    if nt is None or nt.kind not in (FUNC, STRUCT, UNION, VAR, TYPEDEF):
        raise BpfError(_EINVAL)
    if env.push_unless_resolved(nt, next_id):
        return
    idx = t.extra
    if idx != -1:
        if nt.kind in (VAR, TYPEDEF):
            raise BpfError(_EINVAL)
        if nt.kind in (STRUCT, UNION):
            vlen = nt.vlen
        else:
            proto = btf.type_by_id(nt.type)     # the func's prototype, checked already
            vlen = proto.vlen if proto is not None else 0
        if idx >= vlen:
            raise BpfError(_EINVAL)
    env.pop_resolved(next_id, 0)


def _datasec_resolve(env: _Env, v) -> None:
    btf = env.btf
    t = v[0]
    for i in range(v[2], len(t.extra)):
        vtype, _, vsize = t.extra[i]
        vt = btf.type_by_id(vtype)
        if vt is None or vt.kind != VAR:
            raise BpfError(_EINVAL)
        if not env.is_sink(vt) and not env.is_resolved(vtype):
            v[2] = i + 1
            env.push(vt, vtype)
            return
        sized = btf.type_id_size(vt.type)
        if sized is None:
            raise BpfError(_EINVAL)
        if vsize < sized[2]:
            raise BpfError(_EINVAL)
    env.pop_resolved(0, 0)


_RESOLVE = {
    TYPEDEF: _modifier_resolve, VOLATILE: _modifier_resolve, CONST: _modifier_resolve,
    RESTRICT: _modifier_resolve, TYPE_TAG: _modifier_resolve, PTR: _ptr_resolve,
    ARRAY: _array_resolve, STRUCT: _struct_resolve, UNION: _struct_resolve, VAR: _var_resolve,
    FUNC: _func_resolve, DECL_TAG: _decl_tag_resolve, DATASEC: _datasec_resolve,
}


def btf_func_proto_check(env: _Env, t) -> None:
    """A function prototype: a return type with a size (or void), named args with sizes;
    the last arg may be a nameless void (varargs)."""
    btf = env.btf
    if t.type:
        rt = btf.type_by_id(t.type)
        if rt is None:
            raise BpfError(_EINVAL)
        if rt.kind in NEEDS_RESOLVE and not env.is_resolved(t.type):
            btf_resolve(env, rt, t.type)
        if btf.type_id_size(t.type) is None:
            raise BpfError(_EINVAL)
    args = list(t.extra)
    if not args:
        return
    if not args[-1][1]:
        if args[-1][0]:
            raise BpfError(_EINVAL)
        args.pop()
    for name_off, arg_type in args:
        at = btf.type_by_id(arg_type)
        if at is None:
            raise BpfError(_EINVAL)
        if name_off and (not btf_name_offset_valid(btf, name_off)
                         or not btf_name_valid_identifier(btf, name_off)):
            raise BpfError(_EINVAL)
        if at.kind in NEEDS_RESOLVE and not env.is_resolved(arg_type):
            btf_resolve(env, at, arg_type)
        if btf.type_id_size(arg_type) is None:
            raise BpfError(_EINVAL)


# --- pass 3: type tags ----------------------------------------------------------------------------

def btf_check_type_tags(btf: Btf) -> None:
    """Type tags come first in a chain of modifiers; a chain longer than 32 is ELOOP."""
    good_id = 0
    n = len(btf.types)
    for i in range(1, n):
        t = btf.types[i]
        if t.kind not in MODIFIERS:
            continue
        in_tags = t.kind == TYPE_TAG
        cur_id = i
        chain_limit = 32
        while t is not None and t.kind in MODIFIERS:
            if not chain_limit:
                raise BpfError(errno.ELOOP)
            chain_limit -= 1
            if t.kind == TYPE_TAG:
                if not in_tags:
                    raise BpfError(_EINVAL)
            else:
                in_tags = False
            if cur_id <= good_id:
                break
            cur_id = t.type
            if cur_id and cur_id >= n:
                raise BpfError(_EINVAL)
            t = btf.type_by_id(cur_id)
        good_id = i


# --- special fields (btf_parse_fields, for struct bpf_spin_lock) ------------------------------

BPF_SPIN_LOCK_SIZE = 4


def btf_parse_fields(btf: Btf, t) -> int | None:
    """The byte offset of the struct bpf_spin_lock member of struct t, or None.

    A member counts when its type is a struct named bpf_spin_lock of size 4; one at an offset
    that is not a multiple of 4 is skipped; one off a byte boundary is EINVAL, a second one
    E2BIG (an error record)."""
    if t.kind not in (STRUCT, UNION):
        return None
    found = None
    for _, mtype, moff in t.extra:
        mt = btf.type_by_id(mtype)
        if (mt is None or mt.kind != STRUCT
                or btf.name_by_offset(mt.name_off) != b"bpf_spin_lock"
                or mt.size != BPF_SPIN_LOCK_SIZE):
            continue
        bit_off = moff & 0xFFFFFF if t.kflag else moff
        if bit_off & 7:
            raise BpfError(_EINVAL)             # "valid C code cannot generate such BTF"
        off = bit_off >> 3
        if off % BPF_SPIN_LOCK_SIZE:
            continue
        if found is not None:
            raise BpfError(errno.E2BIG)         # one spin lock per value
        found = off
    return found


def btf_parse_struct_metas(btf: Btf) -> None:
    """At load time, every struct with a member whose type is the BTF's first struct named
    bpf_spin_lock must parse into a record: an error record is its errno, an empty one EFAULT.

    DEVIATION(btf-fields): of the special structs (bpf_spin_lock, bpf_list_head,
    bpf_list_node, bpf_rb_root, bpf_rb_node, bpf_refcount, kptrs, timers) only
    bpf_spin_lock is recognised; values holding the others load and map like plain data."""
    lock_id = None
    for i in range(1, len(btf.types)):
        t = btf.types[i]
        if t.kind == STRUCT and btf.name_by_offset(t.name_off) == b"bpf_spin_lock":
            lock_id = i
            break
    if lock_id is None:
        return
    for t in btf.types[1:]:
        if t.kind != STRUCT or not any(m[1] == lock_id for m in t.extra):
            continue
        if btf_parse_fields(btf, t) is None:
            raise BpfError(errno.EFAULT)


def btf_find_spin_lock(btf: Btf, value_type) -> int | None:
    """map_check_btf()'s record: the lock's offset, or None; an error record (EINVAL,
    E2BIG) counts as no special fields, as IS_ERR_OR_NULL(map->record) does."""
    try:
        return btf_parse_fields(btf, value_type)
    except BpfError:
        return None
