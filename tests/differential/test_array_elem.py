"""ARRAY and PERCPU_ARRAY: creation checks and the element commands, on both backends.

Expectations are the live kernel's (docs/linux-6.18.md: #map-creation, #element-commands,
#per-cpu-values); tests with the ``both`` fixture compare the emulator with the kernel directly.
"""
import struct

import pytest

from bpfemu import Emulator
from bpfemu.uapi import consts as c
from tests.support import NCPU, Buf, elem_attr

from tests.differential.abi_support import (ARRAY, ARRAY_TYPES, E2BIG, EEXIST, EFAULT, EINVAL,
                                            ENOENT, ENOMEM, ENOTSUPP, KERNEL_ADDR, PERCPU_ARRAY,
                                            TYPE_IDS, round_up, sys_value_size, u32)

F = c


def k(i):
    return u32(i)


# (name, key_size, value_size, max_entries, map_flags, numa_node, {type: expected})
OK = 0
CREATE_CASES = [
    ("baseline", 4, 8, 4, 0, 0, {ARRAY: OK, PERCPU_ARRAY: OK}),
    ("key0", 0, 8, 4, 0, 0, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    ("key1", 1, 8, 4, 0, 0, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    ("key3", 3, 8, 4, 0, 0, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    ("key8", 8, 8, 4, 0, 0, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    ("value0", 4, 0, 4, 0, 0, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    ("max0", 4, 8, 0, 0, 0, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    ("value32768", 4, 32768, 4, 0, 0, {ARRAY: OK, PERCPU_ARRAY: OK}),
    ("value32769", 4, 32769, 4, 0, 0, {ARRAY: OK, PERCPU_ARRAY: -E2BIG}),
    ("value_2g", 4, 0x80000000, 1, 0, 0, {ARRAY: -E2BIG, PERCPU_ARRAY: -E2BIG}),
    ("value_u32max", 4, 0xFFFFFFFF, 1, 0, 0, {ARRAY: -E2BIG, PERCPU_ARRAY: -E2BIG}),
    ("no_prealloc", 4, 8, 4, F.BPF_F_NO_PREALLOC, 0, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    ("no_common_lru", 4, 8, 4, F.BPF_F_NO_COMMON_LRU, 0, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    ("numa0", 4, 8, 4, F.BPF_F_NUMA_NODE, 0, {ARRAY: OK, PERCPU_ARRAY: -EINVAL}),
    ("numa_none", 4, 8, 4, F.BPF_F_NUMA_NODE, 0xFFFFFFFF, {ARRAY: OK, PERCPU_ARRAY: OK}),
    ("numa1", 4, 8, 4, F.BPF_F_NUMA_NODE, 1, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    ("numa77_no_flag", 4, 8, 4, 0, 77, {ARRAY: OK, PERCPU_ARRAY: OK}),
    ("rdonly", 4, 8, 4, F.BPF_F_RDONLY, 0, {ARRAY: OK, PERCPU_ARRAY: OK}),
    ("wronly", 4, 8, 4, F.BPF_F_WRONLY, 0, {ARRAY: OK, PERCPU_ARRAY: OK}),
    ("rdwronly", 4, 8, 4, 0x18, 0, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    ("stack_build_id", 4, 8, 4, 0x20, 0, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    ("zero_seed", 4, 8, 4, F.BPF_F_ZERO_SEED, 0, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    ("rdonly_prog", 4, 8, 4, F.BPF_F_RDONLY_PROG, 0, {ARRAY: OK, PERCPU_ARRAY: OK}),
    ("wronly_prog", 4, 8, 4, F.BPF_F_WRONLY_PROG, 0, {ARRAY: OK, PERCPU_ARRAY: OK}),
    ("both_prog", 4, 8, 4, 0x180, 0, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    ("clone", 4, 8, 4, 0x200, 0, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    ("mmapable", 4, 8, 4, F.BPF_F_MMAPABLE, 0, {ARRAY: OK, PERCPU_ARRAY: -EINVAL}),
    ("preserve_elems", 4, 8, 4, F.BPF_F_PRESERVE_ELEMS, 0, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    ("inner_map", 4, 8, 4, F.BPF_F_INNER_MAP, 0, {ARRAY: OK, PERCPU_ARRAY: -EINVAL}),
    ("link", 4, 8, 4, 0x2000, 0, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    ("path_fd", 4, 8, 4, 0x4000, 0, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    ("segv_on_fault", 4, 8, 4, 0x20000, 0, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    ("bit31", 4, 8, 4, 1 << 31, 0, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    # Absurd sizes: the kernel's vmalloc gives up (more than the machine's RAM), ENOMEM.
    ("max_u32_entries", 4, 64, 0xFFFFFFFF, 0, 0, {ARRAY: -ENOMEM, PERCPU_ARRAY: -ENOMEM}),
    ("many_entries", 4, 8, 1 << 20, 0, 0, {ARRAY: OK, PERCPU_ARRAY: OK}),
    ("odd_max", 4, 8, 3, 0, 0, {ARRAY: OK, PERCPU_ARRAY: OK}),
    # Check order: key_size and flags in one test, then MMAPABLE on PERCPU, then E2BIG.
    ("bad_key_and_e2big", 8, 0x80000000, 1, 0, 0, {ARRAY: -EINVAL, PERCPU_ARRAY: -EINVAL}),
    ("mmapable_and_e2big", 4, 0x80000000, 1, F.BPF_F_MMAPABLE, 0,
     {ARRAY: -E2BIG, PERCPU_ARRAY: -EINVAL}),
    ("percpu_numa_and_e2big", 4, 40000, 1, F.BPF_F_NUMA_NODE, 0,
     {ARRAY: OK, PERCPU_ARRAY: -EINVAL}),
    ("e2big_before_bad_name", 4, 0x80000000, 1, 0, 0, {ARRAY: -E2BIG, PERCPU_ARRAY: -E2BIG}),
]


@pytest.mark.parametrize("map_type", ARRAY_TYPES, ids=[TYPE_IDS[t] for t in ARRAY_TYPES])
@pytest.mark.parametrize("case", CREATE_CASES, ids=[cs[0] for cs in CREATE_CASES])
def test_create(client, map_type, case):
    name, ks, vs, n, flags, numa, expected = case
    map_name = b"bad-name" if name == "e2big_before_bad_name" else b"arr"
    fd = client.create(map_type, ks, vs, n, flags, numa_node=numa, name=map_name)
    want = expected[map_type]
    assert (fd if fd < 0 else OK) == want


@pytest.mark.parametrize("map_type", ARRAY_TYPES, ids=[TYPE_IDS[t] for t in ARRAY_TYPES])
def test_absurd_size_refused_without_allocating(map_type):
    """Emulator only (the kernel would allocate gigabytes): sizes past the profile's memory
    budget are ENOMEM at once; the 2 GiB ARRAY value the kernel accepts is accepted."""
    emu = Emulator(nr_cpus=NCPU)
    from tests.support import Client
    cl = Client(emu)
    assert cl.create(map_type, 4, 8, 0xFFFFFFFF) == -ENOMEM
    assert cl.create(map_type, 4, 1 << 16, 1 << 20) in (-ENOMEM, -E2BIG)
    # docs/linux-6.18.md#map-creation: value 0x7fffffff is OK on ARRAY (the kernel allocates 2 GiB).
    fd = cl.create(map_type, 4, 0x7FFFFFFF, 1)
    assert (fd >= 0) if map_type == ARRAY else fd == -E2BIG
    cl.close_all()


@pytest.fixture(params=ARRAY_TYPES, ids=[TYPE_IDS[t] for t in ARRAY_TYPES])
def map_type(request):
    return request.param


def test_fresh_elements_are_zero(client, map_type):
    vs = sys_value_size(map_type, 12)
    fd = client.create(map_type, 4, 12, 3)
    for i in range(3):
        assert client.lookup(fd, k(i), vs) == (0, bytes(vs))


def test_lookup_out_of_range(client, map_type):
    vs = sys_value_size(map_type, 8)
    fd = client.create(map_type, 4, 8, 4)
    for key in (4, 5, 0x7FFFFFFF, 0xFFFFFFFF):
        assert client.lookup(fd, k(key), vs) == (-ENOENT, None)


def test_lookup_writes_exactly_the_value_size(client, map_type):
    """ARRAY: value_size bytes (5 here, not the 8-byte stride); PERCPU_ARRAY: every CPU's
    8-byte-rounded slot (docs: #per-cpu-values). The guards around the buffer must survive."""
    vs = sys_value_size(map_type, 5)
    fd = client.create(map_type, 4, 5, 2)
    value = bytes(range(1, vs + 1))
    assert client.update(fd, k(1), value) == 0
    assert client.lookup(fd, k(1), vs) == (0, value)


def test_percpu_padding_is_stored(client):
    """PERCPU_ARRAY keeps the padding bytes of each CPU's slot (docs: #per-cpu-values)."""
    fd = client.create(PERCPU_ARRAY, 4, 4, 2)
    value = b"".join(struct.pack("<II", 0x11223344 + cpu, 0xAABBCCDD + cpu) for cpu in range(NCPU))
    assert client.update(fd, k(0), value) == 0
    assert client.lookup(fd, k(0), 8 * NCPU) == (0, value)


def test_array_padding_not_stored(client):
    """ARRAY copies value_size bytes: a lookup returns only those."""
    fd = client.create(ARRAY, 4, 4, 2)
    assert client.update(fd, k(0), b"\x01\x02\x03\x04") == 0
    assert client.lookup(fd, k(0), 4) == (0, b"\x01\x02\x03\x04")


@pytest.mark.parametrize("flags,key,expected", [
    (c.BPF_ANY, 0, 0), (c.BPF_EXIST, 3, 0),
    (c.BPF_NOEXIST, 0, -EEXIST), (c.BPF_NOEXIST, 3, -EEXIST),
    (c.BPF_ANY, 4, -E2BIG), (c.BPF_EXIST, 4, -E2BIG),
    (c.BPF_NOEXIST, 4, -E2BIG),            # the range check comes before NOEXIST
    (3, 0, -EINVAL), (3, 4, -EINVAL),       # the flag check comes first
    (4, 0, -EINVAL),                        # BPF_F_LOCK without a spin lock
    (5, 0, -EINVAL), (8, 0, -EINVAL), (16, 0, -EINVAL), (1 << 32, 0, -EINVAL),
    (1 << 63, 0, -EINVAL), (c.BPF_ANY, 0xFFFFFFFF, -E2BIG),
], ids=lambda v: str(v))
def test_update(client, map_type, flags, key, expected):
    vs = sys_value_size(map_type, 8)
    fd = client.create(map_type, 4, 8, 4)
    value = bytes(range(7, 7 + vs))
    assert client.update(fd, k(key), value, flags) == expected
    if key < 4:
        want = value if expected == 0 else bytes(vs)
        assert client.lookup(fd, k(key), vs) == (0, want)


def test_update_overwrites(client, map_type):
    vs = sys_value_size(map_type, 8)
    fd = client.create(map_type, 4, 8, 2)
    for v in (b"\x01" * vs, b"\x02" * vs):
        assert client.update(fd, k(1), v) == 0
        assert client.lookup(fd, k(1), vs) == (0, v)


@pytest.mark.parametrize("key", [0, 3, 4, 0xFFFFFFFF])
def test_delete_is_einval(client, map_type, key):
    fd = client.create(map_type, 4, 8, 4)
    assert client.delete(fd, k(key)) == -EINVAL


def test_delete_bad_key_pointer_is_efault_first(client, map_type):
    fd = client.create(map_type, 4, 8, 4)
    assert client.bpf(c.BPF_MAP_DELETE_ELEM, elem_attr(fd, 0), 16) == -EFAULT
    assert client.bpf(c.BPF_MAP_DELETE_ELEM, elem_attr(fd, KERNEL_ADDR), 16) == -EFAULT


def test_lookup_and_delete_is_enotsupp(client, map_type):
    vs = sys_value_size(map_type, 8)
    fd = client.create(map_type, 4, 8, 4)
    assert client.lookup_and_delete(fd, k(0), vs) == (-ENOTSUPP, None)
    assert client.lookup_and_delete(fd, k(9), vs) == (-ENOTSUPP, None)
    # The key is copied first: a bad key pointer is EFAULT, not 524 (docs: #element-commands).
    v = Buf(size=vs)
    assert client.bpf(c.BPF_MAP_LOOKUP_AND_DELETE_ELEM, elem_attr(fd, 0, v.addr), 32) == -EFAULT
    # Flags are checked before anything else.
    assert client.lookup_and_delete(fd, k(0), vs, flags=1) == (-EINVAL, None)


def test_get_next_key(client, map_type):
    fd = client.create(map_type, 4, 8, 4)
    assert client.next_key(fd, None, 4) == (0, k(0))
    assert client.next_key(fd, k(0), 4) == (0, k(1))
    assert client.next_key(fd, k(2), 4) == (0, k(3))
    assert client.next_key(fd, k(3), 4) == (-ENOENT, None)
    for out_of_range in (4, 100, 0xFFFFFFFF):
        assert client.next_key(fd, k(out_of_range), 4) == (0, k(0))
    assert client.keys(fd, 4) == [k(i) for i in range(4)]


def test_get_next_key_single_entry(client, map_type):
    fd = client.create(map_type, 4, 8, 1)
    assert client.next_key(fd, None, 4) == (0, k(0))
    assert client.next_key(fd, k(0), 4) == (-ENOENT, None)


def test_lookup_bad_pointers(client, map_type):
    vs = sys_value_size(map_type, 8)
    fd = client.create(map_type, 4, 8, 4)
    v = Buf(size=vs)
    kb = Buf(k(1))
    assert client.bpf(c.BPF_MAP_LOOKUP_ELEM, elem_attr(fd, 0, v.addr), 32) == -EFAULT
    assert client.bpf(c.BPF_MAP_LOOKUP_ELEM, elem_attr(fd, kb.addr, 0), 32) == -EFAULT
    # Out of range: ENOENT without touching the (bad) value pointer.
    kb.set(k(9))
    assert client.bpf(c.BPF_MAP_LOOKUP_ELEM, elem_attr(fd, kb.addr, 0), 32) == -ENOENT


def test_update_bad_value_pointer(client, map_type):
    fd = client.create(map_type, 4, 8, 4)
    kb = Buf(k(9))
    # The copies come before the per-type checks: out of range + bad value is EFAULT.
    assert client.bpf(c.BPF_MAP_UPDATE_ELEM, elem_attr(fd, kb.addr, 0), 32) == -EFAULT


def test_many_keys(client, map_type):
    """test_arraymap_percpu_many_keys, smaller: every element keeps its own value."""
    n = 300
    vs = sys_value_size(map_type, 8)
    fd = client.create(map_type, 4, 8, n)
    for i in range(0, n, 7):
        assert client.update(fd, k(i), struct.pack("<Q", i * 3).ljust(vs, b"\x5a")[:vs]) == 0
    for i in range(n):
        want = struct.pack("<Q", i * 3).ljust(vs, b"\x5a")[:vs] if i % 7 == 0 else bytes(vs)
        assert client.lookup(fd, k(i), vs) == (0, want)


def test_both_agree_on_a_mixed_sequence(both):
    """The same random-ish element sequence on both backends, compared call by call."""
    import random
    emu, host = both
    out = []
    for cl in (emu, host):
        rnd = random.Random(5)
        res = []
        for map_type in ARRAY_TYPES:
            vs = sys_value_size(map_type, 6)
            fd = cl.create(map_type, 4, 6, 5)
            for _ in range(60):
                op = rnd.randrange(5)
                key = k(rnd.choice([0, 1, 4, 5, 0xFFFFFFFF]))
                if op == 0:
                    res.append(cl.update(fd, key, rnd.randbytes(vs), rnd.choice([0, 1, 2, 3])))
                elif op == 1:
                    res.append(cl.lookup(fd, key, vs))
                elif op == 2:
                    res.append(cl.delete(fd, key))
                elif op == 3:
                    res.append(cl.next_key(fd, key, 4))
                else:
                    res.append(cl.lookup_and_delete(fd, key, vs))
        out.append(res)
    assert out[0] == out[1]


def test_value_size_for_percpu_is_rounded(client):
    fd = client.create(PERCPU_ARRAY, 4, 3, 1)
    vs = round_up(3, 8) * NCPU
    value = bytes(range(vs))
    assert client.update(fd, k(0), value) == 0
    assert client.lookup(fd, k(0), vs) == (0, value)
