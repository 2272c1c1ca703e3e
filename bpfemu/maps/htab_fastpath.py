"""Decoded calls of hash maps on pinned buffers (fastpath.py), with the map's op folded in.

fastpath.py's pinned calls copy the key out of the caller's buffer and call the map's op;
these do the common case of that op themselves, on the map's columns held in the closure,
and call the op for everything else. They exist for speed alone: each inlined case below is
the same steps as the function it names, in hashtab.py, and gives the same result. They
need the map's values in one arena (``htab_arena``); for other maps, or where a case does
not apply, the builder returns None and fastpath.py's own call serves.

Every container a closure holds is one the map changes in place only (elems, elem_key,
elem_next, elem_hash, heads, pending, deleted, free_slots, the arena).
"""
import errno

from ..errors import BpfError
from ..memory import Memory
from ..uapi.consts import BPF_ANY, BPF_EXIST, BPF_NOEXIST
from .hashtab import (NO_WALK, WALK_ORDER_MIN_STEPS, _refill_free_slots, _replace_elem, alloc_htab_elem,
                      free_htab_elem, htab_arena, htab_map_get_next_key, htab_next_bucket,
                      htab_walk_start)

_E2BIG, _EEXIST, _ENOENT = errno.E2BIG, errno.EEXIST, errno.ENOENT


def htab_pinned_lookup_call(htab, key_view, value_view):
    """map_lookup_elem() on any hash map: the syscall's lookup touches no LRU bit, so it is
    htab_map_lookup_elem_sys() for all four types (the slot's whole value area)."""
    arena = htab_arena(htab)
    if arena is None:
        return None
    elems = htab.elems
    size = htab.slot_size
    value_buf = Memory.char_array(value_view)

    def pinned_htab_lookup():
        l = elems.get(key_view.tobytes())
        if l is None:
            raise BpfError(_ENOENT)
        o = l * size
        value_buf.raw = arena[o:o + size]
        return 0
    return pinned_htab_lookup


def htab_pinned_update_call(htab, key_view, value_view, flags: int):
    """htab_map_update_elem() on a HASH map with BPF_ANY, BPF_NOEXIST or BPF_EXIST, inlined:
    a new key becomes a pending element; an existing one is replaced by a new element
    (alloc_htab_elem(): this CPU's spare, or a free slot) at its bucket's head
    (_replace_elem()), the old one becoming the spare or, without preallocation, freed.
    Errors in the function's order: check_flags() (EEXIST, ENOENT), then E2BIG."""
    if htab.percpu or htab.is_lru or flags not in (BPF_ANY, BPF_NOEXIST, BPF_EXIST):
        return None
    arena = htab_arena(htab)
    if arena is None:
        return None
    elems, keys = htab.elems, htab.elem_key
    pending, free, deleted = htab.pending, htab.free_slots, htab.deleted
    size = htab.slot_size
    # BPF_EXIST adds no key: a limit of 0 folds that check into the capacity check.
    limit = htab.max_entries if flags != BPF_EXIST else 0
    may_replace = flags != BPF_NOEXIST
    frees_old = htab.extra_elems is None            # NO_PREALLOC

    def pinned_htab_update():
        key = key_view.tobytes()
        if key not in elems:
            if len(elems) < limit:
                l = free.pop() if free and not deleted else _refill_free_slots(htab)
                o = l * size
                arena[o:o + size] = value_view
                keys[l] = key                       # _link_head(): pending until a walk
                elems[key] = l                      # (a free slot's elem_next is PENDING)
                pending.append(l)
                htab.walk_keys = NO_WALK            # no walk order counts a new element
                return 0
            raise BpfError(_E2BIG if limit else _ENOENT)
        if not may_replace:
            raise BpfError(_EEXIST)
        l_old = elems[key]
        l = alloc_htab_elem(htab, l_old)
        o = l * size
        arena[o:o + size] = value_view
        _replace_elem(htab, l, l_old, key)
        if frees_old:
            free_htab_elem(htab, l_old)
        return 0
    return pinned_htab_update


def htab_pinned_delete_call(htab, key_view):
    """htab_map_delete_elem() on HASH and PERCPU_HASH: out of the key index, onto
    ``deleted`` (the bucket list waits for the next walk or slot allocation)."""
    if htab.is_lru:
        return None
    elems, keys, deleted = htab.elems, htab.elem_key, htab.deleted
    pop = elems.pop

    def pinned_htab_delete():
        l = pop(key_view.tobytes(), None)
        if l is None:
            raise BpfError(_ENOENT)
        keys[l] = None
        deleted.append(l)
        return 0
    return pinned_htab_delete


def htab_pinned_get_next_key_call(htab, key_view, next_view):
    """htab_map_get_next_key() from a key: a walk passes back the key it was just given.

    A long walk, once it has taken more steps than building the order costs, gets every key
    in walk order at once (hashtab.htab_walk_start, htab_walk_order), and each step is then
    the next item, as long as the lists stay as they were: anything that changes them
    drops the order (_walk_forget), and so does a new element; elements still to unlink
    (``deleted``) keep a step off it. A walk that starts on a map none of whose elements is
    listed yet gets an order of the pending elements instead (htab_pending_walk_order).
    The order is let go when the walk reaches its end.

    Otherwise, when nothing is pending and the cursor's slot holds that key, the next
    element is the slot's successor in its bucket, or else the head of the next non-empty
    bucket. Anything else (a key the walk did not return last, pending elements to link
    first) is the function itself.

    Like a lookup, this step runs without the emulator's lock (``lockless``): Linux's
    map_get_next_key() holds only rcu_read_lock(), and the step only reads, one item at a
    time, what an update or delete changes under the lock (an order is never changed, only
    replaced). A step that races one returns a key that was in the map during the call,
    as an RCU walk can. If the slot it lands on holds no key (an element deleted meanwhile,
    or deleted earlier and still in its list: hashtab.py's ``deleted``), or its bucket
    emptied, it starts again under the lock. The function itself, which syncs the lists
    (htab_sync_buckets), and the building of an order always run under the lock."""
    if key_view is None or htab.sparse:
        return None
    keys, nxt, hashes, heads = htab.elem_key, htab.elem_next, htab.elem_hash, htab.heads
    pending, deleted, mask = htab.pending, htab.deleted, htab.bucket_mask
    elems = htab.elems
    get_next_key, next_bucket = htab_map_get_next_key, htab_next_bucket
    lock = htab.kernel.lock
    next_buf = Memory.char_array(next_view)

    def pinned_htab_get_next_key():
        key = key_view.tobytes()
        if not deleted:
            order = htab.walk_keys
            i = order[0]
            if order[i] == key:             # the key this walk was given last
                i += 1
                found = order[i]
                if found is None:           # the end: let the order go (_walk_forget)
                    htab.walk_keys = NO_WALK
                    htab.walk_steps = 0
                    raise BpfError(_ENOENT)
                order[0] = i
                # .value copies a key that fills the array whole, NULs too, and costs a
                # little less than .raw.
                next_buf.value = found
                return 0
        if not pending:
            l = htab.walk_cursor
            if l >= 0 and keys[l] == key:
                n = nxt[l]
                if n < 0:                            # last in its bucket: the next bucket
                    b = (hashes[l] & mask) + 1
                    n = heads[b]                     # past the last bucket: a -1 sentinel
                    if n < 0:
                        b += 1                       # most runs of empty buckets are short
                        n = heads[b]
                        if n < 0:
                            b = next_bucket(htab, b)
                            if b is None:
                                raise BpfError(_ENOENT)
                            n = heads[b]
                found = keys[n] if n >= 0 else None
                if found is not None:
                    htab.walk_cursor = n
                    next_buf.value = found
                    steps = htab.walk_steps + 1
                    htab.walk_steps = steps
                    if steps >= WALK_ORDER_MIN_STEPS and steps << 3 >= len(elems):
                        with lock:
                            htab_walk_start(htab, found)
                    return 0
        with lock:
            next_buf.value = get_next_key(htab, key)
        return 0
    pinned_htab_get_next_key.lockless = True
    return pinned_htab_get_next_key
