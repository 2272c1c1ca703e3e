"""The fixtures: bpf_run (a command served by the test's own Emulator) and bpf_intercepted
(this process's bpf() served by it; exercised in a separate pytest process, since the filter
stays on a process for life)."""
import ctypes
import os
import subprocess
import sys
import textwrap

import pytest

from bpfemu import Map
from bpfemu.uapi.consts import BPF_MAP_TYPE_HASH


def test_bpf_run_shares_maps_with_the_test(bpf_run, bpftool):
    """The test makes and pins a map, bpftool (as root or not, served by the test's Emulator)
    updates it, and the test reads what bpftool wrote; then bpftool makes one the test finds.
    The pins are files of the test's real pin directory, which the command's own ls sees."""
    root = bpf_run.pin_root
    m = Map.create(bpf_run.emu, BPF_MAP_TYPE_HASH, ctypes.c_uint32, ctypes.c_uint64, 8, name="shared")
    m[1] = 10
    assert bpf_run.lib.bpf_obj_pin(m.fd, f"{root}/shared") == 0
    r = bpf_run.run([bpftool, "map", "update", "pinned", f"{root}/shared",
                     "key", "2", "0", "0", "0", "value", "20", "0", "0", "0", "0", "0", "0", "0"])
    assert r.returncode == 0, r.stderr
    assert {k.value: v.value for k, v in m.items()} == {1: 10, 2: 20}
    r = bpf_run.run([bpftool, "map", "create", f"{root}/theirs", "type", "array",
                     "key", "4", "value", "4", "entries", "3", "name", "theirs"])
    assert r.returncode == 0, r.stderr
    theirs = bpf_run.map_by_pin(f"{root}/theirs", ctypes.c_uint32, ctypes.c_uint32)
    assert len(list(theirs.keys())) == 3
    assert bpf_run.map_ids() == [1, 2]
    assert sorted(os.listdir(root)) == ["shared", "theirs"]
    r = bpf_run.run(["sh", "-c", f"rm {root}/theirs && ls {root} && stat -f -c %T {root}"])
    assert (r.returncode, r.stdout) == (0, "shared\nbpf_fs\n")
    theirs.close()
    assert bpf_run.map_ids() == [1]             # the pin was its last reference


def test_bpf_run_can_keep_pins_in_the_emulator(bpf_run, bpftool):
    """A client that pins under a fixed path (/sys/fs/bpf) gets the emulator's own tree."""
    bpf_run.use_emulated_pin_tree("/sys/fs/bpf")
    r = bpf_run.run([bpftool, "map", "create", "/sys/fs/bpf/fixed", "type", "array",
                     "key", "4", "value", "4", "entries", "3", "name", "fixed"])
    assert r.returncode == 0, r.stderr
    assert len(list(bpf_run.map_by_pin("/sys/fs/bpf/fixed").keys())) == 3


def test_bpf_run_inspects_while_running(bpf_run, ctool):
    """A map the command holds is visible by id while it runs, and gone once it exits."""
    bg = bpf_run.start([ctool, "late", "1"], stdout=subprocess.PIPE, text=True)
    out = bg.proc.stdout.read()
    assert bg.wait(timeout=60) == 0
    assert out.startswith("started\nlate_create ")
    assert bpf_run.map_ids() == []            # its fd died with the process


_INNER = '''
import ctypes, os
import pytest
from bpfemu import HostKernel, Map
from bpfemu.libbpf import LibBpf
from bpfemu.uapi.consts import BPF_MAP_TYPE_HASH, BPF_MAP_CREATE

libbpf = ctypes.CDLL("libbpf.so.1", use_errno=True)

@pytest.mark.parametrize("round", [1, 2])
def test_libbpf_in_process(bpf_intercepted, round):
    fd = libbpf.bpf_map_create(BPF_MAP_TYPE_HASH, b"flows", 4, 8, 16, None)
    assert fd >= 0
    assert "bpf-map" in os.readlink(f"/proc/self/fd/{fd}")
    k, v = ctypes.c_uint32(3), ctypes.c_uint64(99 * round)
    assert libbpf.bpf_map_update_elem(fd, ctypes.byref(k), ctypes.byref(v), 0) == 0
    (mid,) = bpf_intercepted.map_idr.objs        # a fresh emulator per test: id 1
    assert mid == 1
    # the test's own fd on the map libbpf made, through the emulator directly
    m = Map.open(bpf_intercepted, LibBpf(bpf_intercepted).bpf_map_get_fd_by_id(1),
                 ctypes.c_uint32, ctypes.c_uint64, owns_fd=True)
    assert m[3].value == 99 * round
    os.close(fd)

def test_raw_syscall_in_process(bpf_intercepted):
    attr = ctypes.create_string_buffer(72)
    attr[0:16] = (1).to_bytes(4, "little") + (4).to_bytes(4, "little") + (8).to_bytes(4, "little") + (4).to_bytes(4, "little")
    fd = HostKernel().bpf(BPF_MAP_CREATE, attr, 72)     # the syscall itself, intercepted
    assert fd >= 0 and list(bpf_intercepted.map_idr.objs) == [1]

def test_other_threads_are_served(bpf_intercepted):
    import threading
    out = []
    t = threading.Thread(target=lambda: out.append(
        libbpf.bpf_map_create(BPF_MAP_TYPE_HASH, b"t", 4, 8, 16, None)))
    t.start(); t.join()
    assert out[0] >= 0 and list(bpf_intercepted.map_idr.objs) == [1]
    os.close(out[0])

def test_outside_goes_to_the_kernel():
    attr = ctypes.create_string_buffer(72)
    attr[0:16] = (1).to_bytes(4, "little") + (4).to_bytes(4, "little") + (8).to_bytes(4, "little") + (4).to_bytes(4, "little")
    fd = HostKernel().bpf(BPF_MAP_CREATE, attr, 72)
    if os.geteuid() == 0:
        assert fd >= 0 and os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:bpf-map"
        os.close(fd)
    else:
        assert fd == -1                                   # EPERM: the kernel said no
'''


def test_bpf_intercepted_in_a_pytest_process(tmp_path, supervised):
    """Many tests in one process, each with its own Emulator; outside them the kernel answers."""
    if not os.path.exists("/usr/lib/x86_64-linux-gnu/libbpf.so.1"):
        pytest.skip("libbpf.so.1 is not installed (Debian package libbpf1)")
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(_INNER))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-p", "no:randomly", str(tmp_path / "test_inner.py")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "5 passed" in r.stdout
