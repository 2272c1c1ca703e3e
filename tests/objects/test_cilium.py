"""objects.bpf.o loaded by a Go program on cilium/ebpf (tests/objects/goload/main.go):
LoadCollectionSpec, NewCollection (its feature probes: BTF_LOAD, MAP_CREATE and PROG_LOAD of
its own; the object's BTF, maps, programs, the prog array and hash of maps it fills, .rodata
frozen), then the maps and global data through the Collection. Go makes raw syscalls, so only
seccomp interception reaches it.

Run as nobody under `bpfemu run`, its output must be the output of the same program run as
root on the live kernel; under the bpf_run fixture the test then reads what it left.
"""
import ctypes
import os
import subprocess

import pytest

from tests.objects import loaders
from tests.objects.test_skeleton import as_nobody_prefix, built_loader, run_as_nobody_under_bpfemu
from tests.support import host_unavailable_reason


@pytest.fixture(scope="session")
def goload():
    yield from built_loader(lambda d, obj: loaders.go_loader(d))


@pytest.fixture(scope="session")
def emulated_output(goload):
    exe, obj = goload
    return run_as_nobody_under_bpfemu([exe, obj])


def test_cilium_ebpf_loads_the_object_as_nobody(emulated_output):
    """What objects.bpf.c and goload imply, without the kernel."""
    out = emulated_output.splitlines()
    assert out[0] == "loaded"
    assert 'map .rodata: name ".rodata" type Array key 4 value 10 entries 1 flags 0x80 id true' in out
    assert "prog count: name \"count\" type SchedCLS maps 9" in out
    assert "rodata lookup: ok 7 hello" in out
    assert "rodata put: permission denied" in out                  # frozen by NewCollection
    assert "data lookup: ok 1000" in out
    assert "locked lookup: ok 05000000000000004d00000000000000" in out  # lock word kept out
    assert "jumps[1]: ok true" in out and "outer[2]: ok true" in out


def test_cilium_ebpf_matches_the_live_kernel(goload, emulated_output):
    reason = host_unavailable_reason()
    if reason:
        pytest.skip(f"the live kernel's bpf() is not usable here: {reason}")
    exe, obj = goload
    kernel = subprocess.run([exe, obj], capture_output=True, text=True, timeout=300)
    assert kernel.returncode == 0, kernel.stdout + kernel.stderr
    assert emulated_output == kernel.stdout


def test_the_test_sees_what_the_go_program_left(goload, bpf_run):
    exe, obj = goload
    pins = os.path.join(bpf_run.pin_root, "goload_")   # the real pin directory of the fixture
    r = bpf_run.run(as_nobody_prefix() + [exe, obj, pins])
    if r.returncode != 0 and "seccomp" in r.stderr:
        pytest.skip(f"bpfemu run is not usable here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pin flows: ok" in r.stdout and "pin bss: ok" in r.stdout
    flows = bpf_run.map_by_pin(pins + "flows", ctypes.c_uint32, ctypes.c_uint64)
    assert {k.value: v.value for k, v in flows.items()} == {1: 100}
    bss = bpf_run.map_by_pin(pins + "bss", ctypes.c_uint32, ctypes.c_uint64)
    assert bss[0].value == 42
    emu = bpf_run.emu
    emu.reap_closed_fds()
    assert not emu.prog_idr.objs                    # programs and probes freed with their fds
    assert len(bpf_run.map_ids()) == 2
