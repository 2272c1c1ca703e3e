"""Map ids (GET_NEXT_ID, GET_FD_BY_ID), MAP_FREEZE, fd access modes and map lifetime, on the
emulator and the live kernel.

Expectations: docs/linux-6.18.md#fds-and-permissions, #info-ids-freeze-and-pins.
Ids are global on the live kernel and start at 1 on the emulator, so they are compared
relative to the first id a test creates. Other processes may create maps on the live kernel
at the same time; tests that need consecutive ids retry when a foreign map got in between.
"""
import fcntl
import os
import struct

import pytest

from bpfemu import Emulator
from bpfemu.uapi import consts as c
from tests.support import Buf, dirty_tail_result, elem_attr, profile_under_test

from tests.differential.abi_support import (ALL_TYPES, ARRAY, ARRAY_TYPES, CLOSED_FD, DELETE_BATCH,
                                            EBADF, EBUSY, EINVAL, ENOENT, ENOTSUPP, EPERM, HASH,
                                            LOOKUP_AND_DELETE_BATCH, LOOKUP_BATCH, TYPE_IDS,
                                            UPDATE_BATCH, batch, call, freeze, get_fd_by_id,
                                            get_info, get_next_id, id_attr, keys_of, map_id,
                                            sys_value_size, u32)

RDONLY, WRONLY = c.BPF_F_RDONLY, c.BPF_F_WRONLY


@pytest.fixture(params=ALL_TYPES, ids=[TYPE_IDS[t] for t in ALL_TYPES])
def map_type(request):
    return request.param


def consecutive_maps(cl, n, tries=5):
    """n new maps with consecutive ids (retrying if another process took one between)."""
    for _ in range(tries):
        fds = [cl.create(HASH, 4, 8, 4) for _ in range(n)]
        ids = [map_id(cl.b, fd) for fd in fds]
        if ids == list(range(ids[0], ids[0] + n)):
            return fds, ids
        for fd in fds:
            cl.close(fd)
    pytest.skip("other processes kept creating maps in between")


# --- MAP_GET_NEXT_ID (docs: #info-ids-freeze-and-pins) -----------------------------------------

def test_next_id_walks_live_maps(client):
    fds, ids = consecutive_maps(client, 3)
    b = client.b
    assert get_next_id(b, ids[0] - 1) == (0, ids[0])
    assert get_next_id(b, ids[0]) == (0, ids[1])
    assert get_next_id(b, ids[1]) == (0, ids[2])
    client.close(fds[1])                                   # freed: no longer listed
    assert get_next_id(b, ids[0]) == (0, ids[2])
    ret = get_fd_by_id(b, ids[1])
    assert ret == -ENOENT


def test_ids_are_not_reused(client):
    """Freed ids are not handed out again: create+close, create gives the next id."""
    for _ in range(5):
        fd = client.create(HASH, 4, 8, 4)
        first = map_id(client.b, fd)
        client.close(fd)
        fd = client.create(ARRAY, 4, 8, 4)
        second = map_id(client.b, fd)
        client.close(fd)
        if second == first + 1:
            return
        assert second > first
    pytest.skip("other processes kept creating maps in between")


def test_emulator_ids_start_at_one():
    from tests.support import Client, NCPU
    cl = Client(Emulator(nr_cpus=NCPU))
    fd = cl.create(HASH, 4, 8, 4)
    assert map_id(cl.b, fd) == 1
    assert get_next_id(cl.b, 0) == (0, 1)
    assert get_next_id(cl.b, 1)[0] == -ENOENT
    cl.close_all()


@pytest.mark.parametrize("start,want", [(0x7FFFFFFF, -EINVAL), (0x80000000, -EINVAL),
                                        (0xFFFFFFFF, -EINVAL), (0x7FFFFFFE, -ENOENT)])
def test_next_id_range(client, start, want):
    assert get_next_id(client.b, start, next_id=0x12345678) == (want, 0x12345678)


@pytest.mark.parametrize("off", [8, 11, 12, 167])
def test_next_id_dirty_tail(client, off):
    """open_flags (offset 8) is past GET_NEXT_ID's last field: it must be zero."""
    ret, raw = call(client.b, c.BPF_MAP_GET_NEXT_ID, id_attr(0), 168, tail={off: 1})
    assert ret == dirty_tail_result(client, off)


def test_next_id_input_ignored_and_written_only_on_success(client):
    fd = client.create(HASH, 4, 8, 4)
    mid = map_id(client.b, fd)
    assert get_next_id(client.b, mid - 1, next_id=0xFFFFFFFF) == (0, mid)


# --- MAP_GET_FD_BY_ID (docs: #info-ids-freeze-and-pins) -----------------------------------------

@pytest.mark.parametrize("open_flags,want", [
    (0x20, -EINVAL), (0x4000, -EINVAL), (0x10000, -EINVAL), (1 << 31, -EINVAL),
    (RDONLY | WRONLY, -EINVAL)])
def test_fd_by_id_bad_flags(client, open_flags, want):
    fd = client.create(HASH, 4, 8, 4)
    assert get_fd_by_id(client.b, map_id(client.b, fd), open_flags) == want


@pytest.mark.parametrize("off", [12, 13, 16, 167])
def test_fd_by_id_dirty_tail(client, off):
    """fd_by_id_token_fd (offset 12) is not accepted by the map variant."""
    fd = client.create(HASH, 4, 8, 4)
    ret, _ = call(client.b, c.BPF_MAP_GET_FD_BY_ID, id_attr(map_id(client.b, fd)), 168,
                  tail={off: 1})
    assert ret == dirty_tail_result(client, off)


def test_fd_by_id_unknown(client):
    assert get_fd_by_id(client.b, 0) == -ENOENT
    assert get_fd_by_id(client.b, 0x7FFFFFFF) == -ENOENT


def _lowest_free_fd():
    probe = os.open("/dev/null", os.O_RDONLY)
    os.close(probe)
    return probe


@pytest.mark.parametrize("open_flags,accmode", [(0, os.O_RDWR), (RDONLY, os.O_RDONLY),
                                                (WRONLY, os.O_WRONLY)])
def test_fd_by_id_gives_a_new_fd(client, open_flags, accmode):
    fd = client.create(HASH, 4, 8, 4)
    mid = map_id(client.b, fd)
    expect_fd = _lowest_free_fd()
    nfd = get_fd_by_id(client.b, mid, open_flags)
    assert nfd == expect_fd
    client.fds.append(nfd)
    assert fcntl.fcntl(nfd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    assert fcntl.fcntl(nfd, fcntl.F_GETFL) & os.O_ACCMODE == accmode
    assert map_id(client.b, nfd) == mid
    # A new reference: the map outlives the original fd.
    client.close(fd)
    again = get_fd_by_id(client.b, mid, RDONLY)
    assert again >= 0
    client.b.close(again)


def test_fd_by_id_sees_the_same_map(client, map_type):
    vs = sys_value_size(map_type, 8)
    fd = client.create(map_type, 4, 8, 4)
    nfd = get_fd_by_id(client.b, map_id(client.b, fd))
    client.fds.append(nfd)
    assert client.update(fd, u32(1), b"\x42" * vs) == 0
    assert client.lookup(nfd, u32(1), vs) == (0, b"\x42" * vs)


# --- fd access modes (docs: #fds-and-permissions) -------------------------------------------------

def ops_results(cl, map_type, fd):
    """What each command does through this fd (one element, key 0, present)."""
    vs = sys_value_size(map_type, 8)
    k = u32(0)
    kb, vb, nk = Buf(k), Buf(size=vs), Buf(size=4)
    keys, vals, outb = Buf(k), Buf(b"\x07" * vs), Buf(size=4)
    res = {
        "lookup": cl.bpf(c.BPF_MAP_LOOKUP_ELEM, elem_attr(fd, kb.addr, vb.addr), 32),
        "next_key": cl.bpf(c.BPF_MAP_GET_NEXT_KEY, elem_attr(fd, kb.addr, nk.addr), 24),
        "lookup_batch": batch(cl.b, LOOKUP_BATCH, fd, out_batch=outb.addr, keys=keys.addr,
                              values=vals.addr, count=1)[0],
        "info": get_info(cl.b, fd)[0],
        "update": cl.bpf(c.BPF_MAP_UPDATE_ELEM, elem_attr(fd, kb.addr, vals.addr), 32),
        "update_batch": batch(cl.b, UPDATE_BATCH, fd, keys=keys.addr, values=vals.addr,
                              count=1)[0],
    }
    res["lookup_and_delete"] = cl.bpf(c.BPF_MAP_LOOKUP_AND_DELETE_ELEM,
                                      elem_attr(fd, kb.addr, vb.addr), 32)
    cl.update(fd, k, b"\x07" * vs) if res["update"] == 0 else None
    res["lookup_and_delete_batch"] = batch(cl.b, LOOKUP_AND_DELETE_BATCH, fd,
                                           out_batch=outb.addr, keys=keys.addr,
                                           values=vals.addr, count=1)[0]
    cl.update(fd, k, b"\x07" * vs) if res["update"] == 0 else None
    res["delete"] = cl.bpf(c.BPF_MAP_DELETE_ELEM, elem_attr(fd, kb.addr), 16)
    cl.update(fd, k, b"\x07" * vs) if res["update"] == 0 else None
    keys.set(k)
    res["delete_batch"] = batch(cl.b, DELETE_BATCH, fd, keys=keys.addr, count=1)[0]
    return res


def expected(map_type, readable, writable):
    """docs/linux-6.18.md#fds-and-permissions, then what the map type answers once permitted."""
    is_array = map_type in ARRAY_TYPES
    ok = 0
    want = {
        "lookup": ok if readable else -EPERM,
        "next_key": -ENOENT if readable else -EPERM,       # key 0 is the only / last one
        "lookup_batch": (ok if is_array else -ENOENT) if readable else -EPERM,
        "info": ok,
        "update": ok if writable else -EPERM,
        "update_batch": ok if writable else -EPERM,
        "lookup_and_delete": ((-ENOTSUPP if is_array else ok) if readable and writable
                              else -EPERM),
        "lookup_and_delete_batch": ((-ENOTSUPP if is_array else -ENOENT)
                                    if readable and writable else -EPERM),
        "delete": (-EINVAL if is_array else ok) if writable else -EPERM,
        "delete_batch": (-ENOTSUPP if is_array else ok) if writable else -EPERM,
    }
    return want


def _seed(cl, map_type, fd):
    vs = sys_value_size(map_type, 8)
    assert cl.update(fd, u32(0), b"\x01" * vs) == 0


@pytest.mark.parametrize("mode", [0, RDONLY, WRONLY], ids=["rdwr", "rdonly", "wronly"])
@pytest.mark.parametrize("how", ["create", "fd_by_id"])
def test_permission_table(client, map_type, mode, how):
    if how == "create":
        fd = client.create(map_type, 4, 8, 1, mode)
        if mode != WRONLY:
            wfd = get_fd_by_id(client.b, map_id(client.b, fd), WRONLY)
            client.fds.append(wfd)
            _seed(client, map_type, wfd)
        else:
            _seed(client, map_type, fd)
    else:
        base = client.create(map_type, 4, 8, 1)
        _seed(client, map_type, base)
        fd = get_fd_by_id(client.b, map_id(client.b, base), mode)
        client.fds.append(fd)
    want = expected(map_type, mode != WRONLY, mode != RDONLY)
    assert ops_results(client, map_type, fd) == want


def test_frozen_permission_table(client, map_type):
    fd = client.create(map_type, 4, 8, 1)
    _seed(client, map_type, fd)
    assert freeze(client.b, fd) == 0
    want = expected(map_type, True, False)
    assert ops_results(client, map_type, fd) == want
    # New fds are frozen too, whatever their mode.
    for mode in (0, WRONLY):
        nfd = get_fd_by_id(client.b, map_id(client.b, fd), mode)
        client.fds.append(nfd)
        assert ops_results(client, map_type, nfd) == expected(map_type, mode != WRONLY, False)


# --- MAP_FREEZE (docs: #info-ids-freeze-and-pins) -------------------------------------------------

def test_freeze_rules(client, map_type):
    fd = client.create(map_type, 4, 8, 2)
    ro = client.create(map_type, 4, 8, 2, RDONLY)
    wo = client.create(map_type, 4, 8, 2, WRONLY)
    # Linux 6.1 lets any fd freeze, and a second freeze is EBUSY (docs/kernels.md).
    needs_write = profile_under_test(client.b).freeze_needs_write
    again = -EPERM if needs_write else -EBUSY
    assert freeze(client.b, ro) == (-EPERM if needs_write else 0)
    assert freeze(client.b, wo) == 0                 # write permission is enough
    assert freeze(client.b, wo) == again             # a second freeze: EPERM, not EBUSY
    assert freeze(client.b, fd) == 0
    assert freeze(client.b, fd) == again
    # Read-side commands still work on a frozen map.
    vs = sys_value_size(map_type, 8)
    assert client.lookup(fd, u32(0), vs)[0] in (0, -ENOENT)
    assert client.update(fd, u32(0), bytes(vs)) == -EPERM


def test_freeze_checks(client):
    fd = client.create(HASH, 4, 8, 2)
    for off in (4, 7, 8, 167):                        # the padding at 4..7 is checked too
        assert freeze(client.b, fd, size=168, tail={off: 1}) == dirty_tail_result(client, off)
    assert freeze(client.b, CLOSED_FD) == -EBADF
    assert freeze(client.b, 0xFFFFFFFF) == -EBADF
    r, w = os.pipe()
    try:
        assert freeze(client.b, r) == -EINVAL
    finally:
        os.close(r)
        os.close(w)
    assert freeze(client.b, CLOSED_FD, size=168, tail={4: 1}) == -EINVAL


def test_freeze_is_per_map_not_per_fd(client, map_type):
    fd = client.create(map_type, 4, 8, 2)
    nfd = get_fd_by_id(client.b, map_id(client.b, fd))
    client.fds.append(nfd)
    assert freeze(client.b, nfd) == 0
    vs = sys_value_size(map_type, 8)
    assert client.update(fd, u32(0), bytes(vs)) == -EPERM
    again = -EPERM if profile_under_test(client.b).freeze_needs_write else -EBUSY
    assert freeze(client.b, fd) == again


# --- lifetime ---------------------------------------------------------------------------------------------

def test_map_lives_while_an_fd_holds_it(client, map_type):
    vs = sys_value_size(map_type, 8)
    fd = client.create(map_type, 4, 8, 2)
    mid = map_id(client.b, fd)
    assert client.update(fd, u32(1), b"\x33" * vs) == 0
    second = get_fd_by_id(client.b, mid)
    dup = os.dup(second)                                # a dup() holds it as well
    client.close(fd)
    client.b.close(second)
    assert get_next_id(client.b, mid - 1)[1] == mid
    third = get_fd_by_id(client.b, mid, RDONLY)
    assert third >= 0
    assert client.lookup(third, u32(1), vs) == (0, b"\x33" * vs)
    client.b.close(third)
    client.b.close(dup)
    assert get_fd_by_id(client.b, mid) == -ENOENT
    ret, nxt = get_next_id(client.b, mid - 1)
    assert ret == -ENOENT or nxt != mid


def test_emfile_uses_up_an_id():
    """A create that fails with EMFILE uses up an id (docs: #fds-and-permissions), emulator only:
    lowering RLIMIT_NOFILE in the test process would disturb the live side's other fds."""
    import resource
    from tests.support import Client, NCPU
    emu = Emulator(nr_cpus=NCPU)
    cl = Client(emu)
    fd = cl.create(HASH, 4, 8, 4)
    first = map_id(emu, fd)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    free = _lowest_free_fd()
    resource.setrlimit(resource.RLIMIT_NOFILE, (free, hard))
    try:
        assert cl.create(HASH, 4, 8, 4) == -24          # EMFILE
        assert get_fd_by_id(emu, first) == -24
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    fd2 = cl.create(HASH, 4, 8, 4)
    assert map_id(emu, fd2) == first + 2
    cl.close_all()
