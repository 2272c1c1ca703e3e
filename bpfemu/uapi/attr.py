"""Layouts of the map-related members of ``union bpf_attr`` and of ``struct bpf_map_info`` (Linux 6.18).

Declared with construct, one Struct per anonymous member of the union, all little-endian
(x86_64). C padding holes are ``Padding(n)``. Parsing is permissive: these layouts never
validate anything; semantic checks are Python code in the handlers, in the kernel's order.

The hot path does not run construct's interpreter: ``struct_format()`` derives a plain
``struct`` format from a declaration, so the two can never drift apart.
"""
import struct

from construct import Bytes, Int32sl, Int32ul, Int64ul, Padding, Struct

BPF_ATTR_SIZE = 168       # sizeof(union bpf_attr) on 6.18 (the PROG_LOAD member ends at keyring_id)
BPF_MAP_INFO_SIZE = 104   # sizeof(struct bpf_map_info)

# BPF_MAP_CREATE
MapCreateAttr = Struct(
    "map_type" / Int32ul,
    "key_size" / Int32ul,
    "value_size" / Int32ul,
    "max_entries" / Int32ul,
    "map_flags" / Int32ul,
    "inner_map_fd" / Int32ul,
    "numa_node" / Int32ul,
    "map_name" / Bytes(16),
    "map_ifindex" / Int32ul,
    "btf_fd" / Int32ul,
    "btf_key_type_id" / Int32ul,
    "btf_value_type_id" / Int32ul,
    "btf_vmlinux_value_type_id" / Int32ul,
    "map_extra" / Int64ul,
    "value_type_btf_obj_fd" / Int32sl,
    "map_token_fd" / Int32sl,
    "excl_prog_hash" / Int64ul,
    "excl_prog_hash_size" / Int32ul,
)

# BPF_MAP_*_ELEM and BPF_MAP_GET_NEXT_KEY; `value` and `next_key` share the slot at 16.
MapElemAttr = Struct(
    "map_fd" / Int32ul,
    Padding(4),
    "key" / Int64ul,
    "value" / Int64ul,   # also next_key
    "flags" / Int64ul,
)

# BPF_MAP_*_BATCH
MapBatchAttr = Struct(
    "in_batch" / Int64ul,
    "out_batch" / Int64ul,
    "keys" / Int64ul,
    "values" / Int64ul,
    "count" / Int32ul,
    "map_fd" / Int32ul,
    "elem_flags" / Int64ul,
    "flags" / Int64ul,
)

# BPF_OBJ_GET_INFO_BY_FD
InfoAttr = Struct(
    "bpf_fd" / Int32ul,
    "info_len" / Int32ul,
    "info" / Int64ul,
)

# BPF_MAP_GET_NEXT_ID / BPF_MAP_GET_FD_BY_ID (start_id and map_id share offset 0)
GetIdAttr = Struct(
    "start_id" / Int32ul,   # also map_id, prog_id, btf_id, link_id
    "next_id" / Int32ul,
    "open_flags" / Int32ul,
    "fd_by_id_token_fd" / Int32sl,
)

# BPF_OBJ_PIN / BPF_OBJ_GET
ObjAttr = Struct(
    "pathname" / Int64ul,
    "bpf_fd" / Int32ul,
    "file_flags" / Int32ul,
    "path_fd" / Int32sl,
)

# struct bpf_map_info
BpfMapInfo = Struct(
    "type" / Int32ul,
    "id" / Int32ul,
    "key_size" / Int32ul,
    "value_size" / Int32ul,
    "max_entries" / Int32ul,
    "map_flags" / Int32ul,
    "name" / Bytes(16),
    "ifindex" / Int32ul,
    "btf_vmlinux_value_type_id" / Int32ul,
    "netns_dev" / Int64ul,
    "netns_ino" / Int64ul,
    "btf_id" / Int32ul,
    "btf_key_type_id" / Int32ul,
    "btf_value_type_id" / Int32ul,
    "btf_vmlinux_id" / Int32ul,
    "map_extra" / Int64ul,
    "hash" / Int64ul,
    "hash_size" / Int32ul,
    Padding(4),
)

# Name in the C source (the union member or struct) -> layout, for the layout test and docs.
LAYOUTS = {
    "map_create": MapCreateAttr,
    "map_elem": MapElemAttr,
    "batch": MapBatchAttr,
    "info": InfoAttr,
    "get_id": GetIdAttr,
    "obj": ObjAttr,
    "bpf_map_info": BpfMapInfo,
}


def field_offsets(layout: Struct) -> dict[str, tuple[int, int]]:
    """{field name: (offset, size)} of a flat construct Struct, padding skipped."""
    out, off = {}, 0
    for sub in layout.subcons:
        size = sub.sizeof()
        if sub.name:
            out[sub.name] = (off, size)
        off += size
    return out


_FORMAT_CHARS = {(4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}


def struct_format(layout: Struct) -> str:
    """The little-endian ``struct`` format equivalent to a flat layout of ints, bytes and padding."""
    fmt = "<"
    for sub in layout.subcons:
        size = sub.sizeof()
        inner = getattr(sub, "subcon", sub)
        if sub.name is None:                        # Padding(n)
            fmt += f"{size}x"
        elif type(inner).__name__ == "FormatField":  # Int32ul, Int64ul, ...
            fmt += inner.fmtstr[-1]
        else:                                        # Bytes(n)
            fmt += f"{size}s"
    return fmt


def compiled(layout: Struct) -> struct.Struct:
    """A struct.Struct for the hot path, derived from the construct declaration."""
    s = struct.Struct(struct_format(layout))
    assert s.size == layout.sizeof(), layout
    return s
