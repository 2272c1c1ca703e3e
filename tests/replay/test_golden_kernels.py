"""The corpora recorded on Linux 6.1 and 6.12 replay on their profiles with zero differences,
and on another kernel's profile with the differences reported as ABI differences.

abi/linux-6.1/traces/ and abi/linux-6.12/traces/ were recorded by scripts/record_corpus.py
inside a VM running Debian's kernel (scripts/run-on-kernel K --cpus 2), the same scenarios as
the 6.18 corpus; each replays on the profile its header's kernel release names.
"""
import io
import os

import pytest

from bpfemu.trace import replay
from bpfemu.trace.format import read_all
from bpfemu.trace.kernels import check, corpus, render
from bpfemu.trace.scenarios import ORDER

OLDER = ("6.1", "6.12")
TRACES = [(v, t) for v in OLDER for t in corpus(v)]


@pytest.mark.parametrize("version", OLDER)
def test_the_corpus_is_there(version):
    names = {os.path.basename(t)[: -len(".jsonl.gz")] for t in corpus(version)}
    assert names == set(ORDER), f"missing: {set(ORDER) - names}"
    for t in corpus(version):
        header, recs, warnings = read_all(t)
        assert header.backend == "kernel" and header.kernel_release.startswith(version + ".")
        assert header.possible_cpus == 2 and not warnings


@pytest.mark.parametrize("version,trace", TRACES,
                         ids=[f"{v}-{os.path.basename(t).split('.')[0]}" for v, t in TRACES])
def test_corpus_replays_on_its_profile(version, trace):
    rep = replay(trace, "emulator", max_diffs=5)
    if not rep.ok:
        pytest.fail(f"{rep.summary()}\n\n" + "\n\n".join(str(d) for d in rep.differences),
                    pytrace=False)


def test_other_profiles_report_abi_differences():
    """A 6.1 capture on the 6.18 profile (and a 6.18 one on 6.1): differences, all counted as
    ABI differences between kernels, none as emulator differences."""
    traces = corpus("6.1", ["map_create", "obj_info"]) + corpus("6.18", ["map_create"])
    out = io.StringIO()
    results = check(traces, ["6.1", "6.18"])
    assert render(results, ["6.1", "6.18"], out) == 0
    text = out.getvalue()
    for path, (recorded_on, cells) in results.items():
        assert cells[recorded_on].differing == 0
        other = "6.18" if recorded_on == "6.1" else "6.1"
        assert cells[other].differing > 0, path
    assert "ABI difference between Linux 6.1 (recorded) and Linux 6.18" in text
    assert "MAP_CREATE: -1 EINVAL on 6.1" in text
    assert "0 differ from the kernel they were recorded on" in text


@pytest.mark.parametrize("version", OLDER)
def test_conform_checks_one_kernel_from_its_corpus(version):
    """bpfemu conform --profile K where the live kernel is another: K's corpus on K's profile."""
    from bpfemu.trace.conform import conform
    out = io.StringIO()
    result = conform(["entry", "map_freeze", "obj_info"], kernel="auto", out=out,
                     profile=version)
    assert result.differing == 0 and result.complete and result.checked > 0
    text = out.getvalue()
    assert f"the emulator on the Linux {version} profile against the golden corpus" in text
    assert f"abi/linux-{version}/traces" in text
