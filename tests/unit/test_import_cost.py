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


def _modules_after(code: str) -> set:
    probe = code + "\nimport sys; print(' '.join(sorted(sys.modules)))"
    return set(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                              text=True).stdout.split())


def test_the_layers_over_the_kernel_load_no_emulator():
    """LibBpf and Map over a HostKernel: no handler, no map type (and not platform)."""
    mods = _modules_after("from bpfemu.libbpf import LibBpf\nfrom bpfemu.maps_api import Map\n"
                          "from bpfemu.host import HostKernel\nLibBpf(HostKernel())")
    emulator = {m for m in mods if m.startswith(("bpfemu.maps.", "bpfemu.syscall",
                                                 "bpfemu.emulator")) or m == "bpfemu.maps"}
    assert emulator | ({"platform"} & mods) == set()


def test_an_emulator_loads_what_only_some_commands_need_when_they_run():
    """traceback (an internal failure's report), socket (map offload's ifindex), hashlib
    (a frozen array's hash) are imported by the code that uses them."""
    mods = _modules_after("import bpfemu\nbpfemu.Emulator()")
    assert {"traceback", "socket", "hashlib"} & mods == set()


def test_an_emulator_loads_no_dataclasses_typing_or_re():
    """dataclasses (with inspect, ast, dis, tokenize) cost more instructions than all of the
    emulator's own modules, typing and re about half as much again: the ops tables, the
    create args and the profile are plain classes, the table rows collections' namedtuples
    (python -S, so that no site hook brings them in)."""
    probe = "import bpfemu\nbpfemu.Emulator()\nimport sys; print(' '.join(sorted(sys.modules)))"
    mods = set(subprocess.run([sys.executable, "-S", "-c", probe], check=True,
                              capture_output=True, text=True, cwd=_repo_root()).stdout.split())
    assert {"dataclasses", "inspect", "typing", "re"} & mods == set()


def _repo_root() -> str:
    import os
    import bpfemu
    return os.path.dirname(os.path.dirname(bpfemu.__file__))


def test_the_layer_knows_the_emulators_per_cpu_map_types():
    from bpfemu.libbpf import PERCPU_VALUE_TYPES
    from bpfemu.maps.core import PERCPU_VALUE_TYPES as emulated
    assert PERCPU_VALUE_TYPES == emulated
