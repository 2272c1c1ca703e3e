"""``import bpfemu`` loads only the package: the handlers, construct and the map types load
when an Emulator, a HostKernel or a Map is first asked for (bpfemu/__init__.py)."""
import subprocess
import sys

import pytest

_PROBE = """
import sys, bpfemu
before = sorted(m for m in sys.modules if m.startswith(("bpfemu.", "construct")))
names = [bpfemu.Emulator, bpfemu.HostKernel, bpfemu.Map, bpfemu.BpfError, bpfemu.ENOTSUPP,
         bpfemu.ArenaMemory, bpfemu.ProcessMemory]
from bpfemu import Emulator
bpfemu.Emulator()
print(before, "construct" in sys.modules)
"""


def test_import_bpfemu_loads_nothing_else():
    out = subprocess.run([sys.executable, "-c", _PROBE], check=True, capture_output=True,
                         text=True).stdout.split()
    assert out == ["[]", "False"]       # nothing at import; no construct even for an Emulator


def test_public_names_resolve():
    import bpfemu
    for name in bpfemu.__all__:
        assert getattr(bpfemu, name) is not None
    assert set(bpfemu.__all__) <= set(dir(bpfemu))
    with pytest.raises(AttributeError):
        bpfemu.no_such_name
