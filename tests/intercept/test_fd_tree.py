"""A process tree that passes map fds by dup(), fork() and SCM_RIGHTS and reuses fd numbers
(fdtree.py): under `bpfemu run` as nobody it prints what it prints on the kernel, and its
--trace replays with no difference, on the emulator and on the kernel, because each fd in the
trace names its open file (a file token, abi/README.md)."""
import os
import shutil
import subprocess
import sys

import pytest

from bpfemu.trace.format import read_all

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def fdtree(public_dir):
    if not os.path.exists(PYTHON):
        pytest.skip(f"{PYTHON} (that nobody may run) is missing")
    path = os.path.join(public_dir, "fdtree.py")
    shutil.copy(os.path.join(HERE, "fdtree.py"), path)
    os.chmod(path, 0o644)
    return [PYTHON, path]


def _replay(trace, backend="emulator"):
    return subprocess.run([sys.executable, "-m", "bpfemu", "replay", "-q", "--backend", backend,
                           trace], capture_output=True, text=True, timeout=300)


def test_trace_of_a_tree_that_passes_fds_replays(supervised, on_kernel, fdtree, public_dir):
    kernel = on_kernel(fdtree)
    trace = os.path.join(public_dir, "fdtree.jsonl")
    open(trace, "w").close()
    os.chmod(trace, 0o666)                  # written by nobody
    r = supervised(fdtree, opts=["--trace", trace])
    assert r.returncode == 0, r.stderr
    assert r.stdout == kernel.stdout and "a by id after its last close -2" in r.stdout
    _, recs, _ = read_all(trace)
    creates = [rec for rec in recs if rec.get("name") == "BPF_MAP_CREATE"]
    assert creates[0]["ret"] == creates[1]["ret"]            # the number was reused
    assert creates[0]["file"] != creates[1]["file"]          # by another open file
    closes = [rec for rec in recs if rec["call"] == "close"]
    assert [c["file"] for c in closes] == [creates[0]["file"]]
    for backend in ("emulator", "kernel"):
        rep = _replay(trace, backend)
        assert rep.returncode == 0 and "no differences" in rep.stdout, rep.stdout + rep.stderr
