"""Decoded element calls: the checks of an element command, done once per distinct attr.

A program that calls bpf() in a loop passes the same attr buffer again and again, with the
same fd, the same key and value pointers and the same flags; only the bytes behind the
pointers change. Everything ``map_lookup_elem()`` and its siblings check before they copy
the key (the attr's size and unused bytes, the flags, the fd, its access mode, a frozen map,
BPF_F_LOCK) depends on nothing else but emulator state that changes rarely: the fd table,
a map being frozen, the buffers pinned in the memory layer.

So when a handler has passed those checks it leaves behind a *decoded call*: a closure that
does the rest of the command (copy the key in, run the map's op, copy the result out) for
that map and those pointers. ``DecodedCalls`` keeps it under the attr object, with a snapshot of
the attr's bytes, and the next call whose command, size and attr bytes are identical runs
the closure directly, with the same errno for everything that can still fail (ENOENT,
EEXIST, E2BIG, EFAULT on an unpinned pointer).

Invalidation: every change that could alter the outcome of a check clears the cache
(``Emulator.forget_decoded_calls``): an fd closed or reaped, a map frozen, a buffer pinned or
unpinned (``Memory.on_views_changed``). Nothing else is cached: map contents, the CPU and the
memory behind unpinned pointers are read on every call. The closure is built on the first
reuse, so a caller that never passes the same attr object twice pays nothing for it.

Where both pointers are pinned (``ProcessMemory.pin``), the closure copies through views of
the caller's buffers: no syscall and no address lookup. Otherwise it copies through the
memory layer's readers and writers for those addresses (``Memory.reader``), which for this
process's memory are process_vm_readv/writev calls with their iovecs packed once.

``DecodedCalls.sys_bpf`` is what ``Emulator.bpf`` calls when decoded calls are on
(``Emulator(decoded_calls=False)`` turns them off): it tries the call made last (the same attr
object, command, size and attr bytes as the call just made, which is what a caller's loop
sends), then the decoded calls kept, and otherwise hands the call to the entry
(syscall.__sys_bpf), keeping what the handler left for decoding.
"""
import ctypes
import errno
from collections import namedtuple
from sys import _getframe, gettrace as _gettrace

from . import failure as _failure
from .batch_fastpath import is_batch_build, recounted
from .emu_lock import wait_turn
from .errors import ENOTSUPP, BpfError
from .memory import Memory
from .undo import MARK, undo_call
from .maps.array_fastpath import (array_pinned_delete_call, array_pinned_lookup_call,
                                  array_pinned_update_call)
from .uapi.consts import BpfMapType as T
from .usercopy import is_buffer

# Decoded calls kept per emulator; a program with more distinct attr buffers than this in
# flight just decodes again (the cache is cleared when full, never grows without bound).
MAX_DECODED_CALLS = 64
# The syscall's result when the map's lookup finds nothing (bpf_map_copy_value()).
_NO_ELEMENT = -errno.ENOENT
# The syscall's result for a command the map has no op for (map_lookup_and_delete_elem()).
_NOT_SUPPORTED = -ENOTSUPP


class DecodedCall:
    """One element call decoded: what identifies it, and the rest of it to run."""
    __slots__ = ("cmd", "size", "attr_bytes", "has_raw", "attr", "build", "run", "lockless")

    def __init__(self, cmd: int, size: int, attr_bytes: bytes, attr, build: tuple,
                 lockless: bool):
        self.cmd = cmd
        self.size = size                        # the size argument, as passed
        self.attr_bytes = attr_bytes            # the attr's bytes when it was decoded
        # .raw is a char array's bytes, cheaper than bytes(attr).
        self.has_raw = isinstance(attr, ctypes.Array) and attr._type_ is ctypes.c_char
        self.attr = attr                        # kept, so that its id() is not reused
        self.build = build                      # (builder, *its arguments): makes run
        self.run = None                         # built on the first reuse
        self.lockless = lockless                # runs without the emulator's lock


# The decoded call that ran last, as sys_bpf's first check unpacks it; lock is the
# emulator's lock, read once (a fork forgets it). (collections' namedtuple, not typing's:
# typing costs an Emulator's start-up.)
LastCall = namedtuple("LastCall", ("attr", "cmd", "size", "attr_bytes", "run", "lockless",
                                   "lock"))


# sys_bpf unpacks it at every call: kept as a plain tuple, which UNPACK_SEQUENCE takes
# without the iterator protocol a tuple subclass costs.
NO_CALL = tuple(LastCall(None, None, None, None, None, None, None))


class DecodedCalls:
    """The decoded-call cache of one emulator, in front of its entry."""

    def __init__(self, emu, entry):
        self.emu = emu
        self.entry = entry                      # syscall.__sys_bpf
        self.undo = emu.undo                    # the undo journal (bpfemu/undo.py)
        self.calls: dict = {}                   # id(attr) << 6 | cmd -> DecodedCall
        self.last = NO_CALL
        self.generation = 0                     # counts the forgets

    def forget(self) -> None:
        """An fd went away, a map was frozen, or pinned buffers changed."""
        self.generation += 1                    # first: see _make_last
        self.last = NO_CALL
        self.calls.clear()

    def sys_bpf(self, cmd: int, attr, size: int) -> int:
        """bpf(cmd, attr, size): a decoded call if there is one for it, else the entry.
        Atomic as the entry's calls are (bpfemu/undo.py): a call that anything but a
        BpfError stops is rolled back."""
        last_attr, last_cmd, last_size, last_bytes, run, lockless, lock = self.last
        try:                                    # (free in Python 3.11: no set-up)
            if (last_attr is attr and (last_cmd is cmd or last_cmd == cmd)
                    and last_size == size and attr.raw == last_bytes):
                # The call made last, again (a caller's loop): only the rest of it runs.
                if lockless:
                    # A lookup: no lock, as Linux holds only rcu_read_lock() there, and
                    # nothing to undo.
                    try:
                        return run()
                    except BpfError as e:
                        return -e.errno
                    except Exception as e:
                        return _failure.our_failure(cmd, e)
                if _gettrace() is not None:
                    _getframe().f_trace = None  # no line events here: see undo.py
                undo = self.undo
                try:
                    if not lock.acquire(False):     # held: wait for it with the GIL (emu_lock.py)
                        wait_turn(lock)
                        lock.acquire()
                except BaseException:                   # see undo.py, "The lock"
                    if lock._is_mine():
                        lock.release()
                    raise
                try:
                    if undo:
                        undo_call(self.emu)     # a call stopped where it could not roll back
                    undo.append(MARK)
                    ret = run()
                    undo.clear()
                    return ret
                except BpfError as e:
                    undo.clear()
                    return -e.errno
                except Exception as e:
                    return _failure.our_failure_undone(self.emu, cmd, e)
                except BaseException:           # noqa: B036 - an interruption: undone
                    undo_call(self.emu)
                    raise
                finally:
                    lock.release()
        except Exception as e:                  # reading the attr's bytes failed (memory)
            return _failure.our_failure(cmd, e)
        return self._sys_bpf_decoded(cmd, attr, size)

    def _sys_bpf_decoded(self, cmd: int, attr, size: int) -> int:
        """sys_bpf past the call made last: a decoded call kept, or the entry. A method of
        its own so that sys_bpf's frame, which every call pays for, holds only the last
        call's locals."""
        generation = self.generation
        call = self.calls.get(id(attr) << 6 | cmd) if type(cmd) is int else None
        try:
            same = (call is not None and call.cmd == cmd and call.size == size
                    and (attr.raw if call.has_raw else bytes(attr)) == call.attr_bytes)
            if not same and call is not None and is_batch_build(call.build):
                call = self._recounted(call, cmd, attr, size, generation)
                same = call is not None
        except Exception as e:                  # reading the attr's bytes failed (memory)
            return _failure.our_failure(cmd, e)
        if same:
            # The same command on the same attr bytes as a call decoded before: every check
            # before the key copy would pass again, so only the rest runs.
            run = call.run
            if run is not None and call.lockless:
                self._make_last(call, generation)
                try:
                    return run()
                except BpfError as e:
                    return -e.errno
                except Exception as e:
                    return _failure.our_failure(cmd, e)
            if _gettrace() is not None:
                _getframe().f_trace = None      # no line events here: see undo.py
            undo = self.undo
            lock = self.emu.lock
            try:
                if not lock.acquire(False):     # held: wait for it with the GIL (emu_lock.py)
                    wait_turn(lock)
                    lock.acquire()
            except BaseException:                   # see undo.py, "The lock"
                if lock._is_mine():
                    lock.release()
                raise
            try:
                if undo:
                    undo_call(self.emu)
                undo.append(MARK)
                if run is None:                 # first reuse: build it now
                    make, *args = call.build
                    run = call.run = make(*args)
                self._make_last(call, generation)
                ret = run()
                undo.clear()
                return ret
            except BpfError as e:
                undo.clear()
                return -e.errno
            except Exception as e:
                return _failure.our_failure_undone(self.emu, cmd, e)
            except BaseException:               # noqa: B036 - an interruption: undone
                undo_call(self.emu)
                raise
            finally:
                lock.release()
        emu = self.emu
        # Only a buffer attr is kept (an address may point at other bytes next time; what is
        # neither is refused by the entry).
        try:
            whole = bytes(attr) if type(attr) is not int and is_buffer(attr) else None
        except Exception as e:                  # no memory for the copy: nothing done
            return _failure.our_failure(cmd, e)
        if _gettrace() is not None:
            _getframe().f_trace = None          # no line events here: see undo.py
        lock = emu.lock
        if not lock._get_value():               # held: wait for it with the GIL (emu_lock.py)
            wait_turn(lock)
        with lock:
            # A handler that has passed an element command's checks leaves in emu.decodable
            # how to build the rest of it (a *_call below and its arguments).
            emu.decodable = None
            ret = self.entry(emu, cmd, attr, size)
            decodable = emu.decodable
            if decodable is not None:
                emu.decodable = None
                if whole is not None:
                    try:
                        self._remember(cmd, attr, size, whole, decodable)
                    except Exception as e:
                        # The call is done; only its decoding is lost. Reported, not answered.
                        _failure.our_failure(cmd, e)
        return ret

    def _recounted(self, call: DecodedCall, cmd: int, attr, size: int, generation: int):
        """A decoded batch call for attr bytes that differ from call's in batch.count alone
        (batch_fastpath.recounted: the front end does not read the count), kept in its place;
        None if other bytes differ. Made without the lock, as call was found: kept only if no
        forget() came in between (generation: read before call was found), as _make_last."""
        whole = attr.raw if call.has_raw else bytes(attr)
        build = recounted(call.build, call.cmd, call.size, call.attr_bytes, cmd, size, whole)
        if build is None:
            return None
        new = DecodedCall(cmd, size, whole, attr, build, call.lockless)
        key = id(attr) << 6 | cmd
        self.calls[key] = new
        if self.generation != generation:
            self.calls.pop(key, None)
        return new

    def _make_last(self, call: DecodedCall, generation: int) -> None:
        """Make a decoded call the one sys_bpf tries first. The generation, read before the
        call was found, is checked after the store: a forget() in between (which counts a
        generation before it empties last) cannot leave a stale call there."""
        if call.has_raw:                        # the first check reads attr.raw
            self.last = tuple(LastCall(call.attr, call.cmd, call.size, call.attr_bytes,
                                       call.run, call.lockless, self.emu.lock))
            if self.generation != generation:
                self.last = NO_CALL

    def _remember(self, cmd: int, attr, size: int, whole: bytes, decodable: tuple) -> None:
        """Keep a decoded call under the attr object and the command (one attr may serve
        lookups and updates in turn; element commands are below 64)."""
        calls = self.calls
        if len(calls) >= MAX_DECODED_CALLS:
            calls.clear()
        lockless = self.emu.dispatch[cmd].lockless
        calls[id(attr) << 6 | cmd] = DecodedCall(cmd, size, whole, attr, decodable, lockless)


# Map types whose decoded calls on pinned buffers are their own (they call the map's functions
# the generic ones below call, with less copying in between): lookup and update builders.
PINNED_LOOKUP_CALLS = {T.BPF_MAP_TYPE_ARRAY: array_pinned_lookup_call,
                       T.BPF_MAP_TYPE_PERCPU_ARRAY: array_pinned_lookup_call}
PINNED_UPDATE_CALLS = {T.BPF_MAP_TYPE_ARRAY: array_pinned_update_call,
                       T.BPF_MAP_TYPE_PERCPU_ARRAY: array_pinned_update_call}
PINNED_DELETE_CALLS = {T.BPF_MAP_TYPE_ARRAY: array_pinned_delete_call,
                       T.BPF_MAP_TYPE_PERCPU_ARRAY: array_pinned_delete_call}


def lookup_call(mem, m, key_ptr: int, value_ptr: int):
    """What is left of BPF_MAP_LOOKUP_ELEM after the checks: copy the key, look up, copy out."""
    op = m.ops.map_lookup_elem_sys
    key_view = mem.view(key_ptr, m.key_size)
    value_view = mem.view(value_ptr, m.value_size_sys)
    if key_view is not None and value_view is not None:
        own = PINNED_LOOKUP_CALLS.get(m.map_type)
        if own is not None:
            return own(m, key_view, value_view)
        value_buf = Memory.char_array(value_view)

        def pinned_lookup():
            value = op(m, key_view.tobytes())
            if value is None:
                # bpf_map_copy_value(): the lookup found nothing. This is the syscall's
                # result, returned without raising (a raise costs as much as the lookup).
                return _NO_ELEMENT
            value_buf.raw = value
            return 0
        return pinned_lookup
    read_key = mem.reader(key_ptr, m.key_size)
    write_value = mem.writer(value_ptr, m.value_size_sys)

    def lookup():
        value = op(m, read_key())
        if value is None:
            return _NO_ELEMENT                  # bpf_map_copy_value(): ENOENT
        write_value(value)
        return 0
    return lookup


def update_call(mem, m, key_ptr: int, value_ptr: int, flags: int):
    """BPF_MAP_UPDATE_ELEM after the checks: copy key and value in, update."""
    op = m.ops.map_update_elem_sys
    key_view = mem.view(key_ptr, m.key_size)
    value_view = mem.view(value_ptr, m.value_size_sys)
    if key_view is not None and value_view is not None:
        own = PINNED_UPDATE_CALLS.get(m.map_type)
        if own is not None:
            return own(m, key_view, value_view, flags)

        def pinned_update():
            # The op copies the value in before anything else could change the buffer.
            op(m, key_view.tobytes(), value_view, flags)
            return 0
        return pinned_update
    read_key_and_value = mem.reader2(key_ptr, m.key_size, value_ptr, m.value_size_sys)

    def update():
        key, value = read_key_and_value()
        op(m, key, value, flags)
        return 0
    return update


def delete_call(mem, m, key_ptr: int):
    """BPF_MAP_DELETE_ELEM after the checks: copy the key in, delete."""
    op = m.ops.map_delete_elem
    key_view = mem.view(key_ptr, m.key_size)
    if key_view is not None:
        own = PINNED_DELETE_CALLS.get(m.map_type)
        if own is not None:
            return own(m, key_view)

        key_buf = Memory.char_array(key_view)   # .raw: cheaper than key_view.tobytes()

        def pinned_delete():
            op(m, key_buf.raw)
            return 0
        return pinned_delete
    read_key = mem.reader(key_ptr, m.key_size)

    def delete():
        op(m, read_key())
        return 0
    return delete


def lookup_and_delete_call(mem, m, key_ptr: int, value_ptr: int, flags: int):
    """BPF_MAP_LOOKUP_AND_DELETE_ELEM after the checks (on a map that has the op): copy the
    key in, the op (which takes the element out), copy the value out."""
    op = m.ops.map_lookup_and_delete_elem
    key_view = mem.view(key_ptr, m.key_size)
    value_view = mem.view(value_ptr, m.value_size_sys)
    if key_view is not None and value_view is not None:
        value_buf = Memory.char_array(value_view)

        def pinned_lookup_and_delete():
            value_buf.raw = op(m, key_view.tobytes(), flags)
            return 0
        return pinned_lookup_and_delete
    read_key = mem.reader(key_ptr, m.key_size)
    write_value = mem.writer(value_ptr, m.value_size_sys)

    def lookup_and_delete():
        write_value(op(m, read_key(), flags))  # the element is already gone if this faults
        return 0
    return lookup_and_delete


def key_then_not_supported_call(mem, m, key_ptr: int):
    """What is left of BPF_MAP_LOOKUP_AND_DELETE_ELEM on a map without the op (an array)
    after the checks: the key copy, which faults first, then ENOTSUPP."""
    if mem.view(key_ptr, m.key_size) is not None:
        def pinned_not_supported():
            return _NOT_SUPPORTED               # a pinned key cannot fault
        return pinned_not_supported
    read_key = mem.reader(key_ptr, m.key_size)

    def not_supported():
        read_key()                              # __bpf_copy_key(): EFAULT before ENOTSUPP
        return _NOT_SUPPORTED
    return not_supported


def get_next_key_call(mem, m, key_ptr: int, next_key_ptr: int):
    """BPF_MAP_GET_NEXT_KEY after the checks: copy the key in (if any), step, copy out."""
    op = m.ops.map_get_next_key
    key_size = m.key_size
    key_view = mem.view(key_ptr, key_size) if key_ptr else None
    next_view = mem.view(next_key_ptr, key_size)
    if next_view is not None and (key_view is not None or not key_ptr):
        next_buf = Memory.char_array(next_view)
        if key_view is None:
            def pinned_first_key():
                next_buf.raw = op(m, None)
                return 0
            return pinned_first_key

        key_buf = Memory.char_array(key_view)   # .raw: cheaper than key_view.tobytes()

        def pinned_get_next_key():
            next_buf.raw = op(m, key_buf.raw)
            return 0
        return pinned_get_next_key
    write_next = mem.writer(next_key_ptr, key_size)
    if not key_ptr:
        def first_key():
            write_next(op(m, None))
            return 0
        return first_key
    read_key = mem.reader(key_ptr, key_size)

    def get_next_key():
        write_next(op(m, read_key()))
        return 0
    return get_next_key
