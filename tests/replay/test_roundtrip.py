"""Record, then replay: on the emulator always, on the live kernel where bpf() is permitted."""
import json
import os

import pytest

from bpfemu import Emulator
from bpfemu.cli import main
from bpfemu.trace import Recorder, dump, read_all, replay
from bpfemu.trace.caller import Caller, Out, no_access_page
from bpfemu.trace.run import GOLDEN_DIR, record_scenario
from bpfemu.trace.scenarios import SCENARIOS
from tests.support import host_unavailable_reason


def needs_kernel():
    why = host_unavailable_reason()
    if why:
        pytest.skip(f"live kernel bpf() not permitted here: {why}")


@pytest.mark.parametrize("name", ["elem_errors", "batch_hash", "obj_info", "map_ids", "obj_pin",
                                  pytest.param("lru_two_cpus", marks=pytest.mark.long)])
def test_an_emulator_recording_replays_on_a_fresh_emulator(tmp_path, name):
    p = tmp_path / f"{name}.jsonl.gz"
    record_scenario(name, p, backend="emulator", cpus=2)
    h, recs, warnings = read_all(p)
    assert h.backend == "emulator" and not warnings and len(recs) > 20
    rep = replay(p, "emulator")
    assert rep.ok, "\n\n".join(map(str, rep.differences))


def test_records_carry_what_the_format_promises(tmp_path):
    p = tmp_path / "t.jsonl"
    emu = Emulator(nr_cpus=2, seed=0)
    with Recorder(emu, p) as r:
        k = Caller(r)
        fd = k.create(5, 4, 4, 4, 0x40)                   # PERCPU_HASH, ZERO_SEED
        k.update(fd, b"\1\0\0\0", bytes(range(16)))
        k.lookup(fd, b"\1\0\0\0", 16)
        k.lookup(fd, no_access_page(), 16)
        k.batch(24, fd, keys=Out(8), values=Out(32), out_batch=Out(4), count=2)
        k.close(fd)
    lines = [json.loads(x) for x in p.read_text().splitlines()]
    assert lines[0]["format"] == "bpfemu-trace" and lines[0]["possible_cpus"] == 2
    assert lines[-1] == {"end": 6}
    create, update, lookup, fault, batch, close = lines[1:-1]
    assert create["map"]["id"] == 1 and create["ret"] >= 0 and create["errno"] is None
    assert update["read"][1] == {"field": "value", "addr": update["read"][1]["addr"],
                                 "bytes": bytes(range(16)).hex()}
    assert lookup["written"][0]["after"] == bytes(range(16)).hex()
    assert fault["read"][0]["unmapped"] == [[0, 4]] and fault["errno"] == "EFAULT"
    assert batch["attr"]["after"][64:72] == "01000000"              # batch.count written back
    assert batch["errno"] == "ENOENT" and batch["map_type"] == 5
    assert close["call"] == "close" and close["kind"] == "map"
    assert "bpf(BPF_MAP_UPDATE_ELEM, {map_fd=" in update["strace"]


def test_dump_is_strace_style(capsys):
    n = dump(GOLDEN_DIR / "map_ids.jsonl.gz")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# ") and "6.18" in out[0]
    assert len(out) == n + 1
    assert any("bpf(BPF_MAP_GET_NEXT_ID, {start_id=" in line and "next_id=0 => " in line
               for line in out)
    assert any("bpf(BPF_MAP_CREATE, {map_type=BPF_MAP_TYPE_HASH, key_size=4" in line for line in out)


def test_cli_record_a_scenario_from_a_file(tmp_path, capsys):
    src = tmp_path / "my_scenario.py"
    src.write_text(
        "from bpfemu.trace.caller import Caller\n"
        "def run(b):\n"
        "    k = Caller(b)\n"
        "    fd = k.create(1, 4, 8, 2)\n"
        "    for i in range(3):\n"
        "        k.update(fd, bytes([i, 0, 0, 0]), bytes(8), 1)\n"
        "    k.close(fd)\n")
    out = tmp_path / "t.jsonl.gz"
    assert main(["record", f"{src}:run", "-o", str(out), "--backend", "emulator"]) == 0
    assert "5 records" in capsys.readouterr().out
    assert main(["replay", "-q", str(out)]) == 0
    assert main(["record", f"{src}:nothere", "-o", str(out), "--backend", "emulator"]) == 2
    assert "has no function 'nothere'" in capsys.readouterr().err


def test_cli_conform_without_the_kernel(capsys):
    assert main(["conform", "--kernel", "no", "map_ids", "entry"]) == 0
    out = capsys.readouterr().out
    assert "golden corpus" in out and "all agree" in out
    assert "MAP_GET_NEXT_ID" in out and "HASH" in out and "calls agree" in out


# --- the live kernel --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["entry", "elem_errors", "obj_info", "batch_errors"])
def test_golden_traces_replay_on_the_kernel(name):
    needs_kernel()
    rep = replay(GOLDEN_DIR / f"{name}.jsonl.gz", "kernel")
    assert rep.ok, "\n\n".join(map(str, rep.differences))


def test_replay_in_the_recording_process_relocates(tmp_path):
    """Every recorded page is still in use here, so each record is relocated: pointers are
    rewritten, holes become PROT_NONE pages, and the comparison stays exact."""
    needs_kernel()
    p = tmp_path / "t.jsonl.gz"
    record_scenario("elem_errors", p, backend="kernel")
    rep = replay(p, "kernel")
    assert rep.ok, "\n\n".join(map(str, rep.differences))
    assert rep.relocated > 0


@pytest.mark.long   # the suite's slowest (a CPU switch per call); the golden replay covers LRU
def test_a_kernel_recording_of_lru_on_two_cpus_replays_on_the_emulator(tmp_path):
    needs_kernel()
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    p = tmp_path / "t.jsonl.gz"
    record_scenario("lru_two_cpus", p, backend="kernel")
    cpus = {r["cpu"] for r in read_all(p)[1] if r["call"] == "bpf"}
    assert cpus == {0, 1}
    rep = replay(p, "emulator")
    assert rep.ok, "\n\n".join(map(str, rep.differences[:3]))


def test_an_emulator_recording_replays_on_the_kernel(tmp_path):
    needs_kernel()
    p = tmp_path / "t.jsonl.gz"
    record_scenario("batch_errors", p, backend="emulator")
    rep = replay(p, "kernel")
    assert rep.ok, "\n\n".join(map(str, rep.differences[:3]))


def test_every_scenario_is_in_the_corpus():
    assert {p.name.split(".")[0] for p in GOLDEN_DIR.glob("*.jsonl.gz")} == set(SCENARIOS)
