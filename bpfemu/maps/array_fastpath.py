"""Decoded calls of ARRAY and PERCPU_ARRAY on pinned buffers (fastpath.py), the op folded in.

fastpath.py's pinned calls copy the key out of the caller's buffer, call the map's op and
copy its result; these do the op's common case on the value area itself (array_store.py):
one memmove between the caller's pinned buffer and the element. They exist for speed alone:
each is the same steps as the function it names in arraymap.py, with the same result, and
for cases it does not fold the builder returns None and fastpath.py's own call serves.
Each closure holds the value block itself, so it stays valid while the call is cached.
"""
import ctypes
import errno

from ..errors import BpfError
from ..memory import Memory
from ..uapi.consts import BPF_ANY, BPF_EXIST
from .array_store import ArrayValues

_E2BIG, _ENOENT = errno.E2BIG, errno.ENOENT


def array_pinned_lookup_call(array, key_view, value_view):
    """array_map_lookup_elem_sys(): the element's bytes out; ENOENT out of range."""
    values = array.values
    if not isinstance(values, ArrayValues):
        return None
    block, base, stride, size = values.buf, values.addr, values.stride, values.size
    max_entries = array.max_entries
    dst_buf = Memory.char_array(value_view)
    dst = ctypes.addressof(dst_buf)
    memmove, from_bytes = ctypes.memmove, int.from_bytes

    def pinned_array_lookup():
        index = from_bytes(key_view, "little")
        if index >= max_entries:
            raise BpfError(_ENOENT)
        memmove(dst, base + index * stride, size)
        return 0
    pinned_array_lookup.keep = (block, dst_buf)
    return pinned_array_lookup


def array_pinned_update_call(array, key_view, value_view, flags: int):
    """array_map_update_elem() / bpf_percpu_array_update() with BPF_ANY or BPF_EXIST on a
    map without a spin lock: the only error left is E2BIG out of range."""
    values = array.values
    if not isinstance(values, ArrayValues) or flags not in (BPF_ANY, BPF_EXIST) \
            or array.has_spin_lock:
        return None
    block, base, stride, size = values.buf, values.addr, values.stride, values.size
    max_entries = array.max_entries
    src_buf = Memory.char_array(value_view)
    src = ctypes.addressof(src_buf)
    memmove, from_bytes = ctypes.memmove, int.from_bytes

    def pinned_array_update():
        index = from_bytes(key_view, "little")
        if index >= max_entries:
            raise BpfError(_E2BIG)
        memmove(base + index * stride, src, size)
        return 0
    pinned_array_update.keep = (block, src_buf)
    return pinned_array_update
