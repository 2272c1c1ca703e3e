"""Building the real clients from tests/clients/src into a directory, or saying why not.

Each builder returns the client's command line (the pin directory is appended when it runs)
or raises Unavailable naming the Debian package that is missing, so the tests skip cleanly.
"""
import ctypes.util
import os
import shutil
import stat
import sys

from tests.native_build import Unavailable, check, go_build_offline, need_tool

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")


def bpftool_client(outdir: str) -> list[str]:
    need_tool("bpftool", "bpftool")
    script = os.path.join(outdir, "bpftool_script.sh")
    shutil.copy(os.path.join(SRC, "bpftool_script.sh"), script)
    os.chmod(script, 0o644)
    return ["sh", script]


def c_client(outdir: str) -> list[str]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise Unavailable("no C compiler (Debian package gcc)")
    if not os.path.exists("/usr/include/bpf/bpf.h"):
        raise Unavailable("libbpf headers not found (Debian package libbpf-dev)")
    exe = os.path.join(outdir, "bpfc")
    check([cc, "-O1", "-Wall", "-Werror", "-o", exe, os.path.join(SRC, "bpfc.c"), "-lbpf"],
          "building bpfc.c with -lbpf", outdir)
    return [exe]


def go_client(outdir: str) -> list[str]:
    return [go_build_offline(os.path.join(SRC, "gocli", "main.go"), "gocli", outdir)]


def _others_may_run(path: str) -> bool:
    """Whether a user other than the owner (nobody) can execute path: every directory on the
    way searchable by others, the file executable by others."""
    path = os.path.realpath(path)
    if not os.stat(path).st_mode & stat.S_IXOTH:
        return False
    d = os.path.dirname(path)
    while True:
        if not os.stat(d).st_mode & stat.S_IXOTH:
            return False
        if d == "/":
            return True
        d = os.path.dirname(d)


def ctypes_client(outdir: str) -> list[str]:
    """Run by a python3 that nobody can execute: this venv's may be a link into /root."""
    if not ctypes.util.find_library("bpf"):
        raise Unavailable("libbpf.so.1 not found (Debian package libbpf1)")
    pythons = [p for p in (sys.executable, shutil.which("python3"), "/usr/bin/python3")
               if p and os.path.exists(p) and _others_may_run(p)]
    if not pythons:
        raise Unavailable("no python3 that nobody may run (Debian package python3)")
    script = os.path.join(outdir, "libbpf_ctypes.py")
    shutil.copy(os.path.join(SRC, "libbpf_ctypes.py"), script)
    os.chmod(script, 0o644)
    return [pythons[0], script]
