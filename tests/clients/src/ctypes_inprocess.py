"""libbpf.so.1 through ctypes, served in the same Python process by an Emulator.

    python ctypes_inprocess.py PIN_DIR

Runs libbpf_ctypes.py (the ctypes client, beside this file) in this process inside
bpfemu.intercept.inprocess.intercepted(): every bpf() libbpf makes goes through the seccomp
filter to the supervisor thread, which serves it from an Emulator whose bpffs is mounted on
PIN_DIR. The filter stays for the life of the process, hence a process of its own.
"""
import os
import sys

from bpfemu import Emulator
from bpfemu.intercept.inprocess import intercepted

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import libbpf_ctypes  # noqa: E402  (found beside this file)


def main(argv) -> int:
    pin_dir = argv[0]
    with intercepted(Emulator(bpffs_root=pin_dir)):
        libbpf_ctypes.main([pin_dir])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
