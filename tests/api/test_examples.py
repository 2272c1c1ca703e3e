"""Every script in examples/ runs, as a newcomer would run it, and prints what it claims.

Each example runs as a subprocess (``sys.executable examples/NAME.py``) on the emulator and,
with ``--kernel``, on the live kernel where bpf() is permitted. The assertions are the facts
the output states, derived here independently of the example (the packet list, the sizes).
"""
import os
import pathlib
import re
import subprocess
import sys

import pytest

from tests.support import NCPU, host_unavailable_reason

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture(params=["emulator", "kernel"])
def run(request):
    """run(name) -> the example's stdout; fails on a non-zero exit or anything on stderr."""
    args = []
    if request.param == "kernel":
        reason = host_unavailable_reason()
        if reason:
            pytest.skip(f"live kernel bpf() not permitted here: {reason}")
        args = ["--kernel"]

    def run_example(name):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == "", proc.stderr
        return proc.stdout

    run_example.kernel = request.param == "kernel"
    return run_example


def test_every_example_is_tested():
    tested = set(re.findall(r'run\("([a-z_]+\.py)"\)', pathlib.Path(__file__).read_text()))
    scripts = {p.name for p in EXAMPLES.glob("*.py") if p.name != "flows.py"}
    assert scripts == tested


def test_lru_flow_table(run):
    out = run("lru_flow_table.py")
    assert "created <Map BPF_MAP_TYPE_LRU_HASH key=8B value=16B max_entries=64 fd=" in out
    kept = int(re.search(r"flows seen: 200, capacity: 64, flows kept: (\d+)", out).group(1))
    assert 0 < kept <= 64                       # LRU evicts instead of refusing
    assert "newest flow 10.0.0.200:1224/tcp kept: yes" in out
    assert "oldest flow 10.0.0.1:1025/tcp kept: no" in out
    assert "  10.0.0.200:1224/tcp: 1 packet, 260 bytes" in out
    assert "a plain HASH of 64 refused flow 65: E2BIG" in out


def test_update_stats(run):
    out = run("update_stats.py")
    # the packet list: 10.0.0.1:443/tcp 1500+1500+40+900, 10.0.0.2:53/udp 80+120,
    # 192.168.1.7:22/tcp 60+1200
    rows = re.findall(r"^  (\S+)\s+(\d+) packets\s+(\d+) bytes$", out, re.M)
    assert rows == [("10.0.0.1:443/tcp", "4", "3940"), ("10.0.0.2:53/udp", "2", "200"),
                    ("192.168.1.7:22/tcp", "2", "1260"), ("total", "8", "5400")]
    firsts = re.findall(r"first packet of (\S+): created its counters \(update_elem with "
                        r"BPF_NOEXIST returned 0\)", out)
    assert firsts == ["10.0.0.1:443/tcp", "10.0.0.2:53/udp", "192.168.1.7:22/tcp"]
    assert "NOEXIST update of an existing flow returns -17 (-EEXIST)" in out


def test_walk_flows(run):
    out = run("walk_flows.py")
    rows = re.findall(r"^(\d+\.\d+\.\d+\.\d+:\d+/\w+)\s+(\d+)\s+(\d+)$", out, re.M)
    assert sorted(rows) == sorted([("10.0.0.1:443/tcp", "4", "3940"),
                                   ("10.0.0.2:53/udp", "2", "200"),
                                   ("192.168.1.7:22/tcp", "2", "1260"),
                                   ("172.16.5.9:8080/tcp", "1", "60")])
    assert "the walk ended with ENOENT after 4 keys (0 vanished before their lookup); " \
           "9 packets in all" in out


def test_batch_dump(run):
    out = run("batch_dump.py")
    assert "stored 50000 entries with one bpf_map_update_batch call (returned 0)" in out
    m = re.search(r"dumped (\d+) entries in (\d+) bpf_map_lookup_batch calls of up to 4096", out)
    assert m and int(m.group(1)) == 50000
    assert 13 <= int(m.group(2)) <= 50     # at least ceil(50000/4096); buckets are not split
    total = sum(3 * i for i in range(50000))
    assert f"sum of the values: {total} (expected {total})" in out
    m = re.search(r"Map.items_lookup_batch\(\): 50000 \(key, value\) pairs, e.g. (\d+) -> (\d+)",
                  out)
    assert m and int(m.group(2)) == 3 * int(m.group(1))


def test_percpu_counter(run):
    out = run("percpu_counter.py")
    assert re.search(rf"PERCPU_ARRAY key=4B value=8B max_entries=1 fd=\d+> on {NCPU} "
                     rf"possible CPUs", out)
    cpus = [int(c) for c in re.search(r"the program ran on CPUs ([\d, ]+)", out).group(1)
            .split(", ")]
    if not run.kernel:
        assert cpus == list(range(NCPU))
    assert set(cpus) <= set(range(NCPU)) and cpus
    per_cpu = {int(c): int(n) for c, n in re.findall(r"^  CPU (\d+): (\d+) packets$", out, re.M)}
    want = {cpu: (3 + cpu if cpu in cpus else 0) for cpu in range(NCPU)}
    assert per_cpu == want
    assert f"total (Map.sum): {sum(want.values())} packets" in out
    assert f"busiest CPU (Map.max): {max(want.values())} packets" in out
