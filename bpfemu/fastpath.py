"""Decoded element calls: the checks of an element command, done once per distinct attr.

A program that calls bpf() in a loop passes the same attr buffer again and again, with the
same fd, the same key and value pointers and the same flags; only the bytes behind the
pointers change. Everything ``map_lookup_elem()`` and its siblings check before they copy
the key (the attr's size and unused bytes, the flags, the fd, its access mode, a frozen map,
BPF_F_LOCK) depends on nothing else but emulator state that changes rarely: the fd table,
a map being frozen, the buffers pinned in the memory layer.

So when a handler has passed those checks it leaves behind a *decoded call*: a closure that
does the rest of the command (copy the key in, run the map's op, copy the result out) for
that map and those pointers. ``sys_bpf`` keeps it under the attr object, with a snapshot of
the attr's bytes, and the next call whose command, size and attr bytes are identical runs
the closure directly, with the same errno for everything that can still fail (ENOENT,
EEXIST, E2BIG, EFAULT on an unpinned pointer).

Invalidation: every change that could alter the outcome of a check clears the cache
(``Emulator.forget_decoded_calls``): an fd closed or reaped, a map frozen, a buffer pinned or
unpinned (``Memory.on_views_changed``). Nothing else is cached: map contents, the CPU and the
memory behind unpinned pointers are read on every call. The closure is built on the first
reuse, so a caller that never passes the same attr object twice pays nothing for it.

Where both pointers are pinned (``ProcessMemory.pin``), the closure copies through views of
the caller's buffers: no syscall and no address lookup. Otherwise it copies through the memory layer's readers and writers for those addresses
(``Memory.reader``), which for this process's memory are process_vm_readv/writev calls with
their iovecs packed once.

sys_bpf (syscall.py) tries the call made last before anything else: the same attr object,
command, size and attr bytes as the call just made, which is what a caller's loop sends.
"""

from .uapi.consts import BpfCmd

# Decoded calls kept per emulator; a program with more distinct attr buffers than this in
# flight just decodes again (the cache is cleared when full, never grows without bound).
MAX_DECODED_CALLS = 64

# Decoded calls that run without the emulator's lock: a syscall lookup changes nothing (not
# even an LRU reference bit), and Linux runs it under rcu_read_lock() alone, so a lookup that
# races an update sees the old value or the new one, as it can in Linux. Only memoryview and
# dict operations touch shared state, each atomic under the GIL; the copiers of an unpinned
# decoded call are its own.
LOCKLESS_COMMANDS = frozenset({BpfCmd.BPF_MAP_LOOKUP_ELEM})

# Emulator.last_call when there is none: (attr, cmd, size, attr bytes, rest, lockless).
NO_CALL = (None, None, None, None, None, None)


def lookup_call(mem, m, key_ptr: int, value_ptr: int):
    """What is left of BPF_MAP_LOOKUP_ELEM after the checks: copy the key, look up, copy out."""
    op = m.ops.map_lookup_elem_sys
    key_view = mem.view(key_ptr, m.key_size)
    value_view = mem.view(value_ptr, m.value_size_sys)
    if key_view is not None and value_view is not None:
        def pinned_lookup():
            value_view[:] = op(m, key_view.tobytes())
            return 0
        return pinned_lookup
    read_key = mem.reader(key_ptr, m.key_size)
    write_value = mem.writer(value_ptr, m.value_size_sys)

    def lookup():
        write_value(op(m, read_key()))
        return 0
    return lookup


def update_call(mem, m, key_ptr: int, value_ptr: int, flags: int):
    """BPF_MAP_UPDATE_ELEM after the checks: copy key and value in, update."""
    op = m.ops.map_update_elem_sys
    key_view = mem.view(key_ptr, m.key_size)
    value_view = mem.view(value_ptr, m.value_size_sys)
    if key_view is not None and value_view is not None:
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
        def pinned_delete():
            op(m, key_view.tobytes())
            return 0
        return pinned_delete
    read_key = mem.reader(key_ptr, m.key_size)

    def delete():
        op(m, read_key())
        return 0
    return delete


def get_next_key_call(mem, m, key_ptr: int, next_key_ptr: int):
    """BPF_MAP_GET_NEXT_KEY after the checks: copy the key in (if any), step, copy out."""
    op = m.ops.map_get_next_key
    key_size = m.key_size
    key_view = mem.view(key_ptr, key_size) if key_ptr else None
    next_view = mem.view(next_key_ptr, key_size)
    if next_view is not None and (key_view is not None or not key_ptr):
        if key_view is None:
            def pinned_first_key():
                next_view[:] = op(m, None)
                return 0
            return pinned_first_key

        def pinned_get_next_key():
            next_view[:] = op(m, key_view.tobytes())
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
