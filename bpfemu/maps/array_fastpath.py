"""Decoded calls of ARRAY and PERCPU_ARRAY on pinned buffers (the decoded-call seam,
fastpath.py).

The key of an array is its index, read where it lies: these calls hand the op a view of the
caller's pinned key instead of a copy of it, and copy the value between the caller's buffer
and the element with one slice copy. Each calls the map's own functions (arraymap.py), which
do every check and raise every errno; nothing here decides anything. As the kernel's
array_map_gen_lookup() does the lookup in place of a call, these exist for speed alone.
"""


def array_pinned_lookup_call(m, key_view, value_view):
    """BPF_MAP_LOOKUP_ELEM on an array, both buffers pinned."""
    op = m.ops.map_lookup_elem_sys          # array_map_lookup_elem_sys: a view of the element

    def pinned_array_lookup():
        value_view[:] = op(m, key_view)
        return 0
    return pinned_array_lookup


def array_pinned_update_call(m, key_view, value_view, flags: int):
    """BPF_MAP_UPDATE_ELEM on an array, both buffers pinned: the op copies the value in."""
    op = m.ops.map_update_elem_sys

    def pinned_array_update():
        op(m, key_view, value_view, flags)
        return 0
    return pinned_array_update
