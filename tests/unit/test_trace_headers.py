"""Corrupt trace headers are refused before anything runs, with a message naming the field;
`bpfemu dump` of a truncated trace warns on stderr (where a listing piped to head or a pager
still shows it), besides the listing's own closing comment."""
import gzip
import json

import pytest

from bpfemu.cli import main
from bpfemu.trace import TraceError, open_trace
from bpfemu.uapi import consts as c
from tests.unit.test_trace_reader import HEADER, lines, rec, write


@pytest.mark.parametrize("cpus", [0, 8193, 10**7, 2**63])
def test_absurd_possible_cpus_is_refused(tmp_path, cpus):
    p = write(tmp_path, lines({**HEADER, "possible_cpus": cpus}, rec(0), {"end": 1}))
    with pytest.raises(TraceError, match=f"possible_cpus {cpus} is not valid"):
        open_trace(p)


def test_replay_of_a_per_cpu_map_with_absurd_cpus_does_not_run(tmp_path, capsys):
    """The case that ran for minutes: a PERCPU_HASH created under 10^7 possible CPUs."""
    create = rec(0, cmd=c.BPF_MAP_CREATE, size=20, ret=3, errno=None)
    p = write(tmp_path, lines({**HEADER, "possible_cpus": 10**7}, create, {"end": 1}))
    assert main(["replay", str(p)]) == 2
    err = capsys.readouterr().err
    assert "possible_cpus 10000000 is not valid" in err


@pytest.mark.parametrize("field,value,words", [
    ("possible_cpus", "abc", 'header field "possible_cpus" must be an integer, not "abc"'),
    ("possible_cpus", 2.5, 'header field "possible_cpus" must be an integer, not 2.5'),
    ("possible_cpus", None, 'header field "possible_cpus" must be an integer, not null'),
    ("page_size", "4096", 'header field "page_size" must be an integer, not "4096"'),
    ("arch", 86, 'header field "arch" must be a string, not 86'),
    ("kernel_release", ["6.18"], 'header field "kernel_release" must be a string'),
    ("recorder", "bpfemu", 'header field "recorder" must be an object'),
])
def test_invalid_header_fields_are_named(tmp_path, capsys, field, value, words):
    p = write(tmp_path, lines({**HEADER, field: value}, rec(0), {"end": 1}))
    with pytest.raises(TraceError) as ei:
        open_trace(p)
    assert words in str(ei.value) and "literal" not in str(ei.value)
    assert main(["dump", str(p)]) == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize("field", ["kernel_release", "arch", "page_size", "possible_cpus"])
def test_missing_header_field_is_named(tmp_path, field):
    p = write(tmp_path, lines({k: v for k, v in HEADER.items() if k != field}, rec(0),
                              {"end": 1}))
    with pytest.raises(TraceError, match=f'header lacks the field "{field}"'):
        open_trace(p)


@pytest.mark.parametrize("how", ["mid-line", "no end line", "gzip cut"])
def test_dump_warns_on_stderr_for_a_truncated_trace(tmp_path, capsys, how):
    text = lines(HEADER, *[rec(i) for i in range(50)], {"end": 50})
    if how == "mid-line":
        p = write(tmp_path, text[:len(text) // 2])
    elif how == "no end line":
        p = write(tmp_path, text[:text.rindex("{\"end\"")])
    else:
        data = gzip.compress(text.encode())
        p = tmp_path / "t.jsonl.gz"
        p.write_bytes(data[:len(data) // 2])
    assert main(["dump", str(p)]) == 0
    out, err = capsys.readouterr()
    assert "bpfemu: warning: " in err and str(p) in err
    assert "# warning: " in out
    if how != "gzip cut":                       # half of that stream may hold no whole record
        assert "BPF_MAP_CREATE" in out


def test_dump_of_a_whole_trace_warns_nothing(tmp_path, capsys):
    p = write(tmp_path, lines(HEADER, *[rec(i) for i in range(5)], {"end": 5}))
    assert main(["dump", str(p)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "warning" not in out
