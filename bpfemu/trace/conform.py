"""``bpfemu conform``: the built-in scenarios, the emulator against the kernel, call by call.

Where the live kernel's bpf() is permitted, each scenario is recorded on it now and the
recording is replayed onto a fresh emulator. Elsewhere (no root, no bpf(), a container) the
kernel's answers come from the golden corpus (abi/linux-6.18/traces/ in the source tree,
installed with the package as bpfemu/abi/), recorded on Linux 6.18 by the same scenarios.
Either way every call is compared (return value, errno, attr and every byte written back)
and counted in a table of commands by map types.

A run that could not check a scenario it was asked for (no golden trace for it) says so, and
its result counts it in ``skipped``: ``bpfemu conform`` then fails with its own exit status,
so that a run which checked less than it was asked to is never taken for a pass.
"""
import os
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field

from pathlib import Path

from ..host import HostKernel
from ..profile import get_profile, profile_name_for_release
from .kernels import corpus_dir
from ..uapi.consts import BpfMapType as T
from .replay import replay
from .run import GOLDEN_DIR, record_scenario
from .scenarios import ORDER, SCENARIOS, Interference, pending_commands

TYPE_COLUMNS = ["HASH", "PERCPU_HASH", "LRU_HASH", "LRU_PERCPU_HASH", "ARRAY", "PERCPU_ARRAY"]


def _type_label(rec) -> str:
    t = rec.get("map_type")
    if t is None:
        return "-"
    try:
        return T(t).name.replace("BPF_MAP_TYPE_", "")
    except ValueError:
        return str(t)


def _cmd_label(rec) -> str:
    if rec["call"] == "close":
        return "close"
    if rec["call"] == "fs":
        return f"fs {rec['op']}"
    name = rec.get("name") or str(rec["cmd"])
    if not name.startswith("BPF_"):
        return "(unknown commands)"
    return name.replace("BPF_", "", 1)


class Table:
    def __init__(self):
        self.cells = defaultdict(lambda: [0, 0])     # (cmd, type) -> [agree, total]

    def add(self, rec, diff):
        cell = self.cells[(_cmd_label(rec), _type_label(rec))]
        cell[1] += 1
        if diff is None:
            cell[0] += 1

    def render(self) -> str:
        cmds = sorted({c for c, _ in self.cells}, key=_cmd_order)
        types = [t for t in TYPE_COLUMNS if any((c, t) in self.cells for c in cmds)]
        types += sorted({t for _, t in self.cells} - set(types) - {"-"})
        if any((c, "-") in self.cells for c in cmds):
            types.append("-")
        head = ["command"] + [t if t != "-" else "(no map)" for t in types] + ["all"]
        rows = []
        for c in cmds:
            row = [c]
            ta = tt = 0
            for t in types:
                a, n = self.cells.get((c, t), (0, 0))
                ta, tt = ta + a, tt + n
                row.append("" if n == 0 else (f"{a}/{n}" if a == n else f"{a}/{n} !"))
            row.append(f"{ta}/{tt}" if ta == tt else f"{ta}/{tt} !")
            rows.append(row)
        widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
        fmt = lambda r: "  ".join(x.ljust(widths[0]) if i == 0 else x.rjust(widths[i])  # noqa: E731
                                  for i, x in enumerate(r))
        lines = [fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]
        return "\n".join(lines)

    def totals(self):
        a = sum(v[0] for v in self.cells.values())
        n = sum(v[1] for v in self.cells.values())
        return a, n


def _cmd_order(label: str):
    from ..uapi.consts import BpfCmd
    try:
        return (0, int(BpfCmd["BPF_" + label]))
    except KeyError:
        return (1, label)


def kernel_permitted() -> str | None:
    """None when the live kernel can be used, else why not."""
    return HostKernel.available()


@dataclass
class ConformResult:
    differing: int = 0          # calls that differ (0: the emulator agreed on every call checked)
    checked: int = 0            # calls compared
    skipped: list = field(default_factory=list)     # scenarios asked for but not checked

    @property
    def complete(self) -> bool:
        return not self.skipped and self.checked > 0


def conform(names=None, *, kernel: str = "auto", out=None, verbose: int = 0,
            max_diffs: int = 3, profile: str | None = None) -> ConformResult:
    """Run the conformance scenarios; print per-scenario results and the table. Returns the
    calls that differ, the calls checked and the scenarios that could not be checked.

    ``profile`` ("6.1", "6.12", "6.18"; default 6.18) is the kernel checked: the live kernel
    if it is that version, else that version's golden corpus, on that version's profile."""
    out = out or sys.stdout                      # the stream of the moment (pytest swaps it)
    names = list(names) if names else list(ORDER)
    for n in names:
        if n not in SCENARIOS:
            raise KeyError(n)
    version = get_profile(profile).release
    golden_dir = GOLDEN_DIR if version == "6.18" else Path(corpus_dir(version))
    why_not = kernel_permitted() if kernel != "no" else "--live no"
    running = os.uname().release
    if why_not is None and profile_name_for_release(running) != version:
        why_not = f"it is Linux {running}, not {version}"
    if kernel == "yes" and why_not:
        raise RuntimeError(f"the live kernel's bpf() is not usable here: {why_not}")
    use_kernel = why_not is None
    src = "the live kernel (recorded now)" if use_kernel else \
        f"the golden corpus ({golden_dir}), since the live kernel is not usable: {why_not}"
    out.write(f"bpfemu conform: the emulator on the Linux {version} profile against {src}\n\n")
    out.flush()
    table = Table()
    pending = pending_commands(names)
    result = ConformResult()
    tmpdir = tempfile.mkdtemp(prefix="bpfemu-conform-")
    try:
        for name in names:
            path = None
            origin = "golden"
            if use_kernel:
                path = os.path.join(tmpdir, f"{name}.jsonl.gz")
                try:
                    record_scenario(name, path, backend="kernel")
                    origin = "kernel"
                except (OSError, Interference) as e:  # no bpffs here; other processes' maps
                    out.write(f"  {name}: cannot record on the kernel ({e}); using the golden trace\n")
                    path = None
            if path is None:
                path = str(golden_dir / f"{name}.jsonl.gz")
                if not os.path.exists(path):
                    out.write(f"{name:22s} NOT CHECKED: no golden trace at {path}\n")
                    result.skipped.append(name)
                    continue
            rep = replay(path, "emulator", max_diffs=max_diffs if verbose < 2 else None,
                         on_record=lambda rec, diff, _r: table.add(rec, diff), profile=version)
            result.differing += rep.differing
            result.checked += rep.records
            status = "all agree" if rep.ok else f"{rep.differing} differ"
            note = ""
            if not rep.ok and name in pending:
                note = f" (the emulator does not implement {', '.join(pending[name])} yet)"
            out.write(f"{name:22s} {rep.records:6d} calls ({origin}): {status}{note}\n")
            out.flush()                     # a line per scenario as it ends, also into a pipe
            if not rep.ok and verbose:
                for d in rep.differences:
                    out.write("\n".join("    " + line for line in str(d).splitlines()) + "\n")
            for w in rep.warnings:
                out.write(f"    warning: {w}\n")
            if origin == "kernel":
                os.unlink(path)
    finally:
        try:
            for f in os.listdir(tmpdir):
                os.unlink(os.path.join(tmpdir, f))
            os.rmdir(tmpdir)
        except OSError:
            pass
    a, n = table.totals()
    out.write("\nAgreement by command and map type (calls that matched / calls made):\n\n")
    out.write(table.render() + "\n\n")
    out.write(f"{a} of {n} calls agree" + ("." if a == n else f"; {n - a} differ "
                                            "(rerun with -v to see them).") + "\n")
    if result.skipped:
        out.write(f"INCOMPLETE: {len(result.skipped)} of {len(names)} scenarios were not "
                  f"checked: {', '.join(result.skipped)}\n")
    elif n == 0:
        out.write("INCOMPLETE: no call was checked.\n")
    return result
