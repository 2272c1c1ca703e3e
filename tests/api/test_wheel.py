"""An installed bpfemu (a wheel in a fresh venv, not the source tree) carries its golden
corpus: `bpfemu conform` there checks every scenario. Before the corpus was package data it
said "skipped: no golden trace" for each, `0 of 0 calls agree.`, and exited 0."""
import glob
import os
import re
import shutil
import subprocess
import sys


import construct
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, f"{cmd}: {r.stdout}\n{r.stderr}"
    return r


def test_the_wheel_ships_the_corpus_and_conform_checks_all_of_it(tmp_path):
    pytest.importorskip("wheel", reason="building a wheel offline needs the wheel package")
    # From a copy of what a sdist holds, so that no build/ left in the tree can help;
    # offline: no index, no build isolation (setuptools and wheel of this interpreter).
    src = tmp_path / "src"
    for name in ("pyproject.toml", "setup.py", "README.md"):
        if os.path.exists(os.path.join(ROOT, name)):
            os.makedirs(src, exist_ok=True)
            shutil.copy(os.path.join(ROOT, name), src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("bpfemu", "abi"):
        shutil.copytree(os.path.join(ROOT, name), src / name, ignore=skip)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(tmp_path / "dist"), str(src))
    whl, = glob.glob(str(tmp_path / "dist" / "bpfemu-*.whl"))
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    py = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
         "-q", whl)
    # construct, the one run-time dependency, from this interpreter (offline): a directory
    # holding only it, on the fresh venv's path.
    deps = tmp_path / "deps"
    deps.mkdir()
    os.symlink(os.path.dirname(construct.__file__), deps / "construct")
    site = _run(str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    with open(os.path.join(site.stdout.strip(), "deps.pth"), "w") as f:
        f.write(str(deps) + "\n")
    work = tmp_path / "elsewhere"                  # not the source tree
    work.mkdir()
    r = subprocess.run([str(venv / "bin" / "bpfemu"), "conform", "--kernel", "no"], cwd=work,
                       capture_output=True, text=True, timeout=600)
    assert "NOT CHECKED" not in r.stdout and "INCOMPLETE" not in r.stdout, r.stdout
    assert str(venv) in r.stdout.splitlines()[0]  # the corpus came from the installed package
    m = re.search(r"^(\d+) of (\d+) calls agree\.$", r.stdout, re.M)
    assert m and m.group(1) == m.group(2) and int(m.group(2)) > 50_000, r.stdout[-2000:]
    assert r.returncode == 0, r.stderr

