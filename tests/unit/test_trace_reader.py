"""The trace reader: bad input is one clear line naming the file and the record (exit 2 from
the command line); an interrupted recording is a warning, and every complete record counts."""
import gzip
import json

import pytest

from bpfemu.cli import main
from bpfemu.trace import TraceError, open_trace, read_all
from bpfemu.trace.format import FORMAT_VERSION

HEADER = {"format": "bpfemu-trace", "version": FORMAT_VERSION, "kernel_release": "6.18.44",
          "arch": "x86_64", "page_size": 4096, "possible_cpus": 2,
          "recorder": {"name": "bpfemu", "version": "0.1.0"}, "backend": "kernel"}


def rec(seq, **kw):
    r = {"seq": seq, "call": "bpf", "cmd": 0, "name": "BPF_MAP_CREATE", "size": 4, "cpu": 0,
         "attr": {"addr": "0x10000", "before": "00000000", "after": "00000000"},
         "read": [], "written": [], "fds": [], "ret": -1, "errno": "EINVAL"}
    r.update(kw)
    return r


def lines(*objs):
    return "".join(json.dumps(o) + "\n" for o in objs)


def write(tmp_path, text, name="t.jsonl", gz=False):
    p = tmp_path / (name + (".gz" if gz else ""))
    data = text.encode() if isinstance(text, str) else text
    p.write_bytes(gzip.compress(data) if gz else data)
    return p


def good(n=3):
    return lines(HEADER, *[rec(i) for i in range(n)], {"end": n})


def test_a_good_trace_reads_without_warnings(tmp_path):
    h, recs, warnings = read_all(write(tmp_path, good()))
    assert len(recs) == 3 and warnings == [] and h.possible_cpus == 2


def test_gzip_is_recognised_by_content(tmp_path):
    h, recs, warnings = read_all(write(tmp_path, good(), gz=True))
    assert len(recs) == 3 and warnings == []


@pytest.mark.parametrize("text,record,words", [
    (lines(HEADER, rec(0)) + "{not json\n" + lines(rec(2)), 2, "invalid JSON"),
    (lines(HEADER, rec(0), {"call": "bpf", "seq": 1}), 2, "lacks the field"),
    (lines(HEADER, rec(0, call="ioctl")), 1, "unknown call"),
    (lines(HEADER, rec(0, errno="EWHAT")), 1, "unknown errno"),
    (lines(HEADER, rec(0, attr={"addr": "0x1", "before": "zz", "after": ""})), 1, "hex"),
    (lines(HEADER, "just a string"), 1, "JSON object"),
    (lines(HEADER, rec(0), {"end": 5}), 2, "end line counts 5"),
    (lines(HEADER, rec(0), {"end": 1}, rec(1)), 3, "data after the end line"),
], ids=["json", "fields", "call", "errno", "hex", "object", "end-count", "after-end"])
def test_bad_records_name_file_and_record(tmp_path, text, record, words):
    p = write(tmp_path, text)
    with pytest.raises(TraceError) as ei:
        read_all(p)
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith(f"{p}: record {record}: "), msg
    assert words in msg


@pytest.mark.parametrize("header,words", [
    ({**HEADER, "version": 99}, "unknown trace format version 99"),
    ({**HEADER, "version": None}, "unknown trace format version"),
    ({**HEADER, "arch": "aarch64"}, "recorded on aarch64"),
    ({**HEADER, "format": "something-else"}, "not a bpfemu trace"),
    ({k: v for k, v in HEADER.items() if k != "possible_cpus"}, "possible_cpus"),
    ({**HEADER, "page_size": 65536}, "page size 65536"),
])
def test_bad_headers(tmp_path, header, words):
    p = write(tmp_path, lines(header, rec(0), {"end": 1}))
    with pytest.raises(TraceError) as ei:
        open_trace(p)
    assert str(ei.value).startswith(f"{p}: ") and words in str(ei.value)
    assert "\n" not in str(ei.value)


def test_header_that_is_not_json(tmp_path):
    p = write(tmp_path, "hello\n")
    with pytest.raises(TraceError, match="header is not valid JSON"):
        open_trace(p)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(TraceError, match="empty file"):
        open_trace(write(tmp_path, ""))
    with pytest.raises(TraceError, match="cannot open"):
        open_trace(tmp_path / "nope.jsonl")


def test_a_truncated_last_line_is_a_warning(tmp_path):
    text = good(3)
    cut = text[: text.rindex(json.dumps(rec(2))) + 40]     # the crash hit record 3 mid-write
    h, recs, warnings = read_all(write(tmp_path, cut))
    assert len(recs) == 2
    assert len(warnings) == 1 and "record 3: the last line is truncated" in warnings[0]


def test_a_missing_end_line_is_a_warning(tmp_path):
    h, recs, warnings = read_all(write(tmp_path, lines(HEADER, rec(0), rec(1))))
    assert len(recs) == 2 and "no end line" in warnings[0]


def test_a_truncated_gzip_stream_is_a_warning(tmp_path):
    data = gzip.compress(good(50).encode())
    p = write(tmp_path, data[: len(data) * 2 // 3], name="t.jsonl.gz")
    h, recs, warnings = read_all(p)
    assert 0 < len(recs) < 50
    assert warnings and "interrupted" in warnings[0]


def test_a_recording_killed_mid_way_is_readable(tmp_path):
    """The recorder flushes every record (gzip with sync flushes): what a crash leaves is
    readable up to the last complete record."""
    import ctypes
    import struct

    from bpfemu import Emulator
    from bpfemu.trace import Recorder
    p = tmp_path / "crash.jsonl.gz"
    r = Recorder(Emulator(nr_cpus=2), p)
    attr = ctypes.create_string_buffer(168)
    struct.pack_into("<IIII", attr, 0, 1, 4, 8, 4)
    for _ in range(5):
        r.close(r.bpf(0, attr, 168))
    # no finish(): as if the process died; the file on disk is what is left
    h, recs, warnings = read_all(p)
    assert len(recs) == 10
    assert warnings and ("no end line" in warnings[0] or "interrupted" in warnings[0])
    r.finish()


@pytest.mark.parametrize("command", ["replay", "dump"])
def test_the_cli_says_one_line_and_exits_2(tmp_path, capsys, command):
    p = write(tmp_path, lines(HEADER, rec(0)) + "{oops\n" + lines(rec(2)))
    assert main([command, str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"bpfemu: {p}: record 2: invalid JSON (Expecting property name enclosed in "
                   "double quotes: line 1 column 2 (char 1))"]


@pytest.mark.parametrize("header,words", [({**HEADER, "version": 2}, "unknown trace format"),
                                          ({**HEADER, "arch": "s390x"}, "recorded on s390x")])
def test_the_cli_rejects_other_versions_and_arches(tmp_path, capsys, header, words):
    p = write(tmp_path, lines(header, rec(0), {"end": 1}))
    assert main(["replay", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(p) in err[0] and words in err[0]


def test_the_cli_replays_a_truncated_trace_with_a_warning(tmp_path, capsys):
    text = good(3)
    cut = text[: text.rindex(json.dumps(rec(2))) + 40]
    assert main(["replay", "-q", str(write(tmp_path, cut))]) == 3     # incomplete, not a pass
    captured = capsys.readouterr()
    assert "truncated" in captured.err and "2 records" in captured.out
