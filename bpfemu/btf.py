"""A small reader of raw BTF (the format of /sys/kernel/btf/vmlinux), standard library only.

Used to check our uapi layouts against the running kernel: sizes, member offsets (with
anonymous structs and unions flattened the way C names them) and enum values. It reads a
whole, self-contained BTF blob; split BTF (kernel modules) is out of scope.

Format: include/uapi/linux/btf.h and Documentation/bpf/btf.rst.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import NamedTuple

BTF_MAGIC = 0xEB9F
BTF_INT_SIGNED = 1 << 0
VMLINUX_PATH = "/sys/kernel/btf/vmlinux"

# BTF_KIND_* numbers
(KIND_UNKN, KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_FWD,
 KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_FUNC, KIND_FUNC_PROTO, KIND_VAR,
 KIND_DATASEC, KIND_FLOAT, KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64) = range(20)

KIND_NAMES = {
    "int": KIND_INT, "ptr": KIND_PTR, "array": KIND_ARRAY, "struct": KIND_STRUCT,
    "union": KIND_UNION, "enum": KIND_ENUM, "fwd": KIND_FWD, "typedef": KIND_TYPEDEF,
    "volatile": KIND_VOLATILE, "const": KIND_CONST, "restrict": KIND_RESTRICT, "func": KIND_FUNC,
    "func_proto": KIND_FUNC_PROTO, "var": KIND_VAR, "datasec": KIND_DATASEC, "float": KIND_FLOAT,
    "decl_tag": KIND_DECL_TAG, "type_tag": KIND_TYPE_TAG, "enum64": KIND_ENUM64,
}

# Kinds that only qualify another type: sizeof and member lookup look straight through them.
_MODIFIERS = frozenset({KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG})
# Kinds whose btf_type.size_type is a byte size rather than a type id.
_SIZED = frozenset({KIND_INT, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_DATASEC, KIND_FLOAT,
                    KIND_ENUM64})


class Field(NamedTuple):
    """One named member after flattening. A bitfield gives the bytes that hold its bits."""
    name: str
    offset: int
    size: int


class Member(NamedTuple):
    """A direct struct/union member as BTF stores it (bit_size 0: not a bitfield)."""
    name: str
    type_id: int
    bit_offset: int
    bit_size: int


@dataclass
class BtfType:
    id: int
    kind: int
    name: str
    vlen: int
    kind_flag: bool
    size_type: int                # byte size for _SIZED kinds, else a referenced type id
    members: list = field(default_factory=list)   # struct/union: Member; func_proto: (name, type)
    enum: list = field(default_factory=list)      # enum/enum64: (name, value)
    array: tuple | None = None    # (elem_type, index_type, nelems)
    int_encoding: int = 0         # INT: BTF_INT_SIGNED | BTF_INT_CHAR | BTF_INT_BOOL


class Btf:
    """Parsed BTF: ``types[id]`` for id 1..N (id 0 is void)."""

    def __init__(self, data: bytes):
        self._parse(bytes(data))

    @classmethod
    def load(cls, path: str = VMLINUX_PATH) -> "Btf":
        with open(path, "rb") as f:
            return cls(f.read())

    # --- parsing -------------------------------------------------------------------------------

    def _parse(self, data: bytes) -> None:
        if len(data) < 24:
            raise ValueError("BTF blob shorter than its header")
        if struct.unpack_from("<H", data)[0] == BTF_MAGIC:
            end = "<"
        elif struct.unpack_from(">H", data)[0] == BTF_MAGIC:
            end = ">"
        else:
            raise ValueError("not BTF: bad magic")
        self.endian = end
        _, version, _flags, hdr_len, type_off, type_len, str_off, str_len = \
            struct.unpack_from(end + "HBBIIIII", data)
        if version != 1:
            raise ValueError(f"unsupported BTF version {version}")
        # Section offsets count from the end of the header; hdr_len lets newer headers grow.
        strs = data[hdr_len + str_off: hdr_len + str_off + str_len]
        tsec = data[hdr_len + type_off: hdr_len + type_off + type_len]
        if len(strs) != str_len or len(tsec) != type_len:
            raise ValueError("BTF sections run past the end of the blob")
        self._strs = strs

        u32x3 = struct.Struct(end + "III")
        u32x2 = struct.Struct(end + "II")
        u32 = struct.Struct(end + "I")
        self.types: list[BtfType | None] = [None]
        self._by_name: dict[str, list[int]] = {}
        pos = 0
        while pos < type_len:
            name_off, info, size_type = u32x3.unpack_from(tsec, pos)
            pos += 12
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            kflag = bool(info >> 31)
            t = BtfType(len(self.types), kind, self.string(name_off), vlen, kflag, size_type)
            # Each kind is followed by its own extra data; skipping it wrong shifts every later id.
            if kind == KIND_INT:
                t.int_encoding = (u32.unpack_from(tsec, pos)[0] >> 24) & 0x0F
                pos += 4
            elif kind == KIND_ARRAY:
                t.array = u32x3.unpack_from(tsec, pos)
                pos += 12
            elif kind in (KIND_STRUCT, KIND_UNION):
                for _ in range(vlen):
                    m_name, m_type, m_off = u32x3.unpack_from(tsec, pos)
                    pos += 12
                    # kind_flag: bits 0-23 are the bit offset, 24-31 the bitfield size.
                    bits, bsize = (m_off & 0xFFFFFF, m_off >> 24) if kflag else (m_off, 0)
                    t.members.append(Member(self.string(m_name), m_type, bits, bsize))
            elif kind == KIND_ENUM:
                for _ in range(vlen):
                    e_name, val = u32x2.unpack_from(tsec, pos)
                    pos += 8
                    if kflag and val & 0x80000000:       # kind_flag: signed values
                        val -= 1 << 32
                    t.enum.append((self.string(e_name), val))
            elif kind == KIND_ENUM64:
                for _ in range(vlen):
                    e_name, lo, hi = u32x3.unpack_from(tsec, pos)
                    pos += 12
                    val = (hi << 32) | lo
                    if kflag and val >> 63:
                        val -= 1 << 64
                    t.enum.append((self.string(e_name), val))
            elif kind == KIND_FUNC_PROTO:
                for _ in range(vlen):
                    p_name, p_type = u32x2.unpack_from(tsec, pos)
                    pos += 8
                    t.members.append((self.string(p_name), p_type))
            elif kind == KIND_VAR:
                pos += 4                                  # struct btf_var { linkage }
            elif kind == KIND_DATASEC:
                pos += 12 * vlen                          # struct btf_var_secinfo[vlen]
            elif kind == KIND_DECL_TAG:
                pos += 4                                  # struct btf_decl_tag { component_idx }
            elif kind in (KIND_PTR, KIND_FWD, KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST,
                          KIND_RESTRICT, KIND_FUNC, KIND_FLOAT, KIND_TYPE_TAG):
                pass                                      # no extra data
            else:
                raise ValueError(f"unknown BTF kind {kind} at type id {t.id}")
            if pos > type_len:
                raise ValueError(f"type id {t.id} runs past the type section")
            self.types.append(t)
            if t.name:
                self._by_name.setdefault(t.name, []).append(t.id)
        self.ptr_size = self._guess_ptr_size()

    def _guess_ptr_size(self) -> int:
        # BTF does not record pointer size; like libbpf, take it from `long`.
        for name in ("long int", "long unsigned int", "long"):
            for tid in self._by_name.get(name, ()):
                if self.types[tid].kind == KIND_INT:
                    return self.types[tid].size_type
        return 8

    def string(self, off: int) -> str:
        end = self._strs.index(b"\0", off)
        return self._strs[off:end].decode()

    # --- queries -------------------------------------------------------------------------------

    def find(self, name: str, kind: int | str | None = None) -> int:
        """Type id of the first type called ``name`` (of ``kind``, if given); KeyError if none."""
        if isinstance(kind, str):
            kind = KIND_NAMES[kind]
        for tid in self._by_name.get(name, ()):
            if kind is None or self.types[tid].kind == kind:
                return tid
        raise KeyError(f"no BTF type {name!r}" + (f" of kind {kind}" if kind is not None else ""))

    def type(self, type_id: int) -> BtfType:
        if type_id == 0:
            raise ValueError("type id 0 is void")
        return self.types[type_id]

    def resolve(self, type_id: int) -> int:
        """Skip typedefs and qualifiers down to the underlying type id."""
        while type_id and self.types[type_id].kind in _MODIFIERS:
            type_id = self.types[type_id].size_type
        return type_id

    def sizeof(self, type_id: int) -> int:
        t = self.type(self.resolve(type_id))
        if t.kind in _SIZED:
            return t.size_type
        if t.kind == KIND_PTR:
            return self.ptr_size
        if t.kind == KIND_ARRAY:
            elem, _, nelems = t.array
            return nelems * self.sizeof(elem)
        raise ValueError(f"type id {t.id} (kind {t.kind}) has no size")

    def members(self, type_id: int) -> list[Field]:
        """Named fields of a struct/union in declaration order, anonymous members flattened."""
        return [f for f, _ in self.typed_members(type_id)]

    def typed_members(self, type_id: int) -> list[tuple[Field, int]]:
        """Like members(), each field paired with its type id (for signedness and the like)."""
        out: list[tuple[Field, int]] = []
        self._flatten(type_id, 0, out)
        return out

    def int_signed(self, type_id: int) -> bool | None:
        """Whether an integer or enum type is signed; None for any other kind."""
        t = self.type(self.resolve(type_id))
        if t.kind == KIND_INT:
            return bool(t.int_encoding & BTF_INT_SIGNED)
        if t.kind in (KIND_ENUM, KIND_ENUM64):
            return t.kind_flag
        return None

    def _flatten(self, type_id: int, base: int, out: list) -> None:
        t = self.type(self.resolve(type_id))
        if t.kind not in (KIND_STRUCT, KIND_UNION):
            raise ValueError(f"type id {t.id} is not a struct or union")
        for m in t.members:
            if m.bit_size:          # bitfield: report the bytes its bits occupy
                first = m.bit_offset // 8
                last = (m.bit_offset + m.bit_size - 1) // 8
                out.append((Field(m.name, base + first, last - first + 1), m.type_id))
                continue
            if m.bit_offset % 8:
                raise ValueError(f"member {m.name!r} of type id {t.id} is not byte aligned")
            off = base + m.bit_offset // 8
            if not m.name and self.type(self.resolve(m.type_id)).kind in (KIND_STRUCT, KIND_UNION):
                self._flatten(m.type_id, off, out)   # C names these members directly
            else:
                out.append((Field(m.name, off, self.sizeof(m.type_id)), m.type_id))

    def union_member_layouts(self, union_name: str) -> list[tuple[str, int, list[Field]]]:
        """For each direct member of ``union union_name``: (name, sizeof, flattened fields).

        Anonymous members have name "" (their fields are what C code names directly); a member
        that is not a struct/union gets itself as its only field.
        """
        u = self.type(self.find(union_name, KIND_UNION))
        out = []
        for m in u.members:
            size = self.sizeof(m.type_id)
            if self.type(self.resolve(m.type_id)).kind in (KIND_STRUCT, KIND_UNION):
                fields = self.members(m.type_id)
            else:
                fields = [Field(m.name, 0, size)]
            out.append((m.name, size, fields))
        return out

    def enum_values(self, name: str) -> dict[str, int]:
        """{enumerator: value} of ``enum name`` (ENUM or ENUM64)."""
        for kind in (KIND_ENUM, KIND_ENUM64):
            try:
                return dict(self.type(self.find(name, kind)).enum)
            except KeyError:
                pass
        raise KeyError(f"no BTF enum {name!r}")
