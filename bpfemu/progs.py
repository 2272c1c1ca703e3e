"""The BPF-program side of maps: what a program's helper calls do, for tests that play the
data plane against an Emulator.

A BPF program reaches a map through helpers, and they differ from the syscall in ways users
can observe:

* ``bpf_map_lookup_elem()`` returns a pointer *into* the element: writes through it change
  the map in place (``lookup_elem`` returns a live writable ``memoryview``). For per-CPU maps
  it points at the current CPU's slot only, ``value_size`` bytes of it.
* On LRU maps a program's lookup marks the element referenced (the verifier inlines the
  lookup together with "set ref if clear"), which protects it from the next eviction; the
  syscall's lookup does not (docs/linux-6.18.md#lru-maps).
* ``bpf_map_update_elem()`` on a per-CPU map writes only the current CPU's slot; creating an
  element zeroes the other CPUs' values (``pcpu_init_value()`` with ``onallcpus = false``).
* ``bpf_map_lookup_percpu_elem()`` reads any CPU's slot of a per-CPU map (and marks an
  LRU_PERCPU_HASH element).

The current CPU is ``emu.cpu``. Update and delete return what the helpers return: 0 or a
negative errno (on the Linux 6.1 profile zero-extended from 32 bits, as there: 0xfffffffe for
-ENOENT, profile.prog_map_ops_return_int). A call that the verifier would refuse when loading the program (a closed fd,
a helper the map type does not support, a key or value buffer shorter than the map's sizes)
raises instead: ``BpfError`` with the errno ``BPF_PROG_LOAD`` gives, or ``ValueError``.

Example, the classic per-flow counters::

    dp = DataPlane(emu)

    def update_stats(fd, key, nbytes):
        v = dp.lookup_elem(fd, key)
        if v is None:
            dp.update_elem(fd, key, bytes(16), BPF_NOEXIST)
            v = dp.lookup_elem(fd, key)
            if v is None:
                return
        dp.fetch_add(v, 0, 8, 1)          # packets
        dp.fetch_add(v, 8, 8, nbytes)     # bytes

``bpfemu.host_progs.HostDataPlane`` has the same methods and runs real BPF programs on the
live kernel, for differential tests.
"""
import ctypes
import errno
from sys import _getframe, gettrace as _gettrace

from .errors import BpfError
from .undo import atomic

__all__ = ["DataPlane", "fetch_add", "check_atomic", "typed_view", "FieldView"]


def check_atomic(offset: int, size: int) -> None:
    """What the verifier demands of a BPF_ATOMIC instruction on a map value: a 4- or 8-byte
    operand (BPF_W / BPF_DW) at an offset aligned to its size (check_atomic() asks for strict
    alignment). Anything else is a program that would not load: ValueError."""
    if size not in (4, 8):
        raise ValueError(f"BPF atomics operate on 4 or 8 bytes, not {size}")
    if offset < 0 or offset % size:
        raise ValueError(f"misaligned atomic access: offset {offset}, size {size}")


def fetch_add(view, offset: int, size: int, delta: int) -> int:
    """``BPF_ATOMIC | BPF_FETCH | BPF_ADD`` on ``view[offset:offset + size]``
    (``__sync_fetch_and_add`` in C): add ``delta`` to the little-endian unsigned field,
    wrapping modulo 2**(8*size), and return the field's previous value."""
    check_atomic(offset, size)
    end = offset + size
    if end > len(view):
        raise ValueError(f"atomic access past the value: {offset}+{size} > {len(view)}")
    old = int.from_bytes(view[offset:end], "little")
    view[offset:end] = ((old + delta) & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    return old


def typed_view(view, as_type):
    """The value seen as the ctypes type as_type, as a program casts its pointer: over a
    memoryview, an instance of as_type sharing its bytes; over any other view that reads
    with ``tobytes()`` and writes with slice assignment (HostDataPlane's), a FieldView that
    reads and writes each field through it."""
    size = ctypes.sizeof(as_type)
    if size > len(view):
        raise ValueError(f"{as_type.__name__} is {size} bytes; the value is {len(view)}")
    if isinstance(view, memoryview):
        return as_type.from_buffer(view)
    return FieldView(view, as_type)


class FieldView:
    """A Structure's fields over a value view that is not memory: each read decodes the
    view's bytes now, each assignment writes the field's bytes back through the view."""

    def __init__(self, view, as_type):
        object.__setattr__(self, "_view", view)
        object.__setattr__(self, "_type", as_type)

    def _now(self):
        return self._type.from_buffer_copy(bytes(self._view.tobytes())[:ctypes.sizeof(self._type)])

    def __getattr__(self, name):
        return getattr(self._now(), name)

    def __setattr__(self, name, value):
        ftype = next((f[1] for f in self._type._fields_ if f[0] == name), None)
        if ftype is None:
            raise AttributeError(f"{self._type.__name__} has no field {name!r}")
        obj = self._now()
        setattr(obj, name, value)
        start = getattr(self._type, name).offset        # a bit field: its storage unit
        end = start + ctypes.sizeof(ftype)
        self._view[start:end] = bytes(obj)[start:end]


class DataPlane:
    """A BPF program's view of the maps of an Emulator (helpers on the current CPU, emu.cpu)."""

    fetch_add = staticmethod(fetch_add)

    def __init__(self, emu):
        self.emu = emu

    # -- plumbing ---------------------------------------------------------------------------

    def _map(self, fd: int, hook: str):
        """The map behind fd and its helper, as BPF_PROG_LOAD would resolve them."""
        try:
            m = self.emu.map_of(fd)
        except KeyError:
            raise BpfError(errno.EBADF) from None
        op = getattr(getattr(m, "ops", None), hook, None)
        if op is None:
            # The verifier refuses the helper for this map type (check_map_func_compatibility).
            raise BpfError(errno.EINVAL, f"helper not allowed on this map type ({hook})")
        return m, op

    @staticmethod
    def _bytes(buf, size: int, what: str) -> bytes:
        """The size bytes a helper reads through a pointer argument."""
        data = bytes(buf)
        if len(data) < size:
            raise ValueError(f"{what} buffer has {len(data)} bytes, the map needs {size}")
        return data[:size]

    # -- helpers ----------------------------------------------------------------------------

    def lookup_elem(self, fd: int, key, as_type=None):
        """bpf_map_lookup_elem(): a live view of the value (this CPU's slot for per-CPU maps),
        or None. Marks LRU elements referenced.

        The view is a memoryview, or with ``as_type`` (a ctypes type, as a program casts the
        pointer to its struct) an instance of that type over the same bytes: assigning to
        its fields writes the map's value in place. ValueError when the type is larger
        than the value (a program reading past it would not load)."""
        def lookup():
            m, op = self._map(fd, "map_lookup_elem_prog")
            found = op(m, self._bytes(key, m.key_size, "key"))
            if found is not None:
                m.prog_views = True             # which element is which now shows (hashtab.py)
            return found
        view = atomic(self.emu, lookup)          # an LRU lookup marks the node: journaled
        if view is None or as_type is None:
            return view
        return typed_view(view, as_type)

    def lookup_percpu_elem(self, fd: int, key, cpu: int):
        """bpf_map_lookup_percpu_elem(): cpu's slot of a per-CPU map, or None (also for a cpu
        past the last possible one). Marks LRU_PERCPU_HASH elements referenced."""
        def lookup():
            m, op = self._map(fd, "map_lookup_percpu_elem")
            return op(m, self._bytes(key, m.key_size, "key"), cpu & 0xFFFFFFFF)
        return atomic(self.emu, lookup)

    def update_elem(self, fd: int, key, value, flags: int = 0) -> int:
        """bpf_map_update_elem(): 0 or a negative errno."""
        def update():
            m, op = self._map(fd, "map_update_elem_prog")
            k = self._bytes(key, m.key_size, "key")
            v = self._bytes(value, m.value_size, "value")
            try:
                op(m, k, v, flags & 0xFFFFFFFFFFFFFFFF)
            except BpfError as e:
                return self._helper_error(e.errno)
            return 0
        return atomic(self.emu, update)     # whole or not at all (bpfemu/undo.py)

    def delete_elem(self, fd: int, key) -> int:
        """bpf_map_delete_elem(): 0 or a negative errno."""
        def delete():
            m, op = self._map(fd, "map_delete_elem_prog")
            try:
                op(m, self._bytes(key, m.key_size, "key"))
            except BpfError as e:
                return self._helper_error(e.errno)
            return 0
        return atomic(self.emu, delete)

    def _helper_error(self, err: int) -> int:
        """-err as the program sees it: on Linux 6.1 the map op's int zero-extended
        (profile.prog_map_ops_return_int: -ENOENT is 0xfffffffe)."""
        return (-err) & 0xFFFFFFFF if self.emu.profile.prog_map_ops_return_int else -err

    def close(self) -> None:
        """Nothing to release (HostDataPlane.close() unloads its programs): for symmetry."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def lookup_fetch_add(self, fd: int, key, offset: int, size: int, delta: int):
        """lookup_elem() then fetch_add() on the result: the old value, or None if missing."""
        if _gettrace() is not None:
            _getframe().f_trace = None      # the lock's release must not be skipped: undo.py
        check_atomic(offset, size)
        with self.emu.lock:
            view = self.lookup_elem(fd, key)
            if view is None:
                return None
            return fetch_add(view, offset, size, delta)
