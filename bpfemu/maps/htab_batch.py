"""LOOKUP_BATCH and LOOKUP_AND_DELETE_BATCH for the hash maps: the batch half of
kernel/bpf/hashtab.c (__htab_map_lookup_and_delete_batch and its eight wrappers).

The batch token is a u32 bucket index, and buckets are never split: a bucket that does not
fit in what is left of ``count`` ends the call (ENOSPC if nothing was copied yet), its index
goes back in out_batch, and the caller resumes there. Walking past the last bucket is ENOENT,
together with whatever was copied.

Every handler takes (emu, map, batch attr, caller's attr reference), like the generic ones
in bpfemu.batch_cmds.
"""
import errno
import struct

from ..errors import BpfError
from ..uapi.consts import BPF_F_LOCK, BPF_NOEXIST
from ..usercopy import copy_runs_to_user, copy_to_user, put_attr_u32
from .lru import bpf_common_lru_pop_free_many, bpf_lru_local_free_peek, bpf_lru_push_free_many

_U32 = struct.Struct("<I")
COUNT_OFF = 32                     # offsetof(union bpf_attr, batch.count)


def __htab_map_lookup_and_delete_batch(emu, htab, b, uattr, do_delete: bool,
                                       is_lru: bool, is_percpu: bool) -> int:
    elem_map_flags = b.elem_flags
    if elem_map_flags & ~BPF_F_LOCK or (elem_map_flags & BPF_F_LOCK and not htab.has_spin_lock):
        raise BpfError(errno.EINVAL)
    if b.flags:
        raise BpfError(errno.EINVAL)
    max_count = b.count
    if not max_count:
        return 0
    put_attr_u32(emu, uattr, COUNT_OFF, 0)
    mem = emu.mem
    batch = 0
    if b.in_batch:
        batch = _U32.unpack(mem.read(b.in_batch, 4))[0]
    n_buckets = htab.n_buckets
    if batch >= n_buckets:
        raise BpfError(errno.ENOENT)

    # Decide which whole buckets this call takes, and how it ends, before touching anything.
    store = htab.store
    elems, bucket_ids, ends, stop = store.batch_buckets(batch, max_count)
    total = len(elems)
    ret = 0
    if stop is None:                        # only empty buckets left
        batch = n_buckets
        ret = errno.ENOENT
    else:
        batch = stop                        # the first bucket that did not fit
        if total == 0:
            ret = errno.ENOSPC

    # Keys and values bucket by bucket, as the kernel copies them (split only if needed).
    keys = store.keys_of(elems)
    key_bytes = b"".join(keys)
    value_bytes = store.values_of(elems)
    value_size = len(value_bytes) // total if total else 0

    def groups():
        """The buckets' key and value chunks: the copy goes bucket by bucket."""
        key_size = htab.key_size
        starts = [0] + ends[:-1]
        return ([key_bytes[a * key_size:e * key_size] for a, e in zip(starts, ends)],
                [value_bytes[a * value_size:e * value_size] for a, e in zip(starts, ends)])

    fault = False
    done = total                            # elements whose bucket's copy succeeded
    if total:
        try:
            copy_runs_to_user(mem, b.keys, key_bytes, b.values, value_bytes, groups)
        except BpfError as e:
            fault = True
            # The kernel unlinks a bucket's elements before copying them out, so the
            # bucket whose copy faulted is lost too.
            done = ends[e.group]
    if do_delete and done:
        # Elements are freed last-unlinked first (the batch_flink list), i.e. from the
        # tail of each bucket.
        if done < total:
            n_done = ends.index(done) + 1
            elems, bucket_ids, ends = elems[:done], bucket_ids[:n_done], ends[:n_done]
        store.unlink_buckets(elems, bucket_ids)
        if len(ends) == done:               # one element a bucket
            free_order = elems
        else:
            free_order = []
            start = 0
            for end in ends:
                free_order += elems[start:end][::-1]
                start = end
        if is_lru:
            bpf_lru_push_free_many(htab.lru, free_order)   # htab_lru_push_free() each
        else:
            store.free_many(free_order)     # free_htab_elem()
    if fault:
        raise BpfError(errno.EFAULT)

    # copy # of entries and next batch
    copy_to_user(mem, b.out_batch, _U32.pack(batch))
    put_attr_u32(emu, uattr, COUNT_OFF, total)
    if ret:
        raise BpfError(ret)
    return 0


def htab_map_lookup_batch(emu, htab, b, uattr):
    return __htab_map_lookup_and_delete_batch(emu, htab, b, uattr, False, False, False)


def htab_map_lookup_and_delete_batch(emu, htab, b, uattr):
    return __htab_map_lookup_and_delete_batch(emu, htab, b, uattr, True, False, False)


def htab_percpu_map_lookup_batch(emu, htab, b, uattr):
    return __htab_map_lookup_and_delete_batch(emu, htab, b, uattr, False, False, True)


def htab_percpu_map_lookup_and_delete_batch(emu, htab, b, uattr):
    return __htab_map_lookup_and_delete_batch(emu, htab, b, uattr, True, False, True)


def htab_lru_map_lookup_batch(emu, htab, b, uattr):
    return __htab_map_lookup_and_delete_batch(emu, htab, b, uattr, False, True, False)


def htab_lru_map_lookup_and_delete_batch(emu, htab, b, uattr):
    return __htab_map_lookup_and_delete_batch(emu, htab, b, uattr, True, True, False)


def htab_lru_percpu_map_lookup_batch(emu, htab, b, uattr):
    return __htab_map_lookup_and_delete_batch(emu, htab, b, uattr, False, True, True)


def htab_lru_percpu_map_lookup_and_delete_batch(emu, htab, b, uattr):
    return __htab_map_lookup_and_delete_batch(emu, htab, b, uattr, True, True, True)


# --- UPDATE_BATCH and DELETE_BATCH: generic_map_*_batch() over the element ops, in bulk -------
#
# The kernel's generic batches call htab_map_update_elem() / htab_map_delete_elem() once per
# element. A run of elements that each call would treat alike is done at once by the store
# (a bulk operation, one undo entry); the first element outside the run goes through the
# element op, which raises its errno or does what it does, and the loop comes back here.

# Struct("ks" * n) per (key size, n), kept: unpack_from() splits a run of keys at C speed, where
# a list comprehension of slices costs a few bytecodes a key. (Bounded: cleared when full.)
_SPLITTERS: dict = {}


def _split(buf: bytes, size: int, start: int, end: int) -> list:
    """The size-byte pieces of buf from piece start to piece end (as bytes)."""
    n = end - start
    splitter = _SPLITTERS.get((size, n))
    if splitter is None:
        if len(_SPLITTERS) >= 256:
            _SPLITTERS.clear()
        splitter = _SPLITTERS[(size, n)] = struct.Struct(f"{size}s" * n)
    return list(splitter.unpack_from(buf, start * size))


def _new_keys(lookup, kbuf: bytes, size: int, start: int, end: int) -> list:
    """The keys of elements start.. up to the first one in the map (lookup finds it) or seen
    earlier in the run (its update would be a replace). They are split and looked up a
    window at a time: the first key alone, then 32 keys, then windows eight times as long.
    The batch loop comes back here after each element the element op takes (a present or
    repeated key), so what one call splits and looks up is bounded by eight times what it
    returns, plus 33, not by the rest of the batch: a batch of present keys costs one
    lookup an element here, not n - i. (Each window is a few C-level passes: a batch of new
    keys takes three windows for 256 keys.)"""
    keys: list = []
    seen: set = set()
    window = 1
    while start < end:
        stop = min(end, start + window)
        part = _split(kbuf, size, start, stop)
        found = list(map(lookup, part))
        if found.count(None) < len(part):       # stop before the first key in the map
            part = part[:found.index(next(x for x in found if x is not None))]
            stop = end
        seen.update(part)
        keys += part
        if len(seen) < len(keys):               # a key repeated: stop before the second
            del keys[_before_first_repeat(keys):]
            break
        start = stop
        window = 32 if window == 1 else window * 8
    return keys


def _before_first_repeat(items: list) -> int:
    """How many of items come before the first one seen earlier in the list (all: none is)."""
    seen = set()
    for i, x in enumerate(items):
        if x in seen:
            return i
        seen.add(x)
    return len(items)


def htab_map_update_elems(htab, kbuf: bytes, vbuf: bytes, flags: int, start: int,
                          end: int) -> int:
    """htab_map_update_elem() (or the per-CPU syscall update) of elements start.. of a
    batch, as far as they are keys not in the map and not repeated, and fit (no E2BIG):
    each would be alloc_htab_elem() of a free element, its value copied whole, and
    add_head(). Returns the index of the first element not updated."""
    if flags & ~BPF_NOEXIST or htab.is_lru:     # BPF_ANY or BPF_NOEXIST; LRU: one by one
        return start
    store = htab.store
    room = htab.max_entries - store.count()     # alloc_htab_elem(): E2BIG past it
    if room <= 0:
        return start
    if end - start > room:
        end = start + room
    keys = _new_keys(store.lookup, kbuf, htab.key_size, start, end)
    n = len(keys)
    if not n:                                   # a replace: the element op's path
        return start
    size = htab.slot_size
    store.alloc_add_many(keys, vbuf[start * size:(start + n) * size])
    return start + n


def htab_map_delete_elems(htab, kbuf: bytes, start: int, end: int) -> int:
    """htab_map_delete_elem() (the LRU one too) of elements start.. of a batch, as far as
    their keys are in the map and not repeated: unlink and free each (for an LRU map, give
    its node back to the LRU). Returns the index of the first element not deleted."""
    store = htab.store
    keys = _split(kbuf, htab.key_size, start, end)
    found = list(map(store.lookup, keys))
    n = found.index(None) if None in found else len(found)
    slots = found[:n]
    if len(set(slots)) < n:                     # a key repeated: the second is ENOENT
        n = _before_first_repeat(slots)
        slots = slots[:n]
    if not n:
        return start
    store.unlink_many(slots)
    if htab.is_lru:
        bpf_lru_push_free_many(htab.lru, slots)     # htab_lru_push_free() each
    else:
        store.free_many(slots)                  # free_htab_elem()
    return start + n


def htab_lru_map_update_elems(htab, kbuf: bytes, vbuf: bytes, flags: int, start: int,
                              end: int) -> int:
    """htab_lru_map_update_elem() (or the LRU per-CPU syscall update) of elements start.. of
    a batch, as far as each one's bpf_lru_pop_free() takes a node from this CPU's local free
    list (no refill, so nothing is evicted: the common LRU only) and its key is neither in
    the map nor repeated: each would be the node to the pending list's head, its value
    copied whole (copy_map_value(), or pcpu_copy_value() on every CPU), and add_head().
    Returns the index of the first element not updated; the element op takes that one (and
    the refill, with its evictions, when the local free list is empty)."""
    if flags & ~BPF_NOEXIST:                    # BPF_ANY or BPF_NOEXIST
        return start
    lru = htab.lru
    cpu = htab.kernel.cpu
    nodes = bpf_lru_local_free_peek(lru, cpu, end - start)
    if not nodes:
        return start
    store = htab.store
    keys = _new_keys(store.lookup, kbuf, htab.key_size, start, start + len(nodes))
    n = len(keys)
    if not n:                                   # a replace: the element op's path
        return start
    nodes = nodes[:n]
    bpf_common_lru_pop_free_many(lru, cpu, nodes)
    size = htab.slot_size
    store.copy_add_many(nodes, keys, vbuf[start * size:(start + n) * size])
    return start + n
