"""Every module of the package imports on its own, first, in a fresh interpreter: no import
cycle depends on which module a user (or a tool such as pytest --doctest-modules) loads
first. Before bpfemu/failure.py, `import bpfemu.map_cmds` failed: map_cmds -> fastpath ->
syscall -> map_cmds, half made."""
import os
import subprocess
import sys

import bpfemu

_SCRIPT = r"""
import importlib, pkgutil, sys
import bpfemu
names = sorted(m.name for m in pkgutil.walk_packages(bpfemu.__path__, "bpfemu.")
               if not m.name.endswith(".__main__"))        # __main__ runs the CLI
failed = []
for name in names:
    for loaded in [n for n in sys.modules if n == "bpfemu" or n.startswith("bpfemu.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as e:
        failed.append(f"{name}: {type(e).__name__}: {e}")
print(len(names))
print("\n".join(failed))
"""


def test_every_module_imports_first():
    root = os.path.dirname(os.path.dirname(bpfemu.__file__))
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                         cwd=root, timeout=120, check=True).stdout.splitlines()
    assert int(out[0]) > 50                     # the walk found the package's modules
    assert [line for line in out[1:] if line] == []
