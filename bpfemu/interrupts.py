"""Calls atomic with respect to signals: a Python signal handler that would run in the middle
of a bpf() call runs right after it instead.

Python runs signal handlers in the main thread, between bytecodes. A handler that raises
(KeyboardInterrupt from Ctrl-C, a timeout's exception) could otherwise stop a call half-way
through an update: a key linked but not indexed, a free slot lost, a lock left held. The
kernel has no such state: a signal interrupts a syscall before it starts or after it ends.

Every call that changes anything runs under its emulator's lock, so "the main thread is in
a call" is "the main thread holds an emulator's lock", which the handler can ask without
any cost to the calls. The handlers installed when an Emulator is made are wrapped: when
the main thread holds an emulator's lock, the wrapper returns at once, and a helper thread
waits for the lock to be let go and sends the signal to the main thread again, which then
runs the handler (or defers it again, if it is in another call by then). A handler that
does not raise is only delayed, by at most the call's length.

Lookups through a decoded call take no lock: a handler runs in them at once, and a lookup
stopped half-way has changed nothing (at most the value buffer is not written).

Not covered, see README "Reliability": an exception injected with
PyThreadState_SetAsyncExc (or raised by a trace function), which Python delivers at any
bytecode without a handler; handlers installed after the last Emulator was made, until
``defer_signal_handlers()`` is called again.
"""
import _signal          # the signal module's C half: its wrappers make an enum per call
import signal
import threading

from . import emu_lock


def _held_by_this_thread() -> list:
    """The emulator locks the calling thread holds."""
    held = []
    for emu in list(emu_lock._holders):
        lock = emu.lock
        owned = getattr(lock, "_is_mine", None) or lock._is_owned    # SemLock / RLock
        if owned():
            held.append(lock)
    return held


def _send_after(locks: list, signum: int) -> None:
    """Once every lock in locks is free, signal the main thread again."""
    main = threading.main_thread().ident

    def wait_then_signal():
        for lock in locks:
            lock.acquire()
            lock.release()
        signal.pthread_kill(main, signum)

    threading.Thread(target=wait_then_signal, name="bpfemu-deferred-signal", daemon=True).start()


class DeferringHandler:
    """A Python signal handler that waits for the end of the emulator call in progress."""

    __slots__ = ("handler",)

    def __init__(self, handler):
        self.handler = handler

    def __call__(self, signum, frame):
        held = _held_by_this_thread()
        if held:
            try:
                _send_after(held, signum)
                return None
            except RuntimeError:                # no new thread (interpreter shutdown): now
                pass
        return self.handler(signum, frame)

    def __repr__(self):
        return f"DeferringHandler({self.handler!r})"


def defer_signal_handlers() -> None:
    """Wrap every Python-level signal handler installed now (main thread only: elsewhere
    signal.signal() cannot be called, and this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        return
    getsignal = _signal.getsignal
    for signum in _SIGNALS:
        try:
            handler = getsignal(signum)
        except (OSError, ValueError):
            continue
        if callable(handler) and not isinstance(handler, DeferringHandler):
            try:
                _signal.signal(signum, DeferringHandler(handler))
            except (OSError, ValueError, RuntimeError):
                continue


_SIGNALS = sorted(_signal.valid_signals())
