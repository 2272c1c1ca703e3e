"""DataPlane.lookup_elem(fd, key, as_type): the value as the program's struct, on the
emulator (a ctypes instance over the element's bytes) and on the live kernel (HostDataPlane:
fields read and written through real programs). One test body, both planes."""
import ctypes
import os

import pytest

from bpfemu import Emulator, HostKernel, Map
from bpfemu.progs import DataPlane
from bpfemu.uapi.consts import BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_PERCPU_HASH

from tests.support import host_unavailable_reason


class Counters(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


@pytest.fixture(params=["emu", "host"])
def plane(request):
    if request.param == "emu":
        be = Emulator()
        yield be, DataPlane(be)
        be.close_all()
        return
    reason = host_unavailable_reason()
    if reason:
        pytest.skip(f"live kernel bpf() not permitted here: {reason}")
    from bpfemu.host_progs import HostDataPlane
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})                # the program runs on CPU 0, as emu.cpu
    be = HostKernel()
    dp = HostDataPlane(be)
    try:
        yield be, dp
    finally:
        dp.close()
        be.close_all()
        os.sched_setaffinity(0, saved)


@pytest.mark.parametrize("map_type", [BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_PERCPU_HASH])
def test_a_typed_view_reads_and_writes_the_value(plane, map_type):
    be, dp = plane
    m = Map.create(be, map_type, ctypes.c_uint32, Counters, 4)
    key = (7).to_bytes(4, "little")
    assert dp.update_elem(m.fd, key, bytes(Counters(1, 100))) == 0
    v = dp.lookup_elem(m.fd, key, Counters)
    assert (v.packets, v.bytes) == (1, 100)
    v.packets += 3
    v.bytes = 1500
    got = m[7] if not m.percpu else m[7][0]               # CPU 0's slot
    assert (got.packets, got.bytes) == (4, 1500)
    assert (v.packets, v.bytes) == (4, 1500)
    assert dp.lookup_elem(m.fd, (8).to_bytes(4, "little"), Counters) is None
    m.close()
