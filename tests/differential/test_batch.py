"""The four batch commands on all six map types, on the emulator and the live kernel.

Expectations come from docs/linux-6.18.md#batch-commands, all live-kernel
observations, or from the live kernel itself where a test compares the two backends
(``both``). Hash walks are compared exactly on BPF_F_ZERO_SEED maps, where the bucket order
is the same on both. LRU maps are used below their eviction point, with the process pinned
to CPU 0 and ``emu.cpu`` = 0.
"""
import ctypes
import os
import struct

import pytest

from bpfemu import Emulator
from bpfemu.uapi import consts as c
from tests.support import (GUARD_BYTE, NCPU, Buf, Client, dirty_tail_result, readonly_address,
                           unmapped_address)

from tests.differential.abi_support import (ALL_TYPES, ARRAY, ARRAY_TYPES, BATCH_CMDS, CLOSED_FD,
                                            CMD_IDS, DELETE_BATCH, E2BIG, EBADF, EFAULT, EINVAL,
                                            ENOENT, ENOSPC, ENOTSUPP, EPERM, HASH, HASH_TYPES,
                                            KERNEL_ADDR, LOOKUP_AND_DELETE_BATCH, LOOKUP_BATCH,
                                            LRU_HASH, LRU_PERCPU_HASH, PERCPU_ARRAY, PERCPU_HASH,
                                            TYPE_IDS, UPDATE_BATCH, batch, batch_attr, call,
                                            fill, freeze, keys_of, split, sys_value_size, u32,
                                            values_of)
from tests.differential.hash_support import NONE_PAGE, Cliff

ZERO_SEED = c.BPF_F_ZERO_SEED
TYPE_PARAMS = dict(params=ALL_TYPES, ids=[TYPE_IDS[t] for t in ALL_TYPES])


@pytest.fixture(autouse=True)
def cpu0():
    """LRU behaviour depends on the CPU: run on CPU 0 (the emulators below use cpu 0)."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    yield
    os.sched_setaffinity(0, old)


@pytest.fixture(**TYPE_PARAMS)
def map_type(request):
    return request.param


def create(cl, map_type, key_size=4, value_size=8, max_entries=16, flags=0):
    if map_type in HASH_TYPES:
        flags |= ZERO_SEED
    fd = cl.create(map_type, key_size, value_size, max_entries, flags)
    assert fd >= 0, fd
    return fd


def lookup_all(cl, map_type, fd, key_size=4, value_size=8):
    """{key: value} through single lookups along the GET_NEXT_KEY walk."""
    vs = sys_value_size(map_type, value_size)
    out = {}
    for key in cl.keys(fd, key_size):
        ret, v = cl.lookup(fd, key, vs)
        assert ret == 0
        out[key] = v
    return out


class Bufs:
    """Guarded keys / values / in_batch / out_batch buffers for one batch call."""

    def __init__(self, n, key_size, vs, token=None, token_size=4):
        self.ks, self.vs = key_size, vs
        self.keys = Buf(size=max(n, 1) * key_size)
        self.values = Buf(size=max(n, 1) * vs)
        self.inb = Buf(token if token is not None else b"", size=max(token_size, 8))
        self.outb = Buf(size=8)

    def result(self):
        assert self.keys.guards_intact() and self.values.guards_intact()
        assert self.outb.guards_intact()
        return self.keys.data, self.values.data, self.outb.data


def lookup_call(b, cmd, fd, bufs, count, in_batch=True, **kw):
    """(ret, count, keys bytes, values bytes, out_batch bytes)."""
    ret, cnt = batch(b, cmd, fd, in_batch=bufs.inb.addr if in_batch else 0,
                     out_batch=bufs.outb.addr, keys=bufs.keys.addr, values=bufs.values.addr,
                     count=count, **kw)
    return (ret, cnt) + bufs.result()


# --- the common front end (docs: #batch-commands) ---------------------------------------------

@pytest.mark.parametrize("cmd", BATCH_CMDS, ids=[CMD_IDS[x] for x in BATCH_CMDS])
def test_dirty_tail_is_einval_count_untouched(client, map_type, cmd):
    fd = create(client, map_type)
    for off in (56, 100, 167):
        assert batch(client.b, cmd, fd, size=168, tail={off: 1}, count=7) == (
            dirty_tail_result(client, off), 7)
    # Bad fd + dirty tail: the tail wins.
    assert batch(client.b, cmd, CLOSED_FD, size=168, tail={56: 1}, count=7) == (-EINVAL, 7)


@pytest.mark.parametrize("cmd", BATCH_CMDS, ids=[CMD_IDS[x] for x in BATCH_CMDS])
def test_bad_fd(client, cmd):
    r, w = os.pipe()
    try:
        assert batch(client.b, cmd, CLOSED_FD, count=7) == (-EBADF, 7)
        assert batch(client.b, cmd, 0xFFFFFFFF, count=7) == (-EBADF, 7)
        assert batch(client.b, cmd, r, count=7) == (-EINVAL, 7)
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("cmd", BATCH_CMDS, ids=[CMD_IDS[x] for x in BATCH_CMDS])
def test_map_fd_is_at_offset_36(client, map_type, cmd):
    """batch.map_fd is at 36, not 0: a map fd at offset 0 and garbage at 36 is EBADF."""
    fd = create(client, map_type)
    raw = bytearray(batch_attr(CLOSED_FD, count=0))
    raw[0:4] = u32(fd)
    ret, _ = call(client.b, cmd, bytes(raw), 56)
    assert ret == -EBADF


# (cmd, map_flags of the fd) -> expected for hash types / array types; count stays 7.
PERM_CASES = [
    (LOOKUP_BATCH, c.BPF_F_WRONLY, -EPERM, -EPERM),
    (LOOKUP_AND_DELETE_BATCH, c.BPF_F_WRONLY, -EPERM, -EPERM),
    (LOOKUP_AND_DELETE_BATCH, c.BPF_F_RDONLY, -EPERM, -EPERM),
    (UPDATE_BATCH, c.BPF_F_RDONLY, -EPERM, -EPERM),
    (DELETE_BATCH, c.BPF_F_RDONLY, -EPERM, -EPERM),     # EPERM before ENOTSUPP on arrays
    (DELETE_BATCH, c.BPF_F_WRONLY, 0, -ENOTSUPP),
    (UPDATE_BATCH, c.BPF_F_WRONLY, 0, 0),
    (LOOKUP_BATCH, c.BPF_F_RDONLY, 0, 0),
    (LOOKUP_AND_DELETE_BATCH, 0, 0, -ENOTSUPP),
    (DELETE_BATCH, 0, 0, -ENOTSUPP),
]


@pytest.mark.parametrize("cmd,mode,hash_want,array_want", PERM_CASES,
                         ids=[f"{CMD_IDS[cs[0]]}-{cs[1]:#x}" for cs in PERM_CASES])
def test_permissions_and_enotsupp(client, map_type, cmd, mode, hash_want, array_want):
    fd = create(client, map_type, flags=mode)
    want = hash_want if map_type in HASH_TYPES else array_want
    # count 0: whatever passes the front end returns 0 at once (bad pointers are fine).
    ret, cnt = batch(client.b, cmd, fd, count=0)
    assert (ret, cnt) == (want, 0)
    if want:
        assert batch(client.b, cmd, fd, count=7) == (want, 7)


@pytest.mark.parametrize("cmd", BATCH_CMDS, ids=[CMD_IDS[x] for x in BATCH_CMDS])
def test_frozen_map_refuses_writes(client, map_type, cmd):
    fd = create(client, map_type)
    assert freeze(client.b, fd) == 0
    if cmd == LOOKUP_BATCH:
        want = 0
    else:
        want = -EPERM
    assert batch(client.b, cmd, fd, count=0) == (want, 0)


@pytest.mark.parametrize("cmd", BATCH_CMDS, ids=[CMD_IDS[x] for x in BATCH_CMDS])
@pytest.mark.parametrize("elem_flags", [1, 2, 3, 4, 8, 16, 1 << 32, 1 << 63])
def test_elem_flags(client, map_type, cmd, elem_flags):
    """Only 0 (or F_LOCK with a spin lock) is valid, even with count 0; NOEXIST and EXIST
    too are EINVAL for UPDATE_BATCH (docs: #batch-commands). count stays as it was."""
    fd = create(client, map_type)
    unsupported = map_type in ARRAY_TYPES and cmd in (LOOKUP_AND_DELETE_BATCH, DELETE_BATCH)
    want = -ENOTSUPP if unsupported else -EINVAL
    assert batch(client.b, cmd, fd, elem_flags=elem_flags, count=0) == (want, 0)
    assert batch(client.b, cmd, fd, elem_flags=elem_flags, count=3) == (want, 3)


@pytest.mark.parametrize("cmd", BATCH_CMDS, ids=[CMD_IDS[x] for x in BATCH_CMDS])
@pytest.mark.parametrize("flags", [1, 1 << 63])
def test_batch_flags(client, map_type, cmd, flags):
    """batch.flags must be 0 only for the hash lookups; the generic handlers ignore it."""
    fd = create(client, map_type)
    if map_type in ARRAY_TYPES and cmd in (LOOKUP_AND_DELETE_BATCH, DELETE_BATCH):
        want = -ENOTSUPP
    elif map_type in HASH_TYPES and cmd in (LOOKUP_BATCH, LOOKUP_AND_DELETE_BATCH):
        want = -EINVAL
    else:
        want = 0
    assert batch(client.b, cmd, fd, flags=flags, count=0) == (want, 0)


@pytest.mark.parametrize("cmd", BATCH_CMDS, ids=[CMD_IDS[x] for x in BATCH_CMDS])
def test_count_zero_touches_nothing(client, map_type, cmd):
    fd = create(client, map_type)
    bad = unmapped_address()
    ret, cnt = batch(client.b, cmd, fd, in_batch=bad, out_batch=bad, keys=bad, values=bad,
                     count=0)
    unsupported = map_type in ARRAY_TYPES and cmd in (LOOKUP_AND_DELETE_BATCH, DELETE_BATCH)
    assert (ret, cnt) == ((-ENOTSUPP if unsupported else 0), 0)


@pytest.mark.parametrize("cmd", BATCH_CMDS, ids=[CMD_IDS[x] for x in BATCH_CMDS])
def test_count_in_a_readonly_attr_is_efault(client, map_type, cmd):
    """The handler's put_user(0, &uattr->batch.count) into a read-only attr: EFAULT."""
    fd = create(client, map_type)
    if map_type in ARRAY_TYPES and cmd in (LOOKUP_AND_DELETE_BATCH, DELETE_BATCH):
        return
    import mmap
    m = mmap.mmap(-1, 4096)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    ctypes.memmove(addr, batch_attr(fd, count=1), 56)
    libc = ctypes.CDLL(None)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(addr, 4096, mmap.PROT_READ) == 0
    try:
        assert client.b.bpf(cmd, addr, 56) == -EFAULT
        assert struct.unpack_from("<I", ctypes.string_at(addr + 32, 4))[0] == 1
    finally:
        libc.mprotect(addr, 4096, mmap.PROT_READ | mmap.PROT_WRITE)


# --- hash lookups: buckets and the u32 token (docs: #batch-commands) -----------------------------

@pytest.fixture(params=HASH_TYPES, ids=[TYPE_IDS[t] for t in HASH_TYPES])
def hash_type(request):
    return request.param


@pytest.mark.parametrize("cmd", [LOOKUP_BATCH, LOOKUP_AND_DELETE_BATCH],
                         ids=["lookup", "lookup_and_delete"])
def test_reference_walk(client, hash_type, cmd):
    """docs/linux-6.18.md#batch-commands' example: keys 1..6 in a ZERO_SEED map of 8 buckets sit in
    buckets {1:[4], 2:[2], 3:[1], 6:[6,5], 7:[3]}; count=2 walks (OK,2,out 3) (OK,1,out 6)
    (OK,2,out 7) (ENOENT,1,out 8)."""
    b = client.b
    fd = create(client, hash_type, max_entries=8)
    vs = sys_value_size(hash_type, 8)
    vals = {i: bytes([i]) * vs for i in range(1, 7)}
    for i in range(1, 7):
        assert client.update(fd, u32(i), vals[i]) == 0
    expect = [(0, [4, 2], 3), (0, [1], 6), (0, [6, 5], 7), (-ENOENT, [3], 8)]
    bufs = Bufs(2, 4, vs)
    first = True
    for ret, keys, out in expect:
        bufs.keys.set(bytes(8))
        bufs.values.set(bytes(2 * vs))
        r = lookup_call(b, cmd, fd, bufs, 2, in_batch=not first)
        assert r[:2] == (ret, len(keys))
        assert r[2][:4 * len(keys)] == b"".join(u32(x) for x in keys)
        assert r[3][:vs * len(keys)] == b"".join(vals[x] for x in keys)
        assert r[4][:4] == u32(out)
        bufs.inb.set(r[4][:4])
        first = False
    remaining = sorted(client.keys(fd, 4))
    assert remaining == ([] if cmd == LOOKUP_AND_DELETE_BATCH else sorted(u32(i) for i in range(1, 7)))


def test_empty_map_is_enoent_with_out_batch_n_buckets(client, hash_type):
    fd = create(client, hash_type, max_entries=5)       # 8 buckets
    vs = sys_value_size(hash_type, 8)
    for cmd in (LOOKUP_BATCH, LOOKUP_AND_DELETE_BATCH):
        bufs = Bufs(4, 4, vs)
        r = lookup_call(client.b, cmd, fd, bufs, 4, in_batch=False)
        assert r[:2] == (-ENOENT, 0)
        assert r[4] == u32(8) + bytes(4)                 # out_batch = n_buckets


def test_token_past_the_buckets(client, hash_type):
    fd = create(client, hash_type, max_entries=8)
    vs = sys_value_size(hash_type, 8)
    fill(client, fd, keys_of(3), values_of(hash_type, 8, 3, 1))
    for token in (8, 9, 0xFFFFFFFF):
        bufs = Bufs(4, 4, vs, token=u32(token))
        r = lookup_call(client.b, LOOKUP_BATCH, fd, bufs, 4)
        assert r[:2] == (-ENOENT, 0)
        assert r[4] == bytes(8)                          # out_batch not written


def test_token_is_four_bytes_whatever_the_key_size(client, hash_type):
    """With 16-byte keys the token is still a u32 bucket index: bytes 4.. are ignored."""
    fd = create(client, hash_type, key_size=16, max_entries=8)
    vs = sys_value_size(hash_type, 8)
    fill(client, fd, keys_of(5, 16), values_of(hash_type, 8, 5, 2))
    bufs = Bufs(8, 16, vs, token=u32(0) + b"\xff" * 12, token_size=16)
    r = lookup_call(client.b, LOOKUP_BATCH, fd, bufs, 8)
    assert r[:2] == (-ENOENT, 5)
    assert r[4] == u32(8) + bytes(4)


def test_enospc_when_a_bucket_does_not_fit(both, hash_type):
    """A bucket is never split: count 1 on a bucket of 2 is ENOSPC with count 0 and
    out_batch = that bucket; after data, the same bucket ends the call with success."""
    results = []
    for cl in both:
        fd = create(cl, hash_type, max_entries=8)
        vs = sys_value_size(hash_type, 8)
        for i in range(1, 7):                            # bucket 6 holds [6, 5]
            assert cl.update(fd, u32(i), bytes([i]) * vs) == 0
        res = []
        for token, count in ((6, 1), (6, 2), (3, 2), (1, 3), (0, 100)):
            bufs = Bufs(max(count, 1), 4, vs, token=u32(token))
            res.append(lookup_call(cl.b, LOOKUP_BATCH, fd, bufs, count))
        results.append(res)
    assert results[0] == results[1]
    assert results[0][0][:2] == (-ENOSPC, 0) and results[0][0][4][:4] == u32(6)


@pytest.mark.parametrize("cmd", [LOOKUP_BATCH, LOOKUP_AND_DELETE_BATCH],
                         ids=["lookup", "lookup_and_delete"])
@pytest.mark.parametrize("key_size,value_size,n,max_entries", [
    (4, 8, 10, 16), (4, 4, 40, 64), (8, 3, 33, 40), (5, 16, 20, 20), (16, 8, 100, 128)])
def test_walks_match_the_kernel(both, hash_type, cmd, key_size, value_size, n, max_entries):
    """Every call of a full walk, for every count from 1 to n+1: result, count, keys,
    values (guarded) and out_batch, compared with the live kernel."""
    if hash_type in (LRU_HASH, LRU_PERCPU_HASH) and n > max_entries // 2:
        n = max_entries // 2                  # stay clear of early LRU eviction
    outs = []
    for cl in both:
        vs = sys_value_size(hash_type, value_size)
        keys = keys_of(n, key_size, start=1000)
        vals = values_of(hash_type, value_size, n, 3)
        res = []
        for count in list(range(1, min(n, 12) + 1)) + [n, n + 1]:
            fd = create(cl, hash_type, key_size, value_size, max_entries)
            fill(cl, fd, keys, vals)
            bufs = Bufs(count, key_size, vs)
            first = True
            for _ in range(4 * n + 4):
                r = lookup_call(cl.b, cmd, fd, bufs, count, in_batch=not first)
                res.append(r)
                first = False
                if r[0] not in (0,):
                    break
                bufs.inb.set(r[4][:4])
            res.append(sorted(cl.keys(fd, key_size)))
            cl.close(fd)
        outs.append(res)
    assert outs[0] == outs[1]


def test_walk_without_zero_seed_returns_every_element_once(client, hash_type):
    """With a random seed the order differs per map, but a walk still returns every
    element exactly once and ends with ENOENT (htab_map_batch_ops.c's invariant)."""
    vs = sys_value_size(hash_type, 8)
    n = 8 if hash_type in (LRU_HASH, LRU_PERCPU_HASH) else 12
    fd = client.create(hash_type, 4, 8, 16)
    keys = keys_of(n)
    vals = values_of(hash_type, 8, n, 4)
    fill(client, fd, keys, vals)
    got = {}
    bufs = Bufs(n, 4, vs)
    first = True
    count = 3
    while True:
        ret, cnt, kb, vb, out = lookup_call(client.b, LOOKUP_BATCH, fd, bufs, count,
                                            in_batch=not first)
        if ret == -ENOSPC:                   # a bucket of more than `count` keys: grow
            assert cnt == 0 and count < n
            count = n
            bufs.inb.set(out[:4])
            first = False
            continue
        first = False
        for key, val in zip(split(kb[:cnt * 4], 4), split(vb[:cnt * vs], vs)):
            assert key not in got
            got[key] = val
        if ret == -ENOENT:
            break
        assert ret == 0
        bufs.inb.set(out[:4])
    assert got == dict(zip(keys, vals))


# --- hash lookups: faults (docs: #batch-commands) ------------------------------------------------

@pytest.mark.parametrize("cmd", [LOOKUP_BATCH, LOOKUP_AND_DELETE_BATCH],
                         ids=["lookup", "lookup_and_delete"])
@pytest.mark.parametrize("where", ["in_batch", "keys", "values", "out_batch_null",
                                   "out_batch_readonly", "keys_kernel"])
def test_hash_faults(both, hash_type, cmd, where):
    outs = []
    bad = {"in_batch": NONE_PAGE, "keys": NONE_PAGE, "values": NONE_PAGE,
           "out_batch_null": 0, "out_batch_readonly": readonly_address(),
           "keys_kernel": KERNEL_ADDR}[where]
    for cl in both:
        vs = sys_value_size(hash_type, 8)
        fd = create(cl, hash_type, max_entries=8)
        for i in range(1, 7):
            assert cl.update(fd, u32(i), bytes([i]) * vs) == 0
        bufs = Bufs(6, 4, vs, token=u32(0))
        kw = dict(in_batch=bufs.inb.addr, out_batch=bufs.outb.addr, keys=bufs.keys.addr,
                  values=bufs.values.addr)
        kw[{"in_batch": "in_batch", "keys": "keys", "values": "values",
            "out_batch_null": "out_batch", "out_batch_readonly": "out_batch",
            "keys_kernel": "keys"}[where]] = bad
        ret, cnt = batch(cl.b, cmd, fd, count=6, **kw)
        outs.append((ret, cnt, bufs.result(), sorted(cl.keys(fd, 4))))
    assert outs[0] == outs[1]
    assert outs[0][:2] == (-EFAULT, 0)


@pytest.mark.parametrize("cmd", [LOOKUP_BATCH, LOOKUP_AND_DELETE_BATCH],
                         ids=["lookup", "lookup_and_delete"])
@pytest.mark.parametrize("room", [0, 4, 8, 12, 13, 20])
@pytest.mark.parametrize("which", ["keys", "values"])
def test_hash_copy_cut_short(both, hash_type, cmd, room, which):
    """Keys or values run into a PROT_NONE page after `room` bytes: the kernel copies
    bucket by bucket, so whole buckets before the fault are written (and, for
    lookup_and_delete, the faulting bucket is lost with them)."""
    outs = []
    for side, cl in enumerate(both):
        vs = sys_value_size(hash_type, 4)
        fd = create(cl, hash_type, value_size=4, max_entries=8)
        for i in range(1, 7):
            assert cl.update(fd, u32(i), bytes([i]) * vs) == 0
        cliff = CLIFFS[side][0]
        cliff.fill()
        bufs = Bufs(6, 4, vs)
        kw = dict(out_batch=bufs.outb.addr, keys=bufs.keys.addr, values=bufs.values.addr)
        span = room if which == "keys" else room * vs // 4
        kw[which] = cliff.at(span)
        ret, cnt = batch(cl.b, cmd, fd, count=6, **kw)
        outs.append((ret, cnt, cliff.tail(span), bufs.result(), sorted(cl.keys(fd, 4))))
    assert outs[0] == outs[1]


CLIFFS = [(Cliff(), Cliff()) for _ in range(2)]


# --- generic lookups on arrays (docs: #batch-commands) -------------------------------------------

@pytest.fixture(params=ARRAY_TYPES, ids=[TYPE_IDS[t] for t in ARRAY_TYPES])
def array_type(request):
    return request.param


# (in_batch key or None, count) -> (ret, count, keys, out_batch key or None): max_entries 5
ARRAY_WALK_CASES = [
    (None, 2, 0, [0, 1], 1),
    (3, 2, -ENOENT, [4], 4),
    (4, 2, -ENOENT, [], None),
    (None, 5, 0, [0, 1, 2, 3, 4], 4),
    (None, 6, -ENOENT, [0, 1, 2, 3, 4], 4),
    (1, 3, 0, [2, 3, 4], 4),
    (7, 2, 0, [0, 1], 1),              # out of range: restarts at 0 (GET_NEXT_KEY rule)
    (0xFFFFFFFF, 1, 0, [0], 0),
]


@pytest.mark.parametrize("case", ARRAY_WALK_CASES, ids=lambda cs: f"from{cs[0]}-count{cs[1]}")
def test_array_lookup_batch(client, array_type, case):
    start, count, ret_want, keys_want, out_want = case
    vs = sys_value_size(array_type, 8)
    fd = client.create(array_type, 4, 8, 5)
    vals = values_of(array_type, 8, 5, 7)
    fill(client, fd, keys_of(5), vals)
    bufs = Bufs(count, 4, vs, token=u32(start) if start is not None else None)
    r = lookup_call(client.b, LOOKUP_BATCH, fd, bufs, count, in_batch=start is not None)
    n = len(keys_want)
    assert r[:2] == (ret_want, n)
    assert r[2] == b"".join(u32(i) for i in keys_want) + bytes(4 * (count - n))
    assert r[3] == b"".join(vals[i] for i in keys_want) + bytes(vs * (count - n))
    assert r[4] == (u32(out_want) if out_want is not None else bytes(4)) + bytes(4)


def test_array_lookup_batch_flags_not_checked(client, array_type):
    fd = client.create(array_type, 4, 8, 3)
    bufs = Bufs(3, 4, sys_value_size(array_type, 8))
    r = lookup_call(client.b, LOOKUP_BATCH, fd, bufs, 3, in_batch=False, flags=1 << 63)
    assert r[:2] == (0, 3)


@pytest.mark.parametrize("where", ["in_batch", "keys", "values", "out_batch_null",
                                   "out_batch_readonly"])
def test_array_lookup_batch_faults(both, array_type, where):
    """keys/values/in_batch faults leave count 0; an out_batch fault comes after count
    (and the keys and values) were written (docs: #batch-commands)."""
    outs = []
    for cl in both:
        vs = sys_value_size(array_type, 8)
        fd = cl.create(array_type, 4, 8, 4)
        fill(cl, fd, keys_of(4), values_of(array_type, 8, 4, 9))
        bufs = Bufs(3, 4, vs, token=u32(0))
        kw = dict(in_batch=bufs.inb.addr, out_batch=bufs.outb.addr, keys=bufs.keys.addr,
                  values=bufs.values.addr)
        if where == "out_batch_null":
            kw["out_batch"] = 0
        elif where == "out_batch_readonly":
            kw["out_batch"] = readonly_address()
        else:
            kw[where] = NONE_PAGE
        outs.append(batch(cl.b, LOOKUP_BATCH, fd, count=3, **kw) + bufs.result())
    assert outs[0] == outs[1]
    if where.startswith("out_batch"):
        assert outs[0][:2] == (-EFAULT, 3)
    else:
        assert outs[0][:2] == (-EFAULT, 0)


@pytest.mark.parametrize("room", [0, 3, 4, 8, 9, 12])
@pytest.mark.parametrize("which", ["keys", "values"])
def test_array_copy_cut_short(both, array_type, room, which):
    """Key i, then value i: a fault stops there, with what came before written."""
    outs = []
    for side, cl in enumerate(both):
        vs = sys_value_size(array_type, 4)
        fd = cl.create(array_type, 4, 4, 5)
        fill(cl, fd, keys_of(5), values_of(array_type, 4, 5, 11))
        cliff = CLIFFS[side][1]
        cliff.fill()
        bufs = Bufs(5, 4, vs)
        kw = dict(out_batch=bufs.outb.addr, keys=bufs.keys.addr, values=bufs.values.addr)
        span = room if which == "keys" else room * vs // 4
        kw[which] = cliff.at(span)
        outs.append(batch(cl.b, LOOKUP_BATCH, fd, count=5, **kw) + (cliff.tail(span),)
                    + bufs.result())
    assert outs[0] == outs[1]


# --- UPDATE_BATCH and DELETE_BATCH (docs: #batch-commands) ----------------------------------------

def test_update_batch_hash_full(client):
    """10 new keys into a HASH with 5 free slots: E2BIG, count 5."""
    fd = client.create(HASH, 4, 8, 5)
    keys = Buf(b"".join(keys_of(10)))
    vals = Buf(b"".join(values_of(HASH, 8, 10, 1)))
    assert batch(client.b, UPDATE_BATCH, fd, keys=keys.addr, values=vals.addr,
                 count=10) == (-E2BIG, 5)
    assert sorted(client.keys(fd, 4)) == sorted(keys_of(5))


def test_update_batch_array_stops_at_bad_index(client, array_type):
    """ARRAY keys [0,1,9,2] with 5 entries: E2BIG, count 2; element 2 untouched."""
    vs = sys_value_size(array_type, 8)
    fd = client.create(array_type, 4, 8, 5)
    keys = Buf(b"".join(u32(i) for i in (0, 1, 9, 2)))
    vals = values_of(array_type, 8, 4, 2)
    vb = Buf(b"".join(vals))
    assert batch(client.b, UPDATE_BATCH, fd, keys=keys.addr, values=vb.addr,
                 count=4) == (-E2BIG, 2)
    assert client.lookup(fd, u32(0), vs) == (0, vals[0])
    assert client.lookup(fd, u32(1), vs) == (0, vals[1])
    assert client.lookup(fd, u32(2), vs) == (0, bytes(vs))


def test_update_batch_all_types(both, map_type):
    """A full update batch then a lookup of every element, compared with the kernel."""
    outs = []
    for cl in both:
        vs = sys_value_size(map_type, 12)
        fd = create(cl, map_type, value_size=12, max_entries=16)
        keys = Buf(b"".join(keys_of(6, start=2)))
        vb = Buf(b"".join(values_of(map_type, 12, 6, 5)))
        res = [batch(cl.b, UPDATE_BATCH, fd, keys=keys.addr, values=vb.addr, count=6)]
        res.append(lookup_all(cl, map_type, fd, value_size=12))
        # Updating again overwrites (batch updates behave as BPF_ANY).
        vb.set(b"".join(values_of(map_type, 12, 6, 6)))
        res.append(batch(cl.b, UPDATE_BATCH, fd, keys=keys.addr, values=vb.addr, count=6))
        res.append(lookup_all(cl, map_type, fd, value_size=12))
        outs.append(res)
    assert outs[0] == outs[1]
    assert outs[0][0] == (0, 6)


@pytest.mark.parametrize("fault_at", [0, 1, 3])
@pytest.mark.parametrize("which", ["keys", "values"])
def test_update_batch_fault_counts_done(both, map_type, fault_at, which):
    """A fault at element i is EFAULT with count i, and elements before it updated."""
    outs = []
    for side, cl in enumerate(both):
        vs = sys_value_size(map_type, 8)
        fd = create(cl, map_type)
        keys = b"".join(keys_of(4, start=3))
        vals = b"".join(values_of(map_type, 8, 4, 8))
        cliff = CLIFFS[side][0]
        if which == "keys":
            _keep = Buf(vals)
            kaddr, vaddr = cliff.put(fault_at * 4, keys), _keep.addr
        else:
            _keep = Buf(keys)
            kaddr, vaddr = _keep.addr, cliff.put(fault_at * vs, vals)
        ret = batch(cl.b, UPDATE_BATCH, fd, keys=kaddr, values=vaddr, count=4)
        outs.append((ret, lookup_all(cl, map_type, fd)))
    assert outs[0] == outs[1]
    assert outs[0][0] == (-EFAULT, fault_at)


def test_delete_batch_stops_at_missing_key(client, hash_type):
    """[10, 11, 99, 12] with 99 missing: ENOENT, count 2; key 12 stays."""
    vs = sys_value_size(hash_type, 8)
    fd = create(client, hash_type, max_entries=16)
    fill(client, fd, [u32(i) for i in (10, 11, 12, 13)], values_of(hash_type, 8, 4, 1))
    keys = Buf(b"".join(u32(i) for i in (10, 11, 99, 12)))
    assert batch(client.b, DELETE_BATCH, fd, keys=keys.addr, count=4) == (-ENOENT, 2)
    assert sorted(client.keys(fd, 4)) == [u32(12), u32(13)]
    assert client.lookup(fd, u32(12), vs)[0] == 0


def test_batches_with_a_repeated_key(both, hash_type):
    """A key twice in one batch, compared with the kernel: UPDATE_BATCH [2, 3, 2, 4] replaces
    2 with the later value; DELETE_BATCH [2, 3, 2, 4] stops at the second 2 (ENOENT, count 2),
    4 stays. (The bulk paths stop a run at a repeated key: htab_batch.py.)"""
    outs = []
    for cl in both:
        fd = create(cl, hash_type, max_entries=16)
        keys = Buf(b"".join(u32(i) for i in (2, 3, 2, 4)))
        vb = Buf(b"".join(values_of(hash_type, 8, 4, 7)))
        res = [batch(cl.b, UPDATE_BATCH, fd, keys=keys.addr, values=vb.addr, count=4)]
        res.append(lookup_all(cl, hash_type, fd))
        res.append(batch(cl.b, DELETE_BATCH, fd, keys=keys.addr, count=4))
        res.append(lookup_all(cl, hash_type, fd))
        outs.append(res)
    assert outs[0] == outs[1]
    assert outs[0][0] == (0, 4) and outs[0][2] == (-ENOENT, 2)


def test_update_batch_repeated_key_then_full(both):
    """HASH of 3 entries, UPDATE_BATCH [2, 3, 2, 4, 5]: the second 2 is a replace, 4 fills
    the map, 5 is E2BIG with count 4; as on the kernel."""
    outs = []
    for cl in both:
        fd = cl.create(HASH, 4, 8, 3)
        keys = Buf(b"".join(u32(i) for i in (2, 3, 2, 4, 5)))
        vb = Buf(b"".join(values_of(HASH, 8, 5, 3)))
        outs.append((batch(cl.b, UPDATE_BATCH, fd, keys=keys.addr, values=vb.addr, count=5),
                     lookup_all(cl, HASH, fd)))
    assert outs[0] == outs[1]
    assert outs[0][0] == (-E2BIG, 4)


@pytest.mark.parametrize("fault_at", [0, 2])
def test_delete_batch_fault(client, hash_type, fault_at):
    fd = create(client, hash_type, max_entries=16)
    fill(client, fd, keys_of(4), values_of(hash_type, 8, 4, 1))
    cliff = Cliff()
    kaddr = cliff.put(fault_at * 4, b"".join(keys_of(4)))
    assert batch(client.b, DELETE_BATCH, fd, keys=kaddr, count=4) == (-EFAULT, fault_at)
    assert sorted(client.keys(fd, 4)) == keys_of(4)[fault_at:]


def test_delete_batch_all(client, hash_type):
    fd = create(client, hash_type, max_entries=16)
    fill(client, fd, keys_of(7), values_of(hash_type, 8, 7, 1))
    keys = Buf(b"".join(keys_of(7)))
    assert batch(client.b, DELETE_BATCH, fd, keys=keys.addr, count=7) == (0, 7)
    assert client.keys(fd, 4) == []
    assert batch(client.b, DELETE_BATCH, fd, keys=keys.addr, count=1) == (-ENOENT, 0)


def test_update_then_delete_batch_lru_evicts_like_single_updates(both):
    """LRU maps: an update batch past capacity evicts exactly as single updates do."""
    outs = []
    for cl in both:
        res = []
        for map_type, flags in ((LRU_HASH, 0), (LRU_PERCPU_HASH, 0),
                                (LRU_HASH, c.BPF_F_NO_COMMON_LRU)):
            fd = create(cl, map_type, max_entries=8, flags=flags)
            keys = Buf(b"".join(keys_of(20)))
            vb = Buf(b"".join(values_of(map_type, 8, 20, 3)))
            res.append(batch(cl.b, UPDATE_BATCH, fd, keys=keys.addr, values=vb.addr, count=20))
            res.append(lookup_all(cl, map_type, fd))
            dk = Buf(b"".join(sorted(cl.keys(fd, 4))[:3]))
            res.append(batch(cl.b, DELETE_BATCH, fd, keys=dk.addr, count=3))
            res.append(batch(cl.b, UPDATE_BATCH, fd, keys=keys.addr, values=vb.addr, count=5))
            res.append(lookup_all(cl, map_type, fd))
        outs.append(res)
    assert outs[0] == outs[1]


def test_lookup_and_delete_batch_empties_lru_then_refills(both):
    """Elements taken by LOOKUP_AND_DELETE_BATCH go back to the LRU's free lists: refilling
    the map afterwards evicts nothing early, as on the kernel."""
    outs = []
    for cl in both:
        res = []
        for map_type in (LRU_HASH, LRU_PERCPU_HASH):
            vs = sys_value_size(map_type, 8)
            fd = create(cl, map_type, max_entries=16)
            keys = keys_of(8)
            fill(cl, fd, keys, values_of(map_type, 8, 8, 4))
            bufs = Bufs(16, 4, vs)
            res.append(lookup_call(cl.b, LOOKUP_AND_DELETE_BATCH, fd, bufs, 16, in_batch=False))
            fill(cl, fd, keys_of(12, start=50), values_of(map_type, 8, 12, 5))
            res.append(sorted(cl.keys(fd, 4)))
        outs.append(res)
    assert outs[0] == outs[1]


LRU_FLAVOURS = [(LRU_HASH, 0), (LRU_PERCPU_HASH, 0), (LRU_HASH, c.BPF_F_NO_COMMON_LRU)]


@pytest.mark.parametrize("map_type,flags", LRU_FLAVOURS, ids=["lru", "lru_percpu", "no_common"])
def test_lru_batches_in_bulk_match_the_kernel(both, map_type, flags):
    """LRU UPDATE_BATCH and DELETE_BATCH with runs long enough for the bulk paths (a 64-entry
    map: refills of 16 nodes on 2 CPUs), compared with the kernel: a batch that evicts in its
    middle, with a key repeated and keys already in the map (some of them evicted by the
    batch's own refills before their turn), then a delete batch of new (pending) and older
    (listed) elements, then inserts whose evictions show the order the deletes left."""
    outs = []
    for cl in both:
        res = []
        fd = create(cl, map_type, max_entries=64, flags=flags)
        fill(cl, fd, keys_of(40), values_of(map_type, 8, 40, 1))
        # Keys the refills flushed to the global lists (0-31; 32-39 are pending): one move
        # of them all to the free list.
        listed = Buf(b"".join(u32(i) for i in (3, 10, 20, 25, 31)))
        res.append(batch(cl.b, DELETE_BATCH, fd, keys=listed.addr, count=5))
        ks = [u32(1000 + i) for i in range(90)]
        ks[30] = ks[12]                             # a repeat: a replace
        ks[45], ks[70] = u32(39), u32(0)            # in the map (0 evicted by then)
        keys = Buf(b"".join(ks))
        vb = Buf(b"".join(values_of(map_type, 8, 90, 2)))
        res.append(batch(cl.b, UPDATE_BATCH, fd, keys=keys.addr, values=vb.addr, count=90))
        res.append(lookup_all(cl, map_type, fd))
        # The batch's last keys are pending (their nodes on CPU 0's pending list), others
        # are on the global lists; 5000 is not there: ENOENT after the others.
        newest = [ks[89], ks[88], ks[86]]
        dels = newest + [k for k in sorted(cl.keys(fd, 4))[::3] if k not in newest]
        dk = Buf(b"".join(dels + [u32(5000)]))
        res.append(batch(cl.b, DELETE_BATCH, fd, keys=dk.addr, count=len(dels) + 1))
        # Single inserts, the keys after each: which nodes the deletes freed, and where.
        for k, v in zip(keys_of(60, start=2000), values_of(map_type, 8, 60, 3)):
            assert cl.update(fd, k, v) == 0
            res.append(sorted(cl.keys(fd, 4)))
        res.append(lookup_all(cl, map_type, fd))
        outs.append(res)
    assert outs[0] == outs[1]
    assert outs[0][1] == (0, 90)
