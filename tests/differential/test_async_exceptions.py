"""A bpf() call is atomic with respect to exceptions that are not signals (bpfemu/undo.py).

A trace function raises an exception at the k-th line the emulator executes in a call, for
every k the call has (until the call completes without one); a profile function raises one
right after the k-th C call the emulator makes returns (where a signal's handler runs
mid-line, before the result is used); PyThreadState_SetAsyncExc
injects one from another thread at random moments. Either way the call must have had its
whole effect or none (the map contents, fds, ids and pins of an emulator that made the call
whole, or of one that never made it), the lock must be free, and the emulator must go on
behaving like the reference: fill every map to capacity, walk it, empty it.
"""
import ctypes
import os
import random
import struct
import sys
import tempfile
import threading
import time
import zlib

import pytest

import bpfemu
from bpfemu import Emulator
from bpfemu.maps.lru import bpf_lru_dump
from bpfemu.uapi import consts as c
from tests.support import NCPU, Client, Stop, stop_at_c_return, stop_at_line
from tests.differential.abi_support import get_fd_by_id, map_id, obj_get, pin
from tests.differential.test_interrupts import CASES as INTERRUPTED_CASES
from tests.differential.test_interrupts import (ARRAY, HASH, LRU_HASH, PERCPU_HASH, Scenario,
                                                batch_call, close_call, create_call, elem_call,
                                                follow_up, k32, lock_is_free, snapshot)

PKG = os.path.dirname(bpfemu.__file__)
LRU_PERCPU_HASH, PERCPU_ARRAY = c.BPF_MAP_TYPE_LRU_PERCPU_HASH, c.BPF_MAP_TYPE_PERCPU_ARRAY
NO_COMMON_LRU, NO_PREALLOC = c.BPF_F_NO_COMMON_LRU, c.BPF_F_NO_PREALLOC
U, D = c.BPF_MAP_UPDATE_ELEM, c.BPF_MAP_DELETE_ELEM
V = b"\x77" * 8
VP = V * NCPU
MAX_POINTS = 4000          # the long run: every line of a call up to this many
FIRST_POINTS = 25          # the default run: these first lines of a call, then
SAMPLED_POINTS = 20         # about this many more spread over the rest of it


def pin_call(emu, cl, fd):
    path = os.path.join(emu.bpffs.root, "m")
    return lambda: pin(emu, fd, path)


def get_call(emu, cl, fd):
    path = os.path.join(emu.bpffs.root, "g")
    assert pin(emu, fd, path) == 0
    return lambda: obj_get(emu, path)


def get_fd_by_id_call(emu, cl, fd):
    mid = map_id(emu, fd)
    return lambda: get_fd_by_id(emu, mid)


def close_pinned_call(emu, cl, fd):
    assert pin(emu, fd, os.path.join(emu.bpffs.root, "p")) == 0
    return lambda: emu.close(fd)


class FilledThenDeleted(Scenario):
    """A map filled with keys 0..fill-1, then the keys in `deleted` deleted: their elements
    are on the free list, for the next inserts to reuse."""

    def __init__(self, map_type, max_entries, fill, deleted, flags=0):
        super().__init__(map_type, max_entries, fill, flags)
        self.deleted = deleted

    def setup(self, emu):
        cl, fd = super().setup(emu)
        for k in self.deleted:
            assert cl.delete(fd, k32(k)) == 0
        return cl, fd


class FilledThenReplaced(Scenario):
    """A map filled, then the keys in `replaced` updated again: an LRU map's replaced keys
    get new nodes with their ref bit set (what a program's lookups set), which a refill's
    flush and a delete from the lists must keep or give back exactly."""

    def __init__(self, map_type, max_entries, fill, replaced, flags=0):
        super().__init__(map_type, max_entries, fill, flags)
        self.replaced = replaced

    def setup(self, emu):
        cl, fd = super().setup(emu)
        value = b"\2" * (8 * NCPU if self.map_type == LRU_PERCPU_HASH else 8)
        for k in self.replaced:
            assert cl.update(fd, k32(k), value) == 0
        return cl, fd


class FilledOnCpu1ThenDeleted(FilledThenDeleted):
    """FilledThenDeleted with the fill and the deletes on CPU 1, the call then on CPU 0: the
    deleted nodes reach CPU 0's local free list with their cpu field still 1, which the
    bulk pop overwrites (and its inverse must give back)."""

    def setup(self, emu):
        emu.cpu = 1
        try:
            return super().setup(emu)
        finally:
            emu.cpu = 0


class LinkedThenChanged(Scenario):
    """A map filled and walked once (its elements listed), then the keys in `replaced`
    updated again (a preallocated HASH map's first replace makes the old element this CPU's
    spare) and those in `added` inserted (waiting to be linked): a replace of a listed key
    then takes the spare while other elements wait, and links it on its own."""

    def __init__(self, map_type, max_entries, fill, replaced, added, flags=0):
        super().__init__(map_type, max_entries, fill, flags)
        self.replaced, self.added = replaced, added

    def setup(self, emu):
        cl, fd = super().setup(emu)
        assert cl.next_key(fd, None, 4)[0] == 0
        for k in self.replaced + self.added:
            assert cl.update(fd, k32(k), b"\2" * 8) == 0
        return cl, fd


class FilledAndLinked(Scenario):
    """A map filled, then walked once: its elements are in their bucket lists (the columnar
    store links new elements only when something reads the buckets)."""

    def setup(self, emu):
        cl, fd = super().setup(emu)
        assert cl.next_key(fd, None, 4)[0] == 0
        return cl, fd


class FilledAndBatchOrdered(Scenario):
    """A map filled (its elements all wait to be linked), then a LOOKUP_BATCH of a few:
    the columnar store has the waiting elements' batch order made."""

    def setup(self, emu):
        cl, fd = super().setup(emu)
        batch_call(c.BPF_MAP_LOOKUP_BATCH, [], [], 10)(emu, cl, fd)()
        return cl, fd


# The calls test_interrupts.py stops with a signal, and more: every map type, both update
# paths, the object commands.
CASES = {name: INTERRUPTED_CASES[name] for name in (
    "update-new", "update-replace", "update-pinned-new", "update-lru-evicts", "update-array",
    "delete", "delete-pinned-decoded", "delete-lru", "lookup-and-delete", "update-batch",
    "delete-batch", "lookup-and-delete-batch", "lookup-and-delete-batch-lru", "create",
    "close")}
CASES.update({
    "update-replace-decoded": (Scenario(HASH, 8, 4), elem_call(U, k32(2), V, repeat=2)),
    "update-noprealloc-replace": (Scenario(HASH, 8, 4, NO_PREALLOC), elem_call(U, k32(1), V)),
    "update-percpu-new": (Scenario(PERCPU_HASH, 8, 4), elem_call(U, k32(9), VP)),
    "update-percpu-replace": (Scenario(PERCPU_HASH, 8, 4), elem_call(U, k32(1), VP)),
    "update-lru-new": (Scenario(LRU_HASH, 16, 3), elem_call(U, k32(9), V)),
    "update-lru-replace": (Scenario(LRU_HASH, 16, 6), elem_call(U, k32(2), V)),
    "update-lru-percpu-lists": (Scenario(LRU_HASH, 8, 8, NO_COMMON_LRU),
                                elem_call(U, k32(50), V)),
    "update-lru-percpu-value": (Scenario(LRU_PERCPU_HASH, 8, 4), elem_call(U, k32(2), VP)),
    "update-lru-percpu-new": (Scenario(LRU_PERCPU_HASH, 8, 4), elem_call(U, k32(9), VP)),
    "update-percpu-array": (Scenario(PERCPU_ARRAY, 8, 0), elem_call(U, k32(3), VP)),
    "delete-percpu": (Scenario(PERCPU_HASH, 8, 6), elem_call(D, k32(2))),
    # Key 5: CPU 0 owns 4 nodes, and the per-CPU shrink evicted keys 0-3 during the fill.
    "delete-lru-percpu": (Scenario(LRU_PERCPU_HASH, 8, 6, NO_COMMON_LRU), elem_call(D, k32(5))),
    "update-batch-array": (Scenario(ARRAY, 8, 0), batch_call(c.BPF_MAP_UPDATE_BATCH,
                                                             [k32(i) for i in (5, 1, 6)],
                                                             [V] * 3, 3)),
    # The batch commands' bulk store operations (one undo entry each): a contiguous array
    # run, new per-CPU keys, LRU nodes given back, a link of 20 pending elements in one go.
    "update-batch-array-run": (Scenario(ARRAY, 8, 0), batch_call(c.BPF_MAP_UPDATE_BATCH,
                                                                 [k32(i) for i in (2, 3, 4)],
                                                                 [V] * 3, 3)),
    "update-batch-percpu-new": (Scenario(PERCPU_HASH, 8, 2),
                                batch_call(c.BPF_MAP_UPDATE_BATCH, [k32(i) for i in (3, 4, 1)],
                                           [VP] * 3, 3)),
    "delete-batch-lru": (Scenario(LRU_HASH, 8, 6), batch_call(c.BPF_MAP_DELETE_BATCH,
                                                              [k32(i) for i in (4, 5, 4)], [], 3)),
    # LRU runs in bulk (a 64-entry map refills 16 nodes at a time): 2 nodes popped in bulk,
    # a refill through the element op, 2 more in bulk; nodes given back from CPU 0's pending
    # list (keys 18, 19) and from the global lists (3, 4) in one bulk operation.
    "update-batch-lru-bulk": (Scenario(LRU_HASH, 64, 14),
                              batch_call(c.BPF_MAP_UPDATE_BATCH, [k32(i) for i in range(20, 25)],
                                         [V] * 5, 5)),
    "update-batch-lru-percpu-bulk": (Scenario(LRU_PERCPU_HASH, 64, 14),
                                     batch_call(c.BPF_MAP_UPDATE_BATCH,
                                                [k32(i) for i in range(20, 25)], [VP] * 5, 5)),
    "delete-batch-lru-bulk": (Scenario(LRU_HASH, 64, 20),
                              batch_call(c.BPF_MAP_DELETE_BATCH, [k32(i) for i in (19, 18, 3, 4)],
                                         [], 4)),
    "delete-batch-lru-listed": (Scenario(LRU_HASH, 64, 20),
                                batch_call(c.BPF_MAP_DELETE_BATCH, [k32(i) for i in (2, 9, 5)],
                                           [], 3)),
    # Nodes with their ref bit set (replaced keys): a refill that flushes them and evicts,
    # and a delete of listed per-CPU-value nodes (review: no case had a ref bit set, so
    # the inverses' ref restores were never checked).
    "update-batch-lru-flush-ref": (FilledThenReplaced(LRU_HASH, 32, 32, (30, 31, 29, 5)),
                                   batch_call(c.BPF_MAP_UPDATE_BATCH,
                                              [k32(i) for i in range(100, 106)], [V] * 6, 6)),
    "delete-batch-lru-percpu-listed-ref": (FilledThenReplaced(LRU_PERCPU_HASH, 64, 60, (10, 13)),
                                           batch_call(c.BPF_MAP_DELETE_BATCH,
                                                      [k32(i) for i in (10, 13, 14)], [], 3)),
    "update-batch-lru-nodes-of-cpu1": (FilledOnCpu1ThenDeleted(LRU_HASH, 64, 20, (0, 1, 2, 3)),
                                       batch_call(c.BPF_MAP_UPDATE_BATCH,
                                                  [k32(i) for i in range(100, 106)], [V] * 6,
                                                  6)),
    "update-batch-reuse": (FilledThenDeleted(HASH, 8, 6, (1, 4, 2)),
                           batch_call(c.BPF_MAP_UPDATE_BATCH, [k32(i) for i in (7, 8, 9, 10)],
                                      [V] * 4, 4)),
    "delete-batch-linked": (FilledAndLinked(HASH, 4, 4),
                            batch_call(c.BPF_MAP_DELETE_BATCH, [k32(i) for i in (2, 0, 3, 1, 7)],
                                       [], 5)),
    "update-replace-spare-listed": (LinkedThenChanged(HASH, 8, 4, (0,), (6,)),
                                    elem_call(U, k32(2), V)),
    "lookup-and-delete-batch-20": (Scenario(HASH, 32, 20),
                                       batch_call(c.BPF_MAP_LOOKUP_AND_DELETE_BATCH, [], [], 12)),
    # More than 64 elements, all waiting: LOOKUP_AND_DELETE_BATCH takes them from their
    # batch order without linking them (htab_columns._unlink_pending_run).
    "lookup-and-delete-batch-pending": (Scenario(HASH, 128, 100),
                                        batch_call(c.BPF_MAP_LOOKUP_AND_DELETE_BATCH, [], [], 40)),
    "lookup-and-delete-batch-ordered": (FilledAndBatchOrdered(LRU_HASH, 128, 90),
                                        batch_call(c.BPF_MAP_LOOKUP_AND_DELETE_BATCH, [], [], 30)),
    "close-array": (Scenario(ARRAY, 8, 0), close_call),
    "close-pinned": (Scenario(HASH, 8, 3), close_pinned_call),
    "pin": (Scenario(HASH, 8, 3), pin_call),
    "obj-get": (Scenario(HASH, 8, 3), get_call),
    "get-fd-by-id": (Scenario(HASH, 8, 3), get_fd_by_id_call),
})
STORES = ("columnar", "simple")


def lru_lists(emu):
    """Every LRU map's lists, counters, cursors and ref bits: a rollback restores them
    exactly, even where the follow-up could not tell."""
    out = []
    for fd in sorted(emu.fds.files):
        lru = getattr(emu.map_of(fd), "lru", None)
        if lru is not None:
            out.append((bpf_lru_dump(lru), bytes(lru.ref), bytes(lru.type), list(lru.cpu)))
    return out


def replace_each(emu):
    """Replace every key of every hash map twice, then read every value: an element left
    behind as a CPU's spare while still linked (a spare swap not undone) is handed out again
    by a replace, and another key's value or link changes."""
    cl = Client(emu)
    out = []
    for fd in sorted(emu.fds.files):
        m = emu.map_of(fd)
        if not hasattr(m, "store"):
            continue
        vs = m.value_size_sys
        keys = cl.keys(fd, 4)
        for round_ in (1, 2):
            out.append([cl.update(fd, k, bytes([round_]) + k + bytes(vs - 5)) for k in keys])
        out.append([cl.lookup(fd, k, vs) for k in cl.keys(fd, 4)])
    return out


def state(emu):
    """snapshot() and follow_up() of test_interrupts, the pins and the LRU lists, as a caller
    sees them: a close() stopped after its os.close() is rolled back with the fd in the table,
    and the next call's reap drops it (the fd is closed for real: close(2) cannot be undone).
    replace_each() before the follow-up, which empties the maps."""
    emu.reap_closed_fds()
    return (snapshot(emu), sorted(emu.bpffs.listdir()), lru_lists(emu), replace_each(emu),
            follow_up(emu))


def run_case(name, store, k, bpffs, stop_at=stop_at_line):
    """Run case name on a new emulator, stopped at its k-th line (or, with stop_at_c_return,
    at the return of its k-th C call) (None: never; 0: do not make the call). (result or
    "stopped", points seen, emulator)."""
    scenario, make_call = CASES[name]
    emu = Emulator(nr_cpus=NCPU, seed=11, store=store, bpffs_root=bpffs)
    cl, fd = scenario.setup(emu)
    call = make_call(emu, cl, fd)
    if k == 0:
        return None, 0, emu
    result, seen = stop_at(k, call)
    return result, seen, emu


@pytest.fixture
def bpffs():
    """The emulator's bpffs is its own (in memory), rooted at a directory of ours."""
    d = tempfile.mkdtemp(prefix="bpfemu-undo-")
    yield d
    os.rmdir(d)


def _outcomes(name, store, bpffs, stop_at=stop_at_line):
    _, _, before = run_case(name, store, 0, bpffs)
    not_at_all = state(before)
    before.close_all()
    result, points, ref = run_case(name, store, None, bpffs, stop_at)
    whole = state(ref)
    ref.close_all()
    return not_at_all, result, whole, points


def sampled_points(name, store, points, first_points=FIRST_POINTS, sampled=SAMPLED_POINTS):
    """The default run's stopping points: the first FIRST_POINTS (the entry, the lock, the
    journal's MARK), then about SAMPLED_POINTS more at a stride over the whole call, from an
    offset fixed per case so that the cases together cover different points."""
    first = list(range(1, min(points, first_points) + 1))
    rest = points - len(first)
    if rest <= 0:
        return first
    stride = max(1, rest // sampled)
    offset = zlib.crc32(f"{name}/{store}".encode()) % stride
    return first + list(range(len(first) + 1 + offset, points + 1, stride))


def check_stops(name, store, bpffs, exhaustive, stop_at=stop_at_line, first=FIRST_POINTS,
                sampled=SAMPLED_POINTS):
    not_at_all, result, whole, points = _outcomes(name, store, bpffs, stop_at)
    assert points > 10 and not_at_all != whole
    ks = (range(1, min(points, MAX_POINTS) + 1) if exhaustive
          else sampled_points(name, store, points, first, sampled))
    bad = []
    undone = 0
    for k in ks:
        got, _, emu = run_case(name, store, k, bpffs, stop_at)
        if not lock_is_free(emu):
            bad.append((k, "lock held"))
            continue
        seen = state(emu)
        if got == "stopped" and seen == not_at_all:
            undone += 1
        elif not (got in (result, "stopped") and seen == whole):
            bad.append((k, got, result, seen[:2], whole[:2]))
        emu.close_all()
    assert bad == []
    # Many stops land before the call is whole (a close() is whole from its os.close() on,
    # about half-way through it).
    assert undone > len(ks) // 4


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("name", list(CASES))
def test_call_stopped_at_sampled_lines_is_whole_or_undone(name, store, bpffs):
    """The default run: ~FIRST_POINTS + SAMPLED_POINTS stopping lines a case."""
    check_stops(name, store, bpffs, exhaustive=False)


@pytest.mark.long
@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("name", list(CASES))
def test_call_stopped_at_any_line_is_whole_or_undone(name, store, bpffs):
    """Every line up to MAX_POINTS (minutes: scripts/long-tests)."""
    check_stops(name, store, bpffs, exhaustive=True)


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("name", list(CASES))
def test_call_stopped_after_sampled_c_calls_is_whole_or_undone(name, store, bpffs):
    """A stop where a signal's handler runs mid-line: right after a C call returns, its
    result not yet used (tests.support.stop_at_c_return). A call makes 11-200 C calls;
    the default run stops after the first 8 and about 8 more spread over the rest."""
    check_stops(name, store, bpffs, exhaustive=False, stop_at=stop_at_c_return, first=8,
                sampled=8)


@pytest.mark.long
@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("name", list(CASES))
def test_call_stopped_after_any_c_call_is_whole_or_undone(name, store, bpffs):
    """After every C call of the call, up to MAX_POINTS."""
    check_stops(name, store, bpffs, exhaustive=True, stop_at=stop_at_c_return)


def test_stop_at_any_line_leaves_the_inode_watchers_lock_free(bpffs):
    """The inotify watcher's lock (fdtable._InodeWatcher) is process-wide: a stop that skipped
    its release (Python 3.11 traces the line of a with statement's __exit__ call, outside the
    handler) hung every later map create of the process."""
    from bpfemu.fdtable import _WATCHER
    *_, points = _outcomes("close", "simple", bpffs)
    for k in range(1, points + 1):
        _, _, emu = run_case("close", "simple", k, bpffs)
        assert not _WATCHER.lock.locked(), k
        emu.close_all()


def _async_raise(thread_id: int, exc) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc))


@pytest.mark.parametrize("name", ["update-new", "update-replace", "update-lru-evicts",
                                  "update-lru-percpu-lists", "delete-lru", "update-batch",
                                  "lookup-and-delete-batch-lru", "create", "close", "pin",
                                  "get-fd-by-id"])
def test_async_exception_at_random_moments(name, bpffs):
    """PyThreadState_SetAsyncExc from another thread, after a random delay into the call."""
    not_at_all, result, whole, _ = _outcomes(name, "columnar", bpffs)
    rng = random.Random(name)
    # How long the call takes, to spread the injections over it.
    _, _, emu = run_case(name, "columnar", 0, bpffs)
    t0 = time.perf_counter()
    CASES[name][1](emu, Client(emu), min(emu.fds.files))()
    span = time.perf_counter() - t0
    emu.close_all()
    bad = []
    outcomes = {"whole": 0, "undone": 0}
    # The injector needs the GIL to inject: with the default 5 ms switch interval the call
    # (tens of microseconds) is over before it gets it, and nothing lands inside a call.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        _inject_trials(name, rng, span, result, whole, not_at_all, bpffs, bad, outcomes)
    finally:
        sys.setswitchinterval(interval)
    assert bad == [], outcomes


def _inject_trials(name, rng, span, result, whole, not_at_all, bpffs, bad, outcomes):
    for trial in range(60):
        _, _, emu = run_case(name, "columnar", 0, bpffs)
        fd = min(emu.fds.files)
        call = CASES[name][1](emu, Client(emu), fd) if name != "create" else None
        if call is None:
            call = CASES[name][1](emu, Client(emu), fd)
        me = threading.get_ident()
        delay = rng.uniform(0, span * 1.5)
        go = threading.Event()

        def inject():
            go.wait()
            end = time.perf_counter() + delay   # a spin: time.sleep() outlasts the call
            while time.perf_counter() < end:
                pass
            _async_raise(me, Stop)

        t = threading.Thread(target=inject)
        t.start()
        got = "stopped"
        try:
            go.set()
            got = call()
            while t.is_alive():                 # the exception may still come: take it
                time.sleep(0.0005)
            time.sleep(0.001)
        except Stop:
            pass
        t.join()
        if not lock_is_free(emu):
            bad.append((trial, "lock held"))
            continue
        seen = state(emu)
        if seen == whole and got in (result, "stopped"):
            outcomes["whole"] += 1
        elif seen == not_at_all and got == "stopped":
            outcomes["undone"] += 1
        else:
            bad.append((trial, got, seen[:2]))
        emu.close_all()
