"""The supervisor's own uses of the emulator's lock (statfs, fstatfs, dropping the tree's
files) release it, and put the in-process caller's bpffs view back, whatever line an
exception is raised at. Python 3.11 traces the line of a ``with`` statement's ``__exit__``
call outside its handler (bpfemu/undo.py): a trace function that raised there left the lock
held, and every later call of any thread waited for ever; serve_statfs also set the task's
/proc directory before the try that resets it. A trace function raises at the k-th line the
emulator runs, for every k.
"""
import ctypes
import os

import pytest

from bpfemu import Emulator
from bpfemu.intercept.supervisor import Supervisor
from bpfemu.uapi import consts as c
from tests.support import Client, lock_is_free, stop_at_line


@pytest.fixture
def listener():
    """Any fd will do for what these tests reach (replies are not sent)."""
    fd = os.open(os.devnull, os.O_RDONLY)
    yield fd
    os.close(fd)


def _statfs(sup, emu, env):
    sup.serve_statfs(1, os.getpid(), ctypes.addressof(env["path"]), ctypes.addressof(env["buf"]))


def _fstatfs(sup, emu, env):
    sup.serve_fstatfs(1, os.getpid(), env["file"].fileno(), ctypes.addressof(env["buf"]))


def _close(sup, emu, env):
    sup.close()


def _a_file(emu):
    """An open file of a map, with a reference of its own for the supervisor to drop."""
    fd = Client(emu).create(c.BPF_MAP_TYPE_HASH, 4, 8, 4)
    f = emu.fds.files[fd]
    f.obj.refcnt += 1
    return f


def _reap(sup, emu, env):
    sup.files.reap = lambda: [env["f"]]
    sup.reap()


def _drop(sup, emu, env):
    sup.files.abandon = lambda f: None
    sup._drop(env["f"])


def _stopped(op, k, listener, tmp_path):
    """op on a new supervisor with a Stop at its k-th line: (lines seen, what is wrong)."""
    emu = Emulator(seed=1)
    sup = Supervisor(emu, listener)
    sup._reply = lambda *args: None
    env = {"path": ctypes.create_string_buffer(str(tmp_path).encode() + b"\0"),
           "buf": ctypes.create_string_buffer(256),
           "file": open(tmp_path / "f", "w"), "f": _a_file(emu)}
    _, seen = stop_at_line(k, lambda: op(sup, emu, env))
    env["file"].close()
    wrong = []
    if not lock_is_free(emu.lock):
        wrong.append("lock held")
    if emu.bpffs.proc is not None:
        wrong.append("bpffs left in the task's view")
    try:
        sup.close()                 # its inotify instance (this thread holds any lock left)
    except OSError:
        pass                        # a close() stopped after closing it
    emu.close_all()
    return seen, wrong


@pytest.mark.parametrize("op", [_statfs, _fstatfs, _close, _reap, _drop],
                         ids=["statfs", "fstatfs", "close", "reap", "drop"])
def test_stop_at_any_line_leaves_the_lock_free(op, listener, tmp_path):
    lines, wrong = _stopped(op, None, listener, tmp_path)
    assert wrong == [] and lines >= 2
    bad = []
    for k in range(1, lines + 1):
        _, wrong = _stopped(op, k, listener, tmp_path)
        if wrong:
            bad.append((k, wrong))
    assert bad == []
