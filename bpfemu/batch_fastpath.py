"""Decoded batch calls: what is left of a batch command once bpf_map_do_batch()'s front end
has passed, for the decoded-call cache (fastpath.DecodedCalls).

The front end of a batch command (the entry's size and tail checks, the copy-in, CHECK_ATTR,
then the map fd, its permission after freezing, and ENOTSUPP for a map type without the
operation: batch_cmds.bpf_map_do_batch) depends on the attr's bytes and on emulator state
whose every change forgets the decoded calls (an fd closed or replaced, a map frozen, pins
changed). A call that repeats a batch call's command, size and attr bytes (count, in_batch,
out_batch, keys, values, elem_flags and flags included) would pass it again, so its decoded
call runs the map type's handler directly, with the attr as decoded: every check the
handler makes (elem_flags, flags, a zero count, the in_batch token, every copy) still runs
on each call, and the bytes behind the pointers are read each time. A call whose attr
differs in any byte (another count, other pointers) is not this call: it goes through the
entry.

Only the in-process caller's decoded calls use these (intercept/decoded.py decodes element
commands alone).
"""
from .errors import ENOTSUPP

# The syscall's result for a batch command the map type has no op for.
_NOT_SUPPORTED = -ENOTSUPP


def batch_call(mem, m, emu, handler, b, uattr):
    """A batch command after its front end: the map type's handler (ops.map_*_batch) on the
    decoded attr ``b`` and the caller's attr ``uattr``, which it writes the count into."""
    def batch():
        return handler(emu, m, b, uattr)
    return batch


def batch_not_supported_call(mem, m):
    """A batch command the map type has no op for (an array's DELETE_BATCH): after the front
    end's fd and permission checks, ENOTSUPP, with nothing read or written."""
    def not_supported():
        return _NOT_SUPPORTED
    return not_supported
