"""Freeing an emulator runs no Python code: an asynchronous exception (Ctrl-C's
KeyboardInterrupt, one injected with PyThreadState_SetAsyncExc) that lands while the garbage
collector frees one is not lost in a weakref callback (bpfemu/weak_registry.py)."""
import gc
import sys

from bpfemu import Emulator
from bpfemu.memory import ArenaMemory, ProcessMemory
from bpfemu.weak_registry import WeakBoundMethod, WeakRegistry


def _frames_run_while_freeing(make) -> list:
    """The Python functions entered while the garbage collector frees what make() built.
    gc.callbacks are set aside meanwhile: they are other libraries' (hypothesis registers
    one), run at every collection whatever is freed."""
    obj = make()
    gc.collect()
    entered = []
    callbacks, gc.callbacks[:] = gc.callbacks[:], []

    def tracer(frame, event, arg):
        if event == "call":
            entered.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")
        return None
    gc.disable()
    try:
        del obj
        sys.settrace(tracer)
        gc.collect()
        sys.settrace(None)
    finally:
        gc.enable()
        gc.callbacks[:] = callbacks
    return entered


def test_freeing_an_emulator_runs_no_python_code():
    """An Emulator (its lock's registry, its memory's registry and listener), a ProcessMemory
    and an ArenaMemory of their own: weakref.WeakSet and WeakMethod ran _remove and _cb."""
    def make():
        emu = Emulator()
        emu.cycle = emu                         # freed by the collector, as most are
        return emu
    assert _frames_run_while_freeing(make) == []
    assert _frames_run_while_freeing(lambda: Emulator(mem=ArenaMemory())) == []
    assert _frames_run_while_freeing(ProcessMemory) == []


def test_registry_holds_weakly_and_prunes():
    class Obj:
        def ping(self):
            self.pinged = True
    reg = WeakRegistry()
    keep = [Obj() for _ in range(5)]
    for o in keep:
        reg.add(o)
    for _ in range(1000):
        reg.add(Obj())                          # dead at once
    assert list(reg) == keep and len(reg) == 5
    assert len(reg._refs) < 100                 # the dead ones were dropped as it grew
    ping = WeakBoundMethod(keep[0].ping)
    assert ping() is True and keep[0].pinged
    del keep[0]
    assert ping() is False
