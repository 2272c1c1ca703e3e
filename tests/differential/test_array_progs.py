"""The program side of ARRAY and PERCPU_ARRAY (bpfemu.progs.DataPlane) against real BPF
programs on the live kernel (bpfemu.host_progs.HostDataPlane), CPU by CPU.

A program's update writes value_size bytes of the current CPU's value only (the padding and
the other CPUs stay), its lookup sees the current CPU, lookup_percpu_elem any CPU, delete is
EINVAL, an index past the end is E2BIG for update and NULL for lookup, NOEXIST is EEXIST.
The syscall side then reads every CPU's slot, padding included.
"""
import os
import struct

import pytest

from bpfemu import Emulator
from bpfemu.progs import DataPlane
from tests.support import NCPU, Client, host_unavailable_reason

from tests.differential.abi_support import ARRAY, PERCPU_ARRAY, u32

pytestmark = pytest.mark.skipif(host_unavailable_reason() is not None,
                                reason=f"live kernel bpf() not permitted here: "
                                       f"{host_unavailable_reason()}")


@pytest.fixture
def planes():
    from bpfemu import HostKernel
    from bpfemu.host_progs import HostDataPlane
    emu = Emulator(nr_cpus=NCPU, seed=1)
    host = HostKernel()
    sides = [(Client(emu), DataPlane(emu), emu), (Client(host), HostDataPlane(host), None)]
    old = os.sched_getaffinity(0)
    yield sides
    os.sched_setaffinity(0, old)
    for cl, dp, _ in sides:
        cl.close_all()
        if hasattr(dp, "close"):
            dp.close()


def on_cpu(cpu, emu):
    os.sched_setaffinity(0, {cpu})
    if emu is not None:
        emu.cpu = cpu


@pytest.mark.parametrize("map_type,value_size", [(ARRAY, 4), (ARRAY, 8), (PERCPU_ARRAY, 4),
                                                 (PERCPU_ARRAY, 12)])
def test_program_side(planes, map_type, value_size):
    outs = []
    for cl, dp, emu in planes:
        res = []
        fd = cl.create(map_type, 4, value_size, 3)
        assert fd >= 0
        vs = (value_size + 7) // 8 * 8 * NCPU if map_type == PERCPU_ARRAY else value_size
        # A syscall update that fills every byte, padding included.
        res.append(cl.update(fd, u32(1), bytes(range(0xA0, 0xA0 + vs))))
        for cpu in range(NCPU):
            on_cpu(cpu, emu)
            val = bytes([cpu + 1]) * value_size
            res.append(dp.update_elem(fd, u32(1), val))
            res.append(dp.update_elem(fd, u32(2), val, 1))          # NOEXIST: EEXIST
            res.append(dp.update_elem(fd, u32(3), val))             # past the end: E2BIG
            res.append(dp.update_elem(fd, u32(0), val, 3))          # bad flags: EINVAL
            res.append(dp.delete_elem(fd, u32(0)))                  # EINVAL
            view = dp.lookup_elem(fd, u32(1))
            res.append(None if view is None else bytes(view))
            res.append(dp.lookup_elem(fd, u32(3)))
            res.append(cl.lookup(fd, u32(1), vs))
        if map_type == PERCPU_ARRAY:
            on_cpu(0, emu)
            for cpu in range(NCPU + 1):
                view = dp.lookup_percpu_elem(fd, u32(1), cpu)
                res.append(None if view is None else bytes(view))
        outs.append(res)
    assert outs[0] == outs[1], outs
