"""A deliberately wrong emulator makes replay fail, and says where and how, readably."""
import errno

from bpfemu import syscall
from bpfemu.cli import main
from bpfemu.trace import replay
from bpfemu.trace.run import GOLDEN_DIR
from bpfemu.uapi.consts import BpfCmd as C

HASH_ELEM = GOLDEN_DIR / "hash_elem.jsonl.gz"


def _eexist_becomes_enoent(monkeypatch):
    """Patch MAP_UPDATE_ELEM so that "key exists" (EEXIST) is reported as ENOENT."""
    row = syscall.COMMANDS[C.BPF_MAP_UPDATE_ELEM]
    real = row.handler

    def wrong(emu, raw, attr):
        try:
            return real(emu, raw, attr)
        except syscall.BpfError as e:
            if e.errno == errno.EEXIST:
                raise syscall.BpfError(errno.ENOENT) from None
            raise
    monkeypatch.setitem(syscall.COMMANDS, C.BPF_MAP_UPDATE_ELEM, row._replace(handler=wrong))


def test_a_wrong_errno_is_reported_strace_style(monkeypatch):
    _eexist_becomes_enoent(monkeypatch)
    rep = replay(HASH_ELEM, "emulator", max_diffs=3)
    assert not rep.ok
    d = rep.differences[0]
    text = str(d)
    # where: the file and the record; what: the call as strace would show it, with the bytes
    assert f"{HASH_ELEM}: record {d.record}" in text
    assert "bpf(BPF_MAP_UPDATE_ELEM, {map_fd=" in text
    assert "flags=BPF_NOEXIST}, 32) = -1 EEXIST (File exists)" in text
    assert "key=[" in text and "value=[" in text
    # and how the backend's answer differs
    assert "replayed: = -1 ENOENT (No such file or directory)" in text
    assert "return value:" in text
    assert "expected -1 EEXIST (File exists)" in text
    assert "actual   -1 ENOENT (No such file or directory)" in text


def test_the_cli_exits_1_and_prints_the_diff(monkeypatch, capsys):
    _eexist_becomes_enoent(monkeypatch)
    assert main(["replay", "-q", str(HASH_ELEM)]) == 1
    out = capsys.readouterr().out
    assert "-1 EEXIST (File exists)" in out and "actual   -1 ENOENT" in out
    assert "differ" in out


def test_a_wrong_byte_written_back_is_shown_with_both_contents(monkeypatch):
    """LOOKUP_ELEM writing a wrong value: the expected and actual bytes are both printed."""
    row = syscall.COMMANDS[C.BPF_MAP_LOOKUP_ELEM]
    real = row.handler

    def wrong(emu, raw, attr):
        ret = real(emu, raw, attr)
        value_ptr = int.from_bytes(raw[16:24], "little")
        emu.mem.write(value_ptr, b"\xee")
        return ret
    monkeypatch.setitem(syscall.COMMANDS, C.BPF_MAP_LOOKUP_ELEM, row._replace(handler=wrong))
    rep = replay(HASH_ELEM, "emulator", max_diffs=1)
    assert not rep.ok
    text = str(rep.differences[0])
    assert "bpf(BPF_MAP_LOOKUP_ELEM" in text
    assert "value @0x" in text and "first difference at byte 0" in text
    assert "actual   [ee " in text


def test_the_cli_exits_0_when_nothing_differs(capsys):
    traces = [str(GOLDEN_DIR / f"{n}.jsonl.gz") for n in ("entry", "map_ids")]
    assert main(["replay", "-q"] + traces) == 0
    out = capsys.readouterr().out
    assert "no differences" in out and "total: 2 traces" in out
