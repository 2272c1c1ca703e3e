"""Each kernel profile answers the kernel probe as that kernel did.

abi/linux-<version>/probe.json is bpfemu.kernel_probe's probe of the real kernel (6.1 and 6.12
recorded inside their VMs, 6.18 on the host: scripts/probe_kernel.py); the emulator on that
version's profile must give the same answers, byte offset for byte offset. No privilege needed.
"""
import json
import os

import pytest

from bpfemu import Emulator
from bpfemu.kernel_probe import differences, probe

ABI = os.path.join(os.path.dirname(__file__), "..", "..", "abi")
VERSIONS = ("6.1", "6.12", "6.18")


def recorded(version):
    with open(os.path.join(ABI, f"linux-{version}", "probe.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("version", VERSIONS)
def test_profile_answers_like_its_kernel(version):
    facts = recorded(version)
    assert facts["release"].startswith(version + ".")
    with Emulator(profile=version, nr_cpus=2, seed=0) as emu:     # its fds closed after
        assert differences(facts, probe(emu)) == []


@pytest.mark.parametrize("version", ("6.1", "6.12"))
def test_older_kernels_differ_from_6_18(version):
    """The probe tells the kernels apart: 6.18's profile does not pass as an older kernel."""
    with Emulator(profile="6.18", nr_cpus=2, seed=0) as emu:
        found = differences(recorded(version), probe(emu))
    assert any(d.startswith("attr_size") for d in found)
    assert any(d.startswith("sweeps/BPF_MAP_CREATE") for d in found)
    assert any(d.startswith("map_info/") for d in found)
