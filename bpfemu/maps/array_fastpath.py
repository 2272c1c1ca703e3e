"""Decoded calls of ARRAY and PERCPU_ARRAY on pinned buffers (fastpath.py), the op folded in.

fastpath.py's pinned calls copy the key out of the caller's buffer, call the map's op and
copy its result; these do the op's common case on the value area itself (array_store.py):
one slice copy between the caller's pinned buffer and the element. They exist for speed
alone: each is the same steps as the function it names in arraymap.py, with the same result,
and for cases it does not fold the builder returns None and fastpath.py's own call serves.
Each closure holds a view of the value block, which keeps the block alive while the call is
cached.
"""
import errno
import struct

from ..errors import BpfError
from ..uapi.consts import BPF_ANY, BPF_EXIST
from .array_store import ArrayValues

_E2BIG, _ENOENT = errno.E2BIG, errno.ENOENT
_index = struct.Struct("<I").unpack_from          # u32 index = *(u32 *)key


def array_pinned_lookup_call(array, key_view, value_view):
    """array_map_lookup_elem_sys(): the element's bytes out; ENOENT out of range."""
    values = array.values
    if not isinstance(values, ArrayValues):
        return None
    block, stride, size = values.view, values.stride, values.size
    max_entries = array.max_entries

    def pinned_array_lookup():
        index, = _index(key_view)
        if index >= max_entries:
            raise BpfError(_ENOENT)
        off = index * stride
        value_view[:] = block[off:off + size]
        return 0
    return pinned_array_lookup


def array_pinned_update_call(array, key_view, value_view, flags: int):
    """array_map_update_elem() / bpf_percpu_array_update() with BPF_ANY or BPF_EXIST on a
    map without a spin lock: the only error left is E2BIG out of range."""
    values = array.values
    if not isinstance(values, ArrayValues) or flags not in (BPF_ANY, BPF_EXIST) \
            or array.has_spin_lock:
        return None
    block, stride, size = values.view, values.stride, values.size
    max_entries = array.max_entries

    def pinned_array_update():
        index, = _index(key_view)
        if index >= max_entries:
            raise BpfError(_E2BIG)
        off = index * stride
        block[off:off + size] = value_view
        return 0
    return pinned_array_update
