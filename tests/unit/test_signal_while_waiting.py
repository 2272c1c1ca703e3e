"""A signal handler that raises while a call waits for the emulator's lock (Ctrl-C while
another thread is in a call) stops the waiting call before it starts: its exception comes
out as raised, the lock is not let go on the other thread's behalf, and the other thread's
call is not rolled back (bpfemu/undo.py, "The lock")."""
import ctypes
import os
import signal
import struct
import threading
import time

import pytest

from bpfemu import Emulator
from bpfemu.uapi import consts as c
from tests.support import Client, lock_is_free

HOLD = 0.5          # how long the other thread holds the lock
SIGNAL_AT = 0.1     # when the waiting main thread gets SIGINT (it waits in acquire() by then)


def _update_call(emu, fd):
    """An UPDATE_ELEM on buffers made once: repeated, it is a decoded call (fastpath.py).
    The lambda keeps key and value alive: the attr holds only their addresses, and freed
    buffers are soon other objects' memory (the key read as zeros, another key updated)."""
    key, value = ctypes.create_string_buffer(b"\1\0\0\0", 4), ctypes.create_string_buffer(8)
    attr = ctypes.create_string_buffer(
        struct.pack("<IIQQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(value), 0), 168)
    return lambda keep=(key, value): emu.bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32)


ENTRIES = {
    "__sys_bpf": (False, lambda emu, fd: _update_call(emu, fd)),
    "decoded call": (True, lambda emu, fd: _update_call(emu, fd)),
    "atomic (close)": (True, lambda emu, fd: lambda: emu.close(fd)),
}


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signals go to the main thread")
@pytest.mark.parametrize("entry", list(ENTRIES))
def test_ctrl_c_while_waiting_for_the_lock(entry):
    decoded, make = ENTRIES[entry]
    emu = Emulator(seed=1, decoded_calls=decoded)
    fd = Client(emu).create(c.BPF_MAP_TYPE_HASH, 4, 8, 8)
    call = make(emu, fd)
    if entry != "atomic (close)":
        for _ in range(3):
            assert call() == 0                  # decoded from here on, where decoded is on
    other_call = ("other thread's change",)
    held = threading.Event()
    journal_seen = []

    def other_thread():
        with emu.lock:
            emu.undo.append(other_call)         # as a call in progress has its entries
            held.set()
            time.sleep(HOLD)
            journal_seen.append(list(emu.undo))
            emu.undo.clear()
    t = threading.Thread(target=other_thread)
    t.start()
    held.wait()
    timer = threading.Timer(SIGNAL_AT, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            call()
            time.sleep(HOLD)                    # not stopped in the call: stopped here
    finally:
        timer.join()
        t.join()
        signal.signal(signal.SIGINT, old)
    assert journal_seen == [[other_call]]       # the other call was not rolled back
    assert lock_is_free(emu.lock)
    # The stopped call did nothing: the fd is open, the map as before it.
    expected = 0 if entry != "atomic (close)" else -2
    assert Client(emu).lookup(fd, struct.pack("<I", 1), 8)[0] == expected
