"""Building the real clients from tests/clients/src into a directory, or saying why not.

Each builder returns the client's command line (the pin directory is appended when it runs)
or raises Unavailable naming the Debian package that is missing, so the tests skip cleanly.
"""
import ctypes.util
import os
import shutil
import stat
import subprocess
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
GOCODE = "/usr/share/gocode"           # where Debian's golang-*-dev packages put Go sources


class Unavailable(Exception):
    """The client cannot be built or run here; the message says which package is missing."""


def _check(cmd, what: str, cwd: str, env=None) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"{what} failed ({p.returncode}):\n{p.stdout}{p.stderr}")


def bpftool_client(outdir: str) -> list[str]:
    if not shutil.which("bpftool"):
        raise Unavailable("bpftool not found (Debian package bpftool)")
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
    _check([cc, "-O1", "-Wall", "-Werror", "-o", exe, os.path.join(SRC, "bpfc.c"), "-lbpf"],
           "building bpfc.c with -lbpf", outdir)
    return [exe]


def go_client(outdir: str) -> list[str]:
    """Built offline in GOPATH mode against Debian's sources under /usr/share/gocode:
    GO111MODULE=off makes go ignore go.mod files and the module proxy (GOPROXY=off besides)."""
    go = shutil.which("go")
    if not go:
        raise Unavailable("go not found (Debian package golang-go)")
    if not os.path.isdir(os.path.join(GOCODE, "src/github.com/cilium/ebpf")):
        raise Unavailable("cilium/ebpf sources not found under /usr/share/gocode "
                          "(Debian package golang-github-cilium-ebpf-dev)")
    gopath = os.path.join(outdir, "gopath")
    pkg = os.path.join(gopath, "src", "gocli")
    os.makedirs(pkg, exist_ok=True)
    shutil.copy(os.path.join(SRC, "gocli", "main.go"), pkg)
    env = dict(os.environ, GO111MODULE="off", GOPATH=f"{gopath}:{GOCODE}", GOPROXY="off",
               GOFLAGS="", CGO_ENABLED="0")
    home = env.get("HOME", "")
    if not env.get("GOCACHE") and not (home and os.access(home, os.W_OK)):
        # go needs a build cache; the default one under $HOME is kept between sessions
        env["GOCACHE"] = os.path.join(outdir, "gocache")
    exe = os.path.join(outdir, "gocli")
    _check([go, "build", "-o", exe, "gocli"], "building gocli with cilium/ebpf", outdir, env)
    return [exe]


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
