"""Decoded calls of ARRAY and PERCPU_ARRAY on pinned buffers (the decoded-call seam,
fastpath.py).

The key of an array is its index, read where it lies: these calls hand the map's functions a
view of the caller's pinned key instead of a copy of it, and copy the value between the
caller's buffer and the element with one slice copy. Each calls the map's own functions
(arraymap.py), which do every check; nothing here decides anything. As the kernel's
array_map_gen_lookup() does the lookup in place of a call, these exist for speed alone.

Two outcomes that are not a copy are returned as -errno instead of raised, because raising
(a BpfError is an OSError) costs more than the kernel's whole call: the NULL element of a
lookup out of range, which bpf_map_copy_value() turns into ENOENT, and the delete arrays
refuse whatever the key (the op's ``always_errno``), once the pinned key cannot fault.
"""
from errno import ENOENT

from .arraymap import array_map_elem_sys


def array_pinned_lookup_call(m, key_view, value_view):
    """BPF_MAP_LOOKUP_ELEM on an array, both buffers pinned: array_map_lookup_elem_sys()
    as its two steps, the element (array_map_elem_sys) and bpf_map_copy_value()'s NULL."""
    elem = array_map_elem_sys

    def pinned_array_lookup():
        value = elem(m, key_view)
        if value is None:
            return -ENOENT
        value_view[:] = value
        return 0
    return pinned_array_lookup


def array_pinned_update_call(m, key_view, value_view, flags: int):
    """BPF_MAP_UPDATE_ELEM on an array, both buffers pinned: the op copies the value in."""
    op = m.ops.map_update_elem_sys

    def pinned_array_update():
        op(m, key_view, value_view, flags)
        return 0
    return pinned_array_update


def array_pinned_delete_call(m, key_view):
    """BPF_MAP_DELETE_ELEM on an array, the key pinned (its copy cannot fault): the op
    refuses every key with one errno, which this returns without calling it."""
    op = m.ops.map_delete_elem
    refused = getattr(op, "always_errno", None)
    if refused is None:
        def pinned_array_delete():
            op(m, key_view)
            return 0
        return pinned_array_delete

    def pinned_array_delete_refused():
        return -refused
    return pinned_array_delete_refused

