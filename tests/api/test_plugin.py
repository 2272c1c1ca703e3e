"""The pytest plugin (bpfemu.pytest_plugin, the ``pytest11`` entry point ``bpfemu``), run
through pytester: fixtures ``bpf_emulator`` and ``bpf_backend``, marker ``bpf_cpu``.

When bpfemu is installed (pip install -e .), pytest loads the plugin through its entry point
in the inner runs as well; from a source checkout the inner runs load it with ``-p``.
"""
import os

import pytest

import bpfemu.pytest_plugin
from tests.support import host_unavailable_reason

pytest_plugins = ["pytester"]

BODY = '''
import ctypes
import os

import pytest

from bpfemu import Emulator, HostKernel
from bpfemu.maps_api import Map
from bpfemu.uapi import consts as c


def test_emulator_fixture(bpf_emulator):
    assert isinstance(bpf_emulator, Emulator)
    m = Map.create(bpf_emulator, c.BPF_MAP_TYPE_HASH, ctypes.c_uint32, ctypes.c_uint64, 4)
    m[1] = 2
    assert m[1].value == 2
    pytest.emu_fds = list(bpf_emulator.fds.files)      # checked after teardown below


def test_emulator_is_fresh_and_was_cleaned(bpf_emulator):
    assert pytest.emu_fds                                # the previous test had fds open...
    assert bpf_emulator.fds.files == {}                  # ...this one starts with none
    for fd in pytest.emu_fds:                            # and the old ones were closed
        assert not os.path.exists(f"/proc/self/fd/{fd}") or \\
            "bpf-map" not in os.readlink(f"/proc/self/fd/{fd}")


def test_backend_fixture(bpf_backend, request):
    kind = request.node.callspec.params["bpf_backend"]
    assert isinstance(bpf_backend, Emulator if kind == "emulator" else HostKernel)
    m = Map.create(bpf_backend, c.BPF_MAP_TYPE_ARRAY, ctypes.c_uint32, ctypes.c_uint32, 2)
    m[1] = 5
    assert [v.value for v in m.values()] == [0, 5]
    m.close()


@pytest.mark.bpf_cpu(1)
def test_pinned_emulator(bpf_emulator):
    assert os.sched_getaffinity(0) == {1}
    assert bpf_emulator.cpu == 1


@pytest.mark.bpf_cpu(1)
def test_pinned_backend(bpf_backend):
    assert os.sched_getaffinity(0) == {1}
    if isinstance(bpf_backend, Emulator):
        assert bpf_backend.cpu == 1


@pytest.mark.bpf_cpu(1)
def test_pinned_without_fixtures():
    assert os.sched_getaffinity(0) == {1}


def test_affinity_restored_after_pinned_tests():
    assert os.sched_getaffinity(0) == pytest.initial_affinity
'''

CONFTEST = '''
import os
import pytest

pytest.initial_affinity = os.sched_getaffinity(0)
'''

NO_BPF = '''
import pytest
from bpfemu.host import HostKernel


@pytest.fixture(autouse=True, scope="session")
def _no_bpf_here():
    # what HostKernel.available() says on a machine where bpf() gives EPERM
    mp = pytest.MonkeyPatch()
    mp.setattr(HostKernel, "available", staticmethod(
        lambda: "bpf(BPF_MAP_CREATE) failed: EPERM"))
    yield
    mp.undo()
'''


def plugin_args(pytestconfig):
    """Load the plugin in the inner run unless its entry point already does."""
    pm = pytestconfig.pluginmanager
    return [] if pm.is_registered(bpfemu.pytest_plugin) else ["-p", "bpfemu.pytest_plugin"]


def need_two_cpus():
    if 1 not in os.sched_getaffinity(0):
        pytest.skip("CPU 1 is not available to this process")


def test_fixtures_and_marker(pytester, pytestconfig):
    need_two_cpus()
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_user=BODY)
    result = pytester.runpytest(*plugin_args(pytestconfig), "-v", "-p", "no:cacheprovider")
    if host_unavailable_reason():
        result.assert_outcomes(passed=7, skipped=2)
    else:
        result.assert_outcomes(passed=9)
        result.stdout.fnmatch_lines(["*test_backend_fixture?kernel? PASSED*",
                                     "*test_pinned_backend?kernel? PASSED*"])
    result.stdout.fnmatch_lines(["*test_backend_fixture?emulator? PASSED*",
                                 "*test_pinned_emulator PASSED*"])


def test_kernel_param_skips_where_bpf_is_not_permitted(pytester, pytestconfig):
    need_two_cpus()
    pytester.makeconftest(CONFTEST + NO_BPF)
    pytester.makepyfile(test_user=BODY)
    result = pytester.runpytest(*plugin_args(pytestconfig), "-v", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=7, skipped=2)
    result.stdout.fnmatch_lines([
        "*test_backend_fixture?kernel? SKIPPED*",
        "*the live kernel's bpf() is not available: bpf(BPF_MAP_CREATE) failed: EPERM*"])
    assert "FAILED" not in result.stdout.str() and "ERROR" not in result.stdout.str()


def test_marker_usage_errors_and_impossible_cpus(pytester, pytestconfig):
    pytester.makepyfile(test_marks='''
import os
import pytest


@pytest.mark.bpf_cpu()
def test_no_cpu_given(bpf_emulator):
    pass


@pytest.mark.bpf_cpu(4095)
def test_cpu_not_here(bpf_emulator):
    raise AssertionError("must not run")


def test_unmarked_is_not_pinned(bpf_emulator):
    assert bpf_emulator.cpu == 0
''')
    result = pytester.runpytest(*plugin_args(pytestconfig), "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1, errors=1)
    result.stdout.fnmatch_lines(["*bpf_cpu needs a CPU number*",
                                 "*cannot pin to CPU 4095*"])


def test_marker_is_registered(pytester, pytestconfig):
    result = pytester.runpytest(*plugin_args(pytestconfig), "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.bpf_cpu(n)*"])


def test_entry_point_is_declared():
    import pathlib
    import tomllib
    pyproject = pathlib.Path(__file__).resolve().parents[2] / "pyproject.toml"
    meta = tomllib.loads(pyproject.read_text())
    assert meta["project"]["entry-points"]["pytest11"] == {"bpfemu": "bpfemu.pytest_plugin"}


LEAKS = '''
import ctypes
import os

import pytest

from bpfemu.maps_api import Map
from bpfemu.uapi import consts as c


def bpf_fds():
    n = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            n += "bpf-map" in os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass
    return n


@pytest.mark.parametrize("i", range(3))
def test_leaves_a_map_open(bpf_backend, i):
    if not hasattr(pytest, "bpf_fds_before"):
        pytest.bpf_fds_before = bpf_fds()
    assert bpf_fds() == pytest.bpf_fds_before       # nothing left by the tests before
    Map.create(bpf_backend, c.BPF_MAP_TYPE_HASH, ctypes.c_uint32, ctypes.c_uint32, 4)


def test_cpu_and_nr_cpus_on_both(bpf_backend):
    n = bpf_backend.nr_cpus
    assert n == len(os.sched_getaffinity(0)) or n >= 1
    m = Map.create(bpf_backend, c.BPF_MAP_TYPE_PERCPU_ARRAY, ctypes.c_uint32, ctypes.c_uint64, 1)
    assert len(m[0]) == n
    bpf_backend.cpu = n - 1
    assert bpf_backend.cpu == n - 1
    with pytest.raises(ValueError):
        bpf_backend.cpu = n
    bpf_backend.close_all()
    assert bpf_fds() == pytest.bpf_fds_before


def test_affinity_restored():
    assert os.sched_getaffinity(0) == pytest.initial_affinity
'''


def test_backend_fixture_closes_what_a_test_left_open_and_has_cpus(pytester, pytestconfig):
    """The kernel side of bpf_backend never closed its fds (open fds 10 -> 11 -> 12), and
    bpf_backend.cpu was an AttributeError on it."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_leaks=LEAKS)
    result = pytester.runpytest(*plugin_args(pytestconfig), "-v", "-p", "no:cacheprovider")
    if host_unavailable_reason():
        result.assert_outcomes(passed=5, skipped=4)
    else:
        result.assert_outcomes(passed=9)
