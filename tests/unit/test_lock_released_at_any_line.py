"""Frames that hold the emulator's lock outside bpf() release it whatever line an exception
is raised at (bpfemu/undo.py: Python 3.11 traces the line of a ``with`` statement's
``__exit__`` call outside its handler, so a trace function that raises there skips the
release). A trace function raises at the k-th line the emulator runs, for every k; the lock
must be free afterwards. Held, it hung every other thread's call, and the holder's own later
program-side operations ran as part of a call never closed, with no journal mark."""
import struct

import pytest

from bpfemu import Emulator
from bpfemu.progs import DataPlane
from bpfemu.uapi import consts as c
from tests.support import Client, lock_is_free, stop_at_line


def _map_of(emu, fd):
    emu.map_of(fd)


def _fetch_add(emu, fd):
    DataPlane(emu).lookup_fetch_add(fd, struct.pack("<I", 1), 0, 8, 5)


def _stopped(op, k):
    """op on a new emulator with a Stop at its k-th line (None: never): (lines, lock free)."""
    emu = Emulator(seed=1)
    fd = Client(emu).create(c.BPF_MAP_TYPE_HASH, 4, 8, 8)
    assert Client(emu).update(fd, struct.pack("<I", 1), b"\0" * 8) == 0
    _, seen = stop_at_line(k, lambda: op(emu, fd))
    free = lock_is_free(emu.lock)
    if free:
        emu.close_all()
    return seen, free


@pytest.mark.parametrize("op", [_map_of, _fetch_add], ids=["map_of", "lookup_fetch_add"])
def test_lock_is_free_after_a_stop_at_any_line(op):
    lines, free = _stopped(op, None)
    assert free and lines >= 2
    held = [k for k in range(1, lines + 1) if not _stopped(op, k)[1]]
    assert held == []
