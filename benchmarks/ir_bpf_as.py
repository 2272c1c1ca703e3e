"""Instructions per checked call of a supervised task (Emulator.bpf_as), under callgrind.

An update of one key through bpf_as, N times, by a task over this process (its own Memory
object, the emulator's fd table); decoded calls off, so every call is checked. Instructions
per call: the difference of two runs' totals divided by the difference of their N.

Run: for n in 1000 3000; do PYTHONHASHSEED=0 valgrind --tool=callgrind \\
         python benchmarks/ir_bpf_as.py $n; done
"""
import ctypes
import os
import struct
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bpfemu import Emulator                                   # noqa: E402
from bpfemu.memory import ProcessMemory                       # noqa: E402
from bpfemu.uapi import consts as c                           # noqa: E402


def main(n: int) -> None:
    emu = Emulator(seed=1, decoded_calls=False)
    attr = ctypes.create_string_buffer(struct.pack("<IIII", c.BPF_MAP_TYPE_HASH, 4, 8, 8), 168)
    fd = emu.bpf(c.BPF_MAP_CREATE, attr, 168)
    task = types.SimpleNamespace(mem=ProcessMemory(), fds=emu.fds, proc="/proc/self",
                                 current_cpu=lambda: 0, decodable=None)
    kb = ctypes.create_string_buffer(struct.pack("<I", 3), 4)
    vb = ctypes.create_string_buffer(8)
    ua = ctypes.create_string_buffer(
        struct.pack("<IIQQQ", fd, 0, ctypes.addressof(kb), ctypes.addressof(vb), 0), 168)
    bpf_as = emu.bpf_as
    for _ in range(n):
        r = bpf_as(task, c.BPF_MAP_UPDATE_ELEM, ua, 32)
    assert r == 0


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
