"""The bpfemu command as a user meets it: exit statuses, usage errors, pipes."""
import subprocess
import sys

import pytest

from bpfemu import __version__
from bpfemu.cli import EXIT_BAD, EXIT_INCOMPLETE, EXIT_OK, main
from bpfemu.trace import conform as conform_mod


def _bpfemu(*args, **kw):
    return subprocess.run([sys.executable, "-m", "bpfemu.cli", *args], capture_output=True,
                          text=True, timeout=120, **kw)


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"bpfemu {__version__}"


def test_conform_that_checked_nothing_does_not_pass(tmp_path, monkeypatch, capsys):
    """A run without the golden traces (what a `pip install .` without package data got)
    said `0 of 0 calls agree.` and exited 0."""
    monkeypatch.setattr(conform_mod, "GOLDEN_DIR", tmp_path)
    assert main(["conform", "--kernel", "no", "entry", "map_ids"]) == EXIT_INCOMPLETE
    cap = capsys.readouterr()
    assert "NOT CHECKED: no golden trace" in cap.out
    assert "INCOMPLETE: 2 of 2 scenarios were not checked: entry, map_ids" in cap.out
    assert "incomplete" in cap.err


def test_conform_that_skipped_one_scenario_does_not_pass(tmp_path, monkeypatch, capsys):
    real = conform_mod.GOLDEN_DIR
    (tmp_path / "entry.jsonl.gz").write_bytes((real / "entry.jsonl.gz").read_bytes())
    monkeypatch.setattr(conform_mod, "GOLDEN_DIR", tmp_path)
    assert main(["conform", "--kernel", "no", "entry", "map_ids"]) == EXIT_INCOMPLETE
    out = capsys.readouterr().out
    assert "271 of 271 calls agree." in out and "were not checked: map_ids" in out


def test_conform_that_checked_everything_it_was_asked_passes(capsys):
    assert main(["conform", "--kernel", "no", "entry"]) == EXIT_OK
    assert "INCOMPLETE" not in capsys.readouterr().out


def test_a_closed_pipe_ends_quietly_with_141():
    """`bpfemu conform | head -1` printed a BrokenPipeError traceback."""
    p = subprocess.Popen(f"{sys.executable} -m bpfemu.cli conform --kernel no entry | head -1; "
                         "exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=120)
    assert out.startswith("bpfemu conform:")
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert p.returncode == 141


@pytest.mark.parametrize("args, message", [
    (["record", "entry", "-o", "x.jsonl", "--backend", "emulator", "--cpus", "0"],
     "--cpus must be 1..8192, got 0"),
    (["record", "entry", "-o", "x.jsonl", "--backend", "emulator", "--cpus", "-3"],
     "--cpus must be 1..8192, got -3"),
    (["record", "entry", "-o", "x.jsonl", "--backend", "emulator", "--cpus", "100000"],
     "--cpus must be 1..8192, got 100000"),
    (["replay", "--max-diffs", "-1", "x.jsonl"], "--max-diffs must be at least 0, got -1"),
    (["replay", "--max-diffs", "many", "x.jsonl"], "'many' is not a number"),
])
def test_out_of_range_options_are_usage_errors(tmp_path, args, message):
    r = _bpfemu(*args, cwd=tmp_path)
    assert r.returncode == EXIT_BAD
    assert message in r.stderr and "usage:" in r.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_max_diffs_zero_counts_without_showing(tmp_path, monkeypatch, capsys):
    import errno

    from bpfemu import syscall
    from bpfemu.trace.run import GOLDEN_DIR
    from bpfemu.uapi.consts import BpfCmd as C
    row = syscall.COMMANDS[C.BPF_MAP_UPDATE_ELEM]
    real = row.handler

    def wrong(emu, raw, attr):
        real(emu, raw, attr)
        raise syscall.BpfError(errno.EIO)
    monkeypatch.setitem(syscall.COMMANDS, C.BPF_MAP_UPDATE_ELEM, row._replace(handler=wrong))
    assert main(["replay", "-q", "--max-diffs", "0", str(GOLDEN_DIR / "hash_elem.jsonl.gz")]) == 1
    out = capsys.readouterr().out
    assert "expected" not in out and "more differing records" in out


# --kernel K (issue 21's spelling; --profile is its alias) picks the kernel a command is about.

def test_record_and_replay_take_kernel(tmp_path, capsys):
    """A scenario recorded on the emulator's 6.1 profile replays on 6.1 (the default: the
    profile its header names) and differs on 6.18 (MAP_FREEZE by a read-only fd, the attr
    size)."""
    trace = str(tmp_path / "entry.jsonl")
    assert main(["record", "entry", "-o", trace, "--backend", "emulator", "--kernel", "6.1"]) == 0
    from bpfemu.trace.format import read_all
    assert read_all(trace)[0].kernel_release == "bpfemu-emulator (Linux 6.1 profile)"
    assert main(["replay", "-q", trace]) == EXIT_OK
    assert main(["replay", "-q", "--kernel", "6.1", trace]) == EXIT_OK
    assert main(["replay", "-q", "--kernel", "6.18", "--max-diffs", "0", trace]) == 1
    assert main(["replay", "-q", "--profile", "6.18", "--max-diffs", "0", trace]) == 1
    capsys.readouterr()


@pytest.mark.parametrize("option", ["--kernel", "--profile"])
def test_conform_takes_kernel(option, capsys):
    assert main(["conform", option, "6.12", "--live", "no", "entry"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "the emulator on the Linux 6.12 profile against the golden corpus" in out
    assert "linux-6.12" in out


def test_conform_kernel_auto_yes_no_still_means_the_live_kernel(capsys):
    """--kernel auto|yes|no, conform's older option (now --live), still works."""
    assert main(["conform", "--kernel", "no", "entry"]) == EXIT_OK
    assert "Linux 6.18 profile" in capsys.readouterr().out


@pytest.mark.parametrize("args", [
    ["conform", "--kernel", "5.4", "entry"],
    ["replay", "--kernel", "5.4", "x.jsonl"],
    ["record", "entry", "-o", "x.jsonl", "--backend", "emulator", "--kernel", "5.4"],
    ["run", "--kernel", "5.4", "--", "true"],
])
def test_an_unknown_kernel_is_a_usage_error(tmp_path, args):
    r = _bpfemu(*args, cwd=tmp_path)
    assert r.returncode == EXIT_BAD
    assert "no kernel profile '5.4'" in r.stderr
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.parametrize("option", ["--kernels", "--profiles"])
def test_conform_checks_corpora_on_several_kernels(option, capsys):
    assert main(["conform", option, "6.1,6.12", "map_freeze"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "on 6.1" in out and "on 6.12" in out and "linux-6.1/map_freeze" in out
