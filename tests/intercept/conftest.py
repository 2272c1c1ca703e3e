"""Fixtures for the interception tests: a supervised command as `nobody`, the C client.

Each command is run under `bpfemu run` as the user `nobody` where we are root (setpriv), so
that a real bpf() would fail with EPERM: anything that works was served by the emulator. The
same command run directly as root on the live kernel is the expected output.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.support import host_unavailable_reason

HERE = os.path.dirname(os.path.abspath(__file__))
BPFEMU = [sys.executable, "-m", "bpfemu"]
SETPRIV = shutil.which("setpriv")
AS_NOBODY = [SETPRIV, "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if SETPRIV else []


def seccomp_unavailable() -> str | None:
    """Why a supervised command cannot run here (None if it can)."""
    try:
        r = subprocess.run(BPFEMU + ["run", "--", "true"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return None if r.returncode == 0 else r.stderr.decode(errors="replace").strip()


_REASON = []


@pytest.fixture(scope="session")
def supervised():
    """A function: run argv under `bpfemu run` (as nobody where we are root); CompletedProcess."""
    if not _REASON:
        _REASON.append(seccomp_unavailable())
    if _REASON[0]:
        pytest.skip(f"seccomp user notification is not usable here: {_REASON[0]}")
    prefix = AS_NOBODY if os.geteuid() == 0 and AS_NOBODY else []

    def run(argv, *, opts=(), timeout=300, **kw):
        return subprocess.run(prefix + BPFEMU + ["run", *opts, "--", *argv], capture_output=True,
                              text=True, timeout=timeout, **kw)
    run.as_nobody = bool(prefix)
    return run


@pytest.fixture(scope="session")
def on_kernel():
    """A function: run argv directly (the live kernel answers); skips where bpf() is denied."""
    reason = host_unavailable_reason()

    def run(argv, *, timeout=300, **kw):
        if reason:
            pytest.skip(f"the live kernel's bpf() is not usable here: {reason}")
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    return run


@pytest.fixture(scope="session")
def public_dir():
    """A directory nobody can read (pytest's tmp_path is private to root)."""
    d = tempfile.mkdtemp(prefix="bpfemu-intercept-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def ctool(public_dir):
    """tests/intercept/ctool.c, built (a raw-syscall bpf() client); skipped without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler")
    out = os.path.join(public_dir, "ctool")
    subprocess.run([cc, "-O2", "-o", out, os.path.join(HERE, "ctool.c"), "-lpthread"],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def bpftool():
    path = shutil.which("bpftool") or ("/usr/sbin/bpftool" if os.path.exists("/usr/sbin/bpftool") else None)
    if path is None:
        pytest.skip("bpftool is not installed (Debian package bpftool)")
    return path
