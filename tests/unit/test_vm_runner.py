"""The VM runner's parts that need no VM: the initramfs, the guest's command script, kernel
extraction and the failure messages. One opt-in test boots a kernel (BPFEMU_VM_TESTS=1)."""
import gzip
import os
import shlex
import struct
from pathlib import Path

import pytest

from bpfemu.vm import initramfs, images, qemu
from bpfemu.vm.images import ImageError, KernelImage


def parse_cpio(data: bytes) -> dict:
    """name -> (mode, rdev, data) of a newc archive."""
    out, pos = {}, 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        f = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = f[11], f[6]
        pos += 110
        name = data[pos:pos + namesize - 1].decode()
        pos = (pos + namesize + 3) & ~3
        body = data[pos:pos + filesize]
        pos = (pos + filesize + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out[name] = (f[1], (f[9], f[10]), body)


def fake_image(tmp_path) -> KernelImage:
    (tmp_path / "modules").mkdir()
    mods = []
    for name in ("virtio", "9p"):
        p = tmp_path / "modules" / f"{name}.ko"
        p.write_bytes(b"\x7fELF" + name.encode())
        mods.append(p)
    return KernelImage("linux-image-x", "6.1.0-x", tmp_path, tmp_path / "vmlinux", mods)


def test_initramfs_holds_init_console_modules_and_command(tmp_path):
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"BUSYBOX")
    argv = ["python", "-c", "print('a b')", "it's"]
    cpio = parse_cpio(initramfs.build(fake_image(tmp_path), argv, "/some dir", {"A": "1 2"},
                                      str(busybox), writable=["/out"]))
    mode, rdev, _ = cpio["dev/console"]
    assert mode >> 12 == 0o02 and rdev == (5, 1)        # a character device, 5:1
    assert cpio["bin/busybox"][2] == b"BUSYBOX"
    assert cpio["modules.order"][2] == b"virtio\n9p\n"
    assert cpio["modules/9p.ko"][2] == b"\x7fELF9p"
    assert cpio["shares"][2] == b"rw0 /out\n"
    script = cpio["cmd.sh"][2].decode()
    assert "cd '/some dir'" in script and "export A='1 2'" in script
    assert shlex.split(script.splitlines()[-1]) == ["exec"] + argv
    assert initramfs.EXIT_MARKER in cpio["init"][2].decode()


def test_session_variables_stay_on_the_host():
    script = initramfs.command_script(["true"], "/", {"PWD": "/x", "TMUX": "y", "HOME": "/root",
                                                      "BAD-NAME": "z"})
    assert "HOME=/root" in script and "PWD" not in script and "TMUX" not in script
    assert "BAD-NAME" not in script


def test_vmlinux_comes_out_of_a_bzimage():
    elf = b"\x7fELF" + bytes(range(256)) * 4
    payload = gzip.compress(elf)
    setup_sects = 4
    bz = bytearray((setup_sects + 1) * 512)
    bz[0x1F1] = setup_sects
    struct.pack_into("<II", bz, 0x248, 16, len(payload))
    bz += bytes(16) + payload + bytes(64)
    assert images.extract_vmlinux(bytes(bz)) == elf
    bz[(setup_sects + 1) * 512 + 16] = 0                # not a known compression
    assert images.extract_vmlinux(bytes(bz)) is None


def test_unknown_kernel_is_a_clear_error():
    with pytest.raises(ImageError, match="unknown kernel '5.4'"):
        images.resolve_package("5.4")


def test_missing_qemu_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(qemu.shutil, "which", lambda name: None)
    with pytest.raises(ImageError, match="qemu-system-x86_64 is not installed"):
        qemu.run(fake_image(tmp_path), ["true"])


def test_missing_kvm_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(qemu, "kvm_usable", lambda: "/dev/kvm does not exist (no KVM on this host)")
    monkeypatch.setattr(qemu.shutil, "which", lambda name: "/usr/bin/" + name)
    with pytest.raises(ImageError, match="KVM asked for but not usable: /dev/kvm does not exist"):
        qemu.run(fake_image(tmp_path), ["true"], accel="kvm")


def test_exit_status_marker():
    assert qemu._exit_status("boot\nBPFEMU-VM-EXIT=7\r\n[ 1.0] reboot\n") == 7
    assert qemu._exit_status("kernel panic\n") is None


@pytest.mark.skipif(os.environ.get("BPFEMU_VM_TESTS") != "1",
                    reason="boots a VM (about 10 s under TCG): set BPFEMU_VM_TESTS=1")
def test_a_command_runs_on_linux_6_1(tmp_path):
    image = images.fetch("6.1")
    res = qemu.run(image, ["/bin/sh", "-c", "uname -r; mount | grep -c ' type bpf '; "
                           "echo out > result; exit 7"], capture=True, cwd=str(tmp_path),
                   writable=[str(tmp_path)], timeout=600)
    assert res.returncode == 7
    assert res.output.decode().split() == [image.release, "1"]
    assert (tmp_path / "result").read_text() == "out\n"
    assert 0 < res.boot_seconds < res.total_seconds
