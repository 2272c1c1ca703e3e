"""OBJ_PIN and OBJ_GET against a private bpffs, on the emulator and the live kernel.

Each test mounts a fresh bpffs on a temporary directory (skipped where mounting is not
permitted) and gives the emulator the same path as its bpffs root, so the same path bytes
go to both. Expectations: docs: #info-ids-freeze-and-pins, and the live kernel for the path cases
(the ``sides`` fixture runs each body on both backends and the results are compared).
"""
import os
import struct
import tempfile
import time

import pytest

from bpfemu import Emulator, HostKernel
from bpfemu.uapi import consts as c
from tests.support import NCPU, Buf, profile_under_test

from tests.differential.abi_support import (ALL_TYPES, ARRAY, CLOSED_FD, EACCES, EBADF, EBUSY,
                                            EEXIST, EFAULT, EINVAL, ENOENT, ENOTDIR, EPERM, HASH,
                                            TYPE_IDS, BpffsSide, bpffs_mount, call, get_fd_by_id,
                                            get_info, get_next_id, map_id, obj_attr, obj_get, pin,
                                            sys_value_size, u32)
from tests.differential.hash_support import NONE_PAGE

PATH_FD = c.BPF_F_PATH_FD
RDONLY, WRONLY = c.BPF_F_RDONLY, c.BPF_F_WRONLY
AT_FDCWD = -100

__all__ = ["bpffs_mount"]


@pytest.fixture
def sides(bpffs_mount):
    """(emulator side, host side), both with their bpffs at the same path."""
    emu = BpffsSide(Emulator(nr_cpus=NCPU, seed=1, bpffs_root=bpffs_mount), bpffs_mount)
    host = BpffsSide(HostKernel(), bpffs_mount)
    yield emu, host
    emu.close_all()
    host.close_all()


def both_ways(sides, body):
    """Run body(side) on each backend and require the same result."""
    out = [body(s) for s in sides]
    assert out[0] == out[1], out
    return out[0]


def wait_gone(side, mid, timeout=2.0):
    """The live kernel frees an unpinned map after an RCU grace period: poll for it."""
    deadline = time.monotonic() + timeout
    while True:
        ret = get_fd_by_id(side.b, mid)
        if ret < 0:
            return ret
        side.b.close(ret)
        if time.monotonic() > deadline:
            return ret
        time.sleep(0.01)


def test_pin_get_roundtrip(sides):
    def body(s):
        cl = s.cl
        vs = sys_value_size(HASH, 8)
        fd = cl.create(HASH, 4, 8, 4)
        assert cl.update(fd, u32(7), b"\x17" * vs) == 0
        mid = map_id(s.b, fd)
        res = [pin(s.b, fd, s.path("m"))]
        cl.close(fd)                                     # the pin keeps it alive
        res.append(get_next_id(s.b, mid - 1)[1] == mid)
        nfd = obj_get(s.b, s.path("m"))
        cl.fds.append(nfd)
        res.append(nfd >= 0 and map_id(s.b, nfd) == mid)
        res.append(cl.lookup(nfd, u32(7), vs))
        res.append(pin(s.b, nfd, s.path("m")))          # exists
        res.append(pin(s.b, nfd, s.path("m2")))         # a second pin of the same map
        s.unlink(s.path("m"))
        s.unlink(s.path("m2"))
        cl.close(nfd)
        res.append(wait_gone(s, mid))                    # no fd, no pin: freed
        return res
    assert both_ways(sides, body) == [0, True, True, (0, b"\x17" * 8), -EEXIST, 0, -ENOENT]


@pytest.mark.parametrize("map_type", ALL_TYPES, ids=[TYPE_IDS[t] for t in ALL_TYPES])
def test_every_map_type_pins(sides, map_type):
    def body(s):
        fd = s.cl.create(map_type, 4, 8, 4)
        r = [pin(s.b, fd, s.path("p"))]
        g = obj_get(s.b, s.path("p"))
        s.cl.fds.append(g)
        r.append(map_id(s.b, g) == map_id(s.b, fd))
        s.unlink(s.path("p"))
        return r
    assert both_ways(sides, body) == [0, True]


@pytest.mark.parametrize("file_flags,readable,writable", [
    (0, True, True), (RDONLY, True, False), (WRONLY, False, True),
    (PATH_FD * 0 + RDONLY, True, False)])
def test_obj_get_access_modes(sides, file_flags, readable, writable):
    def body(s):
        vs = sys_value_size(ARRAY, 8)
        fd = s.cl.create(ARRAY, 4, 8, 2)
        assert pin(s.b, fd, s.path("a")) == 0
        g = obj_get(s.b, s.path("a"), file_flags)
        s.cl.fds.append(g)
        r = [s.cl.lookup(g, u32(0), vs)[0], s.cl.update(g, u32(0), bytes(vs))]
        import fcntl
        r.append(fcntl.fcntl(g, fcntl.F_GETFL) & os.O_ACCMODE)
        r.append(bool(fcntl.fcntl(g, fcntl.F_GETFD) & fcntl.FD_CLOEXEC))
        s.unlink(s.path("a"))
        return r
    want_mode = os.O_RDWR if readable and writable else (os.O_RDONLY if readable else os.O_WRONLY)
    assert both_ways(sides, body) == [0 if readable else -1, 0 if writable else -1, want_mode,
                                      True]


def test_pin_errors(sides, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file").write_text("x")

    def body(s):
        fd = s.cl.create(HASH, 4, 8, 4)
        r, w = os.pipe()
        res = {}
        try:
            res["closed_fd"] = pin(s.b, CLOSED_FD, s.path("x"))
            res["pipe_fd"] = pin(s.b, r, s.path("x"))
            res["closed_fd_null_path"] = call(s.b, c.BPF_OBJ_PIN, obj_attr(0, CLOSED_FD), 20)[0]
            res["null_path"] = call(s.b, c.BPF_OBJ_PIN, obj_attr(0, fd), 20)[0]
            res["bad_path"] = call(s.b, c.BPF_OBJ_PIN, obj_attr(NONE_PAGE, fd), 20)[0]
            res["empty"] = pin(s.b, fd, "")
            res["missing_parent"] = pin(s.b, fd, s.path("nodir", "x"))
            res["outside"] = pin(s.b, fd, str(outside / "x"))
            res["outside_exists"] = pin(s.b, fd, str(outside / "file"))
            res["outside_missing_parent"] = pin(s.b, fd, str(outside / "no" / "x"))
            res["root_itself"] = pin(s.b, fd, s.root)
            res["dot"] = pin(s.b, fd, s.path("."))
            res["dotdot"] = pin(s.b, fd, s.path(".."))
            res["slash"] = pin(s.b, fd, "/")
            res["trailing_slash"] = pin(s.b, fd, s.path("x") + "/")
            res["flags"] = pin(s.b, fd, s.path("x"), file_flags=1)
            res["flag_rdonly"] = pin(s.b, fd, s.path("x"), file_flags=RDONLY)
            res["path_fd_without_flag"] = pin(s.b, fd, s.path("x"), path_fd=3)
            res["relative_bad_dirfd"] = pin(s.b, fd, "x", file_flags=PATH_FD, path_fd=CLOSED_FD)
            res["relative_neg_dirfd"] = pin(s.b, fd, "x", file_flags=PATH_FD, path_fd=-5)
            res["relative_file_dirfd"] = pin(s.b, fd, "x", file_flags=PATH_FD, path_fd=r)
            res["absolute_ignores_dirfd"] = pin(s.b, fd, s.path("abs"), file_flags=PATH_FD,
                                                path_fd=CLOSED_FD)
            res["exists"] = pin(s.b, fd, s.path("abs"))
            res["through_a_pin"] = pin(s.b, fd, s.path("abs", "x"))
            res["trailing_slash_exists"] = pin(s.b, fd, s.path("abs") + "/")
            res["dirty_tail"] = call(s.b, c.BPF_OBJ_PIN, obj_attr(0, fd), 168, tail={20: 1})[0]
            res["long_name"] = pin(s.b, fd, s.path("n" * 300))
        finally:
            os.close(r)
            os.close(w)
            for name in ("abs",):
                try:
                    s.unlink(s.path(name))
                except OSError:
                    pass
        return res
    res = both_ways(sides, body)
    assert res["closed_fd"] == res["pipe_fd"] == res["closed_fd_null_path"] == -EINVAL
    assert res["null_path"] == res["bad_path"] == -EFAULT
    assert res["empty"] == res["missing_parent"] == -ENOENT
    assert res["outside"] == -EPERM and res["outside_exists"] == -EEXIST
    if profile_under_test(sides[0].b).obj_path_fd:
        assert res["relative_bad_dirfd"] == -EBADF
        assert res["absolute_ignores_dirfd"] == 0 and res["exists"] == -EEXIST
    else:       # Linux 6.1: BPF_F_PATH_FD is an unknown flag, so "abs" is made only by "exists"
        assert res["relative_bad_dirfd"] == res["absolute_ignores_dirfd"] == -EINVAL
        assert res["exists"] == 0
    assert res["flags"] == res["path_fd_without_flag"] == res["dirty_tail"] == -EINVAL


def test_relative_paths(sides):
    def body(s):
        fd = s.cl.create(HASH, 4, 8, 4)
        dirfd = os.open(s.root, os.O_RDONLY | os.O_DIRECTORY)
        old = os.getcwd()
        try:
            r = [pin(s.b, fd, "rel", file_flags=PATH_FD, path_fd=dirfd)]
            r.append(obj_get(s.b, "rel", file_flags=PATH_FD, path_fd=dirfd) >= 0)
            os.chdir(s.root)
            r.append(pin(s.b, fd, "cwd"))
            r.append(pin(s.b, fd, "./cwd2"))
            r.append(obj_get(s.b, "cwd") >= 0)
            r.append(pin(s.b, fd, "rel", file_flags=PATH_FD, path_fd=AT_FDCWD))
            os.chdir("/")
            r.append(pin(s.b, fd, os.path.relpath(s.path("fromroot"), "/")))
            r.append(obj_get(s.b, "cwd"))
        finally:
            os.chdir(old)
            os.close(dirfd)
        for name in ("rel", "cwd", "cwd2", "fromroot"):
            if name != "rel" or r[0] == 0:
                s.unlink(s.path(name))
        return r
    res = both_ways(sides, body)
    if profile_under_test(sides[0].b).obj_path_fd:
        assert res == [0, True, 0, 0, True, -EEXIST, 0, -ENOENT]
    else:       # Linux 6.1: no BPF_F_PATH_FD (EINVAL); plain relative paths work
        assert res == [-EINVAL, False, 0, 0, True, -EINVAL, 0, -ENOENT]


def test_subdirectories(sides):
    def body(s):
        fd = s.cl.create(HASH, 4, 8, 4)
        s.mkdir(s.path("d"))
        s.mkdir(s.path("d", "e"))
        r = [pin(s.b, fd, s.path("d", "e", "m")), pin(s.b, fd, s.path("d", "m"))]
        g = obj_get(s.b, s.path("d", "e", "m"))
        r.append(g >= 0)
        s.cl.b.close(g)
        r.append(obj_get(s.b, s.path("d", "x", "m")))
        r.append(obj_get(s.b, s.path("d", "m", "x")))
        r.append(obj_get(s.b, s.path("d", "m") + "/"))
        r.append(obj_get(s.b, s.path("d", "e")))            # a directory: not a bpf object
        r.append(obj_get(s.b, s.path("d", "e") + "/"))
        r.append(pin(s.b, fd, s.path("d")))                 # exists (a directory)
        s.unlink(s.path("d", "e", "m"))
        s.unlink(s.path("d", "m"))
        return r
    assert both_ways(sides, body) == [0, 0, True, -ENOENT, -ENOTDIR, -ENOTDIR, -EACCES, -EACCES,
                                      -EEXIST]


def test_obj_get_errors(sides, tmp_path):
    regular = tmp_path / "regular"
    regular.write_text("x")

    def body(s):
        fd = s.cl.create(HASH, 4, 8, 4)
        assert pin(s.b, fd, s.path("g")) == 0
        res = {
            "ok": obj_get(s.b, s.path("g")) >= 0,
            "bpf_fd": obj_get(s.b, s.path("g"), bpf_fd=fd),
            "both_modes": obj_get(s.b, s.path("g"), RDONLY | WRONLY),
            "bad_flag": obj_get(s.b, s.path("g"), 0x20),
            "flag_1": obj_get(s.b, s.path("g"), 1),
            "path_fd_without_flag": obj_get(s.b, s.path("g"), path_fd=3),
            "missing": obj_get(s.b, s.path("nope")),
            "empty": obj_get(s.b, ""),
            "null": call(s.b, c.BPF_OBJ_GET, obj_attr(0), 20)[0],
            "bad_ptr": call(s.b, c.BPF_OBJ_GET, obj_attr(NONE_PAGE), 20)[0],
            "the_root": obj_get(s.b, s.root),
            "regular_file": obj_get(s.b, str(regular)),
            "outside_missing": obj_get(s.b, str(tmp_path / "none")),
            "relative_bad_dirfd": obj_get(s.b, "g", PATH_FD, CLOSED_FD),
            "dirty_tail": call(s.b, c.BPF_OBJ_GET, obj_attr(0), 168, tail={20: 1})[0],
            "both_modes_and_missing": obj_get(s.b, s.path("nope"), RDONLY | WRONLY),
        }
        s.unlink(s.path("g"))
        return res
    res = both_ways(sides, body)
    assert res["ok"]
    assert res["bpf_fd"] == res["both_modes"] == res["bad_flag"] == -EINVAL
    assert res["missing"] == res["empty"] == -ENOENT
    assert res["null"] == res["bad_ptr"] == -EFAULT
    assert res["the_root"] == res["regular_file"] == -EACCES


def test_pin_holds_the_map_alive(sides):
    """A pinned map survives closing all its fds; unlinking the pin frees it."""
    def body(s):
        vs = sys_value_size(ARRAY, 8)
        fd = s.cl.create(ARRAY, 4, 8, 2)
        mid = map_id(s.b, fd)
        assert s.cl.update(fd, u32(1), b"\x29" * vs) == 0
        r = [pin(s.b, fd, s.path("keep"))]
        dfd = get_fd_by_id(s.b, mid)
        s.cl.close(fd)
        s.b.close(dfd)
        r.append(get_next_id(s.b, mid - 1)[1] == mid)
        g = get_fd_by_id(s.b, mid, RDONLY)
        r.append(s.cl.lookup(g, u32(1), vs))
        s.b.close(g)
        s.unlink(s.path("keep"))
        r.append(wait_gone(s, mid))
        ret, nxt = get_next_id(s.b, mid - 1)
        r.append(ret == -ENOENT or nxt != mid)
        return r
    assert both_ways(sides, body) == [0, True, (0, b"\x29" * 8), -ENOENT, True]


def test_frozen_state_is_per_map(sides):
    def body(s):
        from tests.differential.abi_support import freeze
        vs = sys_value_size(HASH, 8)
        fd = s.cl.create(HASH, 4, 8, 2)
        assert freeze(s.b, fd) == 0
        assert pin(s.b, fd, s.path("f")) == 0
        g = obj_get(s.b, s.path("f"))
        s.cl.fds.append(g)
        r = [s.cl.update(g, u32(1), bytes(vs)), freeze(s.b, g)]
        s.unlink(s.path("f"))
        return r
    # A second freeze: EPERM where MAP_FREEZE needs a writable fd (a frozen map has none),
    # EBUSY on Linux 6.1.
    second = -1 if profile_under_test(sides[0].b).freeze_needs_write else -EBUSY
    assert both_ways(sides, body) == [-1, second]


def test_emulator_bpffs_api():
    """The user-side calls on the emulated bpffs behave like the real ones."""
    emu = Emulator(nr_cpus=NCPU, bpffs_root="/sys/fs/bpf")
    fs = emu.bpffs
    fs.mkdir("/sys/fs/bpf/a")
    with pytest.raises(FileExistsError):
        fs.mkdir("/sys/fs/bpf/a")
    with pytest.raises(FileNotFoundError):
        fs.mkdir("/sys/fs/bpf/x/y")
    with pytest.raises(FileNotFoundError):
        fs.unlink("/sys/fs/bpf/a/nothing")
    with pytest.raises(IsADirectoryError):
        fs.unlink("/sys/fs/bpf/a")
    assert fs.listdir("/sys/fs/bpf") == ["a"] and fs.exists("/sys/fs/bpf/a")
    fs.rmdir("/sys/fs/bpf/a")
    assert not fs.exists("/sys/fs/bpf/a")
    with pytest.raises(ValueError):
        fs.mkdir("/tmp/not-bpffs")


@pytest.mark.parametrize("map_type", [HASH, ARRAY], ids=["hash", "array"])
@pytest.mark.parametrize("mode", [0, RDONLY, WRONLY], ids=["rdwr", "rdonly", "wronly"])
def test_obj_get_permission_table(sides, map_type, mode):
    """An fd from OBJ_GET follows docs: #fds-and-permissions like one from MAP_CREATE."""
    from tests.differential.test_ids_freeze import _seed, expected, ops_results

    def body(s):
        fd = s.cl.create(map_type, 4, 8, 1)
        _seed(s.cl, map_type, fd)
        assert pin(s.b, fd, s.path("t")) == 0
        g = obj_get(s.b, s.path("t"), mode)
        s.cl.fds.append(g)
        res = ops_results(s.cl, map_type, g)
        s.unlink(s.path("t"))
        return res
    assert both_ways(sides, body) == expected(map_type, mode != WRONLY, mode != RDONLY)
