"""benchmarks/bench_map_ops.py: the backends take turns a chunk at a time, and each runs
every operation on every key (the ratios compare the same work)."""
import errno
import os
import sys
from collections import Counter

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))

import bench_map_ops  # noqa: E402
from bpfemu import Emulator  # noqa: E402
from bpfemu.uapi import consts as c  # noqa: E402


def test_every_side_runs_every_chunk_in_rotating_order():
    calls = []
    spent = bench_map_ops._take_turns(["a", "b", "c"], 10, 4,
                                      lambda side, lo, hi: calls.append((side, lo, hi)))
    assert len(spent) == 3 and all(t >= 0 for t in spent)
    assert calls == [("a", 0, 4), ("b", 0, 4), ("c", 0, 4),
                     ("b", 4, 8), ("c", 4, 8), ("a", 4, 8),
                     ("c", 8, 10), ("a", 8, 10), ("b", 8, 10)]


class Counting:
    """An emulator that counts each command's calls and their results (an fd as "fd")."""

    def __init__(self, seed):
        self.emu = Emulator(seed=seed)
        self.mem = self.emu.mem
        self.calls = Counter()

    def bpf(self, cmd, attr, size):
        ret = self.emu.bpf(cmd, attr, size)
        self.calls[int(cmd), "fd" if ret > 0 else ret] += 1
        return ret

    def close(self, fd):
        return self.emu.close(fd)


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_run_ops_gives_each_side_the_same_whole_work(chunk):
    """Each of two emulators (one pinned) gets every key updated, looked up, walked to and
    deleted once, whatever the chunk."""
    n = 300
    sides = [Counting(1), Counting(2)]
    out = bench_map_ops.run_ops(sides, n, chunk, [False, True])
    assert set(out) == {"update", "lookup", "get_next_key", "delete"}
    assert all(len(times) == 2 and min(times) > 0 for times in out.values())
    for side in sides:
        assert side.calls == {(c.BPF_MAP_CREATE, "fd"): 1,
                              (c.BPF_MAP_UPDATE_ELEM, 0): n,
                              (c.BPF_MAP_LOOKUP_ELEM, 0): n,
                              (c.BPF_MAP_GET_NEXT_KEY, 0): n,
                              (c.BPF_MAP_GET_NEXT_KEY, -errno.ENOENT): 1,
                              (c.BPF_MAP_DELETE_ELEM, 0): n}


def test_lru_turns_are_all_new_keys():
    """The LRU phase: 2 * max_entries updates to reach eviction, then the timed ones, every
    key new, every update a success."""
    sides = [Counting(1), Counting(1)]
    times = bench_map_ops.run_lru_update(sides, 64, 500, 100, [True, False])
    assert len(times) == 2 and min(times) > 0
    for side in sides:
        assert side.calls == {(c.BPF_MAP_CREATE, "fd"): 1, (c.BPF_MAP_UPDATE_ELEM, 0): 128 + 500}
