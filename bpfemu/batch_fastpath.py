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
entry, except one that differs in batch.count alone: the front end does not read the count,
so the decoded call is remade with the new count (``recounted``; a caller's last batch of a
range is often shorter than the others).

Only the in-process caller's decoded calls use these (intercept/decoded.py decodes element
commands alone).
"""
from .errors import ENOTSUPP

# offsetof(union bpf_attr, batch.count): a u32
_COUNT_OFF, _COUNT_END = 32, 36

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


def is_batch_build(build: tuple) -> bool:
    """Whether a decoded call's build is a batch command's (recounted() applies)."""
    return build[0] is batch_call or build[0] is batch_not_supported_call


def recounted(build: tuple, cmd: int, size: int, attr_bytes: bytes, new_cmd: int, new_size: int,
              new_bytes: bytes):
    """The build of a decoded batch call (batch_call and its arguments) for new_bytes, when
    they differ from attr_bytes in batch.count alone (same command and size, the count among
    the bytes copied in): the same call with the new count. Else None."""
    if (new_cmd != cmd or new_size != size or size < _COUNT_END
            or len(new_bytes) != len(attr_bytes)
            or new_bytes[:_COUNT_OFF] != attr_bytes[:_COUNT_OFF]
            or new_bytes[_COUNT_END:] != attr_bytes[_COUNT_END:]):
        return None
    if build[0] is batch_not_supported_call:
        return build                            # ENOTSUPP whatever the count
    make, mem, m, emu, handler, b, uattr = build
    count = int.from_bytes(new_bytes[_COUNT_OFF:_COUNT_END], "little")
    return (make, mem, m, emu, handler, b._replace(count=count), uattr)
