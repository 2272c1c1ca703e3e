"""FdTable without inotify: the /proc/self/fd scan that replaces the inode watches.

The watched path is covered by tests/differential/test_fdtable.py against the live kernel;
these force the fallback (no inotify instance left, or a forked child's old watches) and
check the same kernel behaviour: a dup() keeps the description, and so the map, alive.
"""
import os

import pytest

from bpfemu import fdtable
from bpfemu.fdtable import FMODE_RDWR, FdTable


@pytest.fixture
def table(monkeypatch):
    monkeypatch.setattr(fdtable._WATCHER, "add", lambda table, fd: None)
    t = FdTable()
    yield t
    for fd in list(t.files):
        if fd in t.files:
            t.close(fd)


def test_last_fd_releases(table):
    obj = object()
    fd = table.install(obj, FMODE_RDWR)
    assert table.lookup(fd).obj is obj
    released = table.close(fd)
    assert [f.obj for f in released] == [obj]
    assert fd not in table.files


def test_unseen_dup_keeps_the_description(table):
    obj = object()
    fd = table.install(obj, FMODE_RDWR)
    d = os.dup(fd)
    assert table.close(fd) == []                  # found by the scan, adopted
    assert table.lookup(d).obj is obj
    assert [f.obj for f in table.close(d)] == [obj]


def test_close_of_an_unknown_dup_counts(table):
    obj = object()
    fd = table.install(obj, FMODE_RDWR)
    d = os.dup(fd)
    assert table.close(d) == []                   # the original is still open
    assert [f.obj for f in table.close(fd)] == [obj]
