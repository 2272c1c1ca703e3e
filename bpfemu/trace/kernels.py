"""Traces against several kernel profiles: where Linux versions answer the same calls differently.

A trace records one kernel's answers. Replayed on the profile of that kernel, every difference
is an emulator bug. Replayed on another version's profile, a difference is what the program
would see if it ran there: an ABI difference between the two kernels (an attr size, a field
one of them does not have, a flag it does not know), reported as such.
"""
import os
from collections import Counter
from dataclasses import dataclass, field

from ..profile import PROFILES
from .format import Trace
from .replay import replay, trace_profile
from .run import abi_dir

VERSIONS = tuple(sorted(PROFILES, key=lambda v: tuple(int(x) for x in v.split("."))))


def corpus_dir(version: str) -> str:
    """abi/linux-<version>/traces: the golden corpus recorded on that kernel."""
    return str(abi_dir() / f"linux-{version}" / "traces")


def corpus(version: str, names=None) -> list:
    """The corpus traces of a kernel version (those of the named scenarios, if given)."""
    d = corpus_dir(version)
    if not os.path.isdir(d):
        return []
    files = sorted(f for f in os.listdir(d) if f.endswith(".jsonl.gz"))
    if names:
        files = [f for f in files if f[:-len(".jsonl.gz")] in names]
    return [os.path.join(d, f) for f in files]


@dataclass
class Cell:
    differing: int
    records: int
    differences: list = field(default_factory=list)
    # (command, the recorded answer, the profile's answer) -> calls: the differences in brief
    kinds: Counter = field(default_factory=Counter)


def _answer(rec) -> str:
    return str(rec.get("ret")) if rec.get("errno") is None else f"-1 {rec['errno']}"


def _kind(rec, diff):
    """A difference in brief: the command, what the recording kernel answered, what the
    profile answers (or which bytes differ when both return the same)."""
    name = (rec.get("name") or rec.get("call", "?")).replace("BPF_", "")
    expected = _answer(rec)
    actual = diff.replayed.split(" (")[0].lstrip("= ").strip()
    if actual == expected:
        actual = "same result, other bytes (" + ", ".join(
            what.split(" @")[0].split(":")[0] for what, _, _ in diff.items) + ")"
    return name, expected, actual


def check(traces, versions, *, max_diffs: int = 3) -> dict:
    """{trace: (recorded_on, {version: Cell})}: each trace replayed on each version's profile."""
    out = {}
    for path in traces:
        recorded_on = trace_profile(Trace(path).header)
        cells = {}
        for v in versions:
            kinds = Counter()

            def note(rec, diff, _replayer, kinds=kinds):
                if diff is not None:
                    kinds[_kind(rec, diff)] += 1
            rep = replay(path, "emulator", max_diffs=max_diffs, profile=v, on_record=note)
            cells[v] = Cell(rep.differing, rep.records, rep.differences, kinds)
        out[path] = (recorded_on, cells)
    return out


def render(results: dict, versions, out, *, verbose: int = 0) -> int:
    """Print the table and the differences; returns the count of emulator differences (a
    trace on its own kernel's profile), the ABI differences between kernels not counted."""
    head = ["trace", "recorded on"] + [f"on {v}" for v in versions]
    rows, bugs, abi = [], [], []
    for path, (recorded_on, cells) in results.items():
        name = os.path.basename(path).split(".jsonl")[0]
        where = os.path.basename(os.path.dirname(os.path.dirname(path)))
        row = [f"{where}/{name}" if where.startswith("linux-") else name, recorded_on or "?"]
        for v in versions:
            c = cells[v]
            row.append("same" if c.differing == 0 else f"{c.differing} differ")
            if c.differing:
                (bugs if v == recorded_on else abi).append((path, recorded_on, v, c))
        rows.append(row)
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths))  # noqa: E731
    out.write("Each trace replayed on each kernel profile (calls whose answer differs from the "
              "recording):\n\n")
    out.write("\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]))
    out.write("\n")
    for path, recorded_on, v, c in abi:
        out.write(f"\nABI difference between Linux {recorded_on} (recorded) and Linux {v}: "
                  f"{os.path.basename(path)}, {c.differing} of {c.records} calls\n")
        for (name, expected, actual), n in sorted(c.kinds.items()):
            out.write(f"    {n:5d} x {name}: {expected} on {recorded_on}, {actual} on {v}\n")
        if verbose:
            for d in c.differences:
                out.write("\n".join("    " + s for s in str(d).splitlines()) + "\n")
    for path, recorded_on, v, c in bugs:
        out.write(f"\nEMULATOR DIFFERENCE: {os.path.basename(path)} on its own kernel's profile "
                  f"({v}): {c.differing} of {c.records} calls\n")
        for d in c.differences:
            out.write("\n".join("    " + s for s in str(d).splitlines()) + "\n")
    n_abi = sum(c.differing for *_, c in abi)
    n_bug = sum(c.differing for *_, c in bugs)
    out.write(f"\n{n_abi} calls differ between kernels (ABI differences); {n_bug} differ from "
              "the kernel they were recorded on (emulator differences).\n")
    return n_bug
