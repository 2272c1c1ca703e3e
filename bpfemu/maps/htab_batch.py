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
from ..uapi.consts import BPF_F_LOCK
from ..usercopy import copy_pairs_to_user, copy_to_user, put_attr

_U32 = struct.Struct("<I")
COUNT_OFF = 32                     # offsetof(union bpf_attr, batch.count)


def __htab_map_lookup_and_delete_batch(emu, htab, b, uattr, do_delete: bool,
                                       is_lru_map: bool, is_percpu: bool) -> int:
    elem_map_flags = b.elem_flags
    if elem_map_flags & ~BPF_F_LOCK or (elem_map_flags & BPF_F_LOCK and not htab.has_spin_lock):
        raise BpfError(errno.EINVAL)
    if b.flags:
        raise BpfError(errno.EINVAL)
    max_count = b.count
    if not max_count:
        return 0
    put_attr(emu, uattr, COUNT_OFF, b"\0\0\0\0")
    mem = emu.mem
    batch = 0
    if b.in_batch:
        batch = _U32.unpack(mem.read(b.in_batch, 4))[0]
    n_buckets = htab.n_buckets
    if batch >= n_buckets:
        raise BpfError(errno.ENOENT)

    # Decide which whole buckets this call takes, and how it ends, before touching anything.
    store = htab.store
    plan = []                               # (bucket index, its slots head first)
    total = 0
    ret = 0
    while True:
        nb = store.next_bucket(batch)
        if nb is None:                      # only empty buckets left
            batch = n_buckets
            ret = errno.ENOENT
            break
        batch = nb
        bucket = store.bucket_elems(nb)
        bucket_cnt = len(bucket)
        if bucket_cnt > max_count - total:
            if total == 0:
                ret = errno.ENOSPC
            break
        plan.append((nb, bucket))
        total += bucket_cnt
        batch += 1
        if batch >= n_buckets:
            ret = errno.ENOENT
            break

    # One key chunk and one value chunk per bucket, copied bucket by bucket.
    key_of, value_of = store.key, store.value
    key_lists = [[key_of(l) for l in elems] for _, elems in plan]
    key_chunks = [b"".join(keys) for keys in key_lists]
    value_chunks = [b"".join([value_of(l) for l in elems]) for _, elems in plan]
    done = len(plan)                        # buckets whose copy to the user succeeded
    fault = False
    if plan:
        try:
            copy_pairs_to_user(mem, b.keys, key_chunks, b.values, value_chunks)
        except BpfError as e:
            fault = True
            done = e.group
    if do_delete:
        # The kernel unlinks a bucket's elements before copying them out, so the bucket whose
        # copy faulted is lost too. Elements are freed last-unlinked first (the batch_flink
        # list), i.e. from the tail of each bucket.
        delete = htab.ops.map_delete_elem   # LRU maps: the node goes back to the LRU
        for keys in key_lists[:done + 1 if fault else done]:
            for key in reversed(keys):
                delete(htab, key)
    if fault:
        raise BpfError(errno.EFAULT)

    # copy # of entries and next batch
    copy_to_user(mem, b.out_batch, _U32.pack(batch))
    put_attr(emu, uattr, COUNT_OFF, _U32.pack(total))
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
