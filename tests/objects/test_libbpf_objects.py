"""A real BPF object (tests/objects/bpf/objects.bpf.c, built with clang -target bpf -g -O2)
loaded by libbpf 1.x through ctypes: on the live kernel as root, and on the emulator as
nobody, every bpf() libbpf makes served by an in-process Emulator (LD_PRELOAD shim,
tests/objects/bpf_hook.c). The loader's view must be the same: map and program info, element
commands on each map kind, and the global data through bpf() and through mmap().

Skips cleanly without clang, the libbpf headers, libbpf.so.1, or (for the kernel side) a
bpf() that works here.
"""
import ctypes
import ctypes.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.support import host_unavailable_reason

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _need(cond, why):
    if not cond:
        pytest.skip(why)


@pytest.fixture(scope="module")
def built():
    clang = shutil.which("clang")
    _need(clang, "clang is not installed")
    _need(os.path.exists("/usr/include/bpf/bpf_helpers.h"), "libbpf headers are not installed")
    try:
        ctypes.CDLL("libbpf.so.1")
    except OSError:
        pytest.skip("libbpf.so.1 is not installed")
    # Not under pytest's tmp_path: its parent is private to root, and nobody must read these.
    d = pathlib.Path(tempfile.mkdtemp(prefix="bpfemu-obj-"))
    os.chmod(d, 0o755)
    obj, shim = d / "objects.bpf.o", d / "bpf_hook.so"
    arch_inc = f"/usr/include/{os.uname().machine}-linux-gnu"
    subprocess.run([clang, "-target", "bpf", "-g", "-O2", "-I", arch_inc, "-c",
                    str(HERE / "bpf" / "objects.bpf.c"), "-o", str(obj)], check=True)
    subprocess.run([clang, "-shared", "-fPIC", "-O2", "-o", str(shim), str(HERE / "bpf_hook.c"),
                    "-ldl"], check=True)
    os.chmod(obj, 0o644)
    os.chmod(shim, 0o755)
    yield obj, shim
    shutil.rmtree(d, ignore_errors=True)


def run_driver(obj, backend, *, preload=None, as_nobody=False):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    if preload:
        env["LD_PRELOAD"] = str(preload)
    cmd = [sys.executable, "-m", "tests.objects.libbpf_driver", str(obj), backend]
    if as_nobody:
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] + cmd
    try:
        p = subprocess.run(cmd, env=env, cwd=str(ROOT), capture_output=True, text=True,
                           timeout=300)
    except PermissionError as e:
        pytest.skip(f"cannot start the driver's interpreter here: {e}")
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout)


def _nobody_possible():
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


@pytest.fixture(scope="module")
def emulator_view(built):
    obj, shim = built
    return run_driver(obj, "emulator", preload=shim, as_nobody=_nobody_possible())


def test_the_emulator_loads_the_object_without_privilege(emulator_view):
    """libbpf's whole load (its feature probes, BTF, maps with BTF and spin locks, .bss/.data/
    .rodata as mmapable arrays with .rodata frozen, the programs, the prog array and the
    hash of maps it fills) succeeds on the emulator, as nobody when the tests run as root."""
    v = emulator_view
    assert v["load"] == 0
    assert v["ops"]["global"]["data"][0] == "e8030000"                 # threshold = 1000
    assert v["ops"]["global"]["rodata"][0] == "07000000" + b"hello\0".hex()
    assert v["ops"]["jumps"][1] == [0, "tail_target"]                  # libbpf filled slot 1
    assert v["ops"]["outer"][2] == [0, "inner_one"]                    # and key 2
    assert v["ops"]["global"]["rodata"][1] == -1                       # EPERM: frozen
    assert v["ops"]["global"]["bss"][3] == -16                         # EBUSY while mapped


def test_kernel_and_emulator_agree(built, emulator_view):
    reason = host_unavailable_reason()
    if reason:
        pytest.skip(f"live kernel bpf() not permitted here: {reason}")
    kernel_view = run_driver(built[0], "kernel")
    assert kernel_view["load"] == 0
    assert emulator_view == kernel_view
