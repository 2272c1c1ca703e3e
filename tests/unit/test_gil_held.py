"""What runs under the emulator's lock keeps the GIL (README "Threads"): the copies of
unpinned memory (ProcessMemory's process_vm_readv/writev) and a checked call's fd check
(FdTable's fstat). Each of these used to let go of the GIL, so every call of threads sharing
an emulator let the others in to find the lock held and wait on it: a convoy of threads on
the lock, up to two context switches per call.

A counting thread, started and then left waiting for the GIL, must not count while this
thread makes the calls (switch interval 0.5 s: no forced switch in between either)."""
import ctypes
import struct
import sys
import threading
import time

from bpfemu import Emulator
from bpfemu.memory import ProcessMemory
from bpfemu.uapi import consts as c


def _counts_during(work, rounds: int = 3) -> list:
    """How far another thread counted during each of `rounds` runs of work()."""
    count, stop = [0], []

    def counter():
        while not stop:
            count[0] += 1
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.5)
    t = threading.Thread(target=counter)
    t.start()
    try:
        seen = []
        time.sleep(0.001)                       # the counter runs; then it waits for the GIL
        for _ in range(rounds):
            before = count[0]
            work()
            seen.append(count[0] - before)
    finally:
        stop.append(1)
        t.join()
        sys.setswitchinterval(old)
    return seen


def test_copies_of_unpinned_memory_keep_the_gil():
    """4 MiB copied in and out, three times."""
    mem = ProcessMemory()
    buf = ctypes.create_string_buffer(4 << 20)
    addr = ctypes.addressof(buf)
    mem.write(addr, mem.read(addr, len(buf)))   # the scratch buffer grown and touched first
    assert _counts_during(lambda: mem.write(addr, mem.read(addr, len(buf)))) == [0, 0, 0]


def test_fd_checks_of_checked_calls_keep_the_gil():
    """2,000 fd checks (FdTable.lookup, which every checked element call makes): each one
    would let the counter in if it let go of the GIL, and so few finish well inside the
    switch interval on a loaded machine (20,000 once took longer and failed)."""
    emu = Emulator()
    attr = ctypes.create_string_buffer(struct.pack("<IIII", c.BPF_MAP_TYPE_HASH, 4, 8, 8), 168)
    fd = emu.bpf(c.BPF_MAP_CREATE, attr, 168)
    lookup = emu.fds.lookup

    def checks():
        for _ in range(2000):
            lookup(fd)
    assert _counts_during(checks) == [0, 0, 0]
    emu.close_all()
