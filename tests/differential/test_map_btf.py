"""Maps created with BTF, and struct bpf_spin_lock values, on the emulator and the live
kernel. Facts: docs/btf.md ("Maps with BTF")."""
import struct
import time

import pytest

from bpfemu.uapi import consts as c
from tests.differential.abi_support import (ALL_TYPES, ARRAY, CLOSED_FD, EACCES, EBADF, EINVAL,
                                            ENOTSUPP, HASH, TYPE_IDS, batch, call, freeze,
                                            get_info, id_attr, sys_value_size)
from tests.differential.btf_support import TYPEDEF, load_ok, spin_lock_btf
from tests.support import Buf

EOPNOTSUPP = 95
INT_ID, LOCK_ID, VAL_ID = 1, 2, 3          # spin_lock_btf(): int, bpf_spin_lock, struct val


def same(r_emu, r_host):
    return (r_emu >= 0, min(r_emu, 0)) == (r_host >= 0, min(r_host, 0))


def create(cl, map_type, k, v, n, flags=0, **kw):
    return cl.create(map_type, k, v, n, flags, **kw)


def extra_btf():
    """spin_lock_btf() plus [4] struct s4 {int a} (size 4), [5] a var and [6] a DATASEC of
    it, [7] typedef lk (the lock), [8] struct tdv {int c; lk lock} (the lock through a
    typedef), [9] u64."""
    b = spin_lock_btf()
    b.struct("s4", 4, [("a", INT_ID, 0)])
    var = b.var("x", INT_ID)
    b.datasec(".data", 4, [(var, 0, 4)])
    lk = b.modifier(TYPEDEF, LOCK_ID, "lk")
    b.struct("tdv", 8, [("c", INT_ID, 0), ("lock", lk, 32)])
    b.int("u64", 8, 64, 0)
    return b


S4_ID, VAR_ID, SEC_ID, TDV_ID, U64_ID = 4, 5, 6, 8, 9


CREATE_CASES = {
    # name: (map type, key size, value size, max entries, flags, key id, value id)
    "hash_lock": (HASH, 4, 8, 4, 0, INT_ID, VAL_ID),
    "array_lock": (ARRAY, 4, 8, 4, 0, INT_ID, VAL_ID),
    "hash_plain_int": (HASH, 4, 4, 4, 0, INT_ID, INT_ID),
    "hash_u64_key": (HASH, 8, 4, 4, 0, U64_ID, INT_ID),
    "value_size_differs": (HASH, 4, 16, 4, 0, INT_ID, VAL_ID),
    "key_size_differs": (HASH, 8, 8, 4, 0, INT_ID, VAL_ID),
    "unknown_value_id": (HASH, 4, 8, 4, 0, INT_ID, 99),
    "unknown_key_id": (HASH, 4, 8, 4, 0, 99, VAL_ID),
    "value_is_var": (HASH, 4, 4, 4, 0, INT_ID, VAR_ID),
    "value_is_the_lock": (HASH, 4, 4, 4, 0, INT_ID, LOCK_ID),
    "hash_no_key_id": (HASH, 4, 8, 4, 0, 0, VAL_ID),
    "array_no_key_id": (ARRAY, 4, 4, 4, 0, 0, INT_ID),
    "array_no_key_id_datasec": (ARRAY, 4, 4, 1, 0, 0, SEC_ID),
    "array_no_key_id_datasec_2": (ARRAY, 4, 4, 2, 0, 0, SEC_ID),
    "array_no_key_id_not_datasec": (ARRAY, 4, 4, 1, 0, 0, S4_ID),
    "array_key_struct": (ARRAY, 4, 4, 4, 0, S4_ID, INT_ID),
    "hash_key_struct": (HASH, 4, 4, 4, 0, S4_ID, INT_ID),
    "lock_rdonly_prog": (HASH, 4, 8, 4, c.BPF_F_RDONLY_PROG, INT_ID, VAL_ID),
    "lock_wronly_prog": (ARRAY, 4, 8, 4, c.BPF_F_WRONLY_PROG, INT_ID, VAL_ID),
    "lock_rdonly": (HASH, 4, 8, 4, c.BPF_F_RDONLY, INT_ID, VAL_ID),
    "lock_no_prealloc": (HASH, 4, 8, 4, c.BPF_F_NO_PREALLOC, INT_ID, VAL_ID),
    "lock_through_typedef": (HASH, 4, 8, 4, 0, INT_ID, TDV_ID),
}
for t in ALL_TYPES:
    if t not in (HASH, ARRAY):
        CREATE_CASES[f"{TYPE_IDS[t]}_lock"] = (t, 4, 8, 4, 0, INT_ID, VAL_ID)


@pytest.mark.parametrize("name", list(CREATE_CASES))
def test_create(both, name):
    map_type, k, v, n, flags, key_id, value_id = CREATE_CASES[name]
    out = []
    for cl in both:
        btf_fd = load_ok(cl.b, extra_btf().blob())
        cl.fds.append(btf_fd)
        fd = create(cl, map_type, k, v, n, flags, btf_fd=btf_fd, btf_key_type_id=key_id,
                    btf_value_type_id=value_id)
        lock = None
        if fd >= 0:
            # Does the map have a spin lock? BPF_F_LOCK says.
            lock = cl.lookup(fd, bytes(k), sys_value_size(map_type, v), c.BPF_F_LOCK)[0]
        out.append((fd >= 0, min(fd, 0), lock))
    assert out[0] == out[1]


def test_info_reports_the_btf_ids(client):
    btf_fd = load_ok(client.b, spin_lock_btf().blob())
    client.fds.append(btf_fd)
    fd = create(client, HASH, 4, 8, 4, btf_fd=btf_fd, btf_key_type_id=INT_ID,
                btf_value_type_id=VAL_ID)
    assert fd >= 0
    ret, _, bi, _ = get_info(client.b, btf_fd)
    btf_id = struct.unpack_from("<I", bi, 12)[0]
    ret, _, info, _ = get_info(client.b, fd)
    assert ret == 0
    assert struct.unpack_from("<III", info, 64) == (btf_id, INT_ID, VAL_ID)


@pytest.mark.parametrize("btf_fd,want", [("closed", -EBADF), ("map", -EINVAL),
                                         ("kernel", -EACCES), ("stdin", -EINVAL)])
def test_btf_fd(client, btf_fd, want):
    if btf_fd == "closed":
        fd_arg = CLOSED_FD
    elif btf_fd == "map":
        fd_arg = create(client, ARRAY, 4, 4, 1)
    elif btf_fd == "kernel":
        fd_arg = call(client.b, c.BPF_BTF_GET_FD_BY_ID, id_attr(1), 16)[0]
        assert fd_arg >= 0
        client.fds.append(fd_arg)
    else:
        fd_arg = 0
    assert create(client, HASH, 4, 4, 4, btf_fd=fd_arg, btf_key_type_id=INT_ID,
                  btf_value_type_id=INT_ID) == want


def next_btf_ids(backend):
    ids, start = [], 0
    while True:
        ret, raw = call(backend, c.BPF_BTF_GET_NEXT_ID, id_attr(start), 8)
        if ret:
            return ids
        start = struct.unpack_from("<I", raw, 4)[0]
        ids.append(start)


def test_a_map_holds_its_btf(client):
    btf_fd = load_ok(client.b, spin_lock_btf().blob())
    btf_id = struct.unpack_from("<I", get_info(client.b, btf_fd)[2], 12)[0]
    fd = create(client, ARRAY, 4, 8, 2, btf_fd=btf_fd, btf_key_type_id=INT_ID,
                btf_value_type_id=VAL_ID)
    assert fd >= 0
    client.b.close(btf_fd)
    assert btf_id in next_btf_ids(client.b)
    client.close(fd)
    # Linux frees a map (and puts its BTF) from a work queue: wait for the id to go.
    deadline = time.monotonic() + 5
    while btf_id in next_btf_ids(client.b) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert btf_id not in next_btf_ids(client.b)


# --- spin-locked values ----------------------------------------------------------------------

def lock_map(cl, map_type=HASH, n=8, flags=0):
    btf_fd = load_ok(cl.b, spin_lock_btf().blob())
    cl.fds.append(btf_fd)
    fd = create(cl, map_type, 4, 8, n, flags, btf_fd=btf_fd, btf_key_type_id=INT_ID,
                btf_value_type_id=VAL_ID)
    assert fd >= 0, fd
    return fd


def k(i):
    return struct.pack("<I", i)


def val(cnt, lock=0xDEADBEEF):
    return struct.pack("<iI", cnt, lock)


@pytest.mark.parametrize("map_type", [HASH, ARRAY], ids=["hash", "array"])
def test_lock_word_is_never_copied(both, map_type):
    out = []
    for cl in both:
        fd = lock_map(cl, map_type)
        steps = []
        for flags in (0, c.BPF_F_LOCK, c.BPF_F_LOCK | c.BPF_EXIST, c.BPF_F_LOCK | c.BPF_NOEXIST,
                      c.BPF_F_LOCK | 8):
            steps.append(cl.update(fd, k(1), val(7 + flags), flags))
            steps.append(cl.lookup(fd, k(1), 8))
            steps.append(cl.lookup(fd, k(1), 8, c.BPF_F_LOCK))
        steps.append(cl.update(fd, k(2), val(3), c.BPF_F_LOCK))   # a new element with F_LOCK
        steps.append(cl.lookup(fd, k(2), 8, c.BPF_F_LOCK))
        steps.append(cl.lookup(fd, k(2), 8, c.BPF_F_LOCK | 1))
        out.append(steps)
    assert out[0] == out[1]
    assert out[0][1] == (0, val(7, 0))                            # the lock word reads 0


def test_in_place_update_keeps_the_walk_order(both):
    """With BPF_F_LOCK an existing element is updated in place; without it, it is replaced
    by a new element at its bucket's head."""
    out = []
    for cl in both:
        fd = lock_map(cl, HASH, 64, c.BPF_F_ZERO_SEED)
        for i in range(40):
            assert cl.update(fd, k(i), val(i)) == 0
        before = cl.keys(fd, 4)
        for i in range(0, 40, 3):
            assert cl.update(fd, k(i), val(100 + i), c.BPF_F_LOCK) == 0
        locked = cl.keys(fd, 4)
        for i in range(0, 40, 3):
            assert cl.update(fd, k(i), val(200 + i)) == 0
        out.append((before, locked, cl.keys(fd, 4)))
    assert out[0] == out[1]


def test_lookup_and_delete_with_lock(both):
    out = []
    for cl in both:
        fd = lock_map(cl)
        cl.update(fd, k(1), val(5))
        cl.update(fd, k(2), val(6))
        out.append((cl.lookup_and_delete(fd, k(1), 8, c.BPF_F_LOCK),
                    cl.lookup_and_delete(fd, k(2), 8),
                    cl.lookup_and_delete(fd, k(3), 8, c.BPF_F_LOCK)))
    assert out[0] == out[1]


@pytest.mark.parametrize("map_type", [HASH, ARRAY], ids=["hash", "array"])
def test_batches_with_lock(both, map_type):
    out = []
    for cl in both:
        fd = lock_map(cl, map_type, 4)
        keys = Buf(b"".join(k(i) for i in range(3)))
        values = Buf(b"".join(val(10 + i) for i in range(3)))
        upd = batch(cl.b, c.BPF_MAP_UPDATE_BATCH, fd, keys=keys.addr, values=values.addr,
                    count=3, elem_flags=c.BPF_F_LOCK)
        okeys, ovalues, token = Buf(size=16), Buf(size=32), Buf(size=8)
        look = batch(cl.b, c.BPF_MAP_LOOKUP_BATCH, fd, out_batch=token.addr, keys=okeys.addr,
                     values=ovalues.addr, count=4, elem_flags=c.BPF_F_LOCK)
        got = sorted(zip([okeys.data[i:i + 4] for i in range(0, 16, 4)],
                         [ovalues.data[i:i + 8] for i in range(0, 32, 8)]))
        bad = batch(cl.b, c.BPF_MAP_UPDATE_BATCH, fd, keys=keys.addr, values=values.addr,
                    count=3, elem_flags=c.BPF_F_LOCK | 1)
        out.append((upd, look, got, bad))
    assert out[0] == out[1]


def test_freeze_is_enotsupp(client):
    fd = lock_map(client, ARRAY, 2)
    assert freeze(client.b, fd) == -ENOTSUPP


@pytest.mark.parametrize("map_type", [1, 2, 3, 5, 6, 9, 10],
                         ids=["hash", "array", "prog_array", "percpu_hash", "percpu_array",
                              "lru_hash", "lru_percpu_hash"])
def test_every_key_and_value_type(both, map_type):
    """MAP_CREATE with every (key type, value type) pair of a BTF with every kind, sizes set
    to the types' sizes: the same answer from both."""
    from bpfemu.btf_obj import btf_parse
    from tests.differential.test_btf_fuzz import every_kind
    blob = every_kind().blob()
    btf = btf_parse(blob)
    n = len(btf.types)
    sizes = [None] + [(btf.type_id_size(i) or (None, None, None))[2] for i in range(1, n)]
    btf_fds = []
    for cl in both:
        fd = load_ok(cl.b, blob)
        cl.fds.append(fd)
        btf_fds.append(fd)
    differ = []
    for kid in range(n):
        for vid in range(1, n):
            ks = sizes[kid] if kid and sizes[kid] else 4
            vs = sizes[vid] or 4
            if map_type in (2, 3, 6):
                ks = 4
            if map_type == 3:
                vs = 4
            got = []
            for cl, bfd in zip(both, btf_fds):
                fd = cl.create(map_type, ks, vs, 1, btf_fd=bfd, btf_key_type_id=kid,
                               btf_value_type_id=vid)
                got.append(min(fd, 0))
                if fd >= 0:
                    cl.close(fd)
            if got[0] != got[1]:
                differ.append((kid, vid, got))
    assert not differ
