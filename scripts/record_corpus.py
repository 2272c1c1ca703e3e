#!/usr/bin/env python3
"""Record the golden corpus: every built-in scenario on the live kernel, into abi/linux-6.18/traces/.

Run as root on the kernel the corpus describes (Linux 6.18, x86_64):

    python scripts/record_corpus.py [SCENARIO ...] [--out DIR]

Each scenario is recorded by bpfemu's own Recorder (the process pinned to CPU 0; the LRU
scenarios move it between CPUs explicitly), written plainly, then compressed with gzip -9 and
a zero timestamp, so re-recording an unchanged scenario gives the same bytes unless the kernel
answered differently. Pin scenarios use a private bpffs mounted at a fixed path
(/tmp/bpfemu-golden-bpffs) so the pathnames in the corpus do not change between recordings.

Afterwards each trace is replayed onto the emulator and the differences are counted: the
corpus is the kernel's answer, so a difference is an emulator bug (or a command the emulator
does not have yet), never a reason to re-record.
"""
import argparse
import gzip
import os
import platform
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bpfemu.host import HostKernel  # noqa: E402
from bpfemu.trace import replay  # noqa: E402
from bpfemu.trace.run import GOLDEN_DIR, record_scenario  # noqa: E402
from bpfemu.trace.scenarios import ORDER, SCENARIOS, pending_commands  # noqa: E402

BPFFS_ROOT = "/tmp/bpfemu-golden-bpffs"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="default: all")
    p.add_argument("--out", default=str(GOLDEN_DIR), help=f"default: {GOLDEN_DIR}")
    p.add_argument("--no-replay", action="store_true", help="do not replay onto the emulator")
    a = p.parse_args(argv)
    names = a.scenarios or ORDER
    for n in names:
        if n not in SCENARIOS:
            p.error(f"unknown scenario {n!r}")
    why = HostKernel.available()
    if why:
        print(f"record_corpus: the live kernel's bpf() is not usable here: {why}", file=sys.stderr)
        return 2
    if platform.machine() != "x86_64" or not platform.release().startswith("6.18"):
        print(f"record_corpus: warning: this is {platform.release()} on {platform.machine()}, "
              "not Linux 6.18 on x86_64", file=sys.stderr)
    os.makedirs(a.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="bpfemu-corpus-")
    total_records = total_bytes = total_diff = 0
    pending = pending_commands(names)
    try:
        for name in names:
            plain = os.path.join(tmp, f"{name}.jsonl")
            record_scenario(name, plain, backend="kernel",
                            bpffs_root=BPFFS_ROOT if SCENARIOS[name].needs_bpffs else None)
            final = os.path.join(a.out, f"{name}.jsonl.gz")
            with open(plain, "rb") as src, open(final + ".tmp", "wb") as raw:
                with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0,
                                   filename="") as gz:
                    shutil.copyfileobj(src, gz)
            os.replace(final + ".tmp", final)
            size = os.path.getsize(final)
            line = f"{name:22s} "
            if a.no_replay:
                with open(plain, "rb") as f:
                    n = sum(1 for _ in f) - 2
                line += f"{n:6d} records {size:9,d} bytes"
            else:
                rep = replay(final, "emulator", max_diffs=1)
                n = rep.records
                total_diff += rep.differing
                line += f"{n:6d} records {size:9,d} bytes; emulator: " + (
                    "no differences" if rep.ok else f"{rep.differing} differ")
                if not rep.ok and name in pending:
                    line += f" (lacks {', '.join(pending[name])})"
            print(line, flush=True)
            total_records += n
            total_bytes += size
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'total':22s} {total_records:6d} records {total_bytes:9,d} bytes"
          + ("" if a.no_replay else f"; {total_diff} differ on the emulator"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
