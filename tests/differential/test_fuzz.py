"""A CI-sized differential fuzz run (tests/fuzz_engine.py; long runs: scripts/fuzz.py):
random and mutated attrs for every map command, on the emulator and the live kernel from the
same state. No exception escapes, and every return value, every byte written and every
map's contents agree, outside documented DEVIATIONs."""
import os

import pytest

from tests.fuzz_engine import Fuzzer
from tests.support import NCPU, host_unavailable_reason


@pytest.fixture(autouse=True)
def cpu0():
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})                # LRU behaviour depends on the CPU
    yield
    os.sched_setaffinity(0, old)


# Calls per seed: BPFEMU_FUZZ_CALLS sizes the run for slower machines (a VM under TCG, where
# scripts/differential-on-kernels runs it inside Linux 6.1 and 6.12 on their profiles).
CALLS = int(os.environ.get("BPFEMU_FUZZ_CALLS") or 3000)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzz_against_the_kernel(seed):
    reason = host_unavailable_reason()
    if reason:
        pytest.skip(f"live kernel bpf() not permitted here: {reason}")
    f = Fuzzer(seed, NCPU)
    try:
        f.run(CALLS)
    finally:
        f.close()
    assert f.calls == CALLS
    assert f.real_divergences() == {}, f.report()
