#!/usr/bin/env python3
"""Print the bpf() map ABI of the running kernel (or of the emulator on a profile) as JSON.

    python scripts/probe_kernel.py [--profile 6.1] [--backend kernel|emulator] [-o FILE]

Run it inside a VM (scripts/run-on-kernel 6.1 -- ...) to read another kernel's ABI;
bpfemu/kernel_probe.py says what is probed.
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bpfemu.kernel_probe import probe  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--backend", choices=("kernel", "emulator"), default="kernel")
    p.add_argument("--profile", default=None, help="the emulator's profile (default: 6.18)")
    p.add_argument("-o", "--output", default="-")
    a = p.parse_args()
    if a.backend == "kernel":
        from bpfemu import HostKernel
        backend = HostKernel()
        release = os.uname().release
    else:
        from bpfemu import Emulator
        backend = Emulator(profile=a.profile) if a.profile else Emulator()
        release = f"emulator ({backend.profile.release} profile)"
    facts = {"release": release, **probe(backend)}
    text = json.dumps(facts, indent=1, sort_keys=False) + "\n"
    if a.output == "-":
        sys.stdout.write(text)
    else:
        with open(a.output, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
