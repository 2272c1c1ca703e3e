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
"""
import os
import threading
import weakref

try:
    from _multiprocessing import SemLock
except ImportError:                                 # a Python built without sem_open()
    SemLock = None

_RECURSIVE_MUTEX = 0                                # multiprocessing.synchronize.RECURSIVE_MUTEX

# Emulators, to be given new locks in a forked child.
_holders: "weakref.WeakSet" = weakref.WeakSet()


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
    return threading.RLock()


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
