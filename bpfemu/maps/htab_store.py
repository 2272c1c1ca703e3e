"""The store under a hash map: how its elements and bucket lists are kept.

hashtab.py is kernel/bpf/hashtab.c; what it does to elements and buckets goes through a
store, with these operations (an element is an int, its slot; None is "no element"):

* memory: ``prealloc(n)`` makes elements 0..n-1 at once, zeroed (prealloc_init() of the LRU
  maps); ``alloc()`` takes a free element, the one freed last first (pcpu_freelist_pop(),
  bpf_mem_cache_alloc()), else the lowest never used (the caller checks capacity);
  ``alloc(value)`` the same with value copied into it (alloc_htab_elem()'s copy_map_value());
  ``free(l)`` gives back an element unlinked in the same call (pcpu_freelist_push());
  ``value(l)`` is a live view of its value memory (slot_size bytes), which stays on that
  element's memory for good; ``copy_value(l, value)`` writes all of it (copy_map_value());
  ``init_value(l, value)`` the same into the element alloc() or swap_extra_elem() has just
  handed out without a value (a store may have journaled its bytes there already).
* the spares of a preallocated HASH map: ``alloc_extra_elems(nr_cpus)`` (none taken yet),
  ``swap_extra_elem(cpu, l_old, value=None)``: the CPU's spare (None if it has none yet),
  with value copied into it if given, l_old the spare from now on (alloc_htab_elem()'s use
  of htab->extra_elems).
* the index and the lists: ``index``, the dict of the linked elements by key:
  ``index.get(key)`` is lookup_elem_raw() on the key's bucket and ``len(index)`` the
  elements linked (hashtab.py calls the dict's own methods: cheaper than a method the store
  keeps as an attribute); ``lookup(key)`` and ``count()`` are the same two, for callers
  that keep them. A store may put another dict in index's place (the columnar store's
  rebuild at size), never empty the one in use: a decoded lookup reads it without the lock,
  so read ``store.index`` at each use and keep none of the three across calls; ``key(l)`` (None once unlinked), ``add_head(l, key)``
  (hlist_nulls_add_head_rcu() into the key's bucket), ``unlink(l)``
  (hlist_nulls_del_rcu()), ``replace(l_new, l_old)`` (add_head of l_new under l_old's key,
  then unlink of l_old: htab_map_update_elem() does the two back to back).
* bucket walks: ``bucket(l)`` (its bucket index), ``next_in_bucket(l)``,
  ``next_bucket(b)`` (the first non-empty bucket >= b, or None: the loop over empty
  buckets of htab_map_get_next_key() and the batch walk), ``bucket_elems(b)`` (a bucket's
  elements, head first).
* ``value_for_write(l)``: value(l), for a write through it (the write is journaled);
  ``reserve()``: make every element the map can need now (a preallocated map, at create).
* ``undo``: the emulator's undo journal (bpfemu/undo.py): every operation that changes
  anything appends its inverse first, so that a call stopped half-way is rolled back.
  SimpleStore journals each operation; ColumnarStore journals one entry for what the kernel
  does in a row (alloc(), or copy_value() or value_for_write() into an element in no
  list, covers the value copy and the add_head() after it, which journals nothing: so
  add_head(l) is called only on such an element, in the same call; unlink() covers the
  free() after it).
* bulk operations, for the batch commands (htab_batch.py): ``batch_buckets(b, max_count)``
  ((slots, bucket_ids, ends, stop): the elements of the whole buckets from the first
  non-empty one >= b that fit in max_count, in walk order; those buckets and where each
  one's elements end in slots, as sequences a store may make only when first read; the
  first non-empty bucket not taken, or None),
  ``keys_of(slots)``, ``values_of(slots)`` (joined), ``unlink_buckets(slots, bucket_ids)``
  (unlink of every element of those whole buckets),
  ``unlink_many(slots)``, ``free_many(slots)``, ``alloc_add_many(keys, values)`` (alloc,
  copy_value and add_head of each of distinct new keys), ``copy_add_many(slots, keys,
  values)`` (copy_value and add_head of each of distinct new keys into the given elements,
  in no list: an LRU map's nodes). Each is the element operations
  one after the other, journaled as one undo entry.
* ``walk_hint(key)``: a cache. What htab_map_get_next_key(key) returns if the store knows
  it from the walk it is serving (None: past the last element), or MISS. A store that keeps
  no cache always answers MISS.

Two stores implement this: ``SimpleStore`` below, plain Python and eager, the executable
definition; and ``ColumnarStore`` (htab_columns.py), which keeps the same elements in
columns, hashes new elements in batches when something first walks the buckets, and keeps a
long walk's order. Which one a map gets is ``Emulator(store=...)``: "columnar" (the
default) or "simple". The differential tests run on either (``--htab-store``).
"""
from ..undo import NO_JOURNAL, restore_bytes, restore_item, restore_len, restore_top
from .jhash import htab_hash_func

MISS = object()                 # walk_hint(): the store does not know
DENSE_MAX = 1 << 20             # SimpleStore: buckets in a list up to this many


class SimpleStore:
    """Each element its own bytearray; each bucket a Python list, head first; every
    operation done at once, as the kernel does it."""

    def __init__(self, *, key_size: int, slot_size: int, n_buckets: int, hashrnd: int,
                 max_slots: int = 0, undo: list = NO_JOURNAL):
        self.undo = undo
        self.slot_size = slot_size
        self.mask = n_buckets - 1
        self.n_buckets = n_buckets
        self.hash_fn = htab_hash_func(key_size)
        self.hashrnd = hashrnd
        # bucket -> [element, ...], head first, or None: a list for up to DENSE_MAX
        # buckets, a dict of the non-empty ones beyond.
        self.buckets = [None] * n_buckets if n_buckets <= DENSE_MAX else {}
        self.index: dict = {}               # key -> element
        self.keys: list = []                # element -> key while linked, else None
        self.hashes: list = []              # element -> hash
        self.values: list = []              # element -> memoryview of its own bytearray
        self.free_list: list = []           # freed elements, the last freed on top
        self.unused: list = []              # reserved elements never handed out, lowest on top
        self.max_slots = max_slots
        self.extra_elems = None             # per CPU spare elements (alloc_extra_elems)
        self.lookup = self.index.get
        self.count = self.index.__len__

    def _make(self, n: int) -> None:
        self.undo.append((self._unmake, len(self.keys)))
        for _ in range(n):
            self.keys.append(None)
            self.hashes.append(0)
            self.values.append(memoryview(bytearray(self.slot_size)))

    def _unmake(self, n: int) -> None:
        del self.keys[n:]
        del self.hashes[n:]
        del self.values[n:]

    def prealloc(self, n: int) -> None:
        self._make(n)

    def reserve(self) -> None:
        """Every element the map can need, made now: what the kernel preallocates at
        MAP_CREATE (prealloc_init()), so that no update of a preallocated map allocates."""
        first = len(self.keys)
        self._make(self.max_slots - first)
        self.unused[:0] = range(self.max_slots - 1, first - 1, -1)

    def alloc(self, value=None) -> int:
        """The element freed last, else the lowest never used (made now if none is
        reserved), with value copied in if given."""
        free = self.free_list
        unused = self.unused
        if free:
            n = len(free) - 1
            self.undo.append((restore_top, free, n, free[n]))
            l = free.pop()
        elif unused:
            n = len(unused) - 1
            self.undo.append((restore_top, unused, n, unused[n]))
            l = unused.pop()
        else:
            self._make(1)
            l = len(self.keys) - 1
        if value is not None:
            self.copy_value(l, value)
        return l

    def free(self, l: int) -> None:
        self.undo.append((restore_len, self.free_list, len(self.free_list)))
        self.free_list.append(l)

    def alloc_extra_elems(self, nr_cpus: int) -> None:
        self.extra_elems = [None] * nr_cpus

    def swap_extra_elem(self, cpu: int, l_old: int, value=None):
        extra = self.extra_elems
        l = extra[cpu]
        self.undo.append((restore_item, extra, cpu, l))
        extra[cpu] = l_old
        if l is not None and value is not None:
            self.copy_value(l, value)
        return l

    def value(self, l: int):
        return self.values[l]

    def value_for_write(self, l: int):
        v = self.values[l]
        self.undo.append((restore_bytes, v, 0, v.tobytes()))
        return v

    def copy_value(self, l: int, value) -> None:
        v = self.values[l]
        self.undo.append((restore_bytes, v, 0, v.tobytes()))
        v[:] = value

    def init_value(self, l: int, value) -> None:
        self.copy_value(l, value)

    def key(self, l: int):
        return self.keys[l]

    def add_head(self, l: int, key: bytes) -> None:
        self.undo.append((self._undo_add_head, l, key, self.hashes[l], self.keys[l],
                          self.index.get(key)))
        h = self.hash_fn(key, self.hashrnd)
        self.hashes[l] = h
        self.keys[l] = key
        self.index[key] = l
        b = h & self.mask
        bucket = self.buckets[b] if isinstance(self.buckets, list) else self.buckets.get(b)
        if bucket is None:
            # Made with its element in one line: a call stopped here leaves no empty bucket
            # (next_bucket would find it, and the walk's bucket_elems(i)[0] fail).
            self.buckets[b] = [l]
        else:
            bucket.insert(0, l)

    def _undo_add_head(self, l: int, key: bytes, old_hash: int, old_key, old_l) -> None:
        b = self.hashes[l] & self.mask
        bucket = self.buckets[b] if isinstance(self.buckets, list) else self.buckets.get(b)
        if bucket and bucket[0] == l and self.keys[l] == key:
            self._set_bucket(b, bucket[1:])
        if self.index.get(key) == l:
            if old_l is None:
                del self.index[key]
            else:
                self.index[key] = old_l         # a replace's add_head: the old element
        self.keys[l] = old_key
        self.hashes[l] = old_hash

    def _set_bucket(self, b: int, elems: list) -> None:
        if isinstance(self.buckets, list):
            self.buckets[b] = elems or None
        elif elems:
            self.buckets[b] = elems
        else:
            self.buckets.pop(b, None)

    def _restore_unlinked(self, l: int, b: int, elems: list, key, in_index: bool) -> None:
        self._set_bucket(b, elems)
        self.keys[l] = key
        if in_index:
            self.index[key] = l

    def unlink(self, l: int) -> None:
        b = self.hashes[l] & self.mask
        bucket = self.buckets[b]
        self.undo.append((self._restore_unlinked, l, b, bucket[:], self.keys[l],
                          self.index.get(self.keys[l]) == l))
        bucket.remove(l)
        if not bucket:
            if isinstance(self.buckets, list):
                self.buckets[b] = None
            else:
                del self.buckets[b]
        key = self.keys[l]
        self.keys[l] = None
        if self.index.get(key) == l:
            del self.index[key]

    def replace(self, l_new: int, l_old: int) -> None:
        self.add_head(l_new, self.keys[l_old])
        self.unlink(l_old)

    def bucket(self, l: int) -> int:
        return self.hashes[l] & self.mask

    def next_in_bucket(self, l: int):
        bucket = self.buckets[self.hashes[l] & self.mask]
        i = bucket.index(l) + 1
        return bucket[i] if i < len(bucket) else None

    def next_bucket(self, b: int):
        buckets = self.buckets
        if isinstance(buckets, list):
            for i in range(b, self.n_buckets):
                if buckets[i] is not None:
                    return i
            return None
        later = [i for i in buckets if i >= b]
        return min(later) if later else None

    def bucket_elems(self, b: int) -> list:
        if b >= self.n_buckets:
            return []
        bucket = self.buckets[b] if isinstance(self.buckets, list) else self.buckets.get(b)
        return list(bucket or ())

    def walk_hint(self, key):
        return MISS

    # --- bulk operations: the element operations one after the other ------------------------

    def batch_buckets(self, b: int, max_count: int):
        slots, bucket_ids, ends = [], [], []
        while True:
            nb = self.next_bucket(b)
            if nb is None:
                return slots, bucket_ids, ends, None
            elems = self.bucket_elems(nb)
            if len(elems) > max_count - len(slots):
                return slots, bucket_ids, ends, nb
            slots += elems
            bucket_ids.append(nb)
            ends.append(len(slots))
            b = nb + 1

    def keys_of(self, slots: list) -> list:
        return [self.keys[l] for l in slots]

    def values_of(self, slots: list) -> bytes:
        return b"".join([self.values[l] for l in slots])

    def unlink_buckets(self, slots: list, bucket_ids: list) -> None:
        for l in slots:
            self.unlink(l)

    def unlink_many(self, slots: list) -> None:
        for l in slots:
            self.unlink(l)

    def free_many(self, slots: list) -> None:
        for l in slots:
            self.free(l)

    def alloc_add_many(self, keys: list, values) -> None:
        size = self.slot_size
        for i, key in enumerate(keys):
            l = self.alloc(values[i * size:(i + 1) * size])
            self.add_head(l, key)

    def copy_add_many(self, slots: list, keys: list, values) -> None:
        size = self.slot_size
        for i, (l, key) in enumerate(zip(slots, keys)):
            self.copy_value(l, values[i * size:(i + 1) * size])
            self.add_head(l, key)
