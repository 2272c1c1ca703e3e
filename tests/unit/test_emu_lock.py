"""The emulator's lock (bpfemu/emu_lock.py): recursive, exclusive between threads, private to
a process after fork(), and a threading.RLock where no SemLock can be made."""
import ctypes
import glob
import os
import struct
import threading
import time

import pytest

from bpfemu import Emulator, emu_lock
from bpfemu.uapi import consts as c


def _exclusion_and_recursion(lock):
    """Returns what another thread saw: could it take the lock while we held it twice, once,
    and after we let go."""
    seen = []

    def other():
        got = lock.acquire(False)
        if got:
            lock.release()
        seen.append(got)

    def look():
        t = threading.Thread(target=other)
        t.start()
        t.join()
    lock.acquire()
    with lock:                                  # recursive: the same thread again
        look()
    look()
    lock.release()
    look()
    return seen


def test_lock_is_recursive_and_excludes_other_threads():
    lock = emu_lock.new_lock()
    assert _exclusion_and_recursion(lock) == [False, False, True]


def test_emulator_lock_is_a_semlock_here():
    """This machine has /dev/shm: the cheap lock is the one in use, and it leaves no name."""
    if emu_lock.SemLock is None or not os.path.isdir("/dev/shm"):
        pytest.skip("no SemLock or no /dev/shm on this machine")
    before = set(glob.glob("/dev/shm/sem.bpfemu-*"))
    emu = Emulator()
    assert type(emu.lock) is emu_lock.SemLock
    assert set(glob.glob("/dev/shm/sem.bpfemu-*")) == before
    emu.close_all()


@pytest.mark.parametrize("how", ["no module", "no /dev/shm"])
def test_without_semlock_the_lock_is_an_rlock(monkeypatch, how):
    if how == "no module":
        monkeypatch.setattr(emu_lock, "SemLock", None)
    else:
        def refuse(*args):
            raise PermissionError(13, "Permission denied")
        monkeypatch.setattr(emu_lock, "SemLock", refuse)
    lock = emu_lock.new_lock()
    assert isinstance(lock, type(threading.RLock()))
    assert _exclusion_and_recursion(lock) == [False, False, True]
    emu = Emulator()
    assert isinstance(emu.lock, type(threading.RLock()))
    attr = ctypes.create_string_buffer(struct.pack("<IIIII", c.BPF_MAP_TYPE_HASH, 4, 8, 4, 0), 168)
    fd = emu.bpf(c.BPF_MAP_CREATE, attr, 168)
    assert fd >= 0 and _update(emu, fd, 1) == 0
    emu.close_all()


def test_a_name_in_use_is_not_taken(monkeypatch):
    """sem_open(O_EXCL) on a name some other process holds: another name, not a failure."""
    real = emu_lock.SemLock
    if real is None:
        pytest.skip("no SemLock")
    tries = []

    def busy_first(kind, value, maxvalue, name, unlink):
        tries.append(name)
        if len(tries) == 1:
            raise FileExistsError(17, "File exists")
        return real(kind, value, maxvalue, name, unlink)
    monkeypatch.setattr(emu_lock, "SemLock", busy_first)
    lock = emu_lock.new_lock()
    assert type(lock) is real and len(tries) == 2 and tries[0] != tries[1]


def _update(emu, fd, key: int) -> int:
    k = ctypes.create_string_buffer(struct.pack("<I", key), 4)
    v = ctypes.create_string_buffer(8)
    attr = ctypes.create_string_buffer(
        struct.pack("<IIQQQ", fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0), 168)
    return emu.bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork()")
def test_forked_child_does_not_wait_for_a_parents_thread():
    """A thread of the parent holds the emulator's lock when the process forks: the child's
    emulator (its own copy) takes its own lock at once, in a checked call and in a decoded
    walk step that locks (a new key waits to be linked). A SemLock's semaphore is shared
    memory: with the old lock the child would wait until the parent's thread let go."""
    emu = Emulator()
    attr = ctypes.create_string_buffer(struct.pack("<IIIII", c.BPF_MAP_TYPE_HASH, 4, 8, 8, 0), 168)
    fd = emu.bpf(c.BPF_MAP_CREATE, attr, 168)
    assert _update(emu, fd, 1) == 0 and _update(emu, fd, 2) == 0
    key, next_key = ctypes.create_string_buffer(4), ctypes.create_string_buffer(4)
    gnk = ctypes.create_string_buffer(
        struct.pack("<IIQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(next_key)), 168)
    emu.mem.pin(key, next_key, gnk)
    struct.pack_into("<I", key, 0, 7)               # a missing key: the first key, twice,
    assert emu.bpf(c.BPF_MAP_GET_NEXT_KEY, gnk, 24) == 0    # so that the step is decoded
    assert emu.bpf(c.BPF_MAP_GET_NEXT_KEY, gnk, 24) == 0
    held, done = threading.Event(), threading.Event()

    let_go_at = []

    def hold():
        # fork() waits for every emulator's call in progress to end (emu_lock._before_fork):
        # the fork below happens once this thread lets go, so the child never copies an
        # emulator half-way through a call.
        with emu.lock:
            held.set()
            done.wait(0.5)
            let_go_at.append(time.monotonic())
    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        pid = os.fork()
        if pid:
            assert let_go_at and time.monotonic() >= let_go_at[0], \
                "fork() went ahead while another thread was in a call"
        if pid == 0:                                # the child: two calls, then out
            ok = False
            try:
                ok = (_update(emu, fd, 3) == 0
                      and emu.bpf(c.BPF_MAP_GET_NEXT_KEY, gnk, 24) == 0)
            finally:
                os._exit(0 if ok else 1)
        deadline = time.monotonic() + 10
        status = None
        while time.monotonic() < deadline:
            wpid, status = os.waitpid(pid, os.WNOHANG)
            if wpid:
                break
            time.sleep(0.01)
        else:
            status = None
    finally:
        done.set()                                  # let the parent's thread go, then reap
        t.join()
    if status is None:
        os.waitpid(pid, 0)
        pytest.fail("the child waited for a lock its parent's thread held")
    assert os.waitstatus_to_exitcode(status) == 0
    assert _update(emu, fd, 4) == 0                 # the parent goes on with its own lock
    emu.mem.unpin(key, next_key, gnk)
    emu.close_all()


def test_a_waiting_call_takes_the_lock_only_with_the_gil(monkeypatch):
    """A call that finds the lock held waits for it with the GIL (emu_lock.wait_turn), not
    blocked in the semaphore: so when the holder lets go and runs on (with the GIL), its next
    call takes the lock again at once instead of finding it taken by a thread that still
    waits for the GIL. The other way, every call of a thread among busy ones cost two
    context switches (a lock convoy: 8 threads ran at a third of one thread's ops/s). Here
    the waiter polls without end (_POLLS raised), the holder lets go, runs 30 ms of Python
    (switch interval 1 s: the waiter cannot get the GIL meanwhile), and takes the lock again."""
    import sys
    monkeypatch.setattr(emu_lock, "_POLLS", 10**9, raising=False)
    emu = Emulator()
    if not hasattr(emu.lock, "_is_mine"):
        pytest.skip("no SemLock: the RLock waits in acquire()")
    attr = ctypes.create_string_buffer(struct.pack("<IIIII", c.BPF_MAP_TYPE_HASH, 4, 8, 8, 0), 168)
    fd = emu.bpf(c.BPF_MAP_CREATE, attr, 168)
    results = []
    old = sys.getswitchinterval()
    # Set first: a thread that starts waiting for the GIL reads the interval then.
    sys.setswitchinterval(1.0)
    emu.lock.acquire()
    t = threading.Thread(target=lambda: results.append(_update(emu, fd, 1)))
    t.start()
    try:
        time.sleep(0.1)                         # the other thread finds the lock held
        emu.lock.release()
        end = time.perf_counter() + 0.03
        while time.perf_counter() < end:        # Python, with the GIL
            pass
        again = emu.lock.acquire(False)
        if again:
            emu.lock.release()
    finally:
        sys.setswitchinterval(old)
        t.join(10)
    assert again, "a waiting thread took the lock while it waited for the GIL"
    assert results == [0]
    emu.close_all()
