"""Building native test programs (C, Go) from sources in the repo, or saying why not.

Shared by tests/clients/build.py and tests/objects/loaders.py: each builder raises Unavailable
naming the Debian package that is missing, so the tests skip cleanly.
"""
import os
import shutil
import subprocess

GOCODE = "/usr/share/gocode"           # where Debian's golang-*-dev packages put Go sources


class Unavailable(Exception):
    """The program cannot be built or run here; the message says which package is missing."""


def need_tool(name: str, package: str) -> str:
    """The path of an executable on PATH, or Unavailable naming its Debian package."""
    path = shutil.which(name)
    if not path:
        raise Unavailable(f"{name} not found (Debian package {package})")
    return path


def check(cmd, what: str, cwd: str, env=None) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"{what} failed ({p.returncode}):\n{p.stdout}{p.stderr}")


def go_build_offline(main_go: str, name: str, outdir: str) -> str:
    """Build one main.go on cilium/ebpf into outdir/name, offline, in GOPATH mode against
    Debian's sources under /usr/share/gocode: GO111MODULE=off makes go ignore go.mod files
    and the module proxy (GOPROXY=off besides)."""
    go = need_tool("go", "golang-go")
    if not os.path.isdir(os.path.join(GOCODE, "src/github.com/cilium/ebpf")):
        raise Unavailable("cilium/ebpf sources not found under /usr/share/gocode "
                          "(Debian package golang-github-cilium-ebpf-dev)")
    gopath = os.path.join(outdir, "gopath")
    pkg = os.path.join(gopath, "src", name)
    os.makedirs(pkg, exist_ok=True)
    shutil.copy(main_go, pkg)
    env = dict(os.environ, GO111MODULE="off", GOPATH=f"{gopath}:{GOCODE}", GOPROXY="off",
               GOFLAGS="", CGO_ENABLED="0")
    home = env.get("HOME", "")
    if not env.get("GOCACHE") and not (home and os.access(home, os.W_OK)):
        # go needs a build cache; the default one under $HOME is kept between sessions
        env["GOCACHE"] = os.path.join(outdir, "gocache")
    exe = os.path.join(outdir, name)
    check([go, "build", "-o", exe, name], f"building {name} with cilium/ebpf", outdir, env)
    return exe
