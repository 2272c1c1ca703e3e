"""HASH, PERCPU_HASH, LRU_HASH and LRU_PERCPU_HASH: kernel/bpf/hashtab.c in Python.

Layout as in the kernel: n_buckets = roundup_pow_of_two(max_entries) buckets, bucket =
jhash(key, hashrnd) & (n_buckets - 1), new and replacing elements linked at the bucket
head, iteration over buckets 0..n-1 and each list from its head.

Elements live in numbered slots, stored column-wise like the kernel's preallocated element
array (htab->elems), so that a full map costs a few dozen bytes per element:

* ``elems``: key -> slot of the linked element. Lookups never hash: only the bucket order
  needs the hash.
* ``pending``: the slots of elements linked since the bucket order was last needed, oldest
  first, not in their bucket lists yet (a list, changed in place only: the decoded calls of
  htab_fastpath.py hold it). Every link goes to a bucket's head, so a bucket's list is
  always newest link first; the pending elements are newer than every listed one and go on
  top, in their order, as soon as anything walks the buckets (``htab_link_pending``). Their
  hashes are computed then, all at once (jhash.htab_map_hash_many), at a tenth of the cost
  of one by one. A walk that starts when every element is pending (a map filled and not
  walked since) sorts them into its order by their hashes instead, and they stay pending
  (``htab_pending_walk_order``). A pending slot's ``elem_next`` is PENDING, and so is a
  free slot's (set when it is freed, ``free_htab_elem``), so that an insert need not write
  it. An element unlinked while pending leaves a stale entry (its slot holds no key;
  counted in ``pending_stale``); if its slot is linked again before the walk, only the
  slot's last entry counts.
* ``deleted``: the slots of HASH and PERCPU_HASH elements deleted since the lists were last
  needed. A delete takes the key out of ``elems`` and clears ``elem_key`` at once, so the
  element is gone for every lookup, update and capacity check; taking it out of its
  bucket's list waits, like linking, until something reads the lists or needs a free
  slot (``htab_sync_buckets``, ``_unlink_deleted``). A map emptied by deletes then resets
  its heads at C speed instead of unlinking one element at a time. Only a walk step that
  lands on a deleted slot can see one, and it checks ``elem_key`` (htab_fastpath.py).
* ``heads``: bucket -> first slot or -1 (``array('i')``, with two -1 after the last bucket;
  a ``SparseHeads`` dict of the non-empty buckets when there are more than HEADS_ARRAY_MAX
  buckets).
* ``elem_next`` (slot -> next slot in its bucket or -1: the hlist_nulls link),
  ``elem_hash`` (``array('I')``) and ``elem_key`` (the key while linked, else None).
* values: slot s's value (the whole per-CPU area for the per-CPU types) is
  ``chunks[s >> chunk_shift][(s & chunk_mask) * slot_size:][:slot_size]``. Chunks are
  fixed-size bytearrays, never resized (each is held through a memoryview), so the live
  views a program's lookup returns (bpfemu.progs) stay attached to the slot's memory. A
  map whose values fit in ARENA_BYTES has one chunk, ``arena`` (``chunk_shift`` 31), which
  the hot paths index as ``arena[s * slot_size:]``.
* HASH and PERCPU_HASH take free slots from ``free_slots`` (LIFO, like a CPU's freelist)
  or from the never-used ones; a preallocated HASH map's replaced element becomes the
  current CPU's spare (``extra_elems``), as in alloc_htab_elem().
* LRU maps: slot i is preallocated LRU node i (``lru_nodes[i]``, an HtabLruElem), and the
  LRU lists of bpf_lru_list.c (lru.py) decide which node, hence which slot, is reused.
"""
import errno
import struct
import sys
from array import array
from bisect import bisect_left
from functools import partial

from ..errors import ENOTSUPP, BpfError
from ..uapi.consts import BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST
from ..uapi.consts import BpfMapType as T
from ..uapi import consts as F  # plain-int flag values (see consts.py)
from .core import BpfMap
from .jhash import htab_hash_func, htab_map_hash_many
from .lru import (BpfLru, BpfLruNode, bpf_lru_node_set_ref, bpf_lru_pop_free, bpf_lru_populate,
                  bpf_lru_push_free)

NUMA_NO_NODE = -1
LOCAL_FREE_TARGET = 128
# HTAB_CREATE_FLAG_MASK
HTAB_CREATE_FLAG_MASK = (F.BPF_F_NO_PREALLOC | F.BPF_F_NO_COMMON_LRU | F.BPF_F_NUMA_NODE
                         | F.BPF_F_RDONLY | F.BPF_F_WRONLY | F.BPF_F_RDONLY_PROG
                         | F.BPF_F_WRONLY_PROG | F.BPF_F_ZERO_SEED)
_PROG_ACCESS = F.BPF_F_RDONLY_PROG | F.BPF_F_WRONLY_PROG

# Up to this many buckets the heads are an array (4 bytes a bucket); beyond, a dict of the
# non-empty ones, so that a huge NO_PREALLOC map costs nothing until it is filled.
HEADS_ARRAY_MAX = 1 << 20
# Values of a map that needs at most ARENA_BYTES for them are one chunk (the "arena", indexed
# directly on the hot paths); bigger maps get chunks of about CHUNK_BYTES as they fill up.
ARENA_BYTES = 1 << 22
CHUNK_BYTES = 1 << 16
# elem_next of a pending slot (linked, not yet in its bucket's list); -1 ends a list.
PENDING = -2
# The walk order when there is none: no key equals its item 0 (see htab_walk_order).
NO_WALK = (0, None)
# A walk gets its whole order at once (htab_walk_start) when its first call links more than
# this many elements and at least half the map (the order costs about 0.4 of that linking),
# or after this many steps and an eighth of the map's elements since the lists last changed
# (those steps have cost more than the order). A walk that starts on a map of more than this
# many elements, all of them pending, orders them without linking them
# (htab_pending_walk_order).
WALK_ORDER_MIN_STEPS = 64


class HtabLruElem(BpfLruNode):
    """struct htab_elem of LRU maps as the LRU lists see it: the node, preallocated and
    reused; its key and value are in the map's slot ``slot``, its hash in ``elem_hash``."""
    __slots__ = ("slot",)


class SparseHeads(dict):
    """Bucket heads of a map with too many buckets for an array: only non-empty buckets
    are stored; a missing one reads as -1 and storing -1 removes it.

    ``next_from`` answers "first non-empty bucket >= b" from a sorted list of bucket
    indices, built on demand; buckets that became empty stay in it (they are skipped),
    new ones are inserted, so a walk that deletes as it goes never rebuilds it."""
    __slots__ = ("_order",)

    def __init__(self):
        super().__init__()
        self._order = None

    def __missing__(self, b):
        return -1

    def __setitem__(self, b, l):
        if l < 0:
            self.pop(b, None)
            return
        order = self._order
        if order is not None and b not in self:
            i = bisect_left(order, b)
            if i == len(order) or order[i] != b:
                order.insert(i, b)
        dict.__setitem__(self, b, l)

    def next_from(self, b):
        order = self._order
        if order is None:
            order = self._order = sorted(self)
        i = bisect_left(order, b)
        n = len(order)
        while i < n:
            if order[i] in self:
                return order[i]
            i += 1
        return None


class BpfHtab(BpfMap):
    """struct bpf_htab."""

    def __init__(self, args, kernel):
        super().__init__(args, kernel)
        self.is_lru = args.map_type in (T.BPF_MAP_TYPE_LRU_HASH, T.BPF_MAP_TYPE_LRU_PERCPU_HASH)
        self.percpu = args.map_type in (T.BPF_MAP_TYPE_PERCPU_HASH, T.BPF_MAP_TYPE_LRU_PERCPU_HASH)
        self.percpu_lru = bool(args.map_flags & F.BPF_F_NO_COMMON_LRU)
        self.prealloc = not args.map_flags & F.BPF_F_NO_PREALLOC
        self.elems: dict[bytes, int] = {}             # key -> slot linked in a bucket
        self.pending: list = []                       # slots linked but not listed yet
        self.pending_stale = 0                        # entries of pending unlinked since
        self.deleted: list = []                       # slots deleted, still in their lists
        self.walk_cursor = -1                         # slot get_next_key returned last
        self.walk_keys = NO_WALK                      # a long walk's order (htab_walk_order)
        # The pending elements were ordered without linking them (htab_pending_walk_order)
        # since pending was last emptied: they are not ordered again, but linked.
        self.pending_ordered = False
        self.walk_steps = 0                           # walk steps since the lists changed
        self.n_buckets = 0
        self.bucket_mask = 0                          # n_buckets - 1
        self.sparse = False                           # heads is a SparseHeads
        self.heads = None                             # bucket -> first slot, or -1
        self.elem_next = array("i")                   # slot -> next slot in the bucket, or -1
        self.elem_hash = array("I")                   # slot -> hash
        self.elem_key: list = []                      # slot -> key while linked, else None
        self.slot_size = self.value_size_sys          # bytes of value a slot holds
        self.chunks: list = []                        # memoryviews of fixed-size bytearrays
        self.chunk_shift = 0
        self.chunk_mask = 0
        self.arena = None                             # chunks[0] if it is the only chunk
        self.n_slots = 0                              # slots made so far
        self.max_slots = 0                            # slots the map can ever need
        self.free_slots: list = []                    # LIFO, non-LRU types
        self.extra_elems = None                       # per CPU spare slot (HASH prealloc)
        self.lru_nodes = None                         # slot -> HtabLruElem (LRU types)
        self.hash_fn = htab_hash_func(args.key_size)  # htab_map_hash() for this key size
        self.hashrnd = 0
        self.lru: BpfLru | None = None


def htab_map_alloc_check(args, kernel) -> None:
    """htab_map_alloc_check(): everything that can be refused before allocating."""
    is_lru = args.map_type in (T.BPF_MAP_TYPE_LRU_HASH, T.BPF_MAP_TYPE_LRU_PERCPU_HASH)
    percpu = args.map_type in (T.BPF_MAP_TYPE_PERCPU_HASH, T.BPF_MAP_TYPE_LRU_PERCPU_HASH)
    percpu_lru = args.map_flags & F.BPF_F_NO_COMMON_LRU
    prealloc = not args.map_flags & F.BPF_F_NO_PREALLOC
    zero_seed = args.map_flags & F.BPF_F_ZERO_SEED
    profile = kernel.profile

    if zero_seed and not profile.cap_sys_admin:
        raise BpfError(errno.EPERM)
    if args.map_flags & ~HTAB_CREATE_FLAG_MASK or (args.map_flags & _PROG_ACCESS) == _PROG_ACCESS:
        raise BpfError(errno.EINVAL)              # ... or !bpf_map_flags_access_ok()
    if not is_lru and percpu_lru:
        raise BpfError(errno.EINVAL)
    if is_lru and not prealloc:
        raise BpfError(ENOTSUPP)
    if args.numa_node != NUMA_NO_NODE and (percpu or percpu_lru):
        raise BpfError(errno.EINVAL)
    if args.max_entries == 0 or args.key_size == 0 or args.value_size == 0:
        raise BpfError(errno.EINVAL)
    if args.key_size + args.value_size >= profile.htab_elem_max:
        raise BpfError(errno.E2BIG)
    if percpu and (args.value_size + 7) // 8 * 8 > profile.pcpu_min_unit_size:
        raise BpfError(errno.E2BIG)


def _roundup_pow_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def htab_map_alloc(args, kernel) -> BpfHtab:
    """htab_map_alloc(): sizes, buckets, seed, and for LRU maps the preallocated nodes."""
    htab = BpfHtab(args, kernel)
    ncpu = kernel.nr_cpus
    if htab.percpu_lru:
        # Each CPU gets an equal share of the nodes: round up, or down if that overflows u32.
        rounded = -(-args.max_entries // ncpu) * ncpu
        if rounded > 0xFFFFFFFF:
            rounded = args.max_entries // ncpu * ncpu
        htab.max_entries = rounded
    if htab.max_entries > 1 << 31:
        raise BpfError(errno.E2BIG)
    htab.n_buckets = _roundup_pow_of_two(htab.max_entries)
    if htab.n_buckets > 0xFFFFFFFF // 16:          # n_buckets * sizeof(struct bucket) > U32_MAX
        raise BpfError(errno.E2BIG)
    _charge_memory(htab, kernel)
    htab.hashrnd = 0 if args.map_flags & F.BPF_F_ZERO_SEED else kernel.random_u32()
    htab.bucket_mask = htab.n_buckets - 1
    if htab.n_buckets <= HEADS_ARRAY_MAX:
        # Two -1 past the last bucket, so that a walk step can read the next two buckets'
        # heads without a bounds check (htab_fastpath.py).
        htab.heads = array("i", [-1]) * (htab.n_buckets + 2)
    else:
        htab.heads = SparseHeads()
        htab.sparse = True
    # Slots: max_entries elements, plus one spare per CPU for a preallocated HASH map (one
    # in all without preallocation: a replacing element is allocated before the old one
    # is freed).
    if htab.is_lru:
        htab.max_slots = htab.max_entries
    elif htab.prealloc and not htab.percpu:
        htab.extra_elems = [-1] * ncpu
        htab.max_slots = htab.max_entries + ncpu
    else:
        htab.max_slots = htab.max_entries + 1
    if htab.max_slots * htab.slot_size <= ARENA_BYTES:
        htab.chunk_shift = 31                   # slot numbers are below 2^31: one chunk
    else:
        per_chunk = max(1, CHUNK_BYTES // htab.slot_size)
        htab.chunk_shift = per_chunk.bit_length() - 1
    htab.chunk_mask = (1 << htab.chunk_shift) - 1
    if htab.is_lru:
        # Since Linux 6.16 (and 6.12.y) the batch scales with the map; before, it was fixed.
        target_free = (min(max((htab.max_entries // ncpu) // 2, 1), LOCAL_FREE_TARGET)
                       if kernel.profile.lru_target_free_scaled else LOCAL_FREE_TARGET)
        htab.lru = BpfLru(htab.percpu_lru, ncpu, target_free,
                          lambda node: htab_lru_map_delete_node(htab, node))
        _new_slots(htab, htab.max_entries)      # prealloc_init(): every node, zeroed values
        nodes = [HtabLruElem() for _ in range(htab.max_entries)]
        for slot, node in enumerate(nodes):
            node.slot = slot
            node.hash = 0
        htab.lru_nodes = nodes
        bpf_lru_populate(htab.lru, nodes)
    return htab


def _charge_memory(htab: BpfHtab, kernel) -> None:
    # DEVIATION(memory): the kernel's ENOMEM depends on the machine's free memory. We refuse
    # maps whose preallocation would exceed the profile's budget, and never try to allocate
    # them; smaller maps always succeed (NO_PREALLOC elements are only created on insert).
    elem = 48 + (htab.key_size + 7) // 8 * 8
    elem += 8 if htab.percpu else htab.round_value_size
    total = htab.n_buckets * 16
    if htab.prealloc:
        total += htab.max_entries * elem
        if htab.percpu:
            total += htab.max_entries * htab.round_value_size * kernel.nr_cpus
    if total > kernel.profile.max_map_bytes:
        raise BpfError(errno.ENOMEM)


# --- slots ---------------------------------------------------------------------------------

def _new_slots(htab: BpfHtab, count: int) -> int:
    """count never-used slots, zeroed (prealloc_init(), done as the map fills up); returns
    the first."""
    first = htab.n_slots
    end = first + count
    htab.n_slots = end
    htab.elem_next.extend(array("i", [PENDING]) * count)
    htab.elem_hash.extend(array("I", [0]) * count)
    htab.elem_key.extend([None] * count)
    chunks = htab.chunks
    shift = htab.chunk_shift
    if shift == 31:
        if not chunks:
            htab.arena = memoryview(bytearray(htab.max_slots * htab.slot_size))
            chunks.append(htab.arena)
        return first
    while len(chunks) << shift < end:
        chunks.append(memoryview(bytearray(htab.slot_size << shift)))
    return first


def _refill_free_slots(htab: BpfHtab) -> int:
    """Take a slot when the freelist is empty or deleted elements wait to be unlinked.
    Those go on the freelist first, the last deleted on top, so that a new element reuses
    the element freed last, as the kernel's LIFO freelist gives it back. Otherwise add up to
    8192 never-used slots (lowest on top). Never more than max_slots in all."""
    if htab.deleted:
        _unlink_deleted(htab)
        return htab.free_slots.pop()
    count = min(1 << min(htab.chunk_shift, 13), htab.max_slots - htab.n_slots)
    assert count > 0, "more slots than the kernel has elements"
    first = _new_slots(htab, count)
    htab.free_slots.extend(range(first + count - 1, first, -1))
    return first


def alloc_htab_elem(htab: BpfHtab, old_elem: int) -> int:
    """The memory alloc_htab_elem() takes for a new element of a non-LRU map. Preallocated:
    replacing an element takes this CPU's spare, and the old element becomes the spare
    (old_elem >= 0); otherwise the freelist. NO_PREALLOC: bpf_mem_cache_alloc(), here the
    same LIFO of freed slots. Capacity is the caller's business (E2BIG)."""
    # DEVIATION(elem-reuse): Linux keeps one freelist per CPU (pcpu_freelist: push on this
    # CPU's list, pop from it first, then steal from the next CPUs; the initial split and
    # the spares taken at creation depend on the CPU that created the map) and, without
    # preallocation, bpf_mem_alloc's per-CPU caches. We keep one LIFO for the whole map.
    # Only which freed element's memory a new element reuses differs: a program's stale
    # pointer into a deleted element, and the padding DEVIATION(percpu-padding) describes.
    extra = htab.extra_elems
    if old_elem >= 0 and extra is not None:
        cpu = htab.kernel.cpu
        l_new = extra[cpu]
        extra[cpu] = old_elem
        if l_new >= 0:
            return l_new
        # This CPU had no spare yet (the kernel sets them aside at creation): a free one.
    free = htab.free_slots
    return free.pop() if free and not htab.deleted else _refill_free_slots(htab)


def free_htab_elem(htab: BpfHtab, l: int) -> None:
    """free_htab_elem(): back on the freelist (non-LRU maps), its elem_next PENDING for
    the insert that takes it."""
    htab.elem_next[l] = PENDING
    htab.free_slots.append(l)


def htab_arena(htab: BpfHtab):
    """The map's one chunk of values, made now if the map has had no element yet (as its
    first element would make it); None if the map's values come in several chunks."""
    if htab.chunk_shift != 31:
        return None
    if htab.arena is None:
        _new_slots(htab, 0)
    return htab.arena


def htab_elem_value(htab: BpfHtab, l: int):
    """The slot's value (the whole per-CPU area for per-CPU maps): a live view."""
    size = htab.slot_size
    o = (l & htab.chunk_mask) * size
    return htab.chunks[l >> htab.chunk_shift][o:o + size]


# --- bucket lists ----------------------------------------------------------------------

def _link_head(htab: BpfHtab, l: int, key: bytes) -> None:
    """hlist_nulls_add_head_rcu() + the key index: the element is pending, hashed and put at
    its bucket's head when the buckets are next walked."""
    htab.elem_key[l] = key
    htab.elems[key] = l
    htab.elem_next[l] = PENDING
    htab.pending.append(l)
    htab.walk_keys = NO_WALK            # a new element: no walk order counts it


def _live_pending(htab: BpfHtab) -> list:
    """The pending slots still linked, oldest first: a slot unlinked and linked again while
    pending counts at its last entry only."""
    nxt, keys = htab.elem_next, htab.elem_key
    live = []
    seen = set()
    for l in reversed(htab.pending):
        if nxt[l] == PENDING and keys[l] is not None and l not in seen:
            seen.add(l)
            live.append(l)
    live.reverse()
    return live


def _compact_pending(htab: BpfHtab) -> None:
    """Drop the entries of pending elements unlinked since (insert and delete, no walk)."""
    htab.pending[:] = _live_pending(htab)
    htab.pending_stale = 0


def htab_link_pending(htab: BpfHtab) -> None:
    """Put the pending elements at their buckets' heads, oldest first, hashing them in one
    batch. Only through htab_sync_buckets, which unlinks the deleted elements first (their
    keys are gone)."""
    if not htab.pending:
        return
    live = _live_pending(htab) if htab.pending_stale else htab.pending
    n = len(live)
    if n == 0:                          # all of them unlinked again
        htab.pending.clear()
        htab.pending_stale = 0
        htab.pending_ordered = False
        return
    _walk_forget(htab)
    first = live[0]
    end = first + n
    run = _is_run(live)
    keys = htab.elem_key
    live_keys = keys[first:end] if run else [keys[l] for l in live]
    if n < 8:                           # a batch's set-up costs about as much as 8 keys
        fn, rnd = htab.hash_fn, htab.hashrnd
        hashes = [fn(k, rnd) for k in live_keys]
    else:
        hashes = htab_map_hash_many(live_keys, htab.key_size, htab.hashrnd)
    nxt, heads, elem_hash, mask = htab.elem_next, htab.heads, htab.elem_hash, htab.bucket_mask
    if n > 4096 and 4 * n > len(nxt) + len(heads) and not htab.sparse:
        # A big batch (a map filled, then walked): link through lists, whose items cost a
        # third of an array's to get and set, and copy them back whole at C speed.
        heads_l = heads.tolist()
        buckets = _masked(hashes, mask)
        if run:
            chain = []
            append = chain.append
            for l, b in zip(range(first, end), buckets):
                append(heads_l[b])
                heads_l[b] = l
            nxt[first:end] = _packed(nxt.typecode, chain)
        else:
            nxt_l = nxt.tolist()
            for l, b in zip(live, buckets):
                nxt_l[l] = heads_l[b]
                heads_l[b] = l
            nxt[:] = _packed(nxt.typecode, nxt_l)
        heads[:] = _packed(heads.typecode, heads_l)
    else:
        for l, h in zip(live, hashes):
            b = h & mask
            nxt[l] = heads[b]
            heads[b] = l
    if run:
        elem_hash[first:end] = array("I", hashes)
    else:
        for l, h in zip(live, hashes):
            elem_hash[l] = h
    htab.pending.clear()
    htab.pending_stale = 0
    htab.pending_ordered = False


def _is_run(slots: list) -> bool:
    """Whether distinct slots are consecutive and ascending (a map filling up takes
    never-used slots in order), so that they can be read and written as slices. With the
    right ends, sorted means a run (sorted() of a sorted list is one pass; the middle check
    keeps most other orders out of it)."""
    n = len(slots)
    first = slots[0]
    return (slots[-1] == first + n - 1 and slots[n >> 1] == first + (n >> 1)
            and sorted(slots) == slots)


_AND_TABLES: dict = {}


def _masked(hashes: array, mask: int) -> list:
    """[h & mask for h in hashes] at C speed: each byte of the items is masked as a strided
    slice (bytes.translate), and the items come out as small ints."""
    raw = hashes.tobytes()
    out = bytearray(raw)
    size = hashes.itemsize
    for i in range(size):
        shift = 8 * (i if sys.byteorder == "little" else size - 1 - i)
        mb = (mask >> shift) & 0xFF
        if mb == 0xFF:
            continue
        table = _AND_TABLES.get(mb)
        if table is None:
            table = _AND_TABLES[mb] = bytes(x & mb for x in range(256))
        out[i::size] = raw[i::size].translate(table)
    return array(hashes.typecode, out).tolist()


def _packed(typecode: str, values: list) -> array:
    """array(typecode, values), through struct: array() parses every item like an argument."""
    return array(typecode, struct.pack(f"{len(values)}{typecode}", *values))


def _unlink(htab: BpfHtab, l: int) -> None:
    """hlist_nulls_del_rcu() + the key index."""
    keys = htab.elem_key
    nxt = htab.elem_next
    if nxt[l] < -1:                     # pending: its entry in pending goes stale
        del htab.elems[keys[l]]
        keys[l] = None
        _unlink_pending(htab, l)
        return
    htab.walk_keys = NO_WALK            # _walk_forget(), inlined: a list changes
    htab.walk_steps = 0
    b = htab.elem_hash[l] & htab.bucket_mask
    heads = htab.heads
    p = heads[b]
    if p == l:
        heads[b] = nxt[l]
    else:
        n = nxt[p]
        while n != l:
            p = n
            n = nxt[p]
        nxt[p] = nxt[l]
    del htab.elems[keys[l]]
    keys[l] = None


def _unlink_pending(htab: BpfHtab, l: int) -> None:
    """A pending element leaves (its elem_key is cleared): its entry in pending goes stale,
    and a walk order of the pending elements (htab_pending_walk_order) is wrong now."""
    htab.walk_keys = NO_WALK            # _walk_forget(), inlined
    htab.walk_steps = 0
    htab.pending_stale += 1
    if 2 * htab.pending_stale > len(htab.pending) + 4096:
        _compact_pending(htab)          # inserts and deletes and no walk: keep it short


def _unlink_deleted(htab: BpfHtab) -> None:
    """hlist_nulls_del_rcu() of every deleted element, then free_htab_elem() of each, in
    the order they were deleted. The caller holds the lock, as for any write."""
    _walk_forget(htab)
    deleted = htab.deleted
    nxt = htab.elem_next
    heads = htab.heads
    if not htab.elems and not htab.sparse and len(deleted) * 8 >= htab.n_buckets:
        # Nothing is left in the map: every list is empty, every pending entry stale.
        # Resetting heads and links whole costs less than unlinking one by one.
        heads[:] = array("i", [-1]) * len(heads)
        nxt[:] = array("i", [PENDING]) * len(nxt)
        htab.pending.clear()
        htab.pending_stale = 0
        htab.pending_ordered = False
    else:
        hashes, mask = htab.elem_hash, htab.bucket_mask
        for l in deleted:
            n = nxt[l]
            if n < -1:
                _unlink_pending(htab, l)
                continue
            b = hashes[l] & mask
            p = heads[b]
            if p == l:
                heads[b] = n
            else:
                q = nxt[p]
                while q != l:
                    p = q
                    q = nxt[p]
                nxt[p] = n
            nxt[l] = PENDING                    # free_htab_elem()
    htab.free_slots.extend(deleted)
    deleted.clear()


def htab_sync_buckets(htab: BpfHtab) -> None:
    """Bring the bucket lists up to date before anything reads them: unlink the deleted
    elements, then link the pending ones."""
    if htab.deleted:
        _unlink_deleted(htab)
    if htab.pending:
        htab_link_pending(htab)


def _replace_elem(htab: BpfHtab, l_new: int, l_old: int, key: bytes) -> None:
    """hlist_nulls_add_head_rcu(l_new) then hlist_nulls_del_rcu(l_old), for the same key
    (so the same bucket), and the key index pointed at l_new."""
    if htab.pending:
        # l_new is the newest link: it waits behind the other pending elements.
        _unlink(htab, l_old)
        _link_head(htab, l_new, key)
        return
    htab.walk_keys = NO_WALK            # _walk_forget(), inlined: a list changes
    htab.walk_steps = 0
    nxt = htab.elem_next
    hash_ = htab.elem_hash[l_old]
    b = hash_ & htab.bucket_mask
    heads = htab.heads
    p = heads[b]
    if p == l_old:
        nxt[l_new] = nxt[l_old]
    else:
        n = nxt[p]
        while n != l_old:
            p = n
            n = nxt[p]
        nxt[p] = nxt[l_old]
        nxt[l_new] = heads[b]
    heads[b] = l_new
    htab.elem_hash[l_new] = hash_
    keys = htab.elem_key
    keys[l_new] = key
    keys[l_old] = None
    htab.elems[key] = l_new


def htab_next_bucket(htab: BpfHtab, b: int):
    """The first non-empty bucket >= b, or None: where the kernel's walks over empty buckets
    stop (htab_map_get_next_key(), __htab_map_lookup_and_delete_batch()). The caller has
    brought the lists up to date (htab_sync_buckets)."""
    heads = htab.heads
    if htab.sparse:
        return heads.next_from(b)
    n = htab.n_buckets
    stop = b + 8 if b + 8 < n else n
    while b < stop:
        if heads[b] >= 0:
            return b
        b += 1
    # A run of empty buckets is a run of 0xff bytes: skip it at C speed, in growing windows.
    view = memoryview(heads)
    step = 256
    while b < n:
        end = b + step if b + step < n else n
        raw = view[b:end].tobytes()
        skip = len(raw) - len(raw.lstrip(b"\xff"))
        if skip < len(raw):
            return b + (skip >> 2)
        b = end
        step <<= 2
    return None


def _walk_forget(htab: BpfHtab) -> None:
    """The bucket lists change: a walk order made before is wrong now."""
    htab.walk_keys = NO_WALK
    htab.walk_steps = 0


def htab_walk_order(htab: BpfHtab) -> list:
    """Every key in the order get_next_key returns them (bucket by bucket, each list from
    its head), between a walk's position in the list (item 0) and None: [1, key, ..., None]
    puts the walk at its first key. The caller has synced the lists (htab_sync_buckets);
    heads is an array."""
    nxt = htab.elem_next.tolist()
    keys = htab.elem_key
    order = [1]
    append = order.append
    for l in _listed_heads(htab.heads):
        append(keys[l])
        l = nxt[l]
        while l >= 0:
            append(keys[l])
            l = nxt[l]
    append(None)
    return order


def _walk_unlisted(htab: BpfHtab) -> bool:
    """Whether a walk starting now orders the pending elements instead of linking them
    (htab_pending_walk_order): every element of the map is pending, each once (none listed,
    no stale entry), and there are more than a short walk's worth. Deleted elements may
    wait to be unlinked: a pending one is still in pending, so not all of them are live,
    and a listed one is not in the walk."""
    n = len(htab.pending)
    return (n > WALK_ORDER_MIN_STEPS and n == len(htab.elems) and not htab.pending_stale
            and not htab.sparse)


def htab_pending_walk_order(htab: BpfHtab) -> list:
    """The walk order of a map whose elements are all pending (_walk_unlisted), from their
    hashes alone: [0, key..., None], item 0 placing the walk before its first key.

    Linking puts each element at its bucket's head, oldest first, so each bucket lists its
    elements newest first, and a walk goes bucket by bucket: the order is the keys, newest
    first, sorted by bucket (sorted() is stable). The elements stay pending, unlinked: the
    order holds while nothing is added to pending or taken out of it, and nothing is
    deleted. A new element (an insert, or a replace) drops the order (_link_head), and so
    does an element leaving pending (_unlink_pending) or linking them. A walk then costs no
    linking at all, and a map walked once after a fill, then emptied, never links. The
    caller holds the lock."""
    live = htab.pending
    first = live[0]
    keys = htab.elem_key
    if _is_run(live):
        newest_first = keys[first:first + len(live)]
    else:
        newest_first = list(map(keys.__getitem__, live))
    hashes = htab_map_hash_many(newest_first, htab.key_size, htab.hashrnd)
    buckets = _masked(hashes, htab.bucket_mask)
    newest_first.reverse()
    buckets.reverse()
    order = [0]
    # Each key's bucket, as the sort key: list.sort computes its sort keys one item after
    # the other, in list order, so the iterator hands each key the bucket at its place.
    order += sorted(newest_first, key=partial(next, iter(buckets)))
    order.append(None)
    htab.walk_keys = order
    htab.pending_ordered = True
    htab.walk_steps = 0
    return order


def _listed_heads(heads: array) -> list:
    """The heads of the non-empty buckets, in bucket order, at C speed: the -1 items are
    cut out of the array's bytes. In little-endian int32s only -1 has four 0xff bytes in a
    row (any other item with its top byte 0xff is negative, and heads holds no other
    negative), and a run of -1 items starts at an item's first byte, so every match is a
    whole -1 item."""
    big_endian = sys.byteorder != "little"
    if big_endian:
        heads = array(heads.typecode, heads)
        heads.byteswap()
    listed = array(heads.typecode, heads.tobytes().replace(b"\xff\xff\xff\xff", b""))
    if big_endian:
        listed.byteswap()
    return listed.tolist()


def htab_walk_start(htab: BpfHtab, key: bytes) -> None:
    """Give a long walk the whole order at once, placed at the key it just returned. The
    caller holds the lock; with elements still to link or unlink there is no order yet."""
    if htab.pending or htab.deleted or htab.sparse:
        return
    order = htab_walk_order(htab)
    try:
        order[0] = order.index(key, 1)
    except ValueError:                  # the key is gone: the walk restarts, not from here
        return
    htab.walk_keys = order
    htab.walk_steps = 0


def htab_bucket_elems(htab: BpfHtab, b: int) -> list:
    """Bucket b's slots, head first (the caller has synced the lists: htab_sync_buckets)."""
    out = []
    nxt = htab.elem_next
    l = htab.heads[b]
    while l >= 0:
        out.append(l)
        l = nxt[l]
    return out


# --- syscall and helper operations -----------------------------------------------------

def htab_map_get_next_key(htab: BpfHtab, key):
    """htab_map_get_next_key(): NULL or a missing key restarts at the first element."""
    order = htab.walk_keys
    i = order[0]
    if order[i] != key or htab.deleted:
        if (key is not None and key in htab.elems) or not _walk_unlisted(htab):
            return _listed_get_next_key(htab, key)
        # A walk starts on a map filled and not walked since: no element is listed. An
        # order there is one of them all (a new element drops any order: _link_head).
        if order is NO_WALK:
            if htab.pending_ordered:
                # Ordered once already, and changed since: link them (a caller that adds
                # a key and starts a walk, again and again, must not sort every time).
                return _listed_get_next_key(htab, key)
            order = htab_pending_walk_order(htab)
        i = 0
    # A walk given its order (the key it returned last), or one starting in it.
    found = order[i + 1]
    if found is None:                       # the end: let the order go
        _walk_forget(htab)
        raise BpfError(errno.ENOENT)
    order[0] = i + 1
    return found


def _listed_get_next_key(htab: BpfHtab, key):
    """htab_map_get_next_key() on the bucket lists, synced first."""
    linked = 0
    if htab.pending or htab.deleted:
        linked = len(htab.pending)
        htab_sync_buckets(htab)             # drops any walk order (_walk_forget)
    l = _next_slot(htab, key)
    htab.walk_cursor = l
    found = htab.elem_key[l]
    order = htab.walk_keys
    if key is None and order is not NO_WALK:
        order[0] = 1                        # a new walk in the order made before
    if linked > WALK_ORDER_MIN_STEPS and 2 * linked >= len(htab.elems):
        htab_walk_start(htab, found)        # most of the map was just linked for this walk
    return found


def _next_slot(htab: BpfHtab, key) -> int:
    """The slot of the element after key's (the first one if key is None or missing), the
    lists synced; ENOENT past the last."""
    if key is not None:
        # A walk passes back the key it was just given: its slot is the cursor, if that slot
        # still holds the key (then it is linked, under that key), without a dict lookup.
        l = htab.walk_cursor
        if l < 0 or htab.elem_key[l] != key:
            l = htab.elems.get(key, -1)
        if l >= 0:
            n = htab.elem_next[l]
            if n < 0:                               # last in its bucket: the next bucket
                b = (htab.elem_hash[l] & htab.bucket_mask) + 1
                n = htab.heads[b] if b < htab.n_buckets else -1
                if n < 0:
                    b = htab_next_bucket(htab, b)
                    if b is None:
                        raise BpfError(errno.ENOENT)
                    n = htab.heads[b]
            return n
    b = htab_next_bucket(htab, 0)
    if b is None:
        raise BpfError(errno.ENOENT)
    return htab.heads[b]


def htab_map_lookup_elem_sys(htab: BpfHtab, key):
    """The value copy of map_lookup_elem(): value_size bytes, or the whole per-CPU buffer
    (a live view: the caller copies it out before the map changes)."""
    l = htab.elems.get(key)
    if l is None:
        raise BpfError(errno.ENOENT)
    size = htab.slot_size
    arena = htab.arena
    if arena is not None:
        o = l * size
        return arena[o:o + size]
    o = (l & htab.chunk_mask) * size
    return htab.chunks[l >> htab.chunk_shift][o:o + size]


def _check_flags(l_old, flags: int) -> None:
    """check_flags()"""
    mode = flags & ~BPF_F_LOCK
    if l_old is not None and mode == BPF_NOEXIST:
        raise BpfError(errno.EEXIST)             # elem already exists
    if l_old is None and mode == BPF_EXIST:
        raise BpfError(errno.ENOENT)             # elem doesn't exist, cannot update it


def htab_map_update_elem(htab: BpfHtab, key: bytes, value, flags: int) -> None:
    """htab_map_update_elem(): a new element replaces the old one at the bucket head."""
    elems = htab.elems
    l_old = elems.get(key)
    if flags:
        if (flags & ~BPF_F_LOCK) > BPF_EXIST:
            raise BpfError(errno.EINVAL)
        _check_flags(l_old, flags)
        if flags & BPF_F_LOCK and l_old is not None:
            # copy_map_value_locked(): the value changes in place, the element keeps its
            # place in its bucket (the lock word is the caller's to skip: map_btf.py).
            _write_value_in_place(htab, l_old, value)
            return
    if l_old is None:
        if len(elems) >= htab.max_entries:      # alloc_htab_elem(): no free element
            raise BpfError(errno.E2BIG)
        free = htab.free_slots
        l_new = free.pop() if free and not htab.deleted else _refill_free_slots(htab)
    else:
        l_new = alloc_htab_elem(htab, l_old)
    size = htab.slot_size
    arena = htab.arena
    if arena is not None:
        o = l_new * size
        arena[o:o + size] = value
    else:
        o = (l_new & htab.chunk_mask) * size
        htab.chunks[l_new >> htab.chunk_shift][o:o + size] = value
    if l_old is None:
        # _link_head(), inlined (the hot path): the element is pending, and hashed when the
        # buckets are next walked (a free slot's elem_next is PENDING already).
        htab.elem_key[l_new] = key
        elems[key] = l_new
        htab.pending.append(l_new)
        htab.walk_keys = NO_WALK        # a new element: no walk order counts it
        return
    _replace_elem(htab, l_new, l_old, key)
    if htab.extra_elems is None:
        free_htab_elem(htab, l_old)              # NO_PREALLOC frees it


def _write_value_in_place(htab: BpfHtab, l: int, value) -> None:
    size = htab.slot_size
    arena = htab.arena
    if arena is not None:
        arena[l * size:l * size + size] = value
    else:
        o = (l & htab.chunk_mask) * size
        htab.chunks[l >> htab.chunk_shift][o:o + size] = value


def _pcpu_copy_value(htab, l, value, onallcpus: bool, cpu: int) -> None:
    """pcpu_copy_value(): the syscall writes every CPU's slot (padding included); a program
    writes value_size bytes of its own CPU's slot."""
    chunk = htab.chunks[l >> htab.chunk_shift]
    o = (l & htab.chunk_mask) * htab.slot_size
    if onallcpus:
        chunk[o:o + htab.slot_size] = value
    else:
        o += cpu * htab.round_value_size
        size = htab.value_size
        chunk[o:o + size] = value[:size]


def _pcpu_init_value(htab, l, value, onallcpus: bool, cpu: int) -> None:
    """pcpu_init_value(): a program creating an element zeroes the other CPUs' values."""
    if onallcpus:
        _pcpu_copy_value(htab, l, value, True, cpu)
        return
    # DEVIATION(percpu-padding): PERCPU_HASH only (LRU_PERCPU_HASH is exact, see
    # _lru_pcpu_init_value). A program-side insert writes value_size bytes on this CPU
    # and zeroes value_size bytes on the others; the padding up to round_up(value_size,
    # 8) in every slot is not written, so in Linux it is whatever the element's previous
    # occupant left there (a syscall update stores the caller's padding bytes). Which
    # element is reused depends on the per-CPU freelist (prealloc) or on bpf_mem_alloc's
    # caches (NO_PREALLOC), which we do not model: our rule is that every slot's padding
    # of an element created from the program side is zero. Kernel and emulator agree on
    # the value_size bytes of every slot, and on padding of elements never used before.
    chunk = htab.chunks[l >> htab.chunk_shift]
    o = (l & htab.chunk_mask) * htab.slot_size
    chunk[o:o + htab.slot_size] = bytes(htab.slot_size)
    o += cpu * htab.round_value_size
    size = htab.value_size
    chunk[o:o + size] = value[:size]


def __htab_percpu_map_update_elem(htab, key, value, flags, onallcpus, cpu=0) -> None:
    if flags > BPF_EXIST:
        raise BpfError(errno.EINVAL)
    elems = htab.elems
    l_old = elems.get(key)
    _check_flags(l_old, flags)
    if l_old is not None:
        _pcpu_copy_value(htab, l_old, value, onallcpus, cpu)   # in place: position unchanged
        return
    if len(elems) >= htab.max_entries:
        raise BpfError(errno.E2BIG)
    l_new = alloc_htab_elem(htab, -1)
    _pcpu_init_value(htab, l_new, value, onallcpus, cpu)
    _link_head(htab, l_new, key)


def htab_percpu_map_update_elem_sys(htab, key, value, flags) -> None:
    """bpf_percpu_hash_update(): the syscall writes all CPUs."""
    __htab_percpu_map_update_elem(htab, key, value, flags, True)


def htab_map_delete_elem(htab: BpfHtab, key: bytes) -> None:
    """htab_map_delete_elem(): the element leaves the key index now, and its bucket's list
    (then the freelist: free_htab_elem()) when the lists are next needed (``deleted``)."""
    l = htab.elems.pop(key, None)
    if l is None:
        raise BpfError(errno.ENOENT)
    htab.elem_key[l] = None
    htab.deleted.append(l)


def htab_map_lookup_and_delete_elem(htab: BpfHtab, key: bytes, flags: int):
    """__htab_map_lookup_and_delete_elem(): copy the value out, then unlink and free."""
    l = htab.elems.get(key)
    if l is None:
        raise BpfError(errno.ENOENT)
    value = htab_elem_value(htab, l).tobytes()
    _unlink(htab, l)
    if htab.is_lru:
        bpf_lru_push_free(htab.lru, htab.lru_nodes[l])
    else:
        free_htab_elem(htab, l)
    return value


# --- LRU ------------------------------------------------------------------------------

def htab_lru_map_delete_node(htab: BpfHtab, node) -> bool:
    """htab_lru_map_delete_node(): the LRU evicts node; unlink it if it is still linked."""
    l = node.slot
    if htab.elem_key[l] is None:
        return False
    _unlink(htab, l)
    return True


def _prealloc_lru_pop(htab: BpfHtab, cpu: int):
    """prealloc_lru_pop(): may evict; ENOMEM when no node can be found anywhere. The kernel
    passes the key's hash for the LRU to store in the node; nothing here reads it back (the
    element's hash is computed when it is listed, see pending), so the node gets 0."""
    node = bpf_lru_pop_free(htab.lru, 0, cpu)
    if node is None:
        raise BpfError(errno.ENOMEM)
    return node


def htab_lru_map_update_elem(htab: BpfHtab, key: bytes, value, flags: int) -> None:
    """htab_lru_map_update_elem(): a node is taken (and evictions happen) before the lookup."""
    if flags > BPF_EXIST:
        raise BpfError(errno.EINVAL)
    node = _prealloc_lru_pop(htab, htab.kernel.cpu)
    l_new = node.slot
    # The node's own memory, reused as in the kernel (stale views see it).
    size = htab.slot_size
    o = (l_new & htab.chunk_mask) * size
    htab.chunks[l_new >> htab.chunk_shift][o:o + size] = value
    l_old = htab.elems.get(key)
    try:
        _check_flags(l_old, flags)
    except BpfError:
        bpf_lru_push_free(htab.lru, node)
        raise
    if l_old is None:
        _link_head(htab, l_new, key)
    else:
        bpf_lru_node_set_ref(node)
        _replace_elem(htab, l_new, l_old, key)
        bpf_lru_push_free(htab.lru, htab.lru_nodes[l_old])   # htab_lru_push_free()


def _lru_pcpu_init_value(htab, l, value, onallcpus: bool, cpu: int) -> None:
    """pcpu_init_value() on an LRU node. Each node owns its per-CPU area for the map's whole
    life (prealloc_init() allocates it once, zeroed), and the LRU lists decide which node an
    insert reuses, so the padding bytes a program-side insert leaves alone are the previous
    occupant's, as in the kernel: no deviation here, as long as lru.py hands nodes out in
    the kernel's order (tests/differential/test_percpu_padding.py checks it)."""
    if onallcpus:
        _pcpu_copy_value(htab, l, value, True, cpu)
        return
    chunk = htab.chunks[l >> htab.chunk_shift]
    base = (l & htab.chunk_mask) * htab.slot_size
    size = htab.value_size
    step = htab.round_value_size
    zero = bytes(size)
    for c in range(htab.nr_cpus):
        off = base + c * step
        # copy_map_value() on this CPU, zero_map_value() elsewhere: value_size bytes each.
        chunk[off:off + size] = value[:size] if c == cpu else zero


def __htab_lru_percpu_map_update_elem(htab, key, value, flags, onallcpus, cpu) -> None:
    """An existing key is updated in place; BPF_EXIST takes no node, so it evicts nothing."""
    if flags > BPF_EXIST:
        raise BpfError(errno.EINVAL)
    node = None
    if flags != BPF_EXIST:
        node = _prealloc_lru_pop(htab, cpu)
    l_old = htab.elems.get(key)
    try:
        _check_flags(l_old, flags)
    except BpfError:
        if node is not None:
            bpf_lru_push_free(htab.lru, node)
        raise
    if l_old is not None:
        bpf_lru_node_set_ref(htab.lru_nodes[l_old])
        _pcpu_copy_value(htab, l_old, value, onallcpus, cpu)
    else:
        _lru_pcpu_init_value(htab, node.slot, value, onallcpus, cpu)
        _link_head(htab, node.slot, key)
        node = None
    if node is not None:
        bpf_lru_push_free(htab.lru, node)


def htab_lru_percpu_map_update_elem_sys(htab, key, value, flags) -> None:
    __htab_lru_percpu_map_update_elem(htab, key, value, flags, True, htab.kernel.cpu)


def htab_lru_map_delete_elem(htab: BpfHtab, key: bytes) -> None:
    """htab_lru_map_delete_elem(): unlink, then give the node back to the LRU."""
    l = htab.elems.get(key)
    if l is None:
        raise BpfError(errno.ENOENT)
    _unlink(htab, l)
    bpf_lru_push_free(htab.lru, htab.lru_nodes[l])


# --- the BPF-program side (helpers) ---------------------------------------------------------
#
# What bpf_map_lookup_elem() and friends do when a program calls them (bpfemu.progs plays the
# program). A lookup returns a live, writable memoryview of the element's value: the whole
# value of a HASH/LRU_HASH element, or value_size bytes of one CPU's slot of a per-CPU one.
# It points into the slot's memory, so it sees what the kernel's pointer would: in-place
# (per-CPU) updates, and whatever element reuses the slot after a delete or a replace.
# Updates and deletes raise BpfError like the syscall-side functions; the helper turns that
# into its negative return value. The CPU a program runs on is htab.kernel.cpu.

def htab_map_lookup_elem(htab: BpfHtab, key: bytes):
    """htab_map_lookup_elem() (and its verifier-inlined form, htab_map_gen_lookup())."""
    l = htab.elems.get(key)
    if l is None:
        return None
    return htab_elem_value(htab, l)


def htab_lru_map_lookup_elem(htab: BpfHtab, key: bytes):
    """htab_lru_map_lookup_elem(): a program's lookup marks the node referenced. The
    verifier inlines it (htab_lru_map_gen_lookup(): "if (!ref) ref = 1") with the same
    effect. The syscall's lookup (htab_lru_map_lookup_elem_sys) does not mark."""
    l = htab.elems.get(key)
    if l is None:
        return None
    bpf_lru_node_set_ref(htab.lru_nodes[l])
    return htab_elem_value(htab, l)


def _this_cpu_value(htab: BpfHtab, l: int, cpu: int):
    """per_cpu_ptr(htab_elem_get_ptr(l, key_size), cpu), value_size bytes of it."""
    o = (l & htab.chunk_mask) * htab.slot_size + cpu * htab.round_value_size
    return htab.chunks[l >> htab.chunk_shift][o:o + htab.value_size]


def htab_percpu_map_lookup_elem(htab: BpfHtab, key: bytes):
    """htab_percpu_map_lookup_elem(): this CPU's slot (this_cpu_ptr)."""
    l = htab.elems.get(key)
    if l is None:
        return None
    return _this_cpu_value(htab, l, htab.kernel.cpu)


def htab_lru_percpu_map_lookup_elem(htab: BpfHtab, key: bytes):
    """htab_lru_percpu_map_lookup_elem(): marks the node, then this CPU's slot."""
    l = htab.elems.get(key)
    if l is None:
        return None
    bpf_lru_node_set_ref(htab.lru_nodes[l])
    return _this_cpu_value(htab, l, htab.kernel.cpu)


def htab_percpu_map_lookup_percpu_elem(htab: BpfHtab, key: bytes, cpu: int):
    """htab_percpu_map_lookup_percpu_elem(): any CPU's slot; cpu >= nr_cpu_ids is NULL
    before the key is even looked up."""
    if not 0 <= cpu < htab.nr_cpus:
        return None
    l = htab.elems.get(key)
    if l is None:
        return None
    return _this_cpu_value(htab, l, cpu)


def htab_lru_percpu_map_lookup_percpu_elem(htab: BpfHtab, key: bytes, cpu: int):
    """htab_lru_percpu_map_lookup_percpu_elem(): as above, and marks the node."""
    if not 0 <= cpu < htab.nr_cpus:
        return None
    l = htab.elems.get(key)
    if l is None:
        return None
    bpf_lru_node_set_ref(htab.lru_nodes[l])
    return _this_cpu_value(htab, l, cpu)


def htab_map_update_elem_prog(htab: BpfHtab, key: bytes, value, flags: int) -> None:
    """htab_map_update_elem() as the bpf_map_update_elem() helper reaches it. The kernel's
    function refuses BPF_F_LOCK on a map without a bpf_spin_lock itself (EINVAL); for the
    syscall map_update_elem() has already done that, so the shared function here skips it."""
    if flags & BPF_F_LOCK and not htab.has_spin_lock:
        raise BpfError(errno.EINVAL)
    htab_map_update_elem(htab, key, value, flags)


def htab_percpu_map_update_elem(htab: BpfHtab, key: bytes, value, flags: int) -> None:
    """htab_percpu_map_update_elem(): __htab_percpu_map_update_elem(onallcpus=false), i.e.
    only this CPU's value_size bytes; a new element zeroes the other CPUs' values."""
    __htab_percpu_map_update_elem(htab, key, value, flags, False, htab.kernel.cpu)


def htab_lru_percpu_map_update_elem(htab: BpfHtab, key: bytes, value, flags: int) -> None:
    """htab_lru_percpu_map_update_elem(): __htab_lru_percpu_map_update_elem(onallcpus=false)."""
    __htab_lru_percpu_map_update_elem(htab, key, value, flags, False, htab.kernel.cpu)
