"""objects.bpf.o loaded by a C program on its `bpftool gen skeleton` (tests/objects/skel_main.c):
objects__open_and_load() (libbpf's probes, BTF, every map kind, .bss/.data/.rodata mmap()ed by
the skeleton with .rodata frozen, the programs, the prog array and hash of maps it fills),
then its maps and global data through the skeleton.

Run as nobody under `bpfemu run`, its output must be the output of the same program run as
root on the live kernel; run under the bpf_run fixture, the test then finds in its own
Emulator what the program left (pinned maps, the global data written through the mmap()).
"""
import ctypes
import os
import shutil
import subprocess
import sys

import pytest

from tests.objects import loaders
from tests.support import host_unavailable_reason

BPFEMU = [sys.executable, "-m", "bpfemu"]
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def as_nobody_prefix() -> list:
    return AS_NOBODY if os.geteuid() == 0 and shutil.which("setpriv") else []


def built_loader(build):
    """Yield build(d) -> (exe, obj) for a fresh public directory d, removed afterwards; skip
    the test when a package it needs is missing."""
    d = loaders.public_dir()
    try:
        obj = loaders.bpf_object(d)
        exe = build(d, obj)
    except loaders.Unavailable as e:
        shutil.rmtree(d, ignore_errors=True)
        pytest.skip(str(e))
    yield exe, obj
    shutil.rmtree(d, ignore_errors=True)


def run_as_nobody_under_bpfemu(argv) -> str:
    """The stdout of argv run as nobody under `bpfemu run`, or skip where seccomp is unusable."""
    r = _run(as_nobody_prefix() + BPFEMU + ["run", "--"] + argv)
    if r.returncode != 0 and "seccomp" in r.stderr and "loaded" not in r.stdout:
        pytest.skip(f"bpfemu run is not usable here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.fixture(scope="session")
def skel_main():
    for exe, _obj in built_loader(loaders.skeleton_loader):
        yield exe


def _run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def emulated_output(skel_main):
    return run_as_nobody_under_bpfemu([skel_main])


def test_skeleton_loads_and_works_as_nobody(emulated_output):
    """Checks that do not need the kernel: what objects.bpf.c and skel_main.c imply."""
    out = emulated_output.splitlines()
    assert out[0] == "loaded"
    assert out[1] == "fds: map bpf-map prog bpf-prog btf btf"     # readlink() kinds
    assert "map rodata: name objects.rodata type 2 key 4 value 10 entries 1 flags 0x480 " \
           "btf 1 key_type 0 value_type 80" in out
    assert "rodata: sample_rate 7 greeting hello" in out
    assert "bss written through mmap, lookup 0 packets 42" in out      # mmap -> bpf()
    assert "data updated 0, mmap shows threshold 2000" in out          # bpf() -> mmap
    assert "rodata update -1 sample_rate 7" in out                     # EPERM: frozen
    assert "bss freeze while mapped -16" in out                        # EBUSY: child's mapping
    assert "locked: 0 hits 5 lock 0x0 bytes 77" in out                 # the lock word stays out
    assert "jumps[1]: 0 tail_target" in out and "outer[2]: 0 inner_one" in out


def test_skeleton_matches_the_live_kernel(skel_main, emulated_output):
    reason = host_unavailable_reason()
    if reason:
        pytest.skip(f"the live kernel's bpf() is not usable here: {reason}")
    kernel = _run([skel_main])
    assert kernel.returncode == 0, kernel.stdout + kernel.stderr
    assert emulated_output == kernel.stdout


def test_the_test_sees_what_the_skeleton_left(skel_main, bpf_run):
    """Served by the test's own Emulator: the maps the program pinned, with the values it
    wrote through bpf() and through the skeleton's mmap() of .bss; programs and unpinned maps
    are gone with the program's fds (their closes seen in the child)."""
    pins = os.path.join(bpf_run.pin_root, "skel_")     # the real pin directory of the fixture
    r = bpf_run.run(as_nobody_prefix() + [skel_main, pins])
    if r.returncode != 0 and "seccomp" in r.stderr:
        pytest.skip(f"bpfemu run is not usable here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pins: 0 0 0 0" in r.stdout
    flows = bpf_run.map_by_pin(pins + "flows", ctypes.c_uint32, ctypes.c_uint64)
    assert {k.value: v.value for k, v in flows.items()} == {1: 100}
    bss = bpf_run.map_by_pin(pins + "bss", ctypes.c_uint32, ctypes.c_uint64)
    assert bss[0].value == 42                       # skel->bss->packets = 42, via mmap()
    data = bpf_run.map_by_pin(pins + "data", ctypes.c_uint32, ctypes.c_uint32)
    assert data[0].value == 2000
    locked = bpf_run.map_by_pin(pins + "locked", ctypes.c_uint32, ctypes.c_char * 16)
    assert bytes(locked[1]) == (5).to_bytes(4, "little") + bytes(4) + (77).to_bytes(8, "little")
    emu = bpf_run.emu
    emu.reap_closed_fds()
    assert not emu.prog_idr.objs                    # both programs freed with their fds
    left = sorted(emu.map_idr.objs[i].name.rstrip(b"\0") for i in bpf_run.map_ids())
    assert left == [b"flows", b"locked", b"objects.bss", b"objects.data"]
