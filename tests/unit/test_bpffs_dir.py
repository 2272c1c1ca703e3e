"""The bpffs in a real directory (bpffs_dir.py), in process: pins are files, found by inode."""
import errno
import os
import stat

import pytest

from bpfemu import Emulator
from bpfemu.bpffs_dir import DirBpfFs, pin_dir_unusable
from bpfemu.libbpf import LibBpf
from bpfemu.uapi.consts import BPF_MAP_TYPE_HASH


@pytest.fixture
def emu(tmp_path):
    e = Emulator(bpffs_root=str(tmp_path))
    e.bpffs = DirBpfFs(str(tmp_path), put=e._unpinned)
    yield e
    e.bpffs.clear()


def _map(emu):
    lib = LibBpf(emu)
    fd = lib.bpf_map_create(BPF_MAP_TYPE_HASH, b"m", 4, 8, 4)
    assert fd >= 0
    return lib, fd


def test_a_pin_is_a_file_the_path_leads_to(emu, tmp_path):
    lib, fd = _map(emu)
    assert lib.bpf_obj_pin(fd, str(tmp_path / "m")) == 0
    st = os.lstat(tmp_path / "m")
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0
    os.mkdir(tmp_path / "d")
    os.rename(tmp_path / "m", tmp_path / "d" / "n")
    os.link(tmp_path / "d" / "n", tmp_path / "other")
    os.symlink("d/n", tmp_path / "sym")
    for p in ("d/n", "other", "sym"):
        got = lib.bpf_obj_get(str(tmp_path / p))
        assert got >= 0 and emu.map_of(got) is emu.map_of(fd)
    assert lib.bpf_obj_get(str(tmp_path / "m")) == -errno.ENOENT


def test_errors_in_kernel_order(emu, tmp_path):
    lib, fd = _map(emu)
    (tmp_path / "plain").write_bytes(b"")
    assert lib.bpf_obj_pin(fd, str(tmp_path / "plain")) == -errno.EEXIST
    assert lib.bpf_obj_get(str(tmp_path / "plain")) == -errno.EACCES      # not a pin
    assert lib.bpf_obj_pin(fd, str(tmp_path / "no" / "m")) == -errno.ENOENT
    assert lib.bpf_obj_pin(fd, str(tmp_path / "plain" / "m")) == -errno.ENOTDIR
    outside = tmp_path.parent / f"bpfemu-outside-{os.getpid()}"
    assert lib.bpf_obj_pin(fd, str(outside)) == -errno.EPERM             # not on the bpffs
    assert not os.path.lexists(outside)


def test_removing_the_last_link_drops_the_pin(emu, tmp_path):
    lib, fd = _map(emu)
    m = emu.map_of(fd)
    assert lib.bpf_obj_pin(fd, str(tmp_path / "m")) == 0
    os.link(tmp_path / "m", tmp_path / "m2")
    assert emu.close(fd) == 0
    os.unlink(tmp_path / "m")
    by_id = lib.bpf_map_get_fd_by_id(m.id)
    assert by_id >= 0                                    # the other link holds it
    assert emu.close(by_id) == 0
    os.unlink(tmp_path / "m2")
    assert lib.bpf_map_get_fd_by_id(m.id) == -errno.ENOENT


def test_clear_removes_the_pin_files_only(emu, tmp_path):
    lib, fd = _map(emu)
    os.mkdir(tmp_path / "d")
    (tmp_path / "d" / "mine").write_bytes(b"x")
    assert lib.bpf_obj_pin(fd, str(tmp_path / "d" / "m")) == 0
    emu.bpffs.clear()
    assert sorted(os.listdir(tmp_path / "d")) == ["mine"]
    assert len(emu.bpffs) == 0


def test_what_cannot_be_a_pin_dir(tmp_path):
    assert pin_dir_unusable(str(tmp_path)) is None
    assert pin_dir_unusable(str(tmp_path / "missing"))
