"""BPF_BTF_LOAD of randomly damaged BTF: one to three bytes or words of a BTF with every
kind changed, loaded on the emulator and on the live kernel, must get the same answer.
(Hypothesis; the number of examples follows the profile, HYPOTHESIS_PROFILE=ci for more.)"""
import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.differential.btf_support import (CONST, DECL_TAG, ENUM64, FLOAT, RESTRICT, TYPE_TAG,
                                            TYPEDEF, UNION, VOLATILE, BtfBuilder, btf_load)
from tests.support import host_unavailable_reason


def every_kind() -> BtfBuilder:
    b = BtfBuilder()
    i = b.int()
    c = b.int("char", 1, 8, 2)
    u = b.int("u64", 8, 64, 0)
    p = b.ptr(i)
    arr = b.array(c, i, 16)
    b.struct("bpf_spin_lock", 4, [("val", i, 0)])
    s = b.struct("s", 32, [("a", i, 0), ("b", p, 64), ("name", arr, 128)])
    e = b.enum("e", 4, [("A", 0), ("B", 1)])
    td = b.modifier(TYPEDEF, s, "s_t")
    cc = b.modifier(CONST, td)
    fp = b.func_proto(i, [("x", i), ("y", p)])
    b.func("fn", fp)
    v = b.var("gv", i)
    b.datasec(".data", 4, [(v, 0, 4)])
    b.struct("un", 8, [("a", i, 0), ("b", u, 0)], kind=UNION)
    fw = b.fwd("fwd_s")
    b.ptr(fw)
    b.struct("bits", 16, [("x", i, (3 << 24) | 0), ("y", i, (5 << 24) | 3),
                         ("z", e, (2 << 24) | 8), ("w", u, 64)], kflag=1)
    b.raw(b.name("double"), FLOAT << 24, 8)
    b.raw(b.name("tag"), DECL_TAG << 24, s, struct.pack("<i", 1))
    tt = b.modifier(TYPE_TAG, i, "user")
    pt = b.ptr(tt)
    b.raw(b.name("e64"), (ENUM64 << 24) | 1, 8, struct.pack("<III", b.name("Z"), 1, 2))
    b.modifier(VOLATILE, cc)
    b.modifier(RESTRICT, pt)
    a2 = b.array(s, u, 3)
    b.array(a2, i, 2)
    return b


BASE = every_kind()
INTERESTING = [0, 1, 2, 3, 4, 8, 0x10, 0x20, 0x80, 0xFF]
WORDS = [0, 1, 2, 3, 5, 17, 31, 32, 33, 64, 0xFFFF, 0x100000, 0xFFFFFFFF]

damage = st.lists(st.one_of(
    st.tuples(st.just("byte"), st.integers(0, len(BASE.types) - 1),
              st.one_of(st.sampled_from(INTERESTING), st.integers(0, 255))),
    st.tuples(st.just("word"), st.integers(0, len(BASE.types) // 4 - 1),
              st.one_of(st.sampled_from(WORDS), st.integers(0, 2**32 - 1))),
    st.tuples(st.just("string"), st.integers(0, len(BASE.strings) - 1),
              st.sampled_from([0, ord("."), ord("-"), ord("a"), ord("1")])),
), min_size=1, max_size=3)


@pytest.fixture(scope="module")
def backends():
    reason = host_unavailable_reason()
    if reason:
        pytest.skip(f"live kernel bpf() not permitted here: {reason}")
    from bpfemu import Emulator, HostKernel
    emu = Emulator()
    yield emu, HostKernel()
    emu.close_all()


@given(damage=damage)
def test_damaged_btf(backends, damage):
    emu, host = backends
    types, strings = bytearray(BASE.types), bytearray(BASE.strings)
    for what, pos, val in damage:
        if what == "byte":
            types[pos] = val
        elif what == "word":
            struct.pack_into("<I", types, 4 * pos, val)
        else:
            strings[pos] = val
    blob = BASE.blob(types=bytes(types), strings=bytes(strings))
    r_emu, r_host = btf_load(emu, blob)[0], btf_load(host, blob)[0]
    if r_emu >= 0:
        emu.close(r_emu)
    if r_host >= 0:
        os.close(r_host)
    assert (r_emu >= 0, min(r_emu, 0)) == (r_host >= 0, min(r_host, 0))


def test_the_undamaged_btf_loads(backends):
    """The fuzz starts from a valid BTF (otherwise most damage would not matter)."""
    emu, host = backends
    blob = BASE.blob()
    r_emu, r_host = btf_load(emu, blob)[0], btf_load(host, blob)[0]
    assert r_emu >= 0 and r_host >= 0
    emu.close(r_emu)
    os.close(r_host)
