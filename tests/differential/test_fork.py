"""fork(): the child's calls reach the child's memory, a busy parent's child never hangs and
never sees a half-done call, and (a DEVIATION) the child's maps are copies of the parent's.
"""
import os
import signal
import struct
import threading
import time

import pytest

from bpfemu import Emulator
from bpfemu.uapi import consts as c
from tests.support import NCPU, Buf, Client

HASH = c.BPF_MAP_TYPE_HASH


def _wait(pid: int, timeout: float = 30.0) -> int:
    """The child's exit status; a child still running after timeout is killed: a hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -999                                 # hung


def _in_child(body, timeout: float = 30.0) -> int:
    """Run body() in a forked child; its exit code (0: body returned True)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if body() else 2
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 3
        finally:
            os._exit(code)
    return _wait(pid, timeout)


def test_child_lookup_writes_the_childs_memory(client):
    fd = client.create(HASH, 4, 8, 4)
    assert client.update(fd, struct.pack("<I", 1), b"\x11" * 8) == 0
    value = Buf(size=8)                         # the same address in parent and child
    key = Buf(struct.pack("<I", 1))

    def child():
        from tests.support import elem_attr
        ret = client.bpf(c.BPF_MAP_LOOKUP_ELEM, elem_attr(fd, key.addr, value.addr), 32)
        return ret == 0 and value.data == b"\x11" * 8

    assert _in_child(child) == 0
    assert value.data == bytes(8)               # the parent's buffer was not written


def test_map_sharing_after_fork(client):
    """In Linux parent and child share one map: the parent sees the child's insert.
    DEVIATION(fork): the emulator's child has a copy, and the parent does not see it."""
    fd = client.create(HASH, 4, 8, 4)
    key = struct.pack("<I", 7)
    assert _in_child(lambda: client.update(fd, key, b"\x22" * 8) == 0) == 0
    ret, _ = client.lookup(fd, key, 8)
    if isinstance(client.b, Emulator):
        assert ret == -2                        # the child's copy changed, not ours
    else:
        assert ret == 0


def _consistent(cl: Client, fd: int, max_entries: int) -> bool:
    """A walk that ends, every key it gives can be looked up, the map can still be updated
    and deleted from: what a map copied half-way through an update could not promise."""
    keys = []
    cur = None
    while True:
        ret, nxt = cl.next_key(fd, cur, 4)
        if ret == -2:
            break
        if ret != 0 or len(keys) > max_entries:
            return False
        keys.append(nxt)
        cur = nxt
    if len(set(keys)) != len(keys):
        return False
    for k in keys:
        if cl.lookup(fd, k, 8)[0] != 0:
            return False
    probe = struct.pack("<I", 0xFFFFFF)
    if keys and cl.delete(fd, keys[0]) != 0:
        return False
    return cl.update(fd, probe, b"\x01" * 8) == 0 and cl.delete(fd, probe) == 0


def test_fork_from_busy_threads_never_hangs_nor_sees_half_a_call():
    emu = Emulator(nr_cpus=NCPU, seed=5)
    cl = Client(emu)
    max_entries = 64
    fd = cl.create(HASH, 4, 8, max_entries)
    stop = threading.Event()

    def churn(i):
        worker = Client(emu)
        n = 0
        while not stop.is_set():
            k = struct.pack("<I", (n * 7 + i) % 200)
            worker.update(fd, k, struct.pack("<Q", n))
            worker.delete(fd, struct.pack("<I", (n * 13 + i) % 200))
            worker.next_key(fd, k, 4)
            n += 1

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        codes = []
        for _ in range(25):
            time.sleep(0.005)
            codes.append(_in_child(lambda: _consistent(cl, fd, max_entries), timeout=20))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert codes == [0] * len(codes)
    assert _consistent(cl, fd, max_entries)
    emu.close_all()


def test_locks_held_by_other_threads_at_fork_are_free_in_the_child():
    """The fd table's inotify lock and an arena's lock, held by another thread when the
    process forks, can be taken in the child."""
    from bpfemu import fdtable, memory
    arena = memory.ArenaMemory()
    held = threading.Event()
    release = threading.Event()

    def hold():
        with fdtable._WATCHER.lock, arena._lock:
            held.set()
            release.wait()

    t = threading.Thread(target=hold)
    t.start()
    held.wait()
    try:
        def child():
            ok = True
            for lock in (fdtable._WATCHER.lock, arena._lock):
                ok = ok and lock.acquire(timeout=5)
                lock.release()
            emu = Emulator()
            cl = Client(emu)
            fd = cl.create(HASH, 4, 8, 4)
            return ok and fd >= 0 and emu.close(fd) == 0
        assert _in_child(child, timeout=10) == 0
    finally:
        release.set()
        t.join()
