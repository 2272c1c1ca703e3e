"""Layouts of the map-related members of ``union bpf_attr`` and of ``struct bpf_map_info`` (Linux 6.18).

Each layout is declared once, as a table of (field, format) rows, all little-endian
(x86_64): ``U32``/``S32``/``U64`` ints, ``BYTES(n)``, and C padding holes as ``PAD(n)``.
From that one table come both the construct Struct (``MapBatchAttr`` and friends, built on
first use, so that ``import bpfemu`` does not pay for importing construct) and the plain
``struct`` format the hot path unpacks with (``compiled()``): the two cannot drift apart.
Parsing is permissive: these layouts never validate anything; semantic checks are Python
code in the handlers, in the kernel's order.
"""
import struct

BPF_ATTR_SIZE = 168       # sizeof(union bpf_attr) on 6.18 (the PROG_LOAD member ends at keyring_id)
BPF_MAP_INFO_SIZE = 104   # sizeof(struct bpf_map_info)

U32, S32, U64 = "I", "i", "Q"      # construct's Int32ul, Int32sl, Int64ul


def BYTES(n: int) -> str:           # construct's Bytes(n)
    return f"{n}s"


def PAD(n: int) -> str:             # construct's Padding(n): a row without a name
    return f"{n}x"


# BPF_MAP_CREATE
MAP_CREATE = (
    ("map_type", U32),
    ("key_size", U32),
    ("value_size", U32),
    ("max_entries", U32),
    ("map_flags", U32),
    ("inner_map_fd", U32),
    ("numa_node", U32),
    ("map_name", BYTES(16)),
    ("map_ifindex", U32),
    ("btf_fd", U32),
    ("btf_key_type_id", U32),
    ("btf_value_type_id", U32),
    ("btf_vmlinux_value_type_id", U32),
    ("map_extra", U64),
    ("value_type_btf_obj_fd", S32),
    ("map_token_fd", S32),
    ("excl_prog_hash", U64),
    ("excl_prog_hash_size", U32),
)

# BPF_MAP_*_ELEM and BPF_MAP_GET_NEXT_KEY; `value` and `next_key` share the slot at 16.
MAP_ELEM = (
    ("map_fd", U32),
    (None, PAD(4)),
    ("key", U64),
    ("value", U64),   # also next_key
    ("flags", U64),
)

# BPF_MAP_*_BATCH
MAP_BATCH = (
    ("in_batch", U64),
    ("out_batch", U64),
    ("keys", U64),
    ("values", U64),
    ("count", U32),
    ("map_fd", U32),
    ("elem_flags", U64),
    ("flags", U64),
)

# BPF_OBJ_GET_INFO_BY_FD
INFO = (
    ("bpf_fd", U32),
    ("info_len", U32),
    ("info", U64),
)

# BPF_MAP_GET_NEXT_ID / BPF_MAP_GET_FD_BY_ID (start_id and map_id share offset 0)
GET_ID = (
    ("start_id", U32),   # also map_id, prog_id, btf_id, link_id
    ("next_id", U32),
    ("open_flags", U32),
    ("fd_by_id_token_fd", S32),
)

# BPF_OBJ_PIN / BPF_OBJ_GET
OBJ = (
    ("pathname", U64),
    ("bpf_fd", U32),
    ("file_flags", U32),
    ("path_fd", S32),
)

# struct bpf_map_info
BPF_MAP_INFO = (
    ("type", U32),
    ("id", U32),
    ("key_size", U32),
    ("value_size", U32),
    ("max_entries", U32),
    ("map_flags", U32),
    ("name", BYTES(16)),
    ("ifindex", U32),
    ("btf_vmlinux_value_type_id", U32),
    ("netns_dev", U64),
    ("netns_ino", U64),
    ("btf_id", U32),
    ("btf_key_type_id", U32),
    ("btf_value_type_id", U32),
    ("btf_vmlinux_id", U32),
    ("map_extra", U64),
    ("hash", U64),
    ("hash_size", U32),
    (None, PAD(4)),
)

# Name in the C source (the union member or struct) -> declaration.
DECLARATIONS = {
    "map_create": MAP_CREATE,
    "map_elem": MAP_ELEM,
    "batch": MAP_BATCH,
    "info": INFO,
    "get_id": GET_ID,
    "obj": OBJ,
    "bpf_map_info": BPF_MAP_INFO,
}

# The construct Structs, by the names they have always had.
_STRUCT_NAMES = {
    "MapCreateAttr": MAP_CREATE,
    "MapElemAttr": MAP_ELEM,
    "MapBatchAttr": MAP_BATCH,
    "InfoAttr": INFO,
    "GetIdAttr": GET_ID,
    "ObjAttr": OBJ,
    "BpfMapInfo": BPF_MAP_INFO,
}


def construct_layout(decl):
    """The construct Struct of a declaration."""
    from construct import Bytes, Int32sl, Int32ul, Int64ul, Padding, Struct
    ints = {U32: Int32ul, S32: Int32sl, U64: Int64ul}
    subcons = []
    for name, fmt in decl:
        if name is None:
            subcons.append(Padding(int(fmt[:-1])))
        elif fmt in ints:
            subcons.append(name / ints[fmt])
        else:
            subcons.append(name / Bytes(int(fmt[:-1])))
    return Struct(*subcons)


def __getattr__(name):
    # MapBatchAttr etc. and LAYOUTS (name -> construct Struct) are made on first use.
    if name in _STRUCT_NAMES:
        value = construct_layout(_STRUCT_NAMES[name])
    elif name == "LAYOUTS":
        value = {n: construct_layout(decl) for n, decl in DECLARATIONS.items()}
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def field_offsets(layout) -> dict[str, tuple[int, int]]:
    """{field name: (offset, size)} of a flat construct Struct, padding skipped."""
    out, off = {}, 0
    for sub in layout.subcons:
        size = sub.sizeof()
        if sub.name:
            out[sub.name] = (off, size)
        off += size
    return out


def struct_format(decl) -> str:
    """The little-endian ``struct`` format of a declaration."""
    return "<" + "".join(fmt for _, fmt in decl)


def compiled(decl) -> struct.Struct:
    """A struct.Struct for the hot path, from the declaration."""
    return struct.Struct(struct_format(decl))
