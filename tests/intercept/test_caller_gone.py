"""Once NOTIF_ID_VALID says a served call's caller is gone, nothing more is written to its
tid in that call, even after a copy that swallowed the failed read's ESRCH (a batch's
copy-out reads a snapshot and falls back to copying group by group): the tid may name
another image now (an exec in another thread: test_exec_race.py)."""
import ctypes
import os

import pytest

from bpfemu.errors import BpfError
from bpfemu.intercept import task
from bpfemu.usercopy import copy_runs_to_user


class _Files:
    def task_view(self, tid):
        return type("View", (), {})()


def test_no_write_after_the_caller_is_seen_gone(monkeypatch):
    caller = task.Caller(-1, _Files())
    caller.switch(os.getpid(), 1)           # this process stands for the caller's memory
    alive = [True]

    def id_valid_ioctl(fd, request, buf, mutate):
        if not alive[0]:
            raise OSError(2, "No such file or directory")
        return 0
    monkeypatch.setattr(task, "_ioctl", id_valid_ioctl)
    keys = ctypes.create_string_buffer(b"\x11" * 8, 8)
    values = ctypes.create_string_buffer(b"\x22" * 8, 8)
    ka, va = ctypes.addressof(keys), ctypes.addressof(values)
    assert caller.mem.read(ka, 8) == b"\x11" * 8      # checked once: alive
    alive[0] = False
    with pytest.raises(BpfError):
        caller.mem.read(ka, 8)
    with pytest.raises(BpfError):
        copy_runs_to_user(caller.mem, ka, b"K" * 8, va, b"V" * 8,
                          lambda: ([b"K" * 8], [b"V" * 8]))
    assert (keys.raw, values.raw) == (b"\x11" * 8, b"\x22" * 8)
