"""The emulator's lock: a recursive mutex that costs little to take.

Every call but a decoded lookup takes it once, so its cost counts (the README's speed
section has the figures): ``RLock.acquire()`` parses its arguments with
PyArg_ParseTupleAndKeywords and reads the monotonic clock every time.
``_multiprocessing.SemLock``, the standard library's recursive mutex on a POSIX semaphore,
takes its arguments through Argument Clinic, at about half the cost. An uncontended acquire is an atomic sem_trywait(); a contended one waits in sem_wait() with
the GIL released, as an RLock does.

The semaphore is named (sem_open) because SemLock has no other kind; the name is unlinked at
once, so nothing is left in /dev/shm. Its memory is shared with a child made by fork(), and
the child's emulators are copies of their own: a lock held by a thread of the parent at the
fork must be neither waited for nor taken in the child, so the child gets new locks
(``os.register_at_fork``). Where SemLock cannot be made (no _multiprocessing module, or no
/dev/shm), the lock is a threading.RLock: slower, with the same behaviour.
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


def _after_fork_in_child() -> None:
    for emu in list(_holders):
        emu.lock = new_lock()
        emu.forget_decoded_calls()                  # some hold the old lock (a walk step's)


os.register_at_fork(after_in_child=_after_fork_in_child)
