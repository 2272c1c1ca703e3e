"""A decoded notified call (Emulator.decoded_as) is one call of its own for the undo journal
(bpfemu/undo.py): an exception other than a BpfError that stops it half-way rolls it back
before the supervised program gets its answer.

ctool churn runs rounds of updates, deletes and updates, each from one attr, so all but the
first two calls of a round are served decoded. One decoded update or delete is made to fail
after its first change to the map (the store's add_head or unlink done, then MemoryError).
Right after that call, before the program sees its ENOMEM, the map must be as on a reference
emulator that never made the call, the journal empty and the lock free; then the program
goes on and sees the map of a kernel where that one call failed.
"""
import ctypes
import struct
import subprocess
import threading
import time

import pytest

from bpfemu import Emulator
from bpfemu import emulator as emulator_module
from bpfemu.errors import EmulatorFault
from bpfemu.intercept.run import Background
from bpfemu.maps.htab_columns import ColumnarStore
from bpfemu.maps.htab_store import SimpleStore
from bpfemu.uapi import consts as c
from tests.support import Client, lock_is_free, Stop

N = 12              # keys a round
FAILING = 7         # the key whose decoded call fails (calls 0 and 1 of a round are checked)
SEED = 5
STORES = {"columnar": ColumnarStore, "simple": SimpleStore}
# The store operation that makes the failing call's change, per command.
CHANGES = {"update": "add_head", "delete": "unlink"}


def _walk(m):
    """The map's elements in walk order, read through its ops (no call, no journal)."""
    out, key = [], None
    while True:
        try:
            key = bytes(m.ops.map_get_next_key(m, key))
        except Exception:           # ENOENT: the walk is over
            return out
        out.append((key, bytes(m.ops.map_lookup_elem_sys(m, key))))


def _reference(store, cmd):
    """The map on an emulator where the failing call was never made."""
    ref = Emulator(seed=SEED, store=store)
    cl = Client(ref)
    fd = cl.create(c.BPF_MAP_TYPE_HASH, 4, 8, N)
    updated = N if cmd == "delete" else FAILING
    for k in range(updated):
        assert cl.update(fd, struct.pack("<I", k), struct.pack("<Q", k)) == 0
    if cmd == "delete":
        for k in range(FAILING):
            assert cl.delete(fd, struct.pack("<I", k)) == 0
    walk = _walk(ref.map_of(fd))
    ref.close_all()
    return walk


@pytest.mark.parametrize("store", list(STORES))
@pytest.mark.parametrize("cmd", list(CHANGES))
def test_decoded_call_stopped_half_way_is_undone(ctool, monkeypatch, store, cmd):
    emu = Emulator(seed=SEED, store=store)
    if emu.decoded_calls is None:
        pytest.skip("decoded calls are off (BPFEMU_DECODED_CALLS=0)")
    want = c.BPF_MAP_UPDATE_ELEM if cmd == "update" else c.BPF_MAP_DELETE_ELEM
    op_name = CHANGES[cmd]
    real_op = getattr(STORES[store], op_name)
    armed = []
    seen = []               # (answer, journal, lock free, walk, raised) right after the call

    def failing_op(self, *args):
        real_op(self, *args)
        if armed:
            armed.clear()
            raise MemoryError("injected: the store ran out of memory after its change")

    monkeypatch.setattr(STORES[store], op_name, failing_op)
    real_decoded_as = emu.decoded_as
    served = []

    def decoded_as(task, call_cmd, run, generation):
        # Keys 0 and 1 of a round go the checked way: the n-th decoded call is key n + 1.
        served.append(call_cmd)
        fail = call_cmd == want and served.count(want) == FAILING - 1
        if fail:
            armed.append(True)
        ret = real_decoded_as(task, call_cmd, run, generation)
        if fail:
            m = next(iter(emu.map_idr.objs.values()))
            seen.append((ret, list(emu.undo), lock_is_free(emu.lock), _walk(m), not armed))
        return ret

    monkeypatch.setattr(emu, "decoded_as", decoded_as)
    with pytest.warns(EmulatorFault, match="injected"):     # the failure is reported
        bg = Background([ctool, "churn", str(N)], emu, stdout=subprocess.PIPE, text=True)
        out = bg.proc.stdout.read()
        bg.proc.stdout.close()
        assert bg.wait(timeout=120) == 0
    assert seen, "the failing call was not served decoded"
    ret, journal, lock_free, walk, raised = seen[0]
    assert raised, "the store operation was not reached"
    assert ret == -12                               # ENOMEM, as our_failure answers it
    assert {"map as if never called": walk == _reference(store, cmd),
            "journal empty": journal == [], "lock free": lock_free} == \
        {"map as if never called": True, "journal empty": True, "lock free": True}
    # The program goes on: the map is the one of a kernel where that one call failed.
    failed = f"{cmd} {FAILING} -1 ENOMEM\n"
    if cmd == "update":
        expected = failed + f"count {N - 1}\ndelete {FAILING} -1 ENOENT\ncount 0\ncount {N}\n"
    else:
        expected = f"count {N}\n" + failed + f"count 1\ncount {N}\n"
    assert out == expected
    assert emu.undo == []
    # The rollback forgot the decoded calls; the next two calls of the round decode again.
    assert bg.supervisor.decoded.served >= 3 * (N - 2) - 2
    emu.close_all()


def _async_raise(thread_id: int, exc) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc))


def test_exception_landing_as_the_decoded_call_takes_the_lock(monkeypatch):
    """Python checks for an injected exception when a call of a C function returns: one that
    is pending when the lock's acquire() returns lands right there. decoded_as took the lock
    before its try: such an exception left the lock held for good, and every other thread's
    call waited for ever. Here the lock is held by another thread while decoded_as waits in
    acquire(); that thread injects the exception, then lets go."""
    emu = Emulator()
    if not hasattr(emu.lock, "_is_mine"):
        pytest.skip("no SemLock here")
    waiting, held = threading.Event(), threading.Event()

    def no_polling(lock):                       # wait_turn, without its polls: block at once
        waiting.set()
    monkeypatch.setattr(emulator_module, "wait_turn", no_polling)
    main = threading.get_ident()

    def holder():
        with emu.lock:
            held.set()
            waiting.wait(10)
            time.sleep(0.2)                     # by now the main thread waits in acquire()
            _async_raise(main, Stop)
    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    ran = []
    try:
        with pytest.raises(Stop):
            emu.decoded_as(None, c.BPF_MAP_UPDATE_ELEM, lambda: ran.append(1) or 0,
                           emu.decoded_calls.generation if emu.decoded_calls else 0)
    finally:
        t.join()
    assert lock_is_free(emu.lock)
    assert emu.undo == [] and ran == []
    emu.close_all()
