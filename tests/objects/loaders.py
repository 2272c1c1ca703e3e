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

HERE = os.path.dirname(os.path.abspath(__file__))
GOCODE = "/usr/share/gocode"


class Unavailable(Exception):
    """The loader cannot be built here; the message says which package is missing."""


def _check(cmd, what: str, cwd: str, env=None) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"{what} failed ({p.returncode}):\n{p.stdout}{p.stderr}")


def public_dir() -> str:
    d = tempfile.mkdtemp(prefix="bpfemu-loaders-")
    os.chmod(d, 0o755)
    return d


def bpf_object(outdir: str) -> str:
    clang = shutil.which("clang")
    if not clang:
        raise Unavailable("clang not found (Debian package clang)")
    if not os.path.exists("/usr/include/bpf/bpf_helpers.h"):
        raise Unavailable("libbpf headers not found (Debian package libbpf-dev)")
    obj = os.path.join(outdir, "objects.bpf.o")
    arch_inc = f"/usr/include/{os.uname().machine}-linux-gnu"
    _check([clang, "-target", "bpf", "-g", "-O2", "-I", arch_inc, "-c",
            os.path.join(HERE, "bpf", "objects.bpf.c"), "-o", obj], "clang -target bpf", outdir)
    os.chmod(obj, 0o644)
    return obj


def skeleton_loader(outdir: str, obj: str) -> str:
    bpftool = shutil.which("bpftool")
    if not bpftool:
        raise Unavailable("bpftool not found (Debian package bpftool)")
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
    _check([cc, "-O2", "-Wall", "-I", outdir, "-o", exe, os.path.join(HERE, "skel_main.c"),
            "-lbpf"], "building skel_main.c with -lbpf", outdir)
    os.chmod(exe, 0o755)
    return exe


def go_loader(outdir: str) -> str:
    go = shutil.which("go")
    if not go:
        raise Unavailable("go not found (Debian package golang-go)")
    if not os.path.isdir(os.path.join(GOCODE, "src/github.com/cilium/ebpf")):
        raise Unavailable("cilium/ebpf sources not found under /usr/share/gocode "
                          "(Debian package golang-github-cilium-ebpf-dev)")
    gopath = os.path.join(outdir, "gopath")
    pkg = os.path.join(gopath, "src", "goload")
    os.makedirs(pkg, exist_ok=True)
    shutil.copy(os.path.join(HERE, "goload", "main.go"), pkg)
    env = dict(os.environ, GO111MODULE="off", GOPATH=f"{gopath}:{GOCODE}", GOPROXY="off",
               GOFLAGS="", CGO_ENABLED="0")
    home = env.get("HOME", "")
    if not env.get("GOCACHE") and not (home and os.access(home, os.W_OK)):
        env["GOCACHE"] = os.path.join(outdir, "gocache")
    exe = os.path.join(outdir, "goload")
    _check([go, "build", "-o", exe, "goload"], "building goload with cilium/ebpf", outdir, env)
    os.chmod(exe, 0o755)
    return exe
