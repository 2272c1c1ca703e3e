"""ColumnarStore: a hash map's elements in columns, its bucket lists linked late.

The store interface is htab_store.py's; this one is built for speed and memory, and gives
every operation the same result as SimpleStore. Elements live in numbered slots, stored
column-wise like the kernel's preallocated element array (htab->elems), so that a full map
costs a few dozen bytes per element:

* ``elems``: key -> slot of the linked element. Lookups never hash: only the bucket order
  needs the hash. Made again at its keys' size when deletes have doubled its table
  (``_index_at_size``).
* ``pending`` (``array('I')``): the slots of elements linked since the bucket order was
  last needed, oldest first, not in their bucket lists yet. Every link goes to a bucket's
  head, so a bucket's list is always newest link first; the pending elements are newer than
  every listed one and go on top, in their order, as soon as anything reads the buckets
  (``sync``). Their hashes are computed then, all at once (jhash.htab_map_hash_many), at a
  fraction of the cost of one by one. A walk that starts when every element is pending (a
  map filled and not walked since) sorts them into its order by their hashes instead, and
  they stay pending (``_pending_walk_order``). A pending slot's ``elem_next`` is PENDING. An
  element unlinked while pending leaves a stale entry (its slot holds no key; counted in
  ``pending_stale``); if its slot is linked again before the walk, only the slot's last
  entry counts.
* ``heads``: bucket -> first slot or -1 (``array('i')``, with two -1 after the last bucket;
  a ``SparseHeads`` dict of the non-empty buckets when there are more than HEADS_ARRAY_MAX
  buckets, and until the first sync links anything).
* ``elem_next`` (slot -> next slot in its bucket or -1: the hlist_nulls link),
  ``elem_hash`` (``array('I')``) and ``elem_key`` (the key while linked, else None).
* values: slot s's value is ``chunks[s >> chunk_shift][(s & chunk_mask) * slot_size:]
  [:slot_size]``. Chunks are fixed-size bytearrays, never resized (each is held through a
  memoryview), so the live views a program's lookup returns stay attached to the slot's
  memory. A map whose values fit in ARENA_BYTES has one chunk, ``arena``.
* free slots: ``free_slots`` (LIFO) on top of the never-used ones, handed out lowest first.
* a long walk's order (``walk_order``): every key in walk order, made at once when a walk
  has linked most of the map or taken enough steps; ``walk_hint`` answers each step from
  it until anything changes the lists.
* ``undo``: the emulator's undo journal (bpfemu/undo.py). Every method that changes an
  element, a list or the free slots appends its inverse first; the walk order is a cache,
  forgotten by every inverse rather than journaled.
"""
import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from functools import partial
from operator import itemgetter

from ..undo import NO_JOURNAL, restore_bytes, restore_len, restore_top
from .htab_store import MISS
from .jhash import htab_hash_func, htab_map_hash_many

# Up to this many buckets the heads are an array (4 bytes a bucket); beyond, a dict of the
# non-empty ones, so that a huge NO_PREALLOC map costs nothing until it is filled.
HEADS_ARRAY_MAX = 1 << 20
# Values of a map that needs at most ARENA_BYTES for them are one chunk (the "arena");
# bigger maps get chunks of about CHUNK_BYTES as they fill up.
ARENA_BYTES = 1 << 22
CHUNK_BYTES = 1 << 16
# elem_next of a pending slot (linked, not yet in its bucket's list); -1 ends a list.
PENDING = -2
# The walk order when there is none: no key equals its item 0 (see _walk_order).
NO_WALK = (0, None)
# A walk gets its whole order at once when its first call links more than this many
# elements and at least half the map, or after this many steps and an eighth of the map's
# elements since the lists last changed. A walk that starts on a map of more than this many
# elements, all of them pending, orders them without linking them (_pending_walk_order).
WALK_ORDER_MIN_STEPS = 64


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


class ColumnarStore:
    """The store of htab_store.py, in columns (see the module's docstring)."""

    def __init__(self, *, key_size: int, slot_size: int, n_buckets: int, hashrnd: int,
                 max_slots: int, undo: list = NO_JOURNAL):
        self.undo = undo                        # the emulator's undo journal
        self.key_size = key_size
        self.slot_size = slot_size
        self.n_buckets = n_buckets
        self.bucket_mask = n_buckets - 1
        self.hash_fn = htab_hash_func(key_size)
        self.hashrnd = hashrnd
        self.max_slots = max_slots              # slots the map can ever need
        self.elems: dict[bytes, int] = {}       # key -> slot linked in a bucket
        # Slots linked but not listed yet: an array, 4 bytes a slot where a list's item
        # costs 8 (a map filled and not walked since holds every slot here); unsigned, whose
        # append converts the int directly, where a signed one parses it like an argument.
        self.pending = array("I")
        self.pending_stale = 0                  # entries of pending unlinked since
        # The pending elements were ordered without linking them (_pending_walk_order)
        # since pending was last emptied: they are not ordered again, but linked.
        self.pending_ordered = False
        self.walk_order = NO_WALK               # a long walk's order (_walk_order)
        self.walk_steps = 0                     # walk steps since the lists changed
        # A batch walk's order of a map whose elements are all pending (walk order, slots,
        # buckets: _pending_batch_order), valid while walk_order is its walk order.
        self.batch_order = None
        self.batch_keys = None                  # (slots, their keys): keys_of() memo
        self.batch_taken = None                 # (slots, i, j): the slice of batch_order
        # Every bucket is empty until the first sync links elements: the heads are an empty
        # SparseHeads until then (a map filled and not walked since has no array of them).
        self.heads = SparseHeads()
        self.sparse = True
        self.elem_next = array("i")             # slot -> next slot in the bucket, or -1
        self.elem_hash = array("I")             # slot -> hash
        self.elem_key: list = []                # slot -> key while linked, else None
        self.chunks: list = []                  # memoryviews of fixed-size bytearrays
        if max_slots * slot_size <= ARENA_BYTES:
            self.chunk_shift = 31               # slot numbers are below 2^31: one chunk
        else:
            per_chunk = max(1, CHUNK_BYTES // slot_size)
            self.chunk_shift = per_chunk.bit_length() - 1
        self.chunk_mask = (1 << self.chunk_shift) - 1
        self.arena = None                       # chunks[0] if it is the only chunk
        self.word_views = None                  # the arena's i-th words of each slot (values_of)
        self.chunk_bufs: list = []              # the bytearray under each chunk
        # Undo entries' functions, bound once (a bound method per call costs).
        self.undo_add_head = self._undo_add_head
        self.relink = self._relink
        self.relink_pending = self._relink_pending
        self.unreplace = self._unreplace
        self.unreplace_pending = self._unreplace_pending
        self.unalloc = self._unalloc
        self.unswap = self._unswap
        self.extra_elems = None                 # per CPU spare elements (alloc_extra_elems)
        self.n_slots = 0                        # slots made so far
        self.n_used = 0                         # slots handed out by alloc() at least once
        self.free_slots: list = []              # LIFO
        # The cheapest calls there are: the dict's and the list's own methods.
        self.index = self.elems                 # the interface's name for it
        self.lookup = self.elems.get
        self.count = partial(len, self.elems)  # a C call, cheaper than elems.__len__
        self.key = self.elem_key.__getitem__
        # free(l): back on top of the free slots (add_head sets the slot's elem_next). A C
        # call that journals nothing: the element was unlinked in this call (the interface's
        # rule), and the inverse that links it again takes it off the free slots (_take_back).
        self.free = self.free_slots.append
        if self.chunk_shift == 31:
            self.value = self._arena_value
            self.copy_value = self._arena_copy_value
            self.init_value = self._arena_init_value

    # --- memory ----------------------------------------------------------------------

    def _new_slots(self, count: int) -> int:
        """count never-used slots, zeroed (prealloc_init(), done as the map fills up);
        returns the first."""
        first = self.n_slots
        end = first + count
        self.undo.append((self._drop_slots, first))
        self.n_slots = end
        if first == 0:
            # Made at their size: array.extend() allocates a sixteenth more (a preallocated
            # map makes all its slots at once).
            self.elem_next = array("i", [PENDING]) * count
            self.elem_hash = array("I", [0]) * count
        else:
            self.elem_next.extend(array("i", [PENDING]) * count)
            self.elem_hash.extend(array("I", [0]) * count)
        self.elem_key.extend([None] * count)
        chunks = self.chunks
        shift = self.chunk_shift
        if shift == 31:
            if not chunks:
                buf = bytearray(self.max_slots * self.slot_size)
                self.arena = memoryview(buf)
                self.chunk_bufs.append(buf)
                chunks.append(self.arena)
            return first
        while len(chunks) << shift < end:
            buf = bytearray(self.slot_size << shift)
            self.chunk_bufs.append(buf)
            chunks.append(memoryview(buf))
        return first

    def _drop_slots(self, n: int) -> None:
        """The inverse of _new_slots: n slots were made (their chunks stay, unused)."""
        del self.elem_next[n:]
        del self.elem_hash[n:]
        del self.elem_key[n:]
        self.n_slots = n

    def prealloc(self, n: int) -> None:
        self._new_slots(n)

    def reserve(self) -> None:
        """Make every slot the map can need now: what the kernel preallocates at MAP_CREATE
        (prealloc_init()), so that no update of a preallocated map allocates columns or
        values later."""
        count = self.max_slots - self.n_slots
        if count > 0:
            self._new_slots(count)

    def alloc(self, value=None) -> int:
        """The slot freed last, else the lowest never used (made 8192 at a time unless the
        map reserved them all), with value copied in if given. One undo entry covers what a
        new element goes through: the slot handed out, its bytes (the value copied here, or
        by init_value, which journals nothing) and its link (add_head right after journals
        nothing)."""
        free = self.free_slots
        if free:
            n = len(free) - 1
            l = free[n]
            size = self.slot_size
            o = (l & self.chunk_mask) * size
            chunk = l >> self.chunk_shift
            self.undo.append((self.unalloc, l, len(self.pending), n,
                              self.chunk_bufs[chunk][o:o + size]))
            del free[n]
            if value is not None:
                self.chunks[chunk][o:o + size] = value
            return l
        l = self.n_used
        if l == self.n_slots:
            count = min(1 << min(self.chunk_shift, 13), self.max_slots - l)
            assert count > 0, "more slots than the kernel has elements"
            self._new_slots(count)
        self.undo.append((self.unalloc, l, len(self.pending), -1, None))
        self.n_used = l + 1
        if value is not None:
            size = self.slot_size
            arena = self.arena
            if arena is not None:               # the values are one chunk
                o = l * size
                arena[o:o + size] = value
            else:
                o = (l & self.chunk_mask) * size
                self.chunks[l >> self.chunk_shift][o:o + size] = value
        return l

    def _unalloc(self, l: int, n_pending: int, n_free: int, old) -> None:
        """The inverse of alloc() (n_free: the free slots then, less the one taken; -1 for a
        never-used slot, whose bytes were zero; -2 for copy_value() or value_for_write()
        into an element in no list, which took nothing), and so of the value alloc(value)
        copied in, and of the unjournaled init_value(l) and add_head(l) after it. Every step
        restores a recorded value: idempotent."""
        key = self.elem_key[l]
        if key is not None:                 # add_head(l) ran
            del self.pending[n_pending:]
            if self.elems.get(key) == l:
                del self.elems[key]
            self.elem_key[l] = None
            self._walk_forget()
        if n_free == -2:
            self.value(l)[:] = old
        elif n_free < 0:
            self.value(l)[:] = bytes(self.slot_size)
            self.n_used = l
        else:
            self.value(l)[:] = old
            restore_top(self.free_slots, n_free, l)

    def alloc_extra_elems(self, nr_cpus: int) -> None:
        """Room for one spare element per CPU, none taken yet (see hashtab.py)."""
        self.extra_elems = [None] * nr_cpus

    def swap_extra_elem(self, cpu: int, l_old: int, value=None):
        """This CPU's spare element (None if it has none yet), with value copied in if
        given, l_old the spare from now on; the spare's bytes journaled, as alloc() does."""
        extra = self.extra_elems
        l = extra[cpu]
        if l is None:
            self.undo.append((self.unswap, cpu, l, None))
        else:
            size = self.slot_size
            o = (l & self.chunk_mask) * size
            chunk = l >> self.chunk_shift
            self.undo.append((self.unswap, cpu, l, self.chunk_bufs[chunk][o:o + size]))
            if value is not None:
                self.chunks[chunk][o:o + size] = value
        extra[cpu] = l_old
        return l

    def _unswap(self, cpu: int, l, old) -> None:
        self.extra_elems[cpu] = l
        if l is not None:
            self.value(l)[:] = old

    def _take_back(self, l: int) -> None:
        """In an inverse that links l again: l off the top of the free slots if free() put
        it there (a linked element is never free, so the test is exact; idempotent)."""
        free = self.free_slots
        if free and free[-1] == l:
            del free[-1]

    def value(self, l: int):
        size = self.slot_size
        o = (l & self.chunk_mask) * size
        return self.chunks[l >> self.chunk_shift][o:o + size]

    def copy_value(self, l: int, value) -> None:
        """Its bytes journaled; into an element in no list (an LRU map's new element), the
        entry is like alloc()'s: it covers the add_head() right after it too."""
        size = self.slot_size
        o = (l & self.chunk_mask) * size
        i = l >> self.chunk_shift
        old = self.chunk_bufs[i][o:o + size]
        if self.elem_key[l] is None:
            self.undo.append((self.unalloc, l, len(self.pending), -2, old))
        else:
            self.undo.append((restore_bytes, self.chunks[i], o, old))
        self.chunks[i][o:o + size] = value

    def _arena_copy_value(self, l: int, value) -> None:
        size = self.slot_size
        o = l * size
        old = self.chunk_bufs[0][o:o + size]
        if self.elem_key[l] is None:
            self.undo.append((self.unalloc, l, len(self.pending), -2, old))
        else:
            self.undo.append((restore_bytes, self.arena, o, old))
        self.arena[o:o + size] = value

    def value_for_write(self, l: int):
        """value(l), to be written through: its bytes are journaled first; for an element in
        no list (an LRU_PERCPU_HASH map's new element) as copy_value() journals them, so that
        the entry covers the add_head() after it too."""
        size = self.slot_size
        o = (l & self.chunk_mask) * size
        buf = self.chunk_bufs[l >> self.chunk_shift]
        if self.elem_key[l] is None:
            self.undo.append((self.unalloc, l, len(self.pending), -2, buf[o:o + size]))
        else:
            self.undo.append((restore_bytes, buf, o, buf[o:o + size]))
        return self.chunks[l >> self.chunk_shift][o:o + size]

    def init_value(self, l: int, value) -> None:
        """copy_value() into the element alloc() or swap_extra_elem() just handed out: its
        bytes are journaled already."""
        size = self.slot_size
        o = (l & self.chunk_mask) * size
        self.chunks[l >> self.chunk_shift][o:o + size] = value

    def _arena_init_value(self, l: int, value) -> None:
        size = self.slot_size
        o = l * size
        self.arena[o:o + size] = value

    def _arena_value(self, l: int):
        """value() of a map whose values are one chunk (made with the first slot)."""
        size = self.slot_size
        o = l * size
        return self.arena[o:o + size]

    # --- the index and the lists -------------------------------------------------------

    def add_head(self, l: int, key: bytes) -> None:
        """Pending: hashed and put at its bucket's head when the buckets are next read. (A
        slot not in a list already has elem_next PENDING: see unlink and replace.)
        Journals nothing: l was handed out or filled earlier in the same call by alloc(), or
        by copy_value() or value_for_write() while in no list, whose entry's inverse
        (_unalloc) undoes this link too (hashtab.py calls add_head only on such an element;
        replace() below journals the one it makes itself)."""
        self.elem_key[l] = key
        self.elems[key] = l
        self.pending.append(l)
        self.walk_order = NO_WALK           # a new element: no walk order counts it

    def _undo_add_head(self, l: int, key: bytes, n_pending: int) -> None:
        self.elem_key[l] = None
        self.elems.pop(key, None)           # add_head links only keys that are not linked
        del self.pending[n_pending:]
        self._walk_forget()

    def unlink(self, l: int) -> None:
        self.walk_order = NO_WALK           # _walk_forget(), inlined: the lists change
        self.walk_steps = 0
        keys = self.elem_key
        key = keys[l]
        nxt = self.elem_next
        if nxt[l] < -1:                     # pending: its entry in pending goes stale
            stale = self.pending_stale
            self.undo.append((self.relink_pending, l, key, stale))
            elems = self.elems
            del elems[key]
            keys[l] = None
            if not elems:                   # the last one: every entry is stale
                self.undo.append(self._saved_pending())
                self._pending_done()
                return
            self.pending_stale = stale = stale + 1
            if not stale & 1023:
                undo = self.undo
                self._index_at_size()
                if stale > 4 * len(elems) + 4096:
                    # Inserts and deletes and no walk: keep it short (looked at every 1024th
                    # stale entry). (Rarely: a map emptied by deletes has its entries dropped
                    # whole when its last element goes.)
                    undo.append(self._saved_pending())
                    self.pending[:] = _packed("I", self._live_pending())
                    self.pending_stale = 0
            return
        undo = self.undo
        b = self.elem_hash[l] & self.bucket_mask
        heads = self.heads
        p = heads[b]
        if p == l:
            undo.append((self.relink, l, key, self.pending_stale, b, -1, nxt[l]))
            heads[b] = nxt[l]
        else:
            n = nxt[p]
            while n != l:
                p = n
                n = nxt[p]
            undo.append((self.relink, l, key, self.pending_stale, b, p, nxt[l]))
            nxt[p] = nxt[l]
        nxt[l] = PENDING                    # out of the lists: add_head needs not set it
        del self.elems[key]
        keys[l] = None

    def _relink(self, l: int, key: bytes, pending_stale: int, b: int, p: int,
                old_next: int) -> None:
        """The inverse of unlink(l): back after p in bucket b (at its head if p is -1; p is
        PENDING for a pending element, in no list), its key linked, off the free slots."""
        if p != PENDING:
            if p < 0:
                self.heads[b] = l
            else:
                self.elem_next[p] = l
            self.elem_next[l] = old_next
        self.elems[key] = l
        self.elem_key[l] = key
        self.pending_stale = pending_stale
        self._walk_forget()
        self._take_back(l)

    def _relink_pending(self, l: int, key: bytes, pending_stale: int) -> None:
        """_relink for a pending element (in no list: its elem_next is still PENDING), with
        a shorter entry: the one a delete after the fill journals."""
        self.elems[key] = l
        self.elem_key[l] = key
        self.pending_stale = pending_stale
        self._walk_forget()
        self._take_back(l)

    def _index_at_size(self) -> None:
        """The index dict made again at the size of its keys, if deletes made it twice that.

        A delete leaves a dummy entry in a dict, and a dict that runs out of room is made
        again at three times its keys (CPython's resize), where one made at once from the
        same keys has half that table: a map whose keys are replaced by new ones (deletes or
        LRU evictions, then inserts) ends up with twice the table (105 bytes a key at
        100,000 keys, against 52). Looked at every 1024th stale pending entry. The new
        dict takes the old one's place whole (_use_index): a decoded lookup runs without
        the lock and reads store.index once, so it finds either dict complete, never one
        emptied for a refill; a rollback puts the old dict back."""
        elems = self.elems
        n = len(elems)
        # A table slot costs about 20 bytes (an index of 4, and 2/3 of a 24-byte entry):
        # below 60 a key the table is less than 3n slots, the size a dict of n keys made at
        # once can have.
        if sys.getsizeof(elems) < 60 * n + 4096:
            return
        # The table dict(elems) gets: the smallest power of two of at least 3n/2 slots.
        # With room for less than n/4 more keys it would soon grow again: left as it is.
        slots = 1 << ((3 * n + 1) // 2 - 1).bit_length()
        if 2 * slots // 3 < n + (n >> 2):
            return
        fresh = dict(elems)
        self.undo.append((self._use_index, elems))
        self._use_index(fresh)

    def _use_index(self, index: dict) -> None:
        """index is the index dict from now on (and, in an inverse, again); the writers, who
        hold the lock, read it as elems, a lockless lookup as index (hashtab.py)."""
        self.elems = index
        self.index = index
        self.lookup = index.get
        self.count = partial(len, index)

    def _saved_pending(self) -> tuple:
        """An undo entry that puts the pending entries back as they are now."""
        return (self._restore_pending, self.pending[:], self.pending_stale, self.pending_ordered)

    def _restore_pending(self, pending: list, stale: int, ordered: bool) -> None:
        self.pending[:] = pending
        self.pending_stale = stale
        self.pending_ordered = ordered
        self._walk_forget()

    def replace(self, l_new: int, l_old: int) -> None:
        """add_head(l_new) and unlink(l_old), for the same key, so the same bucket: l_new
        takes l_old's place at the head, unless elements are pending (then it is the
        newest of them)."""
        keys = self.elem_key
        key = keys[l_old]
        if self.pending:
            if self.elem_next[l_old] < -1:
                # Both pending: unlink(l_old) and add_head(l_new) done here, as one; l_old's
                # entry in pending goes stale and l_new's is the newest.
                self.undo.append((self.unreplace_pending, l_new, l_old, key,
                                  self.pending_stale, len(self.pending)))
                self.walk_order = NO_WALK
                self.walk_steps = 0
                keys[l_old] = None
                keys[l_new] = key
                self.elems[key] = l_new
                self.pending.append(l_new)
                self.pending_stale = stale = self.pending_stale + 1
                if not stale & 1023 and stale > 4 * len(self.elems) + 4096:   # as unlink
                    self.undo.append(self._saved_pending())
                    self.pending[:] = _packed("I", self._live_pending())
                    self.pending_stale = 0
                return
            self.unlink(l_old)
            # l_new may be the spare (swap_extra_elem()), whose entry does not cover the link.
            self.undo.append((self.undo_add_head, l_new, key, len(self.pending)))
            self.add_head(l_new, key)
            return
        self._walk_forget()
        nxt = self.elem_next
        hash_ = self.elem_hash[l_old]
        b = hash_ & self.bucket_mask
        heads = self.heads
        p = heads[b]
        undo = self.undo
        if p == l_old:
            undo.append((self.unreplace, l_new, l_old, key, b, -1, nxt[l_new],
                         self.elem_hash[l_new], nxt[l_old]))
            nxt[l_new] = nxt[l_old]
        else:
            n = nxt[p]
            while n != l_old:
                p = n
                n = nxt[p]
            undo.append((self.unreplace, l_new, l_old, key, b, p, nxt[l_new],
                         self.elem_hash[l_new], nxt[l_old]))
            nxt[p] = nxt[l_old]
            nxt[l_new] = heads[b]
        nxt[l_old] = PENDING                # out of the lists (see unlink)
        heads[b] = l_new
        self.elem_hash[l_new] = hash_
        keys[l_new] = key
        keys[l_old] = None
        self.elems[key] = l_new

    def _unreplace_pending(self, l_new: int, l_old: int, key: bytes, stale: int,
                           n_pending: int) -> None:
        """The inverse of replace()'s path for two pending elements."""
        self.elem_key[l_new] = None
        self.elem_key[l_old] = key
        self.elems[key] = l_old
        del self.pending[n_pending:]
        self.pending_stale = stale
        self._walk_forget()
        self._take_back(l_old)

    def _unreplace(self, l_new: int, l_old: int, key: bytes, b: int, p: int, old_next: int,
                   old_hash: int, old_next_old: int) -> None:
        """The inverse of replace()'s in-list path: l_old back in its place (after p, or at
        the head of bucket b when p is -1) and off the free slots, l_new as it was."""
        nxt = self.elem_next
        if p < 0:
            self.heads[b] = l_old
        else:
            if self.heads[b] == l_new:
                self.heads[b] = nxt[l_new]
            nxt[p] = l_old
        nxt[l_new] = old_next
        nxt[l_old] = old_next_old
        self.elem_hash[l_new] = old_hash
        self.elem_key[l_new] = None
        self.elem_key[l_old] = key
        self.elems[key] = l_old
        self._walk_forget()
        self._take_back(l_old)

    # --- bucket walks ----------------------------------------------------------------

    def bucket(self, l: int) -> int:
        if self.elem_next[l] < -1:
            self.sync()
        return self.elem_hash[l] & self.bucket_mask

    def next_in_bucket(self, l: int):
        if self.pending:
            self.sync()
        n = self.elem_next[l]
        return n if n >= 0 else None

    def next_bucket(self, b: int):
        """The first non-empty bucket >= b, or None."""
        if self.pending:
            self.sync()
        heads = self.heads
        if self.sparse:
            return heads.next_from(b)
        n = self.n_buckets
        stop = b + 8 if b + 8 < n else n
        while b < stop:
            if heads[b] >= 0:
                return b
            b += 1
        # A run of empty buckets is a run of 0xff bytes: skip it at C speed, in growing
        # windows.
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

    def bucket_elems(self, b: int) -> list:
        if self.pending:
            self.sync()
        out = []
        if b >= self.n_buckets:
            return out
        nxt = self.elem_next
        l = self.heads[b]
        while l >= 0:
            out.append(l)
            l = nxt[l]
        return out

    # --- linking the pending elements ----------------------------------------------------

    def _live_pending(self) -> list:
        """The pending slots still linked, oldest first: a slot unlinked and linked again
        while pending counts at its last entry only (all at C speed)."""
        keys = self.elem_key
        live = [l for l in self.pending if keys[l] is not None]
        return list(dict.fromkeys(live[::-1]))[::-1]

    def waiting(self) -> list:
        """For tests and diagnostics: the elements not in their bucket lists yet, oldest
        first."""
        return self._live_pending()

    def sync(self) -> None:
        """Put the pending elements at their buckets' heads, oldest first, hashing them in
        one batch."""
        if not self.pending:
            return
        live = self._live_pending() if self.pending_stale else self.pending.tolist()
        n = len(live)
        if n == 0:                          # all of them unlinked again
            self._pending_done()
            return
        self._walk_forget()
        first = live[0]
        end = first + n
        run = _is_run(live)
        keys = self.elem_key
        live_keys = keys[first:end] if run else [keys[l] for l in live]
        if n < 8:                           # a batch's set-up costs about as much as 8 keys
            fn, rnd = self.hash_fn, self.hashrnd
            hashes = [fn(k, rnd) for k in live_keys]
        else:
            hashes = htab_map_hash_many(live_keys, self.key_size, self.hashrnd)
        if self.sparse and self.n_buckets <= HEADS_ARRAY_MAX:
            self._heads_array()
        nxt, heads, elem_hash, mask = self.elem_next, self.heads, self.elem_hash, self.bucket_mask
        undo = self.undo
        undo.append(self._saved_pending())
        if n > 4096 and 4 * n > len(nxt) + len(heads) and not self.sparse:
            undo.append((self._restore_columns, nxt[:], heads[:], elem_hash[:]))
            # A big batch (a map filled, then walked): link through lists, whose items cost
            # less than an array's to get and set, and copy them back whole at C speed.
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
        elif n >= 8:
            # One undo entry for all: each element's old next and hash, each bucket's old
            # head (read before any of them changes).
            live = list(live)
            buckets = _masked(hashes, mask)
            undo.append((self._unlink_synced_many, live, _gather(nxt, live), buckets,
                         _gather(heads, buckets), _gather(elem_hash, live)))
            for l, b in zip(live, buckets):
                nxt[l] = heads[b]
                heads[b] = l
        else:
            for l, h in zip(live, hashes):
                b = h & mask
                undo.append((self._unlink_synced, l, nxt[l], b, heads[b], elem_hash[l]))
                nxt[l] = heads[b]
                heads[b] = l
        if run:
            elem_hash[first:end] = array("I", hashes)
        else:
            for l, h in zip(live, hashes):
                elem_hash[l] = h
        self._pending_done()

    def _heads_array(self) -> None:
        """The heads as an array, made when the first elements are linked (no bucket has
        any yet; an undo that empties them again leaves the array, all -1)."""
        assert not self.heads, "the heads are made before anything is linked"
        # Two -1 past the last bucket, so that next_bucket can read past the end. Both in one
        # statement: a call stopped between two lines would leave an array with sparse still
        # set, and the next sync would find the array made already.
        self.heads, self.sparse = array("i", [-1]) * (self.n_buckets + 2), False

    def _restore_columns(self, nxt: array, heads: array, elem_hash: array) -> None:
        """The inverse of a big sync: the columns it rewrote whole."""
        self.elem_next[:] = nxt
        self.heads[:] = heads
        self.elem_hash[:] = elem_hash

    def _unlink_synced(self, l: int, old_next: int, b: int, old_head: int, old_hash: int):
        """The inverse of one element's link by sync."""
        self.heads[b] = old_head
        self.elem_next[l] = old_next
        self.elem_hash[l] = old_hash

    def _unlink_synced_many(self, live: list, old_next: list, buckets: list, old_heads: list,
                            old_hash: list) -> None:
        """The inverse of sync's link of live: their next and hash, their buckets' heads."""
        nxt, heads, elem_hash = self.elem_next, self.heads, self.elem_hash
        for b, h in zip(buckets, old_heads):
            heads[b] = h
        for l, n, h in zip(live, old_next, old_hash):
            nxt[l] = n
            elem_hash[l] = h

    def _pending_done(self) -> None:
        del self.pending[:]
        self.pending_stale = 0
        self.pending_ordered = False

    # --- a walk's order --------------------------------------------------------------------

    def _walk_forget(self) -> None:
        """The bucket lists change: a walk order made before is wrong now."""
        self.walk_order = NO_WALK
        self.walk_steps = 0

    def walk_hint(self, key):
        """The key after ``key`` from this walk's order (None past the last), or MISS.

        A walk given its order steps along it, checking it was given the key it returned
        last. Without an order, a walk from the start on a map whose elements are all
        pending gets one from their hashes alone (_pending_walk_order); a walk whose call
        links most of the map, or that has taken more steps than an eighth of the map's
        elements since the lists last changed, gets one from the lists (_walk_order)."""
        order = self.walk_order
        i = order[0]
        if order[i] == key:                 # the key this walk was given last
            i += 1
            found = order[i]
            if found is None:               # the end: let the order go
                self._walk_forget()
                return None
            order[0] = i
            return found
        if key is None or key not in self.elems:
            # A walk from the start, on a map filled and not walked since.
            if self._all_pending():
                if order is NO_WALK:
                    if self.pending_ordered:
                        # Ordered once already, and changed since: link them (a caller that
                        # adds a key and starts a walk, again and again, must not sort every
                        # time).
                        return self._link_and_start(key)
                    order = self._pending_walk_order()
                order[0] = 1
                return order[1]
        if self.pending:
            return self._link_and_start(key)
        if order is NO_WALK:
            steps = self.walk_steps + 1
            self.walk_steps = steps
            if steps >= WALK_ORDER_MIN_STEPS and steps << 3 >= len(self.elems):
                return self._start_at(key)
        return MISS

    def _link_and_start(self, key):
        linked = len(self.pending)
        self.sync()
        if linked > WALK_ORDER_MIN_STEPS and 2 * linked >= len(self.elems):
            return self._start_at(key)      # most of the map was just linked for this walk
        return MISS

    def _start_at(self, key):
        """Make the walk's order and answer from it: the key after ``key``, or the first
        key if ``key`` is None or gone."""
        order = self._walk_order()
        i = 0
        if key is not None:
            try:
                i = order.index(key, 1)
            except ValueError:              # a missing key: the walk restarts
                i = 0
        self.walk_order = order
        self.walk_steps = 0
        found = order[i + 1]
        if found is None:
            self._walk_forget()
            return None
        order[0] = i + 1
        return found

    def _walk_order(self) -> list:
        """Every key in walk order (bucket by bucket, each list from its head), after a
        position in the list (item 0). The lists are synced."""
        nxt = self.elem_next.tolist()
        keys = self.elem_key
        heads = self.heads
        if self.sparse:                     # a dict of the non-empty buckets
            listed = [heads[b] for b in sorted(heads)]
        else:
            listed = _listed_heads(heads)
        order = [0]
        append = order.append
        for l in listed:
            append(keys[l])
            l = nxt[l]
            while l >= 0:
                append(keys[l])
                l = nxt[l]
        append(None)
        return order

    def _all_pending(self) -> bool:
        """Whether every element of the map is pending, each once (none listed, no stale
        entry), and there are more than a short walk's worth."""
        n = len(self.pending)
        return n > WALK_ORDER_MIN_STEPS and n == len(self.elems) and not self.pending_stale

    def _pending_walk_order(self) -> list:
        """The walk order of a map whose elements are all pending, from their hashes alone:
        [0, key..., None].

        Linking puts each element at its bucket's head, oldest first, so each bucket lists
        its elements newest first, and a walk goes bucket by bucket: the order is the keys,
        newest first, sorted by bucket (sorted() is stable). The elements stay pending: the
        order holds while nothing is added to pending or taken out of it (add_head and
        unlink drop it). A walk then costs no linking at all."""
        live = self.pending.tolist()
        first = live[0]
        keys = self.elem_key
        if _is_run(live):
            newest_first = keys[first:first + len(live)]
        else:
            newest_first = list(map(keys.__getitem__, live))
        hashes = htab_map_hash_many(newest_first, self.key_size, self.hashrnd)
        buckets = _masked(hashes, self.bucket_mask)
        newest_first.reverse()
        buckets.reverse()
        order = [0]
        # Each key's bucket, as the sort key: list.sort computes its sort keys one item after
        # the other, in list order, so the iterator hands each key the bucket at its place.
        order += sorted(newest_first, key=partial(next, iter(buckets)))
        order.append(None)
        self.walk_order = order
        self.pending_ordered = True
        self.walk_steps = 0
        return order


    # --- bulk operations of the batch commands (htab_batch.py) -----------------------------
    #
    # Each does what the element operations above would do one after the other, journaled
    # as one undo entry, with no Python call per element.

    def batch_buckets(self, b: int, max_count: int):
        """(slots, bucket_ids, ends, stop): the elements of the whole buckets from the first
        non-empty one >= b that fit in max_count elements, in walk order; those buckets,
        where each one's elements end in slots; stop, the first non-empty bucket not taken
        (None when none is left).

        On a map whose elements are all pending (filled and not walked since), the buckets
        come from the order linking would give them, made once from their hashes and kept
        while nothing changes (_pending_batch_order): a call takes a slice of it, and the
        elements stay pending, as for a walk (walk_hint); unlink_buckets() of a slice takes it
        out of the order, which stays."""
        if self.pending:
            if self._batch_order_valid() or (
                    self._all_waiting()
                    and (not self.pending_ordered or self.walk_order is not NO_WALK)):
                found = self._pending_batch_buckets(b, max_count)
                if found is not None:
                    return found
            self.sync()
        heads, nxt = self.heads, self.elem_next
        n_buckets = self.n_buckets
        slots, bucket_ids, ends = [], [], []
        count = 0
        while b < n_buckets:
            l = heads[b]
            if l < 0:
                b += 1
                l = heads[b]                    # (heads has two -1 after the last bucket)
                if l < 0:
                    b += 1
                    l = heads[b]
                    if l < 0:
                        b = self.next_bucket(b) # a run of empty buckets, skipped at C speed
                        if b is None:
                            break
                        l = heads[b]
                if b >= n_buckets:
                    break
            n = nxt[l]
            if n < 0:                           # one element: most buckets
                if count == max_count:
                    return slots, bucket_ids, ends, b
                slots.append(l)
                count += 1
            else:
                run = [l]
                while n >= 0:
                    run.append(n)
                    n = nxt[n]
                if len(run) > max_count - count:
                    return slots, bucket_ids, ends, b
                slots += run
                count += len(run)
            bucket_ids.append(b)
            ends.append(count)
            b += 1
        return slots, bucket_ids, ends, None

    def _pending_batch_order(self):
        """(walk order, slots, buckets), or None if some elements are listed: the elements
        of a map whose elements are all pending, in the order linking them would give a
        walk (_pending_walk_order's: the newest first, sorted by bucket), as their keys (the
        walk order, which it becomes), their slots, and their buckets (ascending). Made
        once, at C speed, and kept while the walk order is this one: anything that changes
        the pending elements drops it (but unlink_buckets() of a slice it gave, which takes
        the slice out of it), and so does the walk's end."""
        order = self.batch_order
        if order is not None and order[0] is self.walk_order:
            return order
        newest_first = self._live_pending() if self.pending_stale else self.pending.tolist()
        if len(newest_first) != len(self.elems):    # some are listed: not this order
            return None
        newest_first.reverse()
        keys = _gather(self.elem_key, newest_first)
        hashes = htab_map_hash_many(keys, self.key_size, self.hashrnd)
        buckets = _masked(hashes, self.bucket_mask)
        by_bucket = sorted(range(len(buckets)), key=buckets.__getitem__)    # stable
        walk = [0]
        walk += _gather(keys, by_bucket)
        walk.append(None)
        order = (walk, _gather(newest_first, by_bucket), _gather(buckets, by_bucket))
        self.walk_order = walk
        self.walk_steps = 0
        self.pending_ordered = True
        self.batch_order = order
        return order

    def _all_waiting(self) -> bool:
        """Whether every element of the map is pending (none listed; stale entries allowed,
        as after an LRU map's evictions), and there are more than a short walk's worth."""
        n = len(self.elems)
        return n > WALK_ORDER_MIN_STEPS and len(self.pending) - self.pending_stale == n

    def _batch_order_valid(self) -> bool:
        order = self.batch_order
        return order is not None and order[0] is self.walk_order

    def _pending_batch_buckets(self, b: int, max_count: int):
        """batch_buckets() of a map whose elements are all pending (None if some are
        listed): a slice of their order. The buckets taken and their ends are made only if
        asked for (a copy that goes bucket by bucket, a delete)."""
        order = self._pending_batch_order()
        if order is None:
            return None
        walk, slots, buckets = order
        n = len(slots)
        i = bisect_left(buckets, b)
        j = i + max_count
        stop = None
        if j < n:
            stop = buckets[j]                   # the bucket that does not fit, whole
            j = bisect_left(buckets, stop, i, j)
        else:
            j = n
        part = buckets[i:j]
        taken = slots[i:j]
        self.batch_keys = (taken, walk[i + 1:j + 1])
        self.batch_taken = (taken, i, j)
        if stop is None:
            # The walk's end lets the order go, as a GET_NEXT_KEY walk's end does (it costs
            # three lists of the map's size); a walk after it links the map.
            self._walk_forget()
            self.batch_order = None
        return (taken, _LazyList(partial(_distinct, part)),
                _LazyList(partial(_bucket_ends, part)), stop)

    def keys_of(self, slots: list) -> list:
        memo = self.batch_keys
        if memo is not None:
            self.batch_keys = None
            if memo[0] is slots:                # the slice batch_buckets() just took
                return memo[1]
        return _gather(self.elem_key, slots)

    def values_of(self, slots: list) -> bytes:
        """The values of slots, joined."""
        if not slots:
            return b""
        size = self.slot_size
        if self.chunk_shift == 31:
            arena = self.arena
            if size == 8:
                # One item of an 8-byte view per slot: gathered at C speed.
                words = _gather(arena.cast("Q"), slots)
                return array("Q", words).tobytes()
            run = _run_slice(slots)
            if run is not None:                 # consecutive slots: one slice
                if run.step is None:
                    return arena[run.start * size:run.stop * size].tobytes()
                return _reversed_pieces(arena[slots[-1] * size:(slots[0] + 1) * size], size)
            if not size & 7 and len(slots) > 1:
                # Values of w 8-byte words (per-CPU values): word i of every slot gathered
                # from a strided view of the arena, at C speed, and interleaved.
                views = self.word_views
                if views is None:
                    words = arena.cast("Q")
                    w = size >> 3
                    views = self.word_views = [words[i::w] for i in range(w)]
                w = len(views)
                out = array("Q", bytes(size * len(slots)))
                get = itemgetter(*slots)
                for i, view in enumerate(views):
                    out[i::w] = array("Q", get(view))
                return out.tobytes()
            return b"".join([arena[l * size:l * size + size] for l in slots])
        value = self.value
        return b"".join([value(l) for l in slots])

    def unlink_buckets(self, slots: list, bucket_ids: list) -> None:
        """unlink() of every element of whole buckets (slots, in walk order, and the
        buckets, as batch_buckets() gave them): those buckets are left empty."""
        if self.pending:
            taken = self.batch_taken
            self.batch_taken = None
            if taken is not None and taken[0] is slots and self._batch_order_valid():
                self._unlink_pending_run(slots, taken[1], taken[2])
                return
            self.sync()                         # the order of the slots is the lists' now
        keys = _gather(self.elem_key, slots)
        nxt = self.elem_next
        heads = self.heads
        # Each bucket's head, and each element's next, as they are.
        old_heads = _gather(heads, bucket_ids)
        old_next = _gather(nxt, slots)
        self.undo.append((self._undo_unlink_buckets, slots, keys, bucket_ids, old_heads,
                          old_next))
        self._walk_forget()
        for b in bucket_ids:
            heads[b] = -1
        elems = self.elems
        elem_key = self.elem_key
        for l, k in zip(slots, keys):
            nxt[l] = PENDING
            elem_key[l] = None
            del elems[k]

    def _unlink_pending_run(self, slots: list, i: int, j: int) -> None:
        """unlink() of elements i..j-1 of the pending elements' batch order (slots, all
        pending): each one's entry in pending goes stale, as unlink() of a pending element
        does, and they leave the order, which stays the walk order of the rest."""
        walk, order_slots, buckets = self.batch_order
        keys = walk[i + 1:j + 1]
        self.undo.append((self._undo_unlink_pending_run, slots, keys, self.pending_stale))
        del walk[i + 1:j + 1]
        del order_slots[i:j]
        del buckets[i:j]
        walk[0] = 0                             # a GET_NEXT_KEY walk on it starts again
        elems = self.elems
        for k in keys:
            del elems[k]
        elem_key = self.elem_key
        for l in slots:
            elem_key[l] = None
        self.pending_stale += len(slots)
        if not elems:                           # the last ones: every entry is stale
            self.undo.append(self._saved_pending())
            self._pending_done()
            self._walk_forget()
        else:
            self._index_at_size()

    def _undo_unlink_pending_run(self, slots, keys, stale: int) -> None:
        elems, elem_key = self.elems, self.elem_key
        for l, k in zip(slots, keys):
            elem_key[l] = k
            elems[k] = l
        self.pending_stale = stale
        self._walk_forget()                     # the order lost them: made again

    def _undo_unlink_buckets(self, slots, keys, bucket_ids, old_heads, old_next) -> None:
        nxt, heads, elem_key, elems = self.elem_next, self.heads, self.elem_key, self.elems
        for b, l in zip(bucket_ids, old_heads):
            heads[b] = l
        for l, k, n in zip(slots, keys, old_next):
            nxt[l] = n
            elem_key[l] = k
            elems[k] = l
        self._walk_forget()

    def unlink_many(self, slots: list) -> None:
        """unlink(l) for each of slots, in order (distinct linked elements)."""
        nxt, heads, elems, elem_key = self.elem_next, self.heads, self.elems, self.elem_key
        hashes, mask = self.elem_hash, self.bucket_mask
        keys = _gather(elem_key, slots)
        old_next = _gather(nxt, slots)
        changed = []                            # (bucket or ~element, old value), in order
        self.undo.append((self._undo_unlink_many, slots, keys, old_next, changed,
                          self.pending_stale))
        self._walk_forget()
        stale = 0
        if self.pending and max(old_next) < -1:     # all of them pending: no list to cut
            stale = len(slots)
            old_next = ()
        for l, n in zip(slots, old_next):
            if n < -1:
                stale += 1
                continue
            b = hashes[l] & mask
            p = heads[b]
            if p == l:
                changed.append((b, l))
                heads[b] = nxt[l]
            else:
                q = nxt[p]
                while q != l:
                    p = q
                    q = nxt[p]
                changed.append((~p, l))
                nxt[p] = nxt[l]
            nxt[l] = PENDING
        for k in keys:
            del elems[k]
        run = _run_slice(slots)
        if run is not None:                     # consecutive slots: one slice
            elem_key[run] = [None] * len(slots)
        else:
            for l in slots:
                elem_key[l] = None
        if stale:
            if not elems:                       # the last one: every entry is stale
                self.undo.append(self._saved_pending())
                self._pending_done()
                return
            self.pending_stale += stale
            self._index_at_size()
            if self.pending_stale > 4 * len(elems) + 4096:     # as unlink(): compact
                self.undo.append(self._saved_pending())
                self.pending[:] = _packed("I", self._live_pending())
                self.pending_stale = 0

    def _unlink_after(self, l: int, b: int, changed: list) -> None:
        """Take l out of bucket b's list, where it is not the head."""
        nxt = self.elem_next
        p = self.heads[b]
        q = nxt[p]
        while q != l:
            p = q
            q = nxt[p]
        changed.append((p, l))
        nxt[p] = nxt[l]

    def _undo_unlink_many(self, slots, keys, old_next, changed, stale: int) -> None:
        nxt, heads, elem_key, elems = self.elem_next, self.heads, self.elem_key, self.elems
        for where, old in reversed(changed):
            if where < 0:
                nxt[~where] = old
            else:
                heads[where] = old
        for l, n, k in zip(slots, old_next, keys):
            nxt[l] = n
            elem_key[l] = k
            elems[k] = l
        self.pending_stale = stale
        self._walk_forget()

    def free_many(self, slots: list) -> None:
        """free(l) for each of slots, in order."""
        free = self.free_slots
        self.undo.append((restore_len, free, len(free)))
        free.extend(slots)

    def alloc_add_many(self, keys: list, values) -> None:
        """For each key (distinct, none linked): alloc(), copy_value() of its slot_size
        bytes of values, add_head(): a run of inserts of new keys."""
        n = len(keys)
        size = self.slot_size
        free = self.free_slots
        n_free = len(free)
        take = n if n < n_free else n_free
        reused = free[n_free - take:]
        reused.reverse()                        # popped from the top
        first = self.n_used
        fresh = n - take
        while first + fresh > self.n_slots:     # as alloc() makes them (journaled first)
            self._new_slots(min(1 << min(self.chunk_shift, 13), self.max_slots - self.n_slots))
        slots = reused + list(range(first, first + fresh)) if take else range(first, first + n)
        olds = (self.values_of(reused), self._values_run(first, fresh) if fresh else b"")
        self.undo.append((self._undo_alloc_add_many, keys, slots, reused, n_free, first,
                          len(self.pending), olds))
        del free[n_free - take:]
        self.n_used = first + fresh
        elem_key = self.elem_key
        if take:
            self._values_scatter(reused, values[:take * size])
            run = _run_slice(reused)
            if run is not None:                 # freed by a batch: one slice
                elem_key[run] = keys[:take]
            else:
                for l, k in zip(reused, keys):
                    elem_key[l] = k
        if fresh:
            self._values_put(first, fresh, values[take * size:])
            elem_key[first:first + fresh] = keys[take:]
        self.elems.update(zip(keys, slots))
        self.pending += _packed("I", slots)
        self.walk_order = NO_WALK               # new elements: no walk order counts them

    def _undo_alloc_add_many(self, keys, slots, reused, n_free, first, n_pending, olds):
        elems, elem_key = self.elems, self.elem_key
        for k in keys:
            elems.pop(k, None)
        for l in slots:
            if l < len(elem_key):
                elem_key[l] = None
        del self.pending[n_pending:]
        free = self.free_slots
        del free[n_free - len(reused):]
        free.extend(reversed(reused))
        self.n_used = first
        if reused:
            self._values_scatter(reused, olds[0])
        if olds[1]:
            self._values_put(first, len(slots) - len(reused), olds[1])
        self._walk_forget()

    def copy_add_many(self, slots: list, keys: list, values) -> None:
        """For each slot (distinct elements in no list, an LRU map's nodes just popped) and
        its key (distinct, none linked): copy_value() of its slot_size bytes of values, then
        add_head(): a run of an LRU map's inserts of new keys."""
        olds = self.values_of(slots)
        self.undo.append((self._undo_copy_add_many, slots, keys, len(self.pending), olds))
        self._values_scatter(slots, values)
        elem_key = self.elem_key
        for l, k in zip(slots, keys):
            elem_key[l] = k
        self.elems.update(zip(keys, slots))
        self.pending += _packed("I", slots)
        self.walk_order = NO_WALK               # new elements: no walk order counts them

    def _undo_copy_add_many(self, slots, keys, n_pending, olds) -> None:
        elems, elem_key = self.elems, self.elem_key
        for k, l in zip(keys, slots):
            if elems.get(k) == l:
                del elems[k]
            elem_key[l] = None
        del self.pending[n_pending:]
        self._values_scatter(slots, olds)
        self._walk_forget()

    def _values_scatter(self, slots: list, data) -> None:
        """Write data's slot_size-byte pieces into the values of slots, in order (not
        journaled: the caller did)."""
        size = self.slot_size
        if self.chunk_shift == 31:
            arena = self.arena
            # Plain loops: an item assignment through map(x.__setitem__, ...) costs more
            # in CPython 3.11 than the same assignment in a loop.
            if size == 8:
                words = arena.cast("Q")
                run = _run_slice(slots)
                if run is not None:             # consecutive slots: one slice
                    words[run] = array("Q", bytes(data))
                    return
                for l, v in zip(slots, array("Q", bytes(data))):
                    words[l] = v
                return
            run = _run_slice(slots)
            if run is not None:                 # consecutive slots: one slice
                if run.step is None:
                    arena[run.start * size:run.stop * size] = data
                else:
                    arena[slots[-1] * size:(slots[0] + 1) * size] = _reversed_pieces(data, size)
                return
            pieces = memoryview(bytes(data))
            o = 0
            for l in slots:
                start = l * size
                arena[start:start + size] = pieces[o:o + size]
                o += size
            return
        for i, l in enumerate(slots):
            self._values_put(l, 1, data[i * size:(i + 1) * size])

    def _values_run(self, l: int, n: int):
        """The values of slots l..l+n-1, as bytes."""
        size = self.slot_size
        if self.chunk_shift == 31:
            return self.arena[l * size:(l + n) * size].tobytes()
        return b"".join([self.value(s) for s in range(l, l + n)])

    def _values_put(self, l: int, n: int, data) -> None:
        """Write the values of slots l..l+n-1 (not journaled: the caller did)."""
        size = self.slot_size
        if self.chunk_shift == 31:
            self.arena[l * size:(l + n) * size] = data
            return
        mask, shift, chunks = self.chunk_mask, self.chunk_shift, self.chunks
        for i in range(n):
            s = l + i
            o = (s & mask) * size
            chunks[s >> shift][o:o + size] = data[i * size:(i + 1) * size]


def _gather(seq, slots: list) -> list:
    """[seq[l] for l in slots] at C speed."""
    if len(slots) > 1:
        return list(itemgetter(*slots)(seq))
    return [seq[l] for l in slots]


class _LazyList:
    """A list made when first used: the buckets of a batch and their ends, which a batch
    lookup needs only when its copy goes bucket by bucket."""
    __slots__ = ("make", "items")

    def __init__(self, make):
        self.make = make
        self.items = None

    def _list(self) -> list:
        if self.items is None:
            self.items = self.make()
        return self.items

    def __len__(self):
        return len(self._list())

    def __getitem__(self, i):
        return self._list()[i]

    def __iter__(self):
        return iter(self._list())

    def index(self, x):
        return self._list().index(x)


def _distinct(buckets: list) -> list:
    """The distinct items of ascending buckets, in order."""
    return list(dict.fromkeys(buckets))


def _bucket_ends(buckets: list) -> list:
    """Where each bucket's run of items ends in ascending buckets."""
    return [bisect_right(buckets, x) for x in dict.fromkeys(buckets)]


def _is_run(slots: list) -> bool:
    """Whether distinct slots are consecutive and ascending (a map filling up takes
    never-used slots in order), so that they can be read and written as slices. With the
    right ends, sorted means a run (sorted() of a sorted list is one pass; the middle check
    keeps most other orders out of it)."""
    n = len(slots)
    first = slots[0]
    return (slots[-1] == first + n - 1 and slots[n >> 1] == first + (n >> 1)
            and sorted(slots) == slots)


def _run_slice(slots: list):
    """The slice that distinct slots are, in order, when they are consecutive ascending or
    descending (the elements a batch freed, taken back from the free list's top), else None."""
    n = len(slots)
    if n < 2:
        return None
    first = slots[0]
    if slots[-1] == first + n - 1:
        return slice(first, first + n) if _is_run(slots) else None
    if slots[-1] == first - n + 1 and _is_run(slots[::-1]):
        return slice(first, first - n if first >= n else None, -1)
    return None


# Struct("ks" * n) per (piece size, n), kept for _reversed_pieces (bounded: cleared when full).
_SPLITTERS: dict = {}


def _reversed_pieces(data, size: int) -> bytes:
    """data's size-byte pieces in reverse order, joined (the values of a descending run of
    slots, as the arena holds them ascending), at C speed."""
    n = len(data) // size
    splitter = _SPLITTERS.get((size, n))
    if splitter is None:
        if len(_SPLITTERS) >= 64:
            _SPLITTERS.clear()
        splitter = _SPLITTERS[(size, n)] = struct.Struct(f"{size}s" * n)
    pieces = list(splitter.unpack_from(data))
    pieces.reverse()
    return b"".join(pieces)


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
