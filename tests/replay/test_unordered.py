"""Replaying a walk of a hash map without BPF_F_ZERO_SEED: its order is the kernel's random
seed's, so the replay checks what does not depend on it, and says so."""
import json

import pytest

from bpfemu import Emulator
from bpfemu.cli import main
from bpfemu.libbpf import LibBpf, bpf_map_create_opts
from bpfemu.trace import replay
from bpfemu.trace.recorder import Recorder
from bpfemu.uapi.consts import BPF_F_ZERO_SEED, BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH

from tests.support import host_unavailable_reason


def _walk_scenario(backend, map_type=BPF_MAP_TYPE_HASH, flags=0):
    lib = LibBpf(backend)
    fd = lib.bpf_map_create(map_type, "walk", 4, 8, 64, bpf_map_create_opts(map_flags=flags))
    assert fd >= 0
    for k in range(8):
        assert lib.bpf_map_update_elem(fd, k.to_bytes(4, "little"), bytes(8), 0) == 0
    key, nxt = bytearray(4), bytearray(4)
    ret, first = lib.bpf_map_get_next_key(fd, None, nxt), True
    while ret == 0:
        key[:] = nxt
        ret = lib.bpf_map_get_next_key(fd, key, nxt)
    assert lib.bpf_map_delete_elem(fd, (3).to_bytes(4, "little")) == 0
    lib.bpf_map_get_next_key(fd, None, nxt)          # a walk cut short by the end of the trace
    lib.close(fd)


def _recorded(tmp_path, backend, scenario, name, **kw):
    """The path of a trace, tmp_path/name, of scenario(rec, **kw) recorded on backend."""
    path = tmp_path / name
    rec = Recorder(backend, str(path))
    try:
        scenario(rec, **kw)
    finally:
        rec.finish()
    return path


def _record(tmp_path, backend, **kw):
    return _recorded(tmp_path, backend, _walk_scenario, "walk.jsonl", **kw)


@pytest.mark.parametrize("map_type", [BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH])
def test_a_walk_recorded_with_another_seed_replays_without_false_differences(tmp_path, map_type):
    """Recorded on an emulator seeded differently from the replay's (as the kernel's random
    seed is): before the relaxed checks, 8 of the walk's steps differed."""
    path = _record(tmp_path, Emulator(seed=12345), map_type=map_type)
    rep = replay(str(path), "emulator")
    assert rep.ok, "\n".join(map(str, rep.differences))
    assert rep.relaxed and "BPF_F_ZERO_SEED" in rep.relaxed[0]
    assert "1 complete walks" in rep.relaxed[0] or "of 1 complete walks" in rep.relaxed[0]


def test_the_cli_says_which_checks_were_relaxed_and_why(tmp_path, capsys):
    path = _record(tmp_path, Emulator(seed=12345))
    assert main(["replay", "-q", str(path)]) == 0
    out = capsys.readouterr().out
    assert "relaxed: 10 GET_NEXT_KEY steps" in out and "seeds the hash" in out


def test_a_zero_seed_walk_is_still_compared_key_for_key(tmp_path, monkeypatch):
    path = _record(tmp_path, Emulator(seed=12345), flags=BPF_F_ZERO_SEED)
    rep = replay(str(path), "emulator")
    assert rep.ok and not rep.relaxed


def _rewrite(path, fn):
    lines = path.read_text().splitlines()
    recs = [json.loads(l) for l in lines]
    fn(recs)
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def _steps(recs):
    return [r for r in recs if r.get("name") == "BPF_MAP_GET_NEXT_KEY" and r["ret"] == 0]


def test_a_returned_key_the_map_does_not_have_is_a_difference(tmp_path):
    path = _record(tmp_path, Emulator(seed=12345))

    def forge(recs):
        w = _steps(recs)[2]["written"][0]
        w["after"] = (1000).to_bytes(4, "little").hex()
    _rewrite(path, forge)
    rep = replay(str(path), "emulator")
    assert rep.differing >= 1
    assert "which the map does not have" in str(rep.differences[0])


def test_a_walk_that_misses_a_key_is_a_difference(tmp_path):
    """A recorded walk that ends with ENOENT before it returned every key."""
    path = _record(tmp_path, Emulator(seed=12345))

    def forge(recs):
        steps = [r for r in recs if r.get("name") == "BPF_MAP_GET_NEXT_KEY"]
        last = steps[8]                     # the end of the first walk (ENOENT)
        assert last["errno"] == "ENOENT"
        i = recs.index(steps[7])            # drop its last step: the walk misses that key
        cut = recs[i]
        last["read"] = cut["read"]
        del recs[i]
        for n, r in enumerate(recs[1:-1]):
            r["seq"] = n
        recs[-1] = {"end": len(recs) - 2}
    _rewrite(path, forge)
    rep = replay(str(path), "emulator")
    assert rep.differing == 1, [str(d) for d in rep.differences]
    assert "never returned" in str(rep.differences[0])


def test_a_truncated_trace_does_not_exit_like_a_clean_pass(tmp_path, capsys):
    path = _record(tmp_path, Emulator(seed=0), flags=BPF_F_ZERO_SEED)
    assert main(["replay", "-q", str(path)]) == 0
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-3]))                # no end line, records missing
    assert main(["replay", "-q", str(path)]) == 3
    assert "INCOMPLETE" in capsys.readouterr().out


def test_a_kernel_recording_of_a_random_seed_walk_replays_on_the_emulator(tmp_path):
    reason = host_unavailable_reason()
    if reason:
        pytest.skip(f"live kernel bpf() not permitted here: {reason}")
    from bpfemu import HostKernel
    path = _record(tmp_path, HostKernel())
    rep = replay(str(path), "emulator")
    assert rep.ok, "\n".join(map(str, rep.differences))
    assert rep.relaxed


def _batch_scenario(backend, map_type=BPF_MAP_TYPE_HASH):
    import ctypes
    lib = LibBpf(backend)
    fd = lib.bpf_map_create(map_type, "batch", 4, 8, 64, None)
    for k in range(20):
        assert lib.bpf_map_update_elem(fd, k.to_bytes(4, "little"), (k * 3).to_bytes(8, "little"),
                                       0) == 0
    in_batch, out_batch = None, bytearray(4)
    while True:
        keys, values, count = bytearray(4 * 3), bytearray(8 * 3), ctypes.c_uint32(3)
        ret = lib.bpf_map_lookup_batch(fd, in_batch, out_batch, keys, values, count)
        if ret == -28:                                   # ENOSPC: a bucket holds more
            keys, values, count = bytearray(4 * 20), bytearray(8 * 20), ctypes.c_uint32(20)
            ret = lib.bpf_map_lookup_batch(fd, in_batch, out_batch, keys, values, count)
        if ret != 0:
            break
        in_batch = bytes(out_batch)
    lib.close(fd)


def _record_batch(tmp_path, backend):
    return _recorded(tmp_path, backend, _batch_scenario, "batch.jsonl")


def test_a_batch_walk_recorded_with_another_seed_replays_without_false_differences(tmp_path):
    path = _record_batch(tmp_path, Emulator(seed=12345))
    rep = replay(str(path), "emulator")
    assert rep.ok, "\n".join(map(str, rep.differences))
    note = [n for n in rep.relaxed if "LOOKUP(_AND_DELETE)_BATCH" in n]
    assert note and "each of 1 complete batch walks returned every key once" in note[0]


def test_a_batch_pair_with_a_wrong_value_is_a_difference(tmp_path):
    path = _record_batch(tmp_path, Emulator(seed=12345))

    def forge(recs):
        r = next(r for r in recs if r.get("name") == "BPF_MAP_LOOKUP_BATCH" and r["ret"] == 0)
        w = next(b for b in r["written"] if b["field"] == "values")
        w["after"] = "ee" + w["after"][2:]
    _rewrite(path, forge)
    rep = replay(str(path), "emulator")
    assert rep.differing == 1 and "values[0]" in str(rep.differences[0])


def test_a_kernel_recording_of_a_random_seed_batch_walk_replays_on_the_emulator(tmp_path):
    reason = host_unavailable_reason()
    if reason:
        pytest.skip(f"live kernel bpf() not permitted here: {reason}")
    from bpfemu import HostKernel
    rep = replay(str(_record_batch(tmp_path, HostKernel())), "emulator")
    assert rep.ok, "\n".join(map(str, rep.differences))
    assert any("LOOKUP(_AND_DELETE)_BATCH" in n for n in rep.relaxed)


def _delete_batch_scenario(backend):
    import ctypes
    lib = LibBpf(backend)
    fd = lib.bpf_map_create(BPF_MAP_TYPE_HASH, "drain", 4, 8, 64, None)
    for k in range(20):
        assert lib.bpf_map_update_elem(fd, k.to_bytes(4, "little"), (k * 3).to_bytes(8, "little"),
                                       0) == 0
    in_batch, out_batch, rounds = None, bytearray(4), 0
    while True:
        keys, values, count = bytearray(4 * 20), bytearray(8 * 20), ctypes.c_uint32(4)
        ret = lib.bpf_map_lookup_and_delete_batch(fd, in_batch, out_batch, keys, values, count)
        if ret == -28:
            count = ctypes.c_uint32(20)
            ret = lib.bpf_map_lookup_and_delete_batch(fd, in_batch, out_batch, keys, values,
                                                      count)
        rounds += 1
        # between batches, what is left is read and changed: the replay must hold the
        # recording's keys, not the ones its own batches happened to delete
        for k in range(20):
            lib.bpf_map_lookup_elem(fd, k.to_bytes(4, "little"), bytearray(8))
        if rounds == 2:
            lib.bpf_map_update_elem(fd, (100).to_bytes(4, "little"), bytes(8), 0)
        if ret != 0:
            break
        in_batch = bytes(out_batch)
    lib.close(fd)


def test_a_lookup_and_delete_batch_walk_with_another_seed_replays_without_false_differences(
        tmp_path):
    path = _recorded(tmp_path, Emulator(seed=12345), _delete_batch_scenario, "drain.jsonl")
    rep = replay(str(path), "emulator")
    assert rep.ok, "\n".join(map(str, rep.differences[:3]))
    assert any("LOOKUP(_AND_DELETE)_BATCH" in n for n in rep.relaxed)


def test_a_kernel_recording_of_a_random_seed_delete_batch_walk_replays_on_the_emulator(tmp_path):
    reason = host_unavailable_reason()
    if reason:
        pytest.skip(f"live kernel bpf() not permitted here: {reason}")
    from bpfemu import HostKernel
    path = _recorded(tmp_path, HostKernel(), _delete_batch_scenario, "drain.jsonl")
    rep = replay(str(path), "emulator")
    assert rep.ok, "\n".join(map(str, rep.differences[:3]))
