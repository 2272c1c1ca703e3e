"""`bpfemu record -o TRACE -- CMD`: a program's calls made on the live kernel by the supervisor,
recorded with every byte behind every pointer; the program sees the kernel's answers."""
import os
import subprocess
import sys

import pytest

from bpfemu.trace.format import read_all
from tests.intercept.conftest import BPFEMU


@pytest.fixture
def kernel_record(on_kernel, supervised, tmp_path):
    on_kernel(["true"])                       # skips where the live kernel's bpf() is denied

    def record(argv):
        trace = str(tmp_path / "rec.jsonl")
        r = subprocess.run(BPFEMU + ["record", "-o", trace, "--", *argv], capture_output=True,
                           text=True, timeout=300)
        return r, trace
    return record


def test_program_sees_the_kernels_answers_and_the_trace_replays(kernel_record, on_kernel, ctool):
    """Pointers into unmapped, PROT_NONE and read-only pages fault as they would in the
    program (its memory is mirrored page for page); LRU calls run on the caller's CPU. The
    trace replays on the emulator with no difference."""
    script = f"{ctool} efault && {ctool} lru 2 100"
    r, trace = kernel_record(["sh", "-c", script])
    assert r.returncode == 0, r.stderr
    assert r.stdout == on_kernel(["sh", "-c", script]).stdout
    header, recs, _ = read_all(trace)
    assert header.backend == "kernel"
    assert [rec["errno"] for rec in recs[:4]] == [None, "EFAULT", "EFAULT", "EFAULT"]
    replay = subprocess.run([sys.executable, "-m", "bpfemu", "replay", "-q", trace],
                            capture_output=True, text=True)
    assert replay.returncode == 0, replay.stdout
    assert "no differences" in replay.stdout


def test_fds_installed_in_the_program(kernel_record, ctool):
    """Map fds the kernel returned reach the program (ADDFD): dup, fork, SCM_RIGHTS work."""
    r, trace = kernel_record([ctool, "identity"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("id_alive 0 -\nid_after_last_close -2 ENOENT\n")
    _, recs, _ = read_all(trace)
    assert recs[0]["name"] == "BPF_MAP_CREATE" and recs[0]["ret"] >= 3 and recs[0]["map"]["id"] > 0


def test_bpftool_under_record(kernel_record, bpftool, tmp_path):
    """Program loads (bpftool's probes) are left to the kernel; map calls are recorded."""
    if not os.path.ismount("/sys/fs/bpf"):
        pytest.skip("no bpffs at /sys/fs/bpf")
    pin = f"/sys/fs/bpf/bpfemu-record-test-{os.getpid()}"
    try:
        r, trace = kernel_record(["sh", "-c", f"{bpftool} map create {pin} type hash key 4 "
                                  f"value 4 entries 4 name rec && {bpftool} map dump pinned {pin}"])
    finally:
        if os.path.exists(pin):
            os.unlink(pin)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Found 0 elements\n"
    _, recs, _ = read_all(trace)
    names = [rec["name"] for rec in recs if rec["call"] == "bpf"]
    assert "BPF_PROG_LOAD" not in names
    assert "close" in [rec["call"] for rec in recs]     # the create's fd, before the dump
    assert names[:2] == ["BPF_MAP_CREATE", "BPF_OBJ_PIN"]
    assert recs[0]["map"]["type"] == 1


def test_closes_are_recorded_and_the_trace_replays(kernel_record, ctool):
    """The C tool shares a map through dup(), fork() and SCM_RIGHTS, then closes its last fd:
    the release is a close record (its file token) before the GET_FD_BY_ID that the kernel
    answered ENOENT, so the replay frees the map there too, and follows the dup'd and
    received fds by their file tokens: no difference."""
    r, trace = kernel_record([ctool, "identity"])
    assert r.returncode == 0, r.stderr
    _, recs, _ = read_all(trace)
    calls = [(rec["call"], rec.get("name"), rec["errno"]) for rec in recs]
    gone = calls.index(("bpf", "BPF_MAP_GET_FD_BY_ID", "ENOENT"))
    closes = [rec for rec in recs[:gone] if rec["call"] == "close"]
    assert recs[0]["file"] in [c["file"] for c in closes]        # the created map's file
    replay = subprocess.run([sys.executable, "-m", "bpfemu", "replay", "-q", trace],
                            capture_output=True, text=True)
    assert replay.returncode == 0 and "no differences" in replay.stdout, replay.stdout


def test_a_tree_that_passes_fds_replays(kernel_record, on_kernel):
    """fdtree.py: dup(), a reused fd number, fork() and SCM_RIGHTS, with raw syscalls."""
    argv = [sys.executable, os.path.join(os.path.dirname(__file__), "fdtree.py")]
    r, trace = kernel_record(argv)
    assert r.returncode == 0, r.stderr
    assert r.stdout == on_kernel(argv).stdout
    replay = subprocess.run([sys.executable, "-m", "bpfemu", "replay", "-q", trace],
                            capture_output=True, text=True)
    assert replay.returncode == 0 and "no differences" in replay.stdout, replay.stdout
