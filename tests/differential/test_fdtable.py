"""The fd side of maps, on the emulator and on the live kernel: lowest-free numbers,
FD_CLOEXEC, the access mode, readlink, closed and foreign fds, RDONLY/WRONLY fds, dup(),
EMFILE, and concurrent BPF_NOEXIST updates.

Expected values are the live kernel's (docs/linux-6.18.md#fds-and-permissions), re-checked
by the host run. Map ids are left to the OBJ_GET_INFO_BY_FD tests.
"""
import errno
import fcntl
import os
import resource
import struct

import pytest

from bpfemu import Emulator
from bpfemu.uapi import consts as c

from tests.support import Buf, attr_buf, elem_attr, race

EPERM, ENOENT, EBADF, EEXIST, EINVAL, EMFILE, E2BIG = (
    errno.EPERM, errno.ENOENT, errno.EBADF, errno.EEXIST, errno.EINVAL, errno.EMFILE, errno.E2BIG)
HASH = c.BPF_MAP_TYPE_HASH
RDONLY, WRONLY = c.BPF_F_RDONLY, c.BPF_F_WRONLY
K1, V1 = struct.pack("<I", 1), b"\x11" * 8


def lowest_free_fd() -> int:
    fd = os.open("/dev/null", os.O_RDONLY)
    os.close(fd)
    return fd


def all_elem_ops(client, fd):
    """The result of each element command on fd (key 1 present or not: only errors matter)."""
    return {
        "lookup": client.lookup(fd, K1, 8)[0],
        "update": client.update(fd, K1, V1),
        "get_next_key": client.next_key(fd, None, 4)[0],
        "lookup_and_delete": client.lookup_and_delete(fd, K1, 8)[0],
        "delete": client.delete(fd, K1),
    }


def ops_all(errno_value):
    return {k: -errno_value for k in ("lookup", "update", "get_next_key", "lookup_and_delete",
                                      "delete")}


# --- numbers, flags, names -----------------------------------------------------------------

def test_fd_is_lowest_free(client):
    expect = lowest_free_fd()
    a = client.create(HASH, 4, 8, 4)
    assert a == expect
    expect = lowest_free_fd()
    b = client.create(HASH, 4, 8, 4)
    assert b == expect
    expect = lowest_free_fd()
    cfd = client.create(HASH, 4, 8, 4)
    assert cfd == expect
    assert client.close(b) == 0
    assert lowest_free_fd() == b
    assert client.create(HASH, 4, 8, 4) == b            # the hole is filled first
    # Another file takes the next number after the maps, as it would after real map fds.
    nxt = lowest_free_fd()
    assert client.create(HASH, 4, 8, 4) == nxt
    assert cfd < nxt


def test_fd_below_other_files(client):
    # Close a low fd that is not a map: the next map takes exactly that number.
    spare = [os.open("/dev/null", os.O_RDONLY) for _ in range(3)]
    try:
        os.close(spare[1])
        assert client.create(HASH, 4, 8, 4) == spare[1]
    finally:
        os.close(spare[0])
        os.close(spare[2])


@pytest.mark.parametrize("flags,accmode", [(0, os.O_RDWR), (RDONLY, os.O_RDONLY),
                                           (WRONLY, os.O_WRONLY)])
def test_cloexec_and_access_mode(client, flags, accmode):
    fd = client.create(HASH, 4, 8, 4, flags)
    assert fd >= 0
    assert fcntl.fcntl(fd, fcntl.F_GETFD) == fcntl.FD_CLOEXEC
    assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == accmode


def test_readlink_names_a_bpf_map(client):
    fd = client.create(HASH, 4, 8, 4)
    link = os.readlink(f"/proc/self/fd/{fd}")
    assert "bpf-map" in link
    if not isinstance(client.b, Emulator):
        assert link == "anon_inode:bpf-map"


# --- closed, foreign and absurd fds --------------------------------------------------------

def test_closed_map_fd_is_ebadf(client):
    fd = client.create(HASH, 4, 8, 4)
    assert client.update(fd, K1, V1) == 0
    assert client.close(fd) == 0
    assert all_elem_ops(client, fd) == ops_all(EBADF)
    assert client.close(fd) == -EBADF


@pytest.mark.parametrize("bad_fd", [0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 1 << 20])
def test_absurd_fd_numbers_are_ebadf(client, bad_fd):
    assert all_elem_ops(client, bad_fd) == ops_all(EBADF)


def _foreign_fds():
    r, w = os.pipe()
    null = os.open("/dev/null", os.O_RDWR)
    memfd = os.memfd_create("bpf-map", os.MFD_CLOEXEC)    # a lookalike, not a map
    regular = os.open("/proc/self/exe", os.O_RDONLY)
    dirfd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    return {"pipe": r, "pipe_w": w, "devnull": null, "memfd": memfd, "regular": regular,
            "dir": dirfd}


def test_open_non_map_fd_is_einval(client):
    fds = _foreign_fds()
    try:
        for name, fd in fds.items():
            assert all_elem_ops(client, fd) == ops_all(EINVAL), name
    finally:
        for fd in fds.values():
            os.close(fd)


def test_non_map_fd_numbers_cover_each_command(client):
    # The same through raw attrs, with a NULL key: the fd is resolved before any copy.
    r, w = os.pipe()
    try:
        for cmd, size in ((c.BPF_MAP_LOOKUP_ELEM, 32), (c.BPF_MAP_UPDATE_ELEM, 32),
                          (c.BPF_MAP_DELETE_ELEM, 16), (c.BPF_MAP_GET_NEXT_KEY, 24),
                          (c.BPF_MAP_LOOKUP_AND_DELETE_ELEM, 32)):
            assert client.b.bpf(cmd, attr_buf(elem_attr(r)), size) == -EINVAL
            assert client.b.bpf(cmd, attr_buf(elem_attr(0xFFFFFFFF)), size) == -EBADF
    finally:
        os.close(r)
        os.close(w)


# --- access modes ----------------------------------------------------------------------------

def test_rdonly_fd(client):
    fd = client.create(HASH, 4, 8, 4, RDONLY)
    assert fd >= 0
    assert all_elem_ops(client, fd) == {
        "lookup": -ENOENT, "update": -EPERM, "get_next_key": -ENOENT,
        "lookup_and_delete": -EPERM, "delete": -EPERM}


def test_wronly_fd(client):
    fd = client.create(HASH, 4, 8, 4, WRONLY)
    assert fd >= 0
    assert client.update(fd, K1, V1) == 0
    assert client.lookup(fd, K1, 8) == (-EPERM, None)
    assert client.next_key(fd, None, 4) == (-EPERM, None)
    assert client.next_key(fd, K1, 4) == (-EPERM, None)
    assert client.lookup_and_delete(fd, K1, 8) == (-EPERM, None)
    assert client.delete(fd, K1) == 0
    assert client.delete(fd, K1) == -ENOENT


def test_rdonly_lookup_works(client):
    # A read-only fd of a map with data: RDONLY applies to the fd, not to the map.
    fd = client.create(HASH, 4, 8, 4, RDONLY)
    assert client.update(fd, K1, V1) == -EPERM
    assert client.lookup(fd, K1, 8) == (-ENOENT, None)
    assert client.next_key(fd, None, 4) == (-ENOENT, None)


def test_rdonly_wronly_together_is_einval(client):
    assert client.create(HASH, 4, 8, 4, RDONLY | WRONLY) == -EINVAL


def test_access_checks_come_after_the_fd_but_before_the_key(client):
    # A NULL key would be EFAULT; the permission check wins.
    fd = client.create(HASH, 4, 8, 4, RDONLY)
    assert client.bpf(c.BPF_MAP_UPDATE_ELEM, elem_attr(fd, 0, 0), 32) == -EPERM
    assert client.bpf(c.BPF_MAP_DELETE_ELEM, elem_attr(fd, 0), 16) == -EPERM
    wfd = client.create(HASH, 4, 8, 4, WRONLY)
    assert client.bpf(c.BPF_MAP_LOOKUP_ELEM, elem_attr(wfd, 0, 0), 32) == -EPERM
    assert client.bpf(c.BPF_MAP_GET_NEXT_KEY, elem_attr(wfd, 8, 0), 24) == -EPERM
    assert client.bpf(c.BPF_MAP_LOOKUP_AND_DELETE_ELEM, elem_attr(wfd, 0, 0), 32) == -EPERM


# --- dup() -----------------------------------------------------------------------------------

def test_dup_fd_works(client):
    fd = client.create(HASH, 4, 8, 4)
    assert client.update(fd, K1, V1) == 0
    d = os.dup(fd)
    try:
        assert client.lookup(d, K1, 8) == (0, V1)
        assert client.update(d, struct.pack("<I", 2), b"\x22" * 8) == 0
        assert client.lookup(fd, struct.pack("<I", 2), 8) == (0, b"\x22" * 8)
    finally:
        client.b.close(d)
    assert client.lookup(fd, K1, 8) == (0, V1)              # the original is unaffected
    assert client.lookup(d, K1, 8) == (-EBADF, None)


def test_dup_keeps_the_map_alive(client):
    fd = client.create(HASH, 4, 8, 4)
    assert client.update(fd, K1, V1) == 0
    d = os.dup(fd)                       # not used before the original goes away
    assert client.close(fd) == 0
    assert client.lookup(d, K1, 8) == (0, V1)
    assert client.update(d, struct.pack("<I", 3), V1) == 0
    d2 = fcntl.fcntl(d, fcntl.F_DUPFD_CLOEXEC, 100)
    assert d2 >= 100
    assert client.b.close(d) == 0
    assert client.lookup(d2, struct.pack("<I", 3), 8) == (0, V1)
    assert client.b.close(d2) == 0
    assert client.lookup(d2, K1, 8) == (-EBADF, None)


def test_dup_keeps_the_access_mode(client):
    fd = client.create(HASH, 4, 8, 4, RDONLY)
    d = os.dup(fd)
    try:
        assert client.update(d, K1, V1) == -EPERM
        assert client.lookup(d, K1, 8) == (-ENOENT, None)
        assert fcntl.fcntl(d, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
    finally:
        client.b.close(d)


def test_dup2_onto_a_chosen_number(client):
    fd = client.create(HASH, 4, 8, 4)
    assert client.update(fd, K1, V1) == 0
    target = 150
    while True:
        try:
            os.fstat(target)
            target += 1
        except OSError:
            break
    os.dup2(fd, target)
    try:
        assert client.lookup(target, K1, 8) == (0, V1)
    finally:
        client.b.close(target)


# --- EMFILE ----------------------------------------------------------------------------------

def test_emfile(client):
    """A full fd table: MAP_CREATE is EMFILE; every earlier error still wins."""
    low = lowest_free_fd()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    results = {}
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))        # no free number
        results["full"] = client.create(HASH, 4, 8, 4)
        results["full_e2big"] = client.create(HASH, 4, 8, 1 << 31)
        results["full_einval"] = client.create(HASH, 0, 8, 4)
        resource.setrlimit(resource.RLIMIT_NOFILE, (low + 1, hard))    # exactly one
        results["one"] = client.create(HASH, 4, 8, 4, RDONLY)
        results["then_full"] = client.create(HASH, 4, 8, 4)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert results == {"full": -EMFILE, "full_e2big": -E2BIG, "full_einval": -EINVAL,
                       "one": low, "then_full": -EMFILE}
    # The map made with the last slot is a working read-only map.
    assert client.update(low, K1, V1) == -EPERM
    assert client.lookup(low, K1, 8) == (-ENOENT, None)


# --- concurrency -----------------------------------------------------------------------------

def test_noexist_race(client):
    fd = client.create(HASH, 4, 8, 64)
    assert fd >= 0
    nthreads = 8
    for rnd in range(50):
        key = struct.pack("<I", rnd)
        bufs = [(Buf(key), Buf(bytes([i]) * 8)) for i in range(nthreads)]
        attrs = [attr_buf(elem_attr(fd, k.addr, v.addr, c.BPF_NOEXIST)) for k, v in bufs]
        results = race(nthreads, lambda i: client.b.bpf(c.BPF_MAP_UPDATE_ELEM, attrs[i], 32))
        assert sorted(results) == sorted([0] + [-EEXIST] * (nthreads - 1)), (rnd, results)
        winner = results.index(0)
        assert client.lookup(fd, key, 8) == (0, bytes([winner]) * 8)


def _map_id(client, fd) -> int:
    info = Buf(size=104)
    attr = struct.pack("<IIQ", fd, 104, info.addr)
    assert client.bpf(c.BPF_OBJ_GET_INFO_BY_FD, attr, 16) == 0
    return struct.unpack_from("<I", info.data, 4)[0]


def _fd_by_id(client, map_id) -> int:
    ret = client.bpf(c.BPF_MAP_GET_FD_BY_ID, struct.pack("<III", map_id, 0, 0), 12)
    if ret >= 0:
        client.b.close(ret)
        return 0
    return ret


def test_dup_keeps_the_map_id_alive(client):
    fd = client.create(HASH, 4, 8, 4)
    map_id = _map_id(client, fd)
    d = os.dup(fd)
    assert client.close(fd) == 0
    assert _fd_by_id(client, map_id) == 0               # the dup holds the map
    assert _map_id(client, d) == map_id
    assert client.b.close(d) == 0
    assert _fd_by_id(client, map_id) == -ENOENT         # the last fd took the map with it


def test_last_fd_closed_behind_the_emulators_back_frees_the_id(client):
    """os.close() of the last dup (never seen by Emulator.close) still frees the map: ids are
    looked up as in the kernel, where the id dies with the last file reference."""
    fd = client.create(HASH, 4, 8, 4)
    map_id = _map_id(client, fd)
    d = os.dup(fd)
    assert client.close(fd) == 0
    os.close(d)
    assert _fd_by_id(client, map_id) == -ENOENT


def test_fd_closed_behind_the_emulators_back(client):
    """After os.close() every checked call says EBADF at once, as Linux does (before, the
    emulator reached the old map until it reaped the fd), and a decoded call on the old fd
    number is forgotten with it."""
    fd = client.create(HASH, 4, 8, 4)
    k, v = Buf(K1), Buf(V1)
    attr = attr_buf(elem_attr(fd, k.addr, v.addr))
    for _ in range(2):                                  # the second one is a decoded call
        assert client.b.bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32) == 0
    client.fds.remove(fd)
    os.close(fd)
    assert client.lookup(fd, K1, 8) == (-EBADF, None)
    assert client.update(fd, K1, V1) == -EBADF
    assert client.b.bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32) == -EBADF


def test_fd_closed_behind_the_emulators_back_and_reused_by_another_file(client):
    """os.close() of a map fd, then open() takes the number: the update is EINVAL (not a
    bpf map), where the emulator used to return 0 and update the old map."""
    fd = client.create(HASH, 4, 8, 4)
    client.fds.remove(fd)
    os.close(fd)
    other = os.open("/dev/null", os.O_RDONLY)
    try:
        assert other == fd
        assert client.update(fd, K1, V1) == -EINVAL
        assert client.lookup(fd, K1, 8) == (-EINVAL, None)
        assert client.next_key(fd, None, 4)[0] == -EINVAL
    finally:
        os.close(other)


def test_fd_closed_behind_the_emulators_back_and_reused_by_a_dup_of_another_map(client):
    """The number now holds another map (dup2 of its fd): calls reach that map, as in Linux."""
    a = client.create(HASH, 4, 8, 4)
    b = client.create(HASH, 4, 8, 4)
    assert client.update(b, K1, V1) == 0
    client.fds.remove(a)
    os.close(a)
    os.dup2(b, a)
    client.fds.append(a)
    assert client.lookup(a, K1, 8) == (0, V1)


def test_a_decoded_call_right_after_os_close_still_reaches_the_map(client):
    """DEVIATION(fd-close): a decoded call (the same attr object again) does not look its fd
    up; until the emulator next forgets its decoded calls it reaches the old map, where Linux
    says EBADF."""
    fd = client.create(HASH, 4, 8, 4)
    k, v = Buf(K1), Buf(V1)
    attr = attr_buf(elem_attr(fd, k.addr, v.addr))
    for _ in range(2):
        assert client.b.bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32) == 0
    client.fds.remove(fd)
    os.close(fd)
    # With decoded calls off (--no-decoded-calls) every call is checked: EBADF, as Linux.
    decoded = isinstance(client.b, Emulator) and client.b.decoded_calls is not None
    expected = 0 if decoded else -EBADF
    assert client.b.bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32) == expected
