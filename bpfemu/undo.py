"""The undo journal: a call stopped half-way by an exception is rolled back whole.

Python can raise an exception at almost any line of a call: one injected into the thread
with PyThreadState_SetAsyncExc, one raised by a trace function (sys.settrace), a
MemoryError from any allocation. Signals are deferred to the end of the call
(interrupts.py); these cannot be. So every change a call makes to emulator state is
journaled first: before a store, the LRU lists or the fd table change anything, they
append its inverse to ``emu.undo`` (a plain list of ``(function, *arguments)`` tuples).
The entry (syscall.__sys_bpf, the decoded calls of fastpath.py, Emulator.close) starts a
call with a MARK in the journal and empties the journal when the call ends, whether it
succeeded or failed with a BpfError (a kernel-shaped failure leaves exactly the state the
kernel's would); on any other exception it calls ``undo_call``: the inverses run newest
first, down to the MARK, and the state is the one before the call. An exception can even
land in the line that would start the rollback: then the MARK is still in the journal when
the next call starts, and that call rolls the stopped one back first. (Map operations
called directly, outside bpf(), journal with no MARK: their entries are dropped.)

Each inverse restores recorded values ("this slot's bytes were b'...'", "this list had n
items, the top one l"), so running it twice is harmless: an exception that lands in the
rollback itself just makes the rollback go on from the entry it stopped at.

The frames that hold the lock and run the rollback (the entry's, ``atomic``) turn their own
line events off when a trace function is set (frame.f_trace = None): Python 3.11 does not
cover every instruction of a ``with`` or ``try`` statement with its handler (the ``try:``
line, the call of ``__exit__``), so an exception a trace function raised there would skip
the lock's release. Lines of the functions they call are traced as usual. Exceptions
injected with PyThreadState_SetAsyncExc land only where the interpreter checks for them
(after a call, at a backward jump), all of them covered.

The lock: the entry takes the emulator's lock in a ``try`` of its own (``lock.acquire(False)``,
and if another thread holds it, ``wait_turn`` then ``lock.acquire()``), then runs the call in
the ``try`` whose ``finally`` releases it (a ``with`` statement costs more: it looks up and
binds ``__enter__`` and ``__exit__`` at every call). Two kinds of exception can come out of
the first ``try``: one injected, which Python delivers after an ``acquire`` returns, the lock
taken; and one a signal handler raises while the thread waits (in ``wait_turn`` or
``acquire()``: a Ctrl-C while another thread holds the lock), the lock not taken. Its handler
tells them apart by asking the lock whether this thread holds it, lets go of it in the first
case, and re-raises: either way nothing of the call has run, and nothing is rolled back (the
journal may hold the entries of the thread that holds the lock). Nothing between the two
``try`` statements checks for injected exceptions (only calls and backward jumps do), and the
frame's line events are off under a trace function.

Writes to the caller's memory are not journaled: a call that raised has no outputs the
caller may rely on. Neither are the caches that only speed things up and are rebuilt on
demand (decoded calls are forgotten on rollback).
"""
import os
from sys import _getframe, gettrace as _gettrace

from .emu_lock import wait_turn
from .errors import BpfError


# The journal's first entry in a call: where the call's changes begin.
MARK = ("MARK",)


def rollback(undo: list) -> None:
    """Undo the journal's entries, newest first, down to the MARK (taken off too), even if
    exceptions land in the middle; re-raises nothing (the caller re-raises the exception
    that stopped the call). An entry whose inverse fails three times in a row (not an
    interruption: a bug) is dropped."""
    tries = 0
    while undo:
        try:
            while undo:
                entry = undo[-1]
                if entry is MARK:
                    del undo[-1]
                    return
                entry[0](*entry[1:])
                del undo[-1]
                tries = 0
        except BaseException:           # noqa: B036 - interrupted again: go on undoing
            tries += 1
            if tries >= 3 and undo:
                del undo[-1]
                tries = 0


# --- inverses shared by the stores (each idempotent) -----------------------------------------

def restore_len(lst: list, n: int) -> None:
    """The inverse of appends: lst had n items."""
    del lst[n:]


def restore_top(lst: list, n: int, top) -> None:
    """The inverse of a pop: lst had n + 1 items, the last one top."""
    del lst[n:]
    lst.append(top)


def restore_item(seq, i, old) -> None:
    """The inverse of seq[i] = ...: a list, an array, or a dict key that was there."""
    seq[i] = old


def restore_absent(d: dict, key) -> None:
    """The inverse of d[key] = ... for a key that was not there."""
    d.pop(key, None)


def restore_bytes(view, start: int, old: bytes) -> None:
    """The inverse of a write into a memoryview: its old bytes from start."""
    view[start:start + len(old)] = old


def restore_attr(obj, name: str, old) -> None:
    setattr(obj, name, old)


class _NoJournal(list):
    """The journal of a store made outside an emulator (unit tests): keeps nothing."""
    __slots__ = ()

    def append(self, entry) -> None:
        pass


NO_JOURNAL = _NoJournal()



# --- the object state: fds, ids, references, pins ----------------------------------------------
#
# Commands other than the element and batch commands (create, close, pin, get, the by-id
# commands, BTF and program loads) change the objects rather than their contents. Their
# state is small (one entry per fd, id and pin), so such a call journals all of it at once,
# before the handler runs, instead of at each change.

def object_state(emu) -> tuple:
    """An undo entry that puts the fd tables, the id spaces, the objects' reference counts
    and the pins back as they are now."""
    tables = []
    for t in [emu.fds] + [t for t in emu.fd_tables if t is not emu.fds]:
        if not (hasattr(t, "files") and hasattr(t, "_by_key")):
            continue        # a supervised task's table (intercept/files.py): its fds are the child's
        descs = [(f, set(f.fds), f.watch) for f in t._by_key.values()]
        tables.append((t, t.files.copy(), t.others.copy(), t._by_key.copy(), t._by_wd.copy(),
                       t._dead_wds[:], t._orphans[:], descs))
    idrs = []
    refs = []
    for idr in (emu.map_idr, emu.btf_idr, emu.prog_idr):
        idrs.append((idr, idr.objs.copy(), idr.next))
        refs += [(o, o.refcnt) for o in idr.objs.values()]
    dirs = []
    todo = [emu.bpffs.top]
    while todo:
        d = todo.pop()
        entries = getattr(d, "entries", None)
        if entries is not None:
            dirs.append((entries, entries.copy()))
            todo += entries.values()
    return (_restore_objects, tables, idrs, refs, dirs)


def _restore_objects(tables, idrs, refs, dirs) -> None:
    for t, files, others, by_key, by_wd, dead_wds, orphans, descs in tables:
        t.files.clear()
        t.files.update(files)
        t.others.clear()
        t.others.update(others)
        t._by_key.clear()
        t._by_key.update(by_key)
        t._by_wd.clear()
        t._by_wd.update(by_wd)
        t._dead_wds[:] = dead_wds
        t._orphans = orphans[:]
        for f, fds, watch in descs:
            f.fds.clear()
            f.fds.update(fds)
            f.watch = watch
        # The inotify events the call consumed are gone: the next reap() checks every
        # description's fds instead, so one whose last fd died meanwhile is released.
        t._overflowed = True
    for idr, objs, nxt in idrs:
        idr.objs.clear()
        idr.objs.update(objs)
        idr.next = nxt
    for o, refcnt in refs:
        o.refcnt = refcnt
    for entries, saved in dirs:
        entries.clear()
        entries.update(saved)


def close_new_fds(made: list) -> None:
    """The inverse of the fds made by the call (FdTable.install), each closed once."""
    while made:
        try:
            os.close(made.pop())
        except OSError:
            pass


def undo_call(emu) -> None:
    """Roll back the call that has been stopped (the entries down to its MARK; what is
    journaled before a MARK was done outside any call, and stays), empty the journal, and
    forget the decoded calls (an fd table put back may not be the one they were decoded
    against)."""
    undo = emu.undo
    if any(entry is MARK for entry in undo):
        rollback(undo)
    undo.clear()
    emu.forget_decoded_calls()


def _lock_is_mine(lock) -> bool:
    owned = getattr(lock, "_is_mine", None) or lock._is_owned      # SemLock / RLock
    return owned()


def atomic(emu, fn, *args, objects: bool = False):
    """fn(*args) as one call of its own under the emulator's lock (Emulator.close, the
    program side's map operations): rolled back whole if anything but a BpfError stops it.
    objects=True journals the object state first. Inside a call (the lock held already)
    it is part of that call: the outer call rolls back or keeps both."""
    lock = emu.lock
    if _lock_is_mine(lock):
        return fn(*args)
    if _gettrace() is not None:
        _getframe().f_trace = None          # no line events here: see the module's docstring
    undo = emu.undo
    try:
        if not lock.acquire(False):     # held: wait for it with the GIL (emu_lock.py)
            wait_turn(lock)
            lock.acquire()
    except BaseException:                   # see undo.py, "The lock"
        if lock._is_mine():
            lock.release()
        raise
    try:
        if undo:
            undo_call(emu)          # left by a call stopped where it could not roll back
        undo.append(MARK)
        if objects:
            undo.append(object_state(emu))
        ret = fn(*args)
        undo.clear()
        return ret
    except BpfError:
        undo.clear()
        raise
    except BaseException:           # noqa: B036 - whatever stops it, the call is undone
        undo_call(emu)
        raise
    finally:
        lock.release()
