"""Our uapi layouts against the kernel's: abi/linux-6.18/layout.json, and the live BTF when present.

Part (a) needs no privileges: the json is the recorded truth. Part (b) regenerates it from
/sys/kernel/btf/vmlinux and compares. The BTF reader itself is tested on hand-built blobs.
"""
import importlib.util
import json
import os
import struct
from pathlib import Path

import pytest

from bpfemu import btf as btfmod
from bpfemu.btf import Btf, Field
from bpfemu.uapi import attr, consts
from bpfemu.uapi.attr import LAYOUTS, field_offsets

ROOT = Path(__file__).resolve().parents[2]
LAYOUT_JSON = ROOT / "abi" / "linux-6.18" / "layout.json"
DOC = json.loads(LAYOUT_JSON.read_text())

# Where each attr member's last field ends: CHECK_ATTR zero-checks from there (docs: #the-entry).
ENDS = {"map_create": 92, "map_elem": 32, "batch": 56, "info": 16, "get_id": 16, "obj": 20}


def _gen_layout():
    spec = importlib.util.spec_from_file_location("gen_layout", ROOT / "scripts" / "gen_layout.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _signed(layout, name):
    """True/False for an int field of a construct layout, None for bytes."""
    for sub in layout.subcons:
        if sub.name == name:
            fmt = getattr(getattr(sub, "subcon", sub), "fmtstr", None)
            return None if fmt is None else fmt[-1].islower()
    raise KeyError(name)


# --- (a) the construct layouts against the recorded json -------------------------------------

@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_modelled_fields_match_json(name):
    layout, rec = LAYOUTS[name], DOC["layouts"][name]
    for field, (off, size) in field_offsets(layout).items():
        assert field in rec["fields"], f"{name}.{field} is not in the kernel's member"
        k = rec["fields"][field]
        assert (off, size) == (k["offset"], k["size"]), f"{name}.{field}"
        if "signed" in k:
            assert _signed(layout, field) == k["signed"], f"{name}.{field} signedness"


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_kernel_field_is_modelled_or_an_alias(name):
    ours = field_offsets(LAYOUTS[name])
    slots = {v: k for k, v in ours.items()}
    rec = DOC["layouts"][name]
    aliases = {}
    for field, k in rec["fields"].items():
        if field in ours:
            continue
        slot = (k["offset"], k["size"])
        assert slot in slots, f"kernel field {name}.{field} at {slot} is not modelled"
        aliases[field] = slots[slot]
    assert aliases == rec["aliases"]


def test_known_aliases():
    assert DOC["layouts"]["map_elem"]["aliases"] == {"next_key": "value"}
    assert DOC["layouts"]["get_id"]["aliases"] == {
        n: "start_id" for n in ("prog_id", "map_id", "btf_id", "link_id")}


@pytest.mark.parametrize("name", sorted(ENDS))
def test_attr_layouts_end_at_their_last_field(name):
    layout, rec = LAYOUTS[name], DOC["layouts"][name]
    assert layout.sizeof() == ENDS[name] == rec["end"]
    assert rec["sizeof"] <= DOC["sizeof"]["union bpf_attr"]


def test_bpf_map_info_size_and_trailing_pad():
    layout, rec = attr.BpfMapInfo, DOC["layouts"]["bpf_map_info"]
    assert layout.sizeof() == attr.BPF_MAP_INFO_SIZE == rec["sizeof"] == 104
    assert rec["end"] == 100
    last = layout.subcons[-1]
    assert last.name is None and last.sizeof() == 4   # Padding(4), zero-checked on input
    assert DOC["sizeof"]["struct bpf_map_info"] == 104


def test_union_size():
    assert attr.BPF_ATTR_SIZE == DOC["sizeof"]["union bpf_attr"] == 168


def test_json_covers_every_layout():
    assert set(DOC["layouts"]) == set(LAYOUTS)
    assert DOC["header"]["source"] == "/sys/kernel/btf/vmlinux"
    assert DOC["header"]["kernel_release"].startswith("6.18")


@pytest.mark.parametrize("enum_cls, cname, max_name", [
    (consts.BpfCmd, "bpf_cmd", "__MAX_BPF_CMD"),
    (consts.BpfMapType, "bpf_map_type", "__MAX_BPF_MAP_TYPE"),
])
def test_enum_values_match_json(enum_cls, cname, max_name):
    kernel = DOC["enums"][cname]
    ours = {m.name: m.value for m in enum_cls}
    for n, v in ours.items():
        assert kernel.get(n) == v, n
    # Kernel aliases (BPF_PROG_RUN, *_DEPRECATED) add names, never numbers.
    assert {v for n, v in kernel.items() if not n.startswith("__")} == set(ours.values())
    assert getattr(consts, max_name) == kernel[max_name]


def test_prog_run_alias():
    assert consts.BPF_PROG_RUN == DOC["enums"]["bpf_cmd"]["BPF_PROG_RUN"]


# --- (b) against the live kernel's BTF -------------------------------------------------------

@pytest.fixture(scope="module")
def live_btf():
    path = btfmod.VMLINUX_PATH
    try:
        b = Btf.load(path)
    except OSError as e:
        pytest.skip(f"{path} not readable: {e}")
    return b


def test_json_is_what_gen_layout_computes_now(live_btf):
    release = os.uname().release
    if not release.startswith("6.18"):
        pytest.skip(f"layout.json records Linux 6.18; this kernel is {release}")
    now = _gen_layout().compute(live_btf, release)
    assert {k: v for k, v in now.items() if k != "header"} == \
           {k: v for k, v in DOC.items() if k != "header"}
    assert now["header"]["source"] == DOC["header"]["source"]


def test_json_file_is_canonical():
    # Regenerating must not produce a diff just from formatting.
    assert _gen_layout().dumps(DOC) == LAYOUT_JSON.read_text()


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_construct_layouts_match_live_btf(live_btf, name):
    ours = field_offsets(LAYOUTS[name])
    if name == "bpf_map_info":
        candidates = [live_btf.members(live_btf.find("bpf_map_info", "struct"))]
    else:
        # A named member by our name, else any anonymous member holding all our fields.
        members = live_btf.union_member_layouts("bpf_attr")
        candidates = [f for n, _, f in members if n == name] or \
                     [f for n, _, f in members if not n and set(ours) <= {x.name for x in f}]
    assert len(candidates) == 1, f"{name}: {len(candidates)} kernel members match"
    kernel = {f.name: (f.offset, f.size) for f in candidates[0]}
    assert {n: kernel.get(n) for n in ours} == ours


def test_sizes_match_live_btf(live_btf):
    assert live_btf.sizeof(live_btf.find("bpf_attr", "union")) == attr.BPF_ATTR_SIZE
    assert live_btf.sizeof(live_btf.find("bpf_map_info", "struct")) == attr.BPF_MAP_INFO_SIZE


def test_enums_match_live_btf(live_btf):
    for cls, cname in ((consts.BpfCmd, "bpf_cmd"), (consts.BpfMapType, "bpf_map_type")):
        kernel = live_btf.enum_values(cname)
        assert {m.name: kernel.get(m.name) for m in cls} == {m.name: m.value for m in cls}


# --- the BTF reader on hand-built blobs ------------------------------------------------------

K = btfmod


class _Builder:
    """Writes raw BTF: enough of every kind to prove the reader skips each one correctly."""

    def __init__(self, endian):
        self.e, self.strs, self.types, self.n = endian, b"\0", b"", 0

    def s(self, name):
        if not name:
            return 0
        off = len(self.strs)
        self.strs += name.encode() + b"\0"
        return off

    def add(self, kind, name, size_type, extra=b"", vlen=0, kflag=0):
        info = (kflag << 31) | (kind << 24) | vlen
        self.types += struct.pack(self.e + "III", self.s(name), info, size_type) + extra
        self.n += 1
        return self.n

    def words(self, *vals, fmt="I"):
        return struct.pack(self.e + fmt * len(vals), *vals)

    def blob(self, hdr_pad=0):
        hdr_len = 24 + hdr_pad        # a longer header (newer kernels) must be skipped by hdr_len
        hdr = struct.pack(self.e + "HBBIIIII", K.BTF_MAGIC, 1, 0, hdr_len,
                          0, len(self.types), len(self.types), len(self.strs))
        return hdr + bytes(hdr_pad) + self.types + self.strs


def _build(endian="<", hdr_pad=0):
    b = _Builder(endian)
    ids = {}
    ids["uint"] = b.add(K.KIND_INT, "unsigned int", 4, b.words(32))
    ids["int"] = b.add(K.KIND_INT, "int", 4, b.words((1 << 24) | 32))     # BTF_INT_SIGNED
    ids["u64"] = b.add(K.KIND_INT, "long long unsigned int", 8, b.words(64))
    ids["char"] = b.add(K.KIND_INT, "char", 1, b.words((2 << 24) | 8))
    ids["long"] = b.add(K.KIND_INT, "long int", 8, b.words((1 << 24) | 64))
    # Kinds with variable extra data, placed before the structs so a mis-skip shifts their ids.
    ids["proto"] = b.add(K.KIND_FUNC_PROTO, "", ids["int"],
                         b.words(b.s("a"), ids["uint"], b.s("b"), ids["u64"]), vlen=2)
    b.add(K.KIND_FUNC, "f", ids["proto"], vlen=1)
    ids["var"] = b.add(K.KIND_VAR, "v", ids["uint"], b.words(1))
    b.add(K.KIND_DATASEC, ".data", 16, b.words(ids["var"], 0, 4, ids["var"], 8, 4), vlen=2)
    b.add(K.KIND_DECL_TAG, "tag", ids["var"], b.words(-1, fmt="i"))
    b.add(K.KIND_TYPE_TAG, "user", ids["uint"])
    b.add(K.KIND_FLOAT, "double", 8)
    b.add(K.KIND_FWD, "later", 0, kflag=1)
    b.add(K.KIND_RESTRICT, "", ids["u64"])
    b.add(K.KIND_PTR, "", 0)
    ids["e64"] = b.add(K.KIND_ENUM64, "big", 8,
                       b.words(b.s("BIG"), 0x5, 0x1, b.s("NEG64"), 0xFFFFFFFF, 0xFFFFFFFF),
                       vlen=2, kflag=1)
    # typedef __u32 -> unsigned int; a volatile const __u32 on top.
    ids["u32"] = b.add(K.KIND_TYPEDEF, "__u32", ids["uint"])
    ids["cu32"] = b.add(K.KIND_CONST, "", ids["u32"])
    ids["vcu32"] = b.add(K.KIND_VOLATILE, "", ids["cu32"])
    ids["name"] = b.add(K.KIND_ARRAY, "", 0, b.words(ids["char"], ids["uint"], 6))
    ids["color"] = b.add(K.KIND_ENUM, "color", 4,
                         b.words(b.s("RED"), 0, b.s("BLUE"), 7, b.s("MINUS"), 0xFFFFFFFF),
                         vlen=3, kflag=1)
    ids["ucolor"] = b.add(K.KIND_ENUM, "ucolor", 4, b.words(b.s("TOP"), 0xFFFFFFFF), vlen=1)
    ids["color_t"] = b.add(K.KIND_TYPEDEF, "color_t", ids["color"])
    ids["ptr"] = b.add(K.KIND_PTR, "", ids["u32"])
    # union { __u64 value; __u64 next_key; } with no name
    ids["anon_u"] = b.add(K.KIND_UNION, "", 8,
                          b.words(b.s("value"), ids["u64"], 0, b.s("next_key"), ids["u64"], 0),
                          vlen=2)
    # struct demo { volatile const __u32 fd; <4 pad>; union {value, next_key}; char name[6];
    #               <2 pad>; color_t color; __u32 *p; }
    ids["demo"] = b.add(K.KIND_STRUCT, "demo", 32, b.words(
        b.s("fd"), ids["vcu32"], 0,
        0, ids["anon_u"], 64,
        b.s("name"), ids["name"], 128,
        b.s("color"), ids["color_t"], 192,
        b.s("p"), ids["ptr"], 256,
    ), vlen=5)
    # kind_flag struct: bit offsets in the low 24 bits, bitfield sizes in the top 8.
    ids["bits"] = b.add(K.KIND_STRUCT, "bits", 8, b.words(
        b.s("a"), ids["uint"], (3 << 24) | 0,
        b.s("b"), ids["uint"], (5 << 24) | 3,
        b.s("c"), ids["uint"], (12 << 24) | 8,
        b.s("d"), ids["uint"], 32,
    ), vlen=4, kflag=1)
    # union like bpf_attr: an anonymous struct, a named one, a plain int.
    ids["inner"] = b.add(K.KIND_STRUCT, "", 16, b.words(
        b.s("x"), ids["uint"], 0, 0, ids["anon_u"], 64), vlen=2)
    ids["named"] = b.add(K.KIND_STRUCT, "", 4, b.words(b.s("y"), ids["int"], 0), vlen=1)
    ids["attr"] = b.add(K.KIND_UNION, "attrlike", 16, b.words(
        0, ids["inner"], 0, b.s("named"), ids["named"], 0, b.s("raw"), ids["u64"], 0), vlen=3)
    return b.blob(hdr_pad), ids


@pytest.fixture(params=["<", ">"], ids=["le", "be"])
def tiny(request):
    blob, ids = _build(request.param)
    return Btf(blob), ids


def test_reader_finds_types_by_name_and_kind(tiny):
    b, ids = tiny
    assert len(b.types) - 1 == ids["attr"]           # every type parsed, none skipped wrongly
    assert b.find("demo") == ids["demo"]
    assert b.find("demo", "struct") == ids["demo"]
    assert b.find("__u32", K.KIND_TYPEDEF) == ids["u32"]
    with pytest.raises(KeyError):
        b.find("demo", "union")
    with pytest.raises(KeyError):
        b.find("nope")


def test_reader_sizeof_resolves_modifiers_arrays_and_pointers(tiny):
    b, ids = tiny
    assert b.sizeof(ids["vcu32"]) == 4
    assert b.sizeof(ids["color_t"]) == 4
    assert b.sizeof(ids["name"]) == 6
    assert b.sizeof(ids["ptr"]) == 8                 # from `long int`
    assert b.sizeof(ids["demo"]) == 32
    assert b.resolve(ids["vcu32"]) == ids["uint"]


def test_reader_flattens_anonymous_union(tiny):
    b, ids = tiny
    assert b.members(ids["demo"]) == [
        Field("fd", 0, 4), Field("value", 8, 8), Field("next_key", 8, 8),
        Field("name", 16, 6), Field("color", 24, 4), Field("p", 32, 8)]
    names = [n for n, _, _ in b.members(ids["demo"])]   # plain (name, offset, size) tuples
    assert names[:3] == ["fd", "value", "next_key"]


def test_reader_kind_flag_bitfields(tiny):
    b, ids = tiny
    assert b.members(ids["bits"]) == [
        Field("a", 0, 1), Field("b", 0, 1), Field("c", 1, 2), Field("d", 4, 4)]


def test_reader_union_member_layouts(tiny):
    b, _ = tiny
    assert b.union_member_layouts("attrlike") == [
        ("", 16, [Field("x", 0, 4), Field("value", 8, 8), Field("next_key", 8, 8)]),
        ("named", 4, [Field("y", 0, 4)]),
        ("raw", 8, [Field("raw", 0, 8)]),
    ]


def test_reader_enums_and_signedness(tiny):
    b, ids = tiny
    assert b.enum_values("color") == {"RED": 0, "BLUE": 7, "MINUS": -1}
    assert b.enum_values("ucolor") == {"TOP": 0xFFFFFFFF}
    assert b.enum_values("big") == {"BIG": (1 << 32) | 5, "NEG64": -1}
    with pytest.raises(KeyError):
        b.enum_values("demo")
    typed = dict((f.name, t) for f, t in b.typed_members(ids["demo"]))
    assert b.int_signed(typed["fd"]) is False
    assert b.int_signed(typed["color"]) is True
    assert b.int_signed(typed["name"]) is None
    assert b.int_signed(ids["int"]) is True


def test_reader_honours_hdr_len():
    blob, ids = _build("<", hdr_pad=8)
    assert Btf(blob).find("demo") == ids["demo"]


def test_reader_rejects_garbage():
    blob, _ = _build("<")
    with pytest.raises(ValueError):
        Btf(b"\0" * 24)
    with pytest.raises(ValueError):
        Btf(blob[:40])                                 # sections cut off
    bad = bytearray(blob)
    struct.pack_into("<I", bad, 24 + 4, 25 << 24)      # first type: unknown kind 25
    with pytest.raises(ValueError, match="unknown BTF kind"):
        Btf(bytes(bad))


@pytest.mark.parametrize("name", sorted(attr.DECLARATIONS))
def test_hot_path_format_is_the_construct_layout(name):
    # compiled() and the construct Struct come from the same declaration: same size, and
    # each field at the same offset with the same width and signedness.
    decl, layout = attr.DECLARATIONS[name], LAYOUTS[name]
    s = attr.compiled(decl)
    assert s.size == layout.sizeof()
    values = s.unpack(bytes(range(s.size)))
    named = [n for n, _ in decl if n]
    for (field, (off, size)), value in zip(field_offsets(layout).items(), values):
        assert field == named.pop(0)
        raw = bytes(range(s.size))[off:off + size]
        assert value == (raw if isinstance(value, bytes)
                         else int.from_bytes(raw, "little", signed=bool(_signed(layout, field))))
