"""The four batch commands: bpf_map_do_batch() of kernel/bpf/syscall.c and the generic
per-element implementations (generic_map_lookup_batch, generic_map_update_batch,
generic_map_delete_batch) that map types without their own put in their ops table.

Front end, in the kernel's order: CHECK_ATTR (done by the entry), the map fd (EBADF /
EINVAL), the fd's permission after freezing (EPERM: LOOKUP_BATCH needs read, the others
write, LOOKUP_AND_DELETE_BATCH both), then ENOTSUPP when the map type has no such
operation. Nothing writes ``batch.count`` until a handler does, so every front-end error
leaves the caller's count as it was.

This module imports nothing from bpfemu.maps, so the ops tables can refer to it.
"""
import errno
import struct
from collections import namedtuple

from .batch_fastpath import batch_call, batch_not_supported_call
from .errors import ENOTSUPP, BpfError
from .fdtable import FMODE_READ, FMODE_WRITE
from .uapi.attr import MAP_BATCH, compiled
from .uapi.consts import BPF_F_LOCK
from .uapi.consts import BpfCmd as C
from .usercopy import copy_pairs_to_user, copy_runs_to_user, copy_to_user, put_attr_u32

_BATCH = compiled(MAP_BATCH)
_U32 = struct.Struct("<I")
COUNT_OFF = 32                     # offsetof(union bpf_attr, batch.count)


# attr->batch (a namedtuple, not typing.NamedTuple: typing costs start-up)
BatchAttr = namedtuple("BatchAttr", ("in_batch", "out_batch", "keys", "values", "count",
                                     "map_fd", "elem_flags", "flags"))


def _check_elem_flags(m, elem_flags: int) -> None:
    if elem_flags & ~BPF_F_LOCK:
        raise BpfError(errno.EINVAL)
    if elem_flags & BPF_F_LOCK and not m.has_spin_lock:
        raise BpfError(errno.EINVAL)


# Keys and values are copied in a chunk of elements at a time (one copy per buffer, one
# process_vm_readv for both where unpinned), then handed to the map's op one by one, as the
# kernel's loop does, or a run of them at once to the map type's bulk form of the op
# (map_update_elems, map_delete_elems: the same op on each element in turn, as far as it
# can go without a Python call per element; the loop then goes on one by one from where it
# stopped). A chunk that faults anywhere is replayed element by element, which stops where
# the kernel would.
_CHUNK = 1024


def _chunk(mem, keys: int, key_size: int, values, value_size: int, first: int, n: int):
    """(keys bytes, values bytes or None) of elements first..first+n-1 of the caller's
    arrays, or None when a copy faults (the caller then goes element by element)."""
    ko = keys + first * key_size
    try:
        if values is not None:
            return mem.read2(ko, n * key_size, values + first * value_size, n * value_size)
        return mem.read(ko, n * key_size), None
    except BpfError:
        return None


def generic_map_delete_batch(emu, m, b: BatchAttr, uattr) -> int:
    """Delete keys[0..count) one by one; stop at the first error; count = deleted."""
    _check_elem_flags(m, b.elem_flags)
    max_count = b.count
    if not max_count:
        return 0
    put_attr_u32(emu, uattr, COUNT_OFF, 0)
    mem = emu.mem
    key_size = m.key_size
    delete = m.ops.map_delete_elem
    delete_elems = m.ops.map_delete_elems
    err = None
    cp = 0
    while cp < max_count and err is None:
        n = min(_CHUNK, max_count - cp)
        chunk = _chunk(mem, b.keys, key_size, None, 0, cp, n)
        try:
            if chunk is not None:
                kbuf = chunk[0]
                i = 0
                while i < n:
                    if delete_elems is not None:
                        done = delete_elems(m, kbuf, i, n)
                        cp += done - i
                        i = done
                        if i == n:
                            break
                    delete(m, kbuf[i * key_size:(i + 1) * key_size])
                    cp += 1
                    i += 1
                continue
            end = cp + n
            while cp < end:
                key = mem.read(b.keys + cp * key_size, key_size)
                delete(m, key)
                cp += 1
        except BpfError as e:
            err = e
    put_attr_u32(emu, uattr, COUNT_OFF, cp)
    if err is not None:
        raise err
    return 0


def generic_map_update_batch(emu, m, b: BatchAttr, uattr) -> int:
    """Update (keys[i], values[i]) one by one with elem_flags; stop at the first error;
    count = elements updated."""
    _check_elem_flags(m, b.elem_flags)
    value_size = m.value_size_sys                   # bpf_map_value_size()
    max_count = b.count
    if not max_count:
        return 0
    put_attr_u32(emu, uattr, COUNT_OFF, 0)
    mem = emu.mem
    key_size = m.key_size
    update = m.ops.map_update_elem_sys              # bpf_map_update_value()
    update_elems = m.ops.map_update_elems
    flags = b.elem_flags
    err = None
    cp = 0
    while cp < max_count and err is None:
        n = min(_CHUNK, max_count - cp)
        # DEVIATION(batch-prefetch): a chunk's keys and values are copied before its first
        # update. The kernel copies each element's just before updating it; the two differ
        # only if the values buffer is the same map's mmap()ed array, where an update could
        # change a later element's value before it is read.
        chunk = _chunk(mem, b.keys, key_size, b.values, value_size, cp, n)
        try:
            if chunk is not None:
                kbuf, vbuf = chunk
                i = 0
                while i < n:
                    if update_elems is not None:
                        done = update_elems(m, kbuf, vbuf, flags, i, n)
                        cp += done - i
                        i = done
                        if i == n:
                            break
                    update(m, kbuf[i * key_size:(i + 1) * key_size],
                           vbuf[i * value_size:(i + 1) * value_size], flags)
                    cp += 1
                    i += 1
                continue
            end = cp + n
            while cp < end:
                key, value = mem.read2(b.keys + cp * key_size, key_size,
                                       b.values + cp * value_size, value_size)
                update(m, key, value, flags)
                cp += 1
        except BpfError as e:
            err = e
    put_attr_u32(emu, uattr, COUNT_OFF, cp)
    if err is not None:
        raise err
    return 0


def generic_map_lookup_batch(emu, m, b: BatchAttr, uattr) -> int:
    """Walk with map_get_next_key from the key in in_batch (NULL: from the start), copying
    up to count elements; ENOENT when the walk ends. out_batch gets the last key copied."""
    _check_elem_flags(m, b.elem_flags)
    max_count = b.count
    if not max_count:
        return 0
    put_attr_u32(emu, uattr, COUNT_OFF, 0)
    mem = emu.mem
    key_size = m.key_size
    prev_key = mem.read(b.in_batch, key_size) if b.in_batch else None
    lookup_run = m.ops.map_lookup_run
    run = lookup_run(m, prev_key, max_count) if lookup_run is not None else None
    if run is not None:
        # The whole walk at once: every get_next_key and lookup succeeds until the end.
        kbuf, vbuf, cp, ended = run
        if cp:
            vsize = len(vbuf) // cp

            def groups():                           # one element a group
                return ([kbuf[i:i + key_size] for i in range(0, cp * key_size, key_size)],
                        [vbuf[i:i + vsize] for i in range(0, cp * vsize, vsize)])
            copy_runs_to_user(mem, b.keys, kbuf, b.values, vbuf, groups)
        put_attr_u32(emu, uattr, COUNT_OFF, cp)
        if cp:
            copy_to_user(mem, b.out_batch, kbuf[-key_size:])
        if ended:
            raise BpfError(errno.ENOENT)
        return 0
    get_next_key = m.ops.map_get_next_key
    lookup = m.ops.map_lookup_elem_sys              # bpf_map_copy_value()
    keys, values = [], []
    err = 0
    cp = 0
    while cp < max_count:
        try:
            key = get_next_key(m, prev_key)
        except BpfError as e:
            err = e.errno
            break
        try:
            value = lookup(m, key)
        except BpfError as e:
            if e.errno != errno.ENOENT:             # gone meanwhile: skip to the next key
                raise
            prev_key = key
            continue
        keys.append(key)
        values.append(value)                        # joined (copied) before anything changes
        cp += 1
        prev_key = key
    if cp:
        # key i then value i, as the kernel copies them
        copy_pairs_to_user(mem, b.keys, keys, b.values, values)
    put_attr_u32(emu, uattr, COUNT_OFF, cp)
    if cp:
        copy_to_user(mem, b.out_batch, prev_key)
    if err:
        raise BpfError(err)
    return 0


def bpf_map_do_batch(emu, raw: bytes, uattr, cmd: int) -> int:
    b = BatchAttr(*_BATCH.unpack_from(raw))
    f = emu.fds.lookup(b.map_fd)
    m = f.obj
    has_read = cmd == C.BPF_MAP_LOOKUP_BATCH or cmd == C.BPF_MAP_LOOKUP_AND_DELETE_BATCH
    has_write = cmd != C.BPF_MAP_LOOKUP_BATCH
    perms = f.mode & ~FMODE_WRITE if m.frozen else f.mode     # map_get_sys_perms()
    if has_read and not perms & FMODE_READ:
        raise BpfError(errno.EPERM)
    if has_write and not perms & FMODE_WRITE:
        raise BpfError(errno.EPERM)
    ops = m.ops
    if cmd == C.BPF_MAP_LOOKUP_BATCH:
        fn = ops.map_lookup_batch
    elif cmd == C.BPF_MAP_LOOKUP_AND_DELETE_BATCH:
        fn = ops.map_lookup_and_delete_batch
    elif cmd == C.BPF_MAP_UPDATE_BATCH:
        fn = ops.map_update_batch
    else:
        fn = ops.map_delete_batch
    # The front end passed (or ends in ENOTSUPP whatever else the attr holds): a call with
    # the same attr bytes can skip it (batch_fastpath.py).
    if fn is None:
        emu.decodable = (batch_not_supported_call, emu.mem, m)
        raise BpfError(ENOTSUPP)
    emu.decodable = (batch_call, emu.mem, m, emu, fn, b, uattr)
    return fn(emu, m, b, uattr)


def map_lookup_batch(emu, raw: bytes, uattr) -> int:
    return bpf_map_do_batch(emu, raw, uattr, C.BPF_MAP_LOOKUP_BATCH)


def map_lookup_and_delete_batch(emu, raw: bytes, uattr) -> int:
    return bpf_map_do_batch(emu, raw, uattr, C.BPF_MAP_LOOKUP_AND_DELETE_BATCH)


def map_update_batch(emu, raw: bytes, uattr) -> int:
    return bpf_map_do_batch(emu, raw, uattr, C.BPF_MAP_UPDATE_BATCH)


def map_delete_batch(emu, raw: bytes, uattr) -> int:
    return bpf_map_do_batch(emu, raw, uattr, C.BPF_MAP_DELETE_BATCH)
