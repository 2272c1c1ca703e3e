"""Every golden trace under abi/linux-6.18/traces/ replays on the emulator with zero differences.

The traces are the live kernel's answers (Linux 6.18.44, x86_64, 2 possible CPUs), recorded by
scripts/record_corpus.py with bpfemu's own Recorder. Replaying needs no kernel and no
privileges: every buffer is recreated in a simulated address space. A failure prints the
first differences strace-style, with the expected and actual bytes.
"""
import pytest

from bpfemu.trace import replay
from bpfemu.trace.format import read_all
from bpfemu.trace.run import GOLDEN_DIR
from bpfemu.trace.scenarios import ORDER

TRACES = sorted(GOLDEN_DIR.glob("*.jsonl.gz"))


def test_the_corpus_is_there():
    names = {p.name[: -len(".jsonl.gz")] for p in TRACES}
    assert names == set(ORDER), f"missing golden traces: {set(ORDER) - names}"


def test_the_corpus_is_big_enough():
    total = 0
    for p in TRACES:
        header, recs, warnings = read_all(p)
        assert not warnings, warnings
        assert header.backend == "kernel" and header.kernel_release.startswith("6.18")
        assert header.possible_cpus == 2
        total += len(recs)
    assert total >= 20000, total


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name[: -len(".jsonl.gz")])
def test_golden_trace_replays_on_the_emulator(trace):
    rep = replay(trace, "emulator", max_diffs=5)
    assert not rep.warnings, rep.warnings
    if not rep.ok:
        pytest.fail(f"{rep.summary()}\n\n" + "\n\n".join(str(d) for d in rep.differences),
                    pytrace=False)
