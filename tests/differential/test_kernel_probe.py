"""The running kernel and the emulator on that kernel's profile answer the kernel probe alike.

On the host this checks the 6.18 profile; inside a VM (scripts/run-on-kernel, scripts/
vm_differential.sh) it checks 6.1 and 6.12 against the real kernels.
"""
import os

import pytest

from bpfemu import Emulator, HostKernel
from bpfemu.kernel_probe import differences, probe
from bpfemu.profile import profile_name_for_release
from tests.support import NCPU, host_unavailable_reason


def test_probe_matches_running_kernel():
    why = host_unavailable_reason()
    if why:
        pytest.skip(why)
    name = profile_name_for_release(os.uname().release)
    if name is None:
        pytest.skip(f"no profile for Linux {os.uname().release}")
    assert differences(probe(HostKernel()), probe(Emulator(profile=name, nr_cpus=NCPU))) == []
