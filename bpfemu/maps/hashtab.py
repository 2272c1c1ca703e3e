"""HASH, PERCPU_HASH, LRU_HASH and LRU_PERCPU_HASH: kernel/bpf/hashtab.c in Python.

As in the kernel: n_buckets = roundup_pow_of_two(max_entries) buckets, bucket =
jhash(key, hashrnd) & (n_buckets - 1), new and replacing elements linked at the bucket
head, iteration over buckets 0..n-1 and each list from its head. The functions below are the
kernel's, in its order; what they do to elements and bucket lists goes through the map's
store (htab_store.py: SimpleStore, or the faster ColumnarStore of htab_columns.py). An
element is the store's slot number; its value is ``store.value(l)``, a live view of its
memory (the whole per-CPU area for the per-CPU types).

* HASH and PERCPU_HASH take elements from the store's freelist (LIFO, like a CPU's
  freelist); a preallocated HASH map's replaced element becomes the current CPU's spare
  (the store's ``extra_elems``), as in alloc_htab_elem().
* LRU maps: element i is preallocated LRU node i (the kernel embeds the node in the
  element), and the LRU lists of bpf_lru_list.c (lru.py) decide which node, hence which
  element, is reused.
"""
import errno
from functools import partial

from ..errors import ENOTSUPP, BpfError
from ..uapi.consts import BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST
from ..uapi.consts import BpfMapType as T
from ..uapi import consts as F  # plain-int flag values (see consts.py)
from ..memlimit import htab_reserve_bytes, reservation_fits
from .core import BpfMap
from .htab_columns import ColumnarStore
from .htab_store import MISS, SimpleStore
from .lru import BpfLru, bpf_lru_node_set_ref, bpf_lru_pop_free, bpf_lru_populate, bpf_lru_push_free

NUMA_NO_NODE = -1
LOCAL_FREE_TARGET = 128
# HTAB_CREATE_FLAG_MASK
HTAB_CREATE_FLAG_MASK = (F.BPF_F_NO_PREALLOC | F.BPF_F_NO_COMMON_LRU | F.BPF_F_NUMA_NODE
                         | F.BPF_F_RDONLY | F.BPF_F_WRONLY | F.BPF_F_RDONLY_PROG
                         | F.BPF_F_WRONLY_PROG | F.BPF_F_ZERO_SEED)
_PROG_ACCESS = F.BPF_F_RDONLY_PROG | F.BPF_F_WRONLY_PROG

STORES = {"columnar": ColumnarStore, "simple": SimpleStore}


class BpfHtab(BpfMap):
    """struct bpf_htab."""

    def __init__(self, args, kernel):
        super().__init__(args, kernel)
        self.is_lru = args.map_type in (T.BPF_MAP_TYPE_LRU_HASH, T.BPF_MAP_TYPE_LRU_PERCPU_HASH)
        self.percpu = args.map_type in (T.BPF_MAP_TYPE_PERCPU_HASH, T.BPF_MAP_TYPE_LRU_PERCPU_HASH)
        self.percpu_lru = bool(args.map_flags & F.BPF_F_NO_COMMON_LRU)
        self.prealloc = not args.map_flags & F.BPF_F_NO_PREALLOC
        self.n_buckets = 0
        self.hashrnd = 0
        self.store = None                             # the elements and buckets
        self.slot_size = self.value_size_sys          # bytes of value an element holds
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
    # Elements: max_entries, plus one spare per CPU for a preallocated HASH map (one in all
    # without preallocation: a replacing element is allocated before the old one is freed).
    if htab.is_lru:
        max_slots = htab.max_entries
    elif htab.prealloc and not htab.percpu:
        max_slots = htab.max_entries + ncpu
    else:
        max_slots = htab.max_entries + 1
    htab.store = STORES[kernel.htab_store](
        key_size=htab.key_size, slot_size=htab.slot_size, n_buckets=htab.n_buckets,
        hashrnd=htab.hashrnd, max_slots=max_slots,
        undo=kernel.undo)                       # the undo journal (bpfemu/undo.py)
    if htab.prealloc and not htab.is_lru:
        htab.store.reserve()                    # prealloc_init(): no update allocates them
        if not htab.percpu:
            htab.store.alloc_extra_elems(ncpu)  # alloc_extra_elems()
    if htab.is_lru:
        # Since Linux 6.16 (and 6.12.y) the batch scales with the map; before, it was fixed.
        target_free = (min(max((htab.max_entries // ncpu) // 2, 1), LOCAL_FREE_TARGET)
                       if kernel.profile.lru_target_free_scaled else LOCAL_FREE_TARGET)
        # The eviction callback: a partial, which calls it without a Python frame of its own.
        htab.lru = BpfLru(htab.percpu_lru, ncpu, target_free,
                          partial(htab_lru_map_delete_node, htab), htab.max_entries,
                          kernel.undo)
        htab.store.prealloc(htab.max_entries)   # prealloc_init(): every node, zeroed values
        bpf_lru_populate(htab.lru, htab.max_entries)
    return htab


def _charge_memory(htab: BpfHtab, kernel) -> None:
    # DEVIATION(memory): the kernel's ENOMEM depends on the machine's free memory. We refuse
    # maps whose preallocation would exceed the profile's budget, or what this process can
    # still get (memlimit.py: RAM, RLIMIT_AS), and never try to allocate them; smaller maps
    # succeed (NO_PREALLOC elements are only created on insert).
    elem = 48 + (htab.key_size + 7) // 8 * 8
    elem += 8 if htab.percpu else htab.round_value_size
    total = htab.n_buckets * 16
    if htab.prealloc:
        total += htab.max_entries * elem
        if htab.percpu:
            total += htab.max_entries * htab.round_value_size * kernel.nr_cpus
    if total > kernel.profile.max_map_bytes:
        raise BpfError(errno.ENOMEM)
    if htab.prealloc and not reservation_fits(htab_reserve_bytes(
            htab.max_entries + kernel.nr_cpus, htab.slot_size, htab.n_buckets, htab.is_lru)):
        raise BpfError(errno.ENOMEM)


# --- elements ------------------------------------------------------------------------------

def alloc_htab_elem(htab: BpfHtab, key: bytes, value, percpu: bool, onallcpus: bool,
                    old_elem):
    """alloc_htab_elem() of a non-LRU map: a preallocated map's replace takes this CPU's
    spare and the old element becomes the spare; otherwise a free element, E2BIG when the
    map is full. The value is copied in (pcpu_init_value() for the per-CPU types); the key
    goes in with the link (store.add_head)."""
    store = htab.store
    # DEVIATION(elem-reuse): Linux keeps one freelist per CPU (pcpu_freelist: push on this
    # CPU's list, pop from it first, then steal from the next CPUs; the initial split and
    # the spares taken at creation depend on the CPU that created the map) and, without
    # preallocation, bpf_mem_alloc's per-CPU caches. We keep one LIFO for the whole map.
    # Only which freed element's memory a new element reuses differs: a program's stale
    # pointer into a deleted element, and the padding DEVIATION(percpu-padding) describes.
    # copy_map_value() into the new element (not per-CPU): the store does it as it hands
    # the element out.
    if old_elem is None:
        if len(store.index) >= htab.max_entries:
            raise BpfError(errno.E2BIG)           # no free element / is_map_full()
        l_new = store.alloc(None if percpu else value)
    elif htab.prealloc:
        # Updating an existing element: this CPU's extra element, and the old one becomes it
        # (pl_new = this_cpu_ptr(htab->extra_elems); l_new = *pl_new; *pl_new = old_elem).
        # The CPU decides which element's memory the new version takes and which spare the
        # old one becomes: only a program's pointer into an element tells (progs.py), so the
        # caller's CPU (under bpfemu run a read of /proc/<tid>/stat) is asked only once a
        # program was handed one; until then CPU 0's spares serve. Exact: an element a program
        # is handed was linked until then (never a spare), and from then on it follows the
        # kernel's spares; which free element a CPU without a spare takes is elem-reuse's.
        cpu = htab.kernel.cpu if htab.prog_views else 0
        l_new = store.swap_extra_elem(cpu, old_elem, None if percpu else value)
        if l_new is None:
            # This CPU had no spare yet (the kernel sets them aside at creation): a free one.
            l_new = store.alloc(None if percpu else value)
    else:
        l_new = store.alloc(None if percpu else value)
    if percpu:
        # Every CPU's slot for a syscall (onallcpus): the CPU is asked for a program's only.
        _pcpu_init_value(htab, l_new, value, onallcpus, 0 if onallcpus else htab.kernel.cpu)
    return l_new


def _check_flags(l_old, flags: int) -> None:
    """check_flags()"""
    mode = flags & ~BPF_F_LOCK
    if l_old is not None and mode == BPF_NOEXIST:
        raise BpfError(errno.EEXIST)             # elem already exists
    if l_old is None and mode == BPF_EXIST:
        raise BpfError(errno.ENOENT)             # elem doesn't exist, cannot update it


def _pcpu_copy_value(htab, l, value, onallcpus: bool, cpu: int) -> None:
    """pcpu_copy_value(): the syscall writes every CPU's slot (padding included); a program
    writes value_size bytes of its own CPU's slot."""
    v = htab.store.value_for_write(l)
    if onallcpus:
        v[:] = value
    else:
        o = cpu * htab.round_value_size
        size = htab.value_size
        v[o:o + size] = value[:size]


def _pcpu_init_value(htab, l, value, onallcpus: bool, cpu: int) -> None:
    """pcpu_init_value(): a program creating an element zeroes the other CPUs' values."""
    if onallcpus:
        htab.store.init_value(l, value)             # pcpu_copy_value(): every CPU's slot
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
    v = htab.store.value_for_write(l)
    v[:] = bytes(htab.slot_size)
    o = cpu * htab.round_value_size
    size = htab.value_size
    v[o:o + size] = value[:size]


# --- syscall operations -------------------------------------------------------------------

def htab_map_get_next_key(htab: BpfHtab, key):
    """htab_map_get_next_key(): the element after key's in its bucket, else the first
    element of the next non-empty bucket; NULL or a missing key starts at the first."""
    store = htab.store
    found = store.walk_hint(key)            # the store's cache of this walk, if it has one
    if found is not MISS:
        if found is None:
            raise BpfError(errno.ENOENT)
        return found
    i = 0
    if key is not None:
        l = store.index.get(key)
        if l is not None:
            next_l = store.next_in_bucket(l)
            if next_l is not None:
                return store.key(next_l)
            i = store.bucket(l) + 1         # no more elements in this bucket
    # find_first_elem: the first non-empty bucket from i
    i = store.next_bucket(i)
    if i is None:
        raise BpfError(errno.ENOENT)        # iterated over all buckets and all elements
    return store.key(store.bucket_elems(i)[0])


def htab_map_lookup_elem_sys(htab: BpfHtab, key):
    """What bpf_map_copy_value() copies out: value_size bytes, or the whole per-CPU buffer
    (a live view: the caller copies it out before the map changes); None when the key is
    not there, as the kernel's lookup returns NULL (bpf_map_copy_value() makes it ENOENT)."""
    store = htab.store
    l = store.index.get(key)
    if l is None:
        return None
    return store.value(l)


def htab_map_update_elem(htab: BpfHtab, key: bytes, value, flags: int) -> None:
    """htab_map_update_elem(): a new element replaces the old one at the bucket head."""
    if flags and (flags & ~BPF_F_LOCK) > BPF_EXIST:
        raise BpfError(errno.EINVAL)
    store = htab.store
    l_old = store.index.get(key)
    if flags:                                   # check_flags() passes BPF_ANY
        _check_flags(l_old, flags)
        if flags & BPF_F_LOCK and l_old is not None:
            # copy_map_value_locked(): the value changes in place and the element keeps its
            # place in its bucket (the lock word is the caller's to skip: map_btf.py).
            store.copy_value(l_old, value)
            return
    l_new = alloc_htab_elem(htab, key, value, False, False, l_old)
    if l_old is None:
        store.add_head(l_new, key)
        return
    store.replace(l_new, l_old)                 # add_head(l_new); hlist_nulls_del_rcu(l_old)
    if not htab.prealloc:
        store.free(l_old)                       # free_htab_elem(): back on the freelist


def __htab_percpu_map_update_elem(htab, key, value, flags, onallcpus, cpu=0) -> None:
    if flags > BPF_EXIST:
        raise BpfError(errno.EINVAL)
    store = htab.store
    l_old = store.index.get(key)
    _check_flags(l_old, flags)
    if l_old is not None:
        _pcpu_copy_value(htab, l_old, value, onallcpus, cpu)   # in place: position unchanged
        return
    l_new = alloc_htab_elem(htab, key, value, True, onallcpus, None)
    store.add_head(l_new, key)


def htab_percpu_map_update_elem_sys(htab, key, value, flags) -> None:
    """bpf_percpu_hash_update(): the syscall writes all CPUs."""
    __htab_percpu_map_update_elem(htab, key, value, flags, True)


def htab_map_delete_elem(htab: BpfHtab, key: bytes) -> None:
    """htab_map_delete_elem()"""
    store = htab.store
    l = store.index.get(key)
    if l is None:
        raise BpfError(errno.ENOENT)
    store.unlink(l)                             # hlist_nulls_del_rcu()
    store.free(l)                               # free_htab_elem(): back on the freelist


def htab_map_lookup_and_delete_elem(htab: BpfHtab, key: bytes, flags: int):
    """__htab_map_lookup_and_delete_elem(): copy the value out, then unlink and free."""
    store = htab.store
    l = store.index.get(key)
    if l is None:
        raise BpfError(errno.ENOENT)
    value = store.value(l).tobytes()
    store.unlink(l)
    if htab.is_lru:
        bpf_lru_push_free(htab.lru, l)      # htab_lru_push_free()
    else:
        store.free(l)                       # free_htab_elem()
    return value


# --- LRU ------------------------------------------------------------------------------

def htab_lru_map_delete_node(htab: BpfHtab, node) -> bool:
    """htab_lru_map_delete_node(): the LRU evicts node (element node); unlink it if it is
    still linked."""
    if htab.store.key(node) is None:
        return False
    htab.store.unlink(node)
    return True


def _prealloc_lru_pop(htab: BpfHtab, cpu: int):
    """prealloc_lru_pop(): may evict; ENOMEM when no node can be found anywhere. The kernel
    passes the key's hash for the LRU to store in the node; nothing here reads it back, so
    the node gets 0."""
    node = bpf_lru_pop_free(htab.lru, 0, cpu)
    if node is None:
        raise BpfError(errno.ENOMEM)
    return node


def htab_lru_map_update_elem(htab: BpfHtab, key: bytes, value, flags: int) -> None:
    """htab_lru_map_update_elem(): a node is taken (and evictions happen) before the lookup."""
    if flags > BPF_EXIST:
        raise BpfError(errno.EINVAL)
    store = htab.store
    l_new = node = _prealloc_lru_pop(htab, htab.kernel.cpu)
    store.copy_value(l_new, value)          # the node's own memory (stale views see it)
    l_old = store.index.get(key)
    if flags:                               # check_flags() passes BPF_ANY
        try:
            _check_flags(l_old, flags)
        except BpfError:
            bpf_lru_push_free(htab.lru, node)
            raise
    if l_old is None:
        store.add_head(l_new, key)
    else:
        bpf_lru_node_set_ref(htab.lru, node)
        store.replace(l_new, l_old)
        bpf_lru_push_free(htab.lru, l_old)  # htab_lru_push_free()


def _lru_pcpu_init_value(htab, l, value, onallcpus: bool, cpu: int) -> None:
    """pcpu_init_value() on an LRU node. Each node owns its per-CPU area for the map's whole
    life (prealloc_init() allocates it once, zeroed), and the LRU lists decide which node an
    insert reuses, so the padding bytes a program-side insert leaves alone are the previous
    occupant's, as in the kernel: no deviation here, as long as lru.py hands nodes out in
    the kernel's order (tests/differential/test_percpu_padding.py checks it)."""
    if onallcpus:
        _pcpu_copy_value(htab, l, value, True, cpu)
        return
    v = htab.store.value_for_write(l)
    size = htab.value_size
    step = htab.round_value_size
    zero = bytes(size)
    for c in range(htab.nr_cpus):
        off = c * step
        # copy_map_value() on this CPU, zero_map_value() elsewhere: value_size bytes each.
        v[off:off + size] = value[:size] if c == cpu else zero


def __htab_lru_percpu_map_update_elem(htab, key, value, flags, onallcpus, cpu) -> None:
    """An existing key is updated in place; BPF_EXIST takes no node, so it evicts nothing."""
    if flags > BPF_EXIST:
        raise BpfError(errno.EINVAL)
    store = htab.store
    node = None
    if flags != BPF_EXIST:
        node = _prealloc_lru_pop(htab, cpu)
    l_old = store.index.get(key)
    try:
        _check_flags(l_old, flags)
    except BpfError:
        if node is not None:
            bpf_lru_push_free(htab.lru, node)
        raise
    if l_old is not None:
        bpf_lru_node_set_ref(htab.lru, l_old)
        _pcpu_copy_value(htab, l_old, value, onallcpus, cpu)
    else:
        _lru_pcpu_init_value(htab, node, value, onallcpus, cpu)
        store.add_head(node, key)
        node = None
    if node is not None:
        bpf_lru_push_free(htab.lru, node)


def htab_lru_percpu_map_update_elem_sys(htab, key, value, flags) -> None:
    __htab_lru_percpu_map_update_elem(htab, key, value, flags, True, htab.kernel.cpu)


def htab_lru_map_delete_elem(htab: BpfHtab, key: bytes) -> None:
    """htab_lru_map_delete_elem(): unlink, then give the node back to the LRU."""
    store = htab.store
    l = store.index.get(key)
    if l is None:
        raise BpfError(errno.ENOENT)
    store.unlink(l)
    bpf_lru_push_free(htab.lru, l)


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
    l = htab.store.index.get(key)
    if l is None:
        return None
    return htab.store.value(l)


def htab_lru_map_lookup_elem(htab: BpfHtab, key: bytes):
    """htab_lru_map_lookup_elem(): a program's lookup marks the node referenced. The
    verifier inlines it (htab_lru_map_gen_lookup(): "if (!ref) ref = 1") with the same
    effect. The syscall's lookup (htab_lru_map_lookup_elem_sys) does not mark."""
    l = htab.store.index.get(key)
    if l is None:
        return None
    bpf_lru_node_set_ref(htab.lru, l)
    return htab.store.value(l)


def _this_cpu_value(htab: BpfHtab, l: int, cpu: int):
    """per_cpu_ptr(htab_elem_get_ptr(l, key_size), cpu), value_size bytes of it."""
    o = cpu * htab.round_value_size
    return htab.store.value(l)[o:o + htab.value_size]


def htab_percpu_map_lookup_elem(htab: BpfHtab, key: bytes):
    """htab_percpu_map_lookup_elem(): this CPU's slot (this_cpu_ptr)."""
    l = htab.store.index.get(key)
    if l is None:
        return None
    return _this_cpu_value(htab, l, htab.kernel.cpu)


def htab_lru_percpu_map_lookup_elem(htab: BpfHtab, key: bytes):
    """htab_lru_percpu_map_lookup_elem(): marks the node, then this CPU's slot."""
    l = htab.store.index.get(key)
    if l is None:
        return None
    bpf_lru_node_set_ref(htab.lru, l)
    return _this_cpu_value(htab, l, htab.kernel.cpu)


def htab_percpu_map_lookup_percpu_elem(htab: BpfHtab, key: bytes, cpu: int):
    """htab_percpu_map_lookup_percpu_elem(): any CPU's slot; cpu >= nr_cpu_ids is NULL
    before the key is even looked up."""
    if not 0 <= cpu < htab.nr_cpus:
        return None
    l = htab.store.index.get(key)
    if l is None:
        return None
    return _this_cpu_value(htab, l, cpu)


def htab_lru_percpu_map_lookup_percpu_elem(htab: BpfHtab, key: bytes, cpu: int):
    """htab_lru_percpu_map_lookup_percpu_elem(): as above, and marks the node."""
    if not 0 <= cpu < htab.nr_cpus:
        return None
    l = htab.store.index.get(key)
    if l is None:
        return None
    bpf_lru_node_set_ref(htab.lru, l)
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
