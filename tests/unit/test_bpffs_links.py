"""rename and link on the emulated bpffs (what `fs` records of a traced pin directory replay
to): a pin's reference goes with its last link, as the kernel's goes with the inode."""
import errno

import pytest

from bpfemu import Emulator
from bpfemu.libbpf import LibBpf
from bpfemu.trace.format import read_all
from bpfemu.trace.recorder import Recorder
from bpfemu.trace.replay import replay
from bpfemu.uapi.consts import BPF_MAP_TYPE_HASH

ROOT = "/sys/fs/bpf"


def _pinned(emu, path):
    lib = LibBpf(emu)
    fd = lib.bpf_map_create(BPF_MAP_TYPE_HASH, b"m", 4, 8, 4)
    assert lib.bpf_obj_pin(fd, path) == 0
    m = emu.map_of(fd)
    assert emu.close(fd) == 0
    return lib, m


def test_link_keeps_the_pin_until_the_last_name_goes():
    emu = Emulator()
    lib, m = _pinned(emu, f"{ROOT}/a")
    emu.bpffs.link(f"{ROOT}/a", f"{ROOT}/b")
    emu.bpffs.unlink(f"{ROOT}/a")
    fd = lib.bpf_map_get_fd_by_id(m.id)
    assert fd >= 0 and emu.close(fd) == 0
    emu.bpffs.unlink(f"{ROOT}/b")
    assert lib.bpf_map_get_fd_by_id(m.id) == -errno.ENOENT


def test_rename_moves_pins_and_directories():
    emu = Emulator()
    lib, m = _pinned(emu, f"{ROOT}/a")
    emu.bpffs.mkdir(f"{ROOT}/d")
    emu.bpffs.rename(f"{ROOT}/a", f"{ROOT}/d/b")
    emu.bpffs.rename(f"{ROOT}/d", f"{ROOT}/e")
    assert lib.bpf_obj_get(f"{ROOT}/a") == -errno.ENOENT
    fd = lib.bpf_obj_get(f"{ROOT}/e/b")
    assert fd >= 0 and emu.map_of(fd) is m
    with pytest.raises(OSError) as e:
        emu.bpffs.rename(f"{ROOT}/e", f"{ROOT}/e/x")
    assert e.value.errno == errno.EINVAL


def test_rename_over_a_pin_drops_it():
    emu = Emulator()
    lib, m1 = _pinned(emu, f"{ROOT}/a")
    _, m2 = _pinned(emu, f"{ROOT}/b")
    emu.bpffs.rename(f"{ROOT}/a", f"{ROOT}/b")
    assert lib.bpf_map_get_fd_by_id(m2.id) == -errno.ENOENT
    assert emu.map_of(lib.bpf_obj_get(f"{ROOT}/b")) is m1


def test_rename_and_link_records_replay(tmp_path):
    path = str(tmp_path / "t.jsonl")
    emu = Emulator()
    with Recorder(emu, path) as rec:
        lib = LibBpf(rec)
        fd = lib.bpf_map_create(BPF_MAP_TYPE_HASH, b"m", 4, 8, 4)
        assert lib.bpf_obj_pin(fd, f"{ROOT}/a") == 0
        assert rec.fs("link", f"{ROOT}/a", to=f"{ROOT}/b") == 0
        assert rec.fs("rename", f"{ROOT}/a", to=f"{ROOT}/c") == 0
        assert rec.fs("rename", f"{ROOT}/nothing", to=f"{ROOT}/d") == -errno.ENOENT
        assert lib.bpf_obj_get(f"{ROOT}/c") >= 0
        assert lib.bpf_obj_get(f"{ROOT}/a") == -errno.ENOENT
    _, recs, _ = read_all(path)
    assert [r["strace"] for r in recs if r["call"] == "fs"][:2] == [
        f'link("{ROOT}/a", "{ROOT}/b") = 0', f'rename("{ROOT}/a", "{ROOT}/c") = 0']
    assert replay(path, "emulator").ok
