"""Emulator.bpf_as, the checked call of a supervised task, stopped at any line.

bpf_as makes the task current (its memory, fds, CPU, /proc directory) under the emulator's
lock, runs the entry, and puts the in-process caller back. A trace function raises at the
k-th line the emulator runs, for every k: whatever k, the lock must be free afterwards, the
in-process caller current again and the journal empty (the entry rolled the call back or
kept it whole). bpf_as's own lines were traced: a stop at the task switch, before the try
that undoes it, left the task current (the next in-process call would have read the
supervised program's memory), and a stop at its ``with`` statement's exit left the lock
held.
"""
import ctypes
import struct
import types

from bpfemu import Emulator
from bpfemu.memory import ProcessMemory
from bpfemu.uapi import consts as c
from tests.support import Client, lock_is_free, stop_at_line


def _stopped_update(k):
    """An update through bpf_as with a Stop at its k-th line (None: never). (result,
    lines seen, what is wrong afterwards)."""
    emu = Emulator(seed=1)
    cl = Client(emu)
    fd = cl.create(c.BPF_MAP_TYPE_HASH, 4, 8, 8)
    assert cl.update(fd, struct.pack("<I", 1), b"\1" * 8) == 0
    # A task of its own: another Memory object over this process, another /proc directory.
    task = types.SimpleNamespace(mem=ProcessMemory(), fds=emu.fds, proc="/proc/self",
                                 current_cpu=lambda: 0, decodable=None)
    kb, vb = ctypes.create_string_buffer(struct.pack("<I", 3), 4), ctypes.create_string_buffer(8)
    attr = ctypes.create_string_buffer(
        struct.pack("<IIQQQ", fd, 0, ctypes.addressof(kb), ctypes.addressof(vb), 0), 168)
    caller = (emu.mem, emu.fds, emu._cpu, emu._task, emu.bpffs.proc)
    got, seen = stop_at_line(k, lambda: emu.bpf_as(task, c.BPF_MAP_UPDATE_ELEM, attr, 32))
    wrong = []
    if not lock_is_free(emu.lock):
        wrong.append("lock held")
    if (emu.mem, emu.fds, emu._cpu, emu._task, emu.bpffs.proc) != caller:
        wrong.append("the task is still current")
    if emu.undo:
        wrong.append("journal left")
    if not wrong:
        keys = cl.keys(fd, 4)
        if keys not in ([struct.pack("<I", 1)], [struct.pack("<I", i) for i in (1, 3)],
                        [struct.pack("<I", i) for i in (3, 1)]):
            wrong.append(("map", keys))
    emu.close_all()
    return got, seen, wrong


def test_task_call_stopped_at_any_line_leaves_the_lock_free_and_the_caller_current():
    got, lines, wrong = _stopped_update(None)
    assert got == 0 and wrong == [] and lines > 20
    bad = []
    for k in range(1, lines + 1):
        got, _, wrong = _stopped_update(k)
        if wrong or got not in (0, "stopped"):
            bad.append((k, got, wrong))
    assert bad == []
