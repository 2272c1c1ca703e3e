"""The emulator's lock: a recursive mutex that costs little to take.

Every call but a decoded lookup takes it once, so its cost counts (the README's speed
section has the figures): ``RLock.acquire()`` parses its arguments with
PyArg_ParseTupleAndKeywords and reads the monotonic clock every time.
``_multiprocessing.SemLock``, the standard library's recursive mutex on a POSIX semaphore,
takes its arguments through Argument Clinic, at about half the cost. An uncontended acquire is an atomic sem_trywait(); a contended one waits in sem_wait() with
the GIL released, as an RLock does.

The semaphore is named (sem_open) because SemLock has no other kind; the name is unlinked at
once, so nothing is left in /dev/shm. Its memory is shared with a child made by fork(), and
the child's emulators are copies of their own, so the child gets new locks
(``os.register_at_fork``). Before the fork, the forking thread takes every emulator's lock,
so that no other thread is half-way through a call when the child's copy is made. Where
SemLock cannot be made (no _multiprocessing module, or no /dev/shm), the lock is a
threading.RLock: slower, with the same behaviour.

A thread that finds the lock held does not block in it at once: ``wait_turn`` (below) says
why; the callers take the lock as ``if not lock.acquire(False): wait_turn(lock);
lock.acquire()`` (one C call when it is free; undo.py, "The lock", says how an exception in
there is handled), or ``if not lock._get_value(): wait_turn(lock)`` then ``with lock:``.
"""
import _thread
import os
import time

from .weak_registry import WeakRegistry

try:
    from _multiprocessing import SemLock
except ImportError:                                 # a Python built without sem_open()
    SemLock = None

_RECURSIVE_MUTEX = 0                                # multiprocessing.synchronize.RECURSIVE_MUTEX

# Emulators, to be given new locks in a forked child.
_holders = WeakRegistry()


def new_lock():
    """A recursive mutex: acquire(), release(), and the with statement."""
    if SemLock is not None:
        for _ in range(8):
            name = f"/bpfemu-{os.getpid()}-{os.urandom(6).hex()}"
            try:
                return SemLock(_RECURSIVE_MUTEX, 1, 1, name, True)     # True: unlink the name now
            except FileExistsError:
                continue                            # a name another process holds: try another
            except OSError:
                break                               # no /dev/shm here
    return _RLock()


class _RLock(_thread.RLock):
    """threading.RLock, with SemLock's _get_value() as the callers ask it (wait_turn). It
    cannot tell another thread's hold from none, so it says free: such a waiter blocks in
    acquire() as before (convoy and all)."""
    __slots__ = ()

    def _get_value(self) -> int:
        return 1

    _is_mine = _thread.RLock._is_owned      # SemLock's name, as the entries ask it


def track(emu) -> None:
    """Give the emulator a new lock in a child made by fork()."""
    _holders.add(emu)


# Locks taken by _before_fork, given back by _after_fork_in_parent.
_held_at_fork: list = []


def _before_fork() -> None:
    """Wait for every emulator's call in progress to end, and hold the locks across the fork,
    so that the child's copy of each emulator is one between two calls, never one half-way
    through an update. Runs only when the process forks: no call pays for it."""
    for emu in sorted(_holders, key=id):        # one order for every fork, so no deadlock
        lock = emu.lock
        lock.acquire()
        _held_at_fork.append(lock)


def _after_fork_in_parent() -> None:
    while _held_at_fork:
        _held_at_fork.pop().release()


def _after_fork_in_child() -> None:
    # DEVIATION(fork): the child's emulators are copies, so a map changed by the child after
    # the fork is not changed in the parent (nor the other way round); in Linux both hold
    # one map. Sharing would need the maps in shared memory and a lock across processes.
    _held_at_fork.clear()                       # the parent's locks: never released here
    for emu in list(_holders):
        emu.lock = new_lock()
        emu.forget_decoded_calls()              # some hold the old lock (a walk step's)


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


# A thread that finds the lock held waits for it with the GIL in hand (wait_turn) rather than
# in the lock: sleep, then look again, at most _POLLS times, then wait in the lock itself.
_POLL_SLEEP = 1e-6                  # a sleep of the timer's slack (about 50 us): the holder runs
_POLLS = 20


def wait_turn(lock, _sleep=time.sleep) -> None:
    """Wait until no other thread holds lock, without taking it; the caller then takes it.

    Why not just block in acquire(): the lock is released by a thread that goes on running
    with the GIL, and its next acquire comes a few microseconds later. A thread blocked in
    sem_wait() is woken by the release, takes the semaphore at once on the other CPU, then
    waits for the GIL while it holds the lock; the releasing thread's next acquire fails,
    so it blocks in turn and hands the GIL over, and so on: once started, every call costs
    two context switches (a lock convoy; README "Threads"). A thread that waits here instead
    only looks at the lock while it holds the GIL, so the thread that holds the GIL and the
    lock keeps running, and a waiter takes the lock when it finds it free. Called only when
    the lock was seen held (a failed acquire(False), or lock._get_value() == 0): the
    uncontended call pays one C call.
    Nothing is held while it waits, so an exception raised here leaves nothing to undo."""
    if lock._is_mine():
        return                      # a call inside a call: the recursive acquire succeeds
    for _ in range(_POLLS):
        _sleep(_POLL_SLEEP)         # lets go of the GIL, so the holder runs on
        if lock._get_value():
            return
