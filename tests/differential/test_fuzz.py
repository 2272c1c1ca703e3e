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


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzz_against_the_kernel(seed):
    reason = host_unavailable_reason()
    if reason:
        pytest.skip(f"live kernel bpf() not permitted here: {reason}")
    f = Fuzzer(seed, NCPU)
    try:
        f.run(3000)
    finally:
        f.close()
    assert f.calls == 3000
    assert f.real_divergences() == {}, f.report()
