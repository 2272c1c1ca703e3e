"""Building the real loaders of tests/objects/bpf/objects.bpf.o, once per session.

- the object itself: clang -target bpf -g -O2 (Debian package clang; headers from libbpf-dev);
- skel_main: a C program on a `bpftool gen skeleton` of it (bpftool, libbpf-dev);
- goload: a Go program on cilium/ebpf (golang-go, golang-github-cilium-ebpf-dev), built
  offline in GOPATH mode as tests/clients builds its Go client: GO111MODULE=off, GOPATH over
  Debian's /usr/share/gocode, GOPROXY=off.

Each builder raises Unavailable naming the Debian package that is missing, so tests skip.
Everything goes to a directory nobody can read and run from (the tests run loaders as nobody).
"""
import os
import shutil
import subprocess
import tempfile

from tests.native_build import Unavailable, check, go_build_offline, need_tool

HERE = os.path.dirname(os.path.abspath(__file__))


def public_dir() -> str:
    d = tempfile.mkdtemp(prefix="bpfemu-loaders-")
    os.chmod(d, 0o755)
    return d


def bpf_object(outdir: str) -> str:
    clang = need_tool("clang", "clang")
    if not os.path.exists("/usr/include/bpf/bpf_helpers.h"):
        raise Unavailable("libbpf headers not found (Debian package libbpf-dev)")
    obj = os.path.join(outdir, "objects.bpf.o")
    arch_inc = f"/usr/include/{os.uname().machine}-linux-gnu"
    check([clang, "-target", "bpf", "-g", "-O2", "-I", arch_inc, "-c",
           os.path.join(HERE, "bpf", "objects.bpf.c"), "-o", obj], "clang -target bpf", outdir)
    os.chmod(obj, 0o644)
    return obj


def skeleton_loader(outdir: str, obj: str) -> str:
    bpftool = need_tool("bpftool", "bpftool")
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise Unavailable("no C compiler (Debian package gcc)")
    skel = os.path.join(outdir, "objects.skel.h")
    with open(skel, "w") as f:
        p = subprocess.run([bpftool, "gen", "skeleton", obj, "name", "objects"], stdout=f,
                           stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"bpftool gen skeleton failed: {p.stderr}")
    exe = os.path.join(outdir, "skel_main")
    check([cc, "-O2", "-Wall", "-I", outdir, "-o", exe, os.path.join(HERE, "skel_main.c"),
           "-lbpf"], "building skel_main.c with -lbpf", outdir)
    os.chmod(exe, 0o755)
    return exe


def go_loader(outdir: str) -> str:
    exe = go_build_offline(os.path.join(HERE, "goload", "main.go"), "goload", outdir)
    os.chmod(exe, 0o755)
    return exe
