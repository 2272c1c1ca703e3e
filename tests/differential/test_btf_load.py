"""BPF_BTF_LOAD on the emulator and the live kernel: the same blobs, the same result.

Each case builds a BTF blob (or a BTF_LOAD attr) with one thing wrong, or nothing wrong,
and both backends must answer alike: an fd for both, or the same errno. Facts: docs/btf.md.
"""
import struct

import pytest

from bpfemu.uapi import consts as c
from tests.differential.btf_support import (ARRAY, CONST, DECL_TAG, FLOAT, INT, PTR, STRUCT,
                                            TYPE_TAG, TYPEDEF, UNION, VOLATILE, BtfBuilder,
                                            btf_load, info, spin_lock_btf)
from tests.differential.abi_support import KERNEL_ADDR

E2BIG, EBADF, EEXIST, EFAULT, EINVAL, ELOOP, ENOSPC, ENOTSUPP = 7, 9, 17, 14, 22, 40, 28, 524


def _int():
    b = BtfBuilder()
    b.int()
    return b


def case_ok():
    return spin_lock_btf().blob()


# --- header and sections --------------------------------------------------------------------
HEADER_CASES = {
    "ok": case_ok,
    "bad_magic": lambda: _int().blob(magic=0xEB9E),
    "version_2": lambda: _int().blob(version=2),
    "flags": lambda: _int().blob(flags=1),
    "too_short_for_hdr_len": lambda: _int().blob()[:7],
    "hdr_len_past_end": lambda: _int().blob(hdr_len=4096),
    "longer_header_zero_tail": lambda: _int().blob(hdr_len=32, hdr_tail=bytes(8)),
    "longer_header_nonzero_tail": lambda: _int().blob(hdr_len=32, hdr_tail=b"\1" + bytes(7)),
    "shorter_header": lambda: _int().blob()[:8] + _int().blob()[24:],
    "no_data": lambda: _int().blob(types=b"", strings=b"", type_len=0, str_len=0),
    "unaligned_type_off": lambda: _int().blob(type_off=2, types=b"\0\0" + _int().types,
                                              str_off=18),
    "gap_before_types": lambda: _int().blob(type_off=4, types=bytes(4) + _int().types,
                                            str_off=20),
    "gap_between": lambda: _int().blob(str_off=20, types=_int().types + bytes(4)),
    "overlap": lambda: _int().blob(str_off=12),
    "strings_first": lambda: (BtfBuilder().blob(type_off=5, str_off=0, types=b"",
                                                type_len=16, strings=b"\0int\0")
                              + _int().types),
    "type_len_too_long": lambda: _int().blob(type_len=17),
    "str_len_too_long": lambda: _int().blob(str_len=6),
    "trailing_byte": lambda: _int().blob() + b"\0",
    "no_types": lambda: _int().blob(types=b"", type_len=0, str_off=0),
    "no_strings": lambda: _int().blob(strings=b"", str_len=0),
    "strings_start_non_nul": lambda: _int().blob(strings=b"xint\0"),
    "strings_end_non_nul": lambda: _int().blob(strings=b"\0int"),
    "offsets_wrap": lambda: _int().blob(type_off=0xFFFFFFF0),
}


def _load_on_both(both, blob):
    """BTF_LOAD of blob on each client: (accepted, -errno or 0) each, the fds kept to close."""
    outcomes = []
    for cl in both:
        r, _ = btf_load(cl.b, blob)
        if r >= 0:
            cl.fds.append(r)
        outcomes.append((r >= 0, min(r, 0)))
    return outcomes


@pytest.mark.parametrize("name", list(HEADER_CASES))
def test_header_and_sections(both, name):
    outcomes = _load_on_both(both, HEADER_CASES[name]())
    assert outcomes[0] == outcomes[1]


# --- types ------------------------------------------------------------------------------------

def t(build):
    """A case from a function that fills a builder."""
    def make():
        b = BtfBuilder()
        build(b)
        return b.blob()
    return make


def _chain(b, n, kind=CONST):
    i = b.int()
    prev = i
    for _ in range(n):
        prev = b.modifier(kind, prev)


TYPE_CASES = {
    "kind_0": t(lambda b: b.raw(0, info(0), 0)),
    "kind_20": t(lambda b: b.raw(0, info(20), 0)),
    "info_reserved_bits": t(lambda b: b.raw(b.name("int"), info(INT) | 0x10000, 4,
                                            struct.pack("<I", 32))),
    "name_off_past_strings": t(lambda b: b.raw(1000, info(INT), 4, struct.pack("<I", 32))),
    "truncated_head": lambda: _int().blob(types=_int().types + bytes(8)),
    "truncated_int": lambda: _int().blob(types=_int().types[:14]),
    "int_vlen": t(lambda b: b.raw(b.name("int"), info(INT, 1), 4, struct.pack("<I", 32))),
    "int_kflag": t(lambda b: b.raw(b.name("int"), info(INT, 0, 1), 4, struct.pack("<I", 32))),
    "int_bits_past_size": t(lambda b: b.int(bits=33)),
    "int_bits_129": t(lambda b: b.int(size=16, bits=129)),
    "int_offset_bits": t(lambda b: b.int(bits=8, offset=8)),
    "int_size_3": t(lambda b: b.int(size=3, bits=24)),
    "int_size_0": t(lambda b: b.int(size=0, bits=0)),
    "int_encoding_3": t(lambda b: b.int(encoding=3)),
    "int_encoding_char": t(lambda b: b.int(name="char", size=1, bits=8, encoding=2)),
    "int_encoding_bool": t(lambda b: b.int(name="_Bool", size=1, bits=8, encoding=4)),
    "int_data_high_bits": t(lambda b: b.raw(b.name("int"), info(INT), 4,
                                            struct.pack("<I", 0x10000020))),
    "int_anonymous": t(lambda b: b.int(name="")),
    "ptr_to_void": t(lambda b: b.ptr(0)),
    "ptr_with_name": t(lambda b: (b.int(), b.modifier(PTR, 1, "p"))),
    "ptr_to_missing": t(lambda b: b.ptr(5)),
    "ptr_type_id_too_big": t(lambda b: b.ptr(0x100000)),
    "ptr_to_self": t(lambda b: b.ptr(1)),
    "ptr_const_loop": t(lambda b: (b.ptr(2), b.modifier(CONST, 1))),
    "const_to_self": t(lambda b: b.modifier(CONST, 1)),
    "const_void": t(lambda b: b.modifier(CONST, 0)),
    "typedef_no_name": t(lambda b: (b.int(), b.modifier(TYPEDEF, 1))),
    "typedef_bad_name": t(lambda b: (b.int(), b.modifier(TYPEDEF, 1, "1x"))),
    "typedef_dash_name": t(lambda b: (b.int(), b.modifier(TYPEDEF, 1, "a-b"))),
    "typedef_ok": t(lambda b: (b.int(), b.modifier(TYPEDEF, 1, "u_int"))),
    "volatile_named": t(lambda b: (b.int(), b.modifier(VOLATILE, 1, "v"))),
    "chain_31": t(lambda b: _chain(b, 31)),
    "chain_32": t(lambda b: _chain(b, 32)),
    "chain_33": t(lambda b: _chain(b, 33)),
    "type_tag_first": t(lambda b: (b.int(), b.modifier(CONST, 1),
                                   b.modifier(TYPE_TAG, 2, "user"), b.ptr(3))),
    "type_tag_after_const": t(lambda b: (b.int(), b.modifier(TYPE_TAG, 1, "user"),
                                         b.modifier(CONST, 2), b.ptr(3))),
    "type_tag_no_name": t(lambda b: (b.int(), b.modifier(TYPE_TAG, 1))),
    "struct_ok": t(lambda b: (b.int(), b.struct("s", 8, [("a", 1, 0), ("b", 1, 32)]))),
    "struct_anonymous_members": t(lambda b: (b.int(), b.struct("", 8, [("", 1, 0)]))),
    "struct_bad_name": t(lambda b: (b.int(), b.struct("a.b", 4, [("a", 1, 0)]))),
    "struct_member_void": t(lambda b: b.struct("s", 4, [("a", 0, 0)])),
    "struct_member_missing": t(lambda b: b.struct("s", 4, [("a", 7, 0)])),
    "struct_member_past_size": t(lambda b: (b.int(), b.struct("s", 4, [("a", 1, 64)]))),
    "struct_member_overflows": t(lambda b: (b.int(), b.struct("s", 6, [("a", 1, 32)]))),
    "struct_members_out_of_order": t(lambda b: (b.int(), b.struct(
        "s", 8, [("a", 1, 32), ("b", 1, 0)]))),
    "struct_self": t(lambda b: b.struct("s", 4, [("a", 1, 0)])),
    "struct_self_ptr": t(lambda b: (b.struct("s", 8, [("next", 2, 0)]), b.ptr(1))),
    "struct_mutual": t(lambda b: (b.struct("a", 4, [("b", 2, 0)]),
                                  b.struct("b", 4, [("a", 1, 0)]))),
    "struct_unaligned_struct_member": t(lambda b: (b.int(), b.struct("i", 4, [("x", 1, 0)]),
                                                   b.struct("s", 8, [("a", 2, 4)]))),
    "struct_bitfield_plain": t(lambda b: (b.int(), b.struct("s", 4, [("a", 1, 3)]))),
    "struct_kflag_bitfield": t(lambda b: (b.int(), b.struct(
        "s", 4, [("a", 1, (3 << 24) | 0), ("b", 1, (5 << 24) | 3)], kflag=1))),
    "struct_kflag_bitfield_too_wide": t(lambda b: (b.int(), b.struct(
        "s", 8, [("a", 1, (33 << 24) | 0)], kflag=1))),
    "struct_member_fwd": t(lambda b: (b.fwd("f"), b.struct("s", 4, [("a", 1, 0)]))),
    "struct_member_func_proto": t(lambda b: (b.func_proto(0, []),
                                             b.struct("s", 4, [("a", 1, 0)]))),
    "union_offset": t(lambda b: (b.int(), b.struct("u", 4, [("a", 1, 0), ("b", 1, 8)],
                                                   kind=UNION))),
    "union_ok": t(lambda b: (b.int(), b.struct("u", 4, [("a", 1, 0), ("b", 1, 0)],
                                               kind=UNION))),
    "struct_vlen_past_section": t(lambda b: b.raw(b.name("s"), info(STRUCT, 3), 4)),
    "array_ok": t(lambda b: (b.int(), b.array(1, 1, 4))),
    "array_zero": t(lambda b: (b.int(), b.array(1, 1, 0))),
    "array_named": t(lambda b: (b.int(), b.raw(b.name("a"), info(ARRAY), 0,
                                                 struct.pack("<III", 1, 1, 2)))),
    "array_size_set": t(lambda b: (b.int(), b.raw(0, info(ARRAY), 8,
                                                    struct.pack("<III", 1, 1, 2)))),
    "array_elem_void": t(lambda b: (b.int(), b.array(0, 1, 2))),
    "array_index_void": t(lambda b: (b.int(), b.array(1, 0, 2))),
    "array_index_struct": t(lambda b: (b.int(), b.struct("s", 4, [("a", 1, 0)]),
                                       b.array(1, 2, 2))),
    "array_index_bitfield_int": t(lambda b: (b.int(), b.int(name="i3", size=1, bits=3),
                                             b.array(1, 2, 2))),
    "array_of_self": t(lambda b: (b.int(), b.array(2, 1, 2))),
    "array_overflow": t(lambda b: (b.int(), b.array(1, 1, 0x40000001))),
    "array_of_fwd": t(lambda b: (b.int(), b.fwd("f"), b.array(2, 1, 2))),
    "enum_ok": t(lambda b: b.enum("e", 4, [("A", 0), ("B", 1)])),
    "enum_size_3": t(lambda b: b.enum("e", 3, [("A", 0)])),
    "enum_size_16": t(lambda b: b.enum("e", 16, [("A", 0)])),
    "enum_value_no_name": t(lambda b: b.enum("e", 4, [("", 0)])),
    "enum_no_values": t(lambda b: b.enum("e", 4, [])),
    "fwd_ok": t(lambda b: b.fwd("f")),
    "fwd_no_name": t(lambda b: b.raw(0, info(7), 0)),
    "fwd_with_type": t(lambda b: b.raw(b.name("f"), info(7), 1)),
    "func_ok": t(lambda b: (b.int(), b.func_proto(1, [("x", 1)]), b.func("f", 2))),
    "func_unnamed_arg": t(lambda b: (b.int(), b.func_proto(1, [("", 1)]), b.func("f", 2))),
    "func_proto_unnamed_arg": t(lambda b: (b.int(), b.func_proto(1, [("", 1)]))),
    "func_not_proto": t(lambda b: (b.int(), b.func("f", 1))),
    "func_linkage_3": t(lambda b: (b.int(), b.func_proto(1, []), b.func("f", 2, linkage=3))),
    "func_no_name": t(lambda b: (b.int(), b.func_proto(1, []), b.raw(0, info(12), 2))),
    "func_linkage_extern": t(lambda b: (b.int(), b.func_proto(1, []), b.func("f", 2,
                                                                           linkage=2))),
    "array_index_8_bits_in_4_bytes": t(lambda b: (b.int(bits=8), b.array(1, 1, 4))),
    "const_typedef_void": t(lambda b: (b.modifier(TYPEDEF, 0, "v_t"), b.modifier(CONST, 1))),
    "const_to_fwd": t(lambda b: (b.fwd("f"), b.modifier(CONST, 1))),
    "ptr_to_typedef_void": t(lambda b: (b.modifier(TYPEDEF, 0, "v_t"), b.ptr(1))),
    "func_proto_varargs": t(lambda b: (b.int(), b.func_proto(1, [("x", 1), ("", 0)]))),
    "func_proto_void_arg_named": t(lambda b: (b.int(), b.func_proto(1, [("x", 0)]))),
    "func_proto_ret_missing": t(lambda b: b.func_proto(9, [])),
    "func_proto_named": t(lambda b: b.raw(b.name("p"), info(13), 0)),
    "var_ok": t(lambda b: (b.int(), b.var("v", 1))),
    "var_void": t(lambda b: b.var("v", 0)),
    "var_linkage_2": t(lambda b: (b.int(), b.var("v", 1, linkage=2))),
    "var_no_name": t(lambda b: (b.int(), b.var("", 1))),
    "datasec_ok": t(lambda b: (b.int(), b.var("v", 1), b.datasec(".data", 4, [(2, 0, 4)]))),
    "datasec_not_var": t(lambda b: (b.int(), b.datasec(".data", 4, [(1, 0, 4)]))),
    "datasec_size_0": t(lambda b: (b.int(), b.var("v", 1), b.datasec(".data", 0, [(2, 0, 4)]))),
    "datasec_var_too_small": t(lambda b: (b.int(), b.var("v", 1),
                                          b.datasec(".data", 4, [(2, 0, 2)]))),
    "datasec_overlap": t(lambda b: (b.int(), b.var("v", 1), b.var("w", 1),
                                    b.datasec(".data", 8, [(2, 0, 4), (3, 2, 4)]))),
    "datasec_past_end": t(lambda b: (b.int(), b.var("v", 1), b.datasec(".data", 4, [(2, 2, 4)]))),
    "datasec_name_space": t(lambda b: (b.int(), b.var("v", 1), b.datasec("a b", 4, [(2, 0, 4)]))),
    "float_ok": t(lambda b: b.raw(b.name("double"), info(FLOAT), 8)),
    "float_size_3": t(lambda b: b.raw(b.name("f3"), info(FLOAT), 3)),
    "decl_tag_ok": t(lambda b: (b.int(), b.struct("s", 4, [("a", 1, 0)]),
                                b.raw(b.name("tag"), info(DECL_TAG), 2, struct.pack("<i", 0)))),
    "decl_tag_component_past": t(lambda b: (b.int(), b.struct("s", 4, [("a", 1, 0)]),
                                            b.raw(b.name("tag"), info(DECL_TAG), 2,
                                                  struct.pack("<i", 1)))),
    "decl_tag_on_int": t(lambda b: (b.int(), b.raw(b.name("tag"), info(DECL_TAG), 1,
                                                   struct.pack("<i", -1)))),
    "decl_tag_idx_minus_2": t(lambda b: (b.int(), b.struct("s", 4, [("a", 1, 0)]),
                                         b.raw(b.name("tag"), info(DECL_TAG), 2,
                                               struct.pack("<i", -2)))),
}


@pytest.mark.parametrize("name", list(TYPE_CASES))
def test_types(both, name):
    outcomes = _load_on_both(both, TYPE_CASES[name]())
    assert outcomes[0] == outcomes[1]


# --- the attr ----------------------------------------------------------------------------------

ATTR_CASES = {
    "size_0": dict(size=0),
    "size_past_max": dict(size=16 * 1024 * 1024 + 1),
    "flags_unknown": dict(flags=1),
    "token_flag_closed_fd": dict(flags=c.BPF_F_TOKEN_FD, token_fd=0x7FFF0000),
    "token_flag_not_token": dict(flags=c.BPF_F_TOKEN_FD, token_fd=0),
    "log_buf_without_size": dict(log_buf=0x1000, log_level=1),
    "log_size_without_buf": dict(log_size=64, log_level=1),
    "log_level_without_buf": dict(log_level=1),
    "log_buf_without_level": dict(log_buf=0x1000, log_size=64),
    "log_level_16": dict(log_level=16),
    "log_level_stats_only": dict(log_level=4),
    "log_size_huge": dict(log_buf=0x1000, log_size=1 << 30, log_level=1),
    "size_past_mapped_blob": dict(size=1 << 20),
}


@pytest.mark.parametrize("name", list(ATTR_CASES))
def test_attr(both, name):
    blob = spin_lock_btf().blob()
    emu, host = both
    r_emu, _ = btf_load(emu.b, blob, **ATTR_CASES[name])
    r_host, _ = btf_load(host.b, blob, **ATTR_CASES[name])
    emu.fds.append(r_emu) if r_emu >= 0 else None
    host.fds.append(r_host) if r_host >= 0 else None
    assert (r_emu >= 0, min(r_emu, 0)) == (r_host >= 0, min(r_host, 0))


def test_unused_attr_bytes_are_einval(client):
    """CHECK_ATTR: a non-zero byte past btf_token_fd (offset 40)."""
    from tests.support import Buf, attr_buf
    blob = spin_lock_btf().blob()
    data = Buf(blob)
    from tests.differential.btf_support import btf_load_attr
    attr = attr_buf(btf_load_attr(data.addr, len(blob)) + b"\0\0\0\0\1")
    assert client.b.bpf(c.BPF_BTF_LOAD, attr, 48) == -EINVAL


def test_bad_pointer_is_efault(client):
    from tests.differential.btf_support import btf_load_attr
    from tests.support import attr_buf
    attr = attr_buf(btf_load_attr(KERNEL_ADDR, 64))
    assert client.b.bpf(c.BPF_BTF_LOAD, attr, 40) == -EFAULT


def test_known_errnos(client):
    """A few of the answers above, spelled out (they come from the kernel's btf.c)."""
    assert btf_load(client.b, HEADER_CASES["bad_magic"]())[0] == -EINVAL
    assert btf_load(client.b, HEADER_CASES["version_2"]())[0] == -ENOTSUPP
    assert btf_load(client.b, HEADER_CASES["longer_header_nonzero_tail"]())[0] == -E2BIG
    assert btf_load(client.b, TYPE_CASES["struct_self"]())[0] == -EEXIST
    assert btf_load(client.b, TYPE_CASES["int_encoding_3"]())[0] == -ENOTSUPP
    assert btf_load(client.b, spin_lock_btf().blob(), size=16 * 1024 * 1024 + 1)[0] == -E2BIG


# --- names ---------------------------------------------------------------------------------------

NAMES = [".a", "a..", "a.b", "_ok", "1x", "a-b", "a b", "a\x01", "a$", "\xe9t\xe9",
         "." * 512, "." * 513, "a" * 512, "_" * 600]
NAMED = {
    "struct": lambda b, nm: (b.int(), b.struct(nm, 4, [("a", 1, 0)])),
    "member": lambda b, nm: (b.int(), b.struct("s", 4, [(nm, 1, 0)])),
    "typedef": lambda b, nm: (b.int(), b.modifier(TYPEDEF, 1, nm)),
    "enum": lambda b, nm: b.enum(nm, 4, [("A", 0)]),
    "enum_value": lambda b, nm: b.enum("e", 4, [(nm, 0)]),
    "fwd": lambda b, nm: b.fwd(nm),
    "func": lambda b, nm: (b.int(), b.func_proto(1, []), b.func(nm, 2)),
    "var": lambda b, nm: (b.int(), b.var(nm, 1)),
    "int": lambda b, nm: b.int(name=nm),
    "arg": lambda b, nm: (b.int(), b.func_proto(1, [(nm, 1)])),
    "datasec": lambda b, nm: (b.int(), b.var("v", 1), b.datasec(nm, 4, [(2, 0, 4)])),
}


@pytest.mark.parametrize("where", list(NAMED))
def test_names(both, where):
    """Which names each kind accepts (identifiers with dots, section names, lengths)."""
    emu, host = both
    for nm in NAMES:
        b = BtfBuilder()
        NAMED[where](b, nm.encode("latin-1"))
        blob = b.blob()
        r_emu, r_host = btf_load(emu.b, blob)[0], btf_load(host.b, blob)[0]
        for r, cl in ((r_emu, emu), (r_host, host)):
            if r >= 0:
                cl.b.close(r)
        assert (r_emu >= 0, min(r_emu, 0)) == (r_host >= 0, min(r_host, 0)), nm[:8]


# --- structs holding a bpf_spin_lock (checked at load time) ------------------------------------

def _lock(b, size=4):
    i = b.int()
    return i, b.struct("bpf_spin_lock", size, [("val", i, 0)])


LOCK_CASES = {
    "aligned": lambda b: (lambda i, l: b.struct("v", 8, [("c", i, 0), ("lock", l, 32)]))(*_lock(b)),
    "byte_misaligned": lambda b: (lambda i, l: b.struct("v", 8, [("c", i, 0), ("lock", l, 16)]))(
        *_lock(b)),
    "bit_misaligned": lambda b: (lambda i, l: b.struct("v", 8, [("c", i, 0), ("lock", l, 33)]))(
        *_lock(b)),
    "two_locks": lambda b: (lambda i, l: b.struct("v", 12, [("a", l, 0), ("c", i, 32),
                                                            ("b", l, 64)]))(*_lock(b)),
    "lock_of_size_8": lambda b: (lambda i, l: b.struct("v", 8, [("lock", l, 0)]))(
        *_lock(b, 8)),
    "lock_through_typedef": lambda b: (lambda i, l: b.struct(
        "v", 8, [("c", i, 0), ("lock", b.modifier(TYPEDEF, l, "lk"), 16)]))(*_lock(b)),
    "lock_in_union": lambda b: (lambda i, l: b.struct("v", 4, [("c", i, 0), ("lock", l, 0)],
                                                      kind=UNION))(*_lock(b)),
    "second_lock_struct": lambda b: (lambda i, l: (
        b.struct("bpf_spin_lock", 4, [("val", i, 0)]),
        b.struct("v", 8, [("c", i, 0), ("lock", l + 2, 16)])))(*_lock(b)),
}


@pytest.mark.parametrize("name", list(LOCK_CASES))
def test_spin_lock_structs(both, name):
    emu, host = both
    b = BtfBuilder()
    LOCK_CASES[name](b)
    blob = b.blob()
    r = [btf_load(cl.b, blob)[0] for cl in (emu, host)]
    for cl, x in zip((emu, host), r):
        if x >= 0:
            cl.fds.append(x)
    assert (r[0] >= 0, min(r[0], 0)) == (r[1] >= 0, min(r[1], 0))
