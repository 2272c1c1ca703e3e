"""HASH, PERCPU_HASH, LRU_HASH and LRU_PERCPU_HASH: kernel/bpf/hashtab.c in Python.

Layout as in the kernel: n_buckets = roundup_pow_of_two(max_entries) buckets, bucket =
jhash(key, hashrnd) & (n_buckets - 1), new and replacing elements linked at the bucket
head, iteration over buckets 0..n-1 and each list head first. Only non-empty buckets
exist (a dict), and each bucket list keeps its head at the *end* so linking is an append.
A dict from key to element answers lookups without hashing; the hash is computed once,
when an element is linked, because only the order needs it.
"""
import errno

from ..errors import ENOTSUPP, BpfError
from ..uapi.consts import BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST
from ..uapi.consts import BpfMapType as T
from ..uapi import consts as F  # plain-int flag values (see consts.py)
from .core import BpfMap, MapOps
from .jhash import htab_map_hash
from .lru import (BpfLru, BpfLruNode, bpf_lru_node_set_ref, bpf_lru_pop_free, bpf_lru_populate,
                  bpf_lru_push_free)

NUMA_NO_NODE = -1
LOCAL_FREE_TARGET = 128
# HTAB_CREATE_FLAG_MASK
HTAB_CREATE_FLAG_MASK = (F.BPF_F_NO_PREALLOC | F.BPF_F_NO_COMMON_LRU | F.BPF_F_NUMA_NODE
                         | F.BPF_F_RDONLY | F.BPF_F_WRONLY | F.BPF_F_RDONLY_PROG
                         | F.BPF_F_WRONLY_PROG | F.BPF_F_ZERO_SEED)
_PROG_ACCESS = F.BPF_F_RDONLY_PROG | F.BPF_F_WRONLY_PROG


class HtabElem:
    """struct htab_elem for the non-LRU types."""
    __slots__ = ("key", "value", "hash")


class HtabLruElem(BpfLruNode):
    """struct htab_elem of LRU maps: the element is its LRU node (which carries the hash),
    preallocated and reused."""
    __slots__ = ("key", "value")


class BpfHtab(BpfMap):
    """struct bpf_htab."""

    def __init__(self, ops, args, kernel):
        super().__init__(ops, args, kernel)
        self.is_lru = args.map_type in (T.BPF_MAP_TYPE_LRU_HASH, T.BPF_MAP_TYPE_LRU_PERCPU_HASH)
        self.percpu = args.map_type in (T.BPF_MAP_TYPE_PERCPU_HASH, T.BPF_MAP_TYPE_LRU_PERCPU_HASH)
        self.percpu_lru = bool(args.map_flags & F.BPF_F_NO_COMMON_LRU)
        self.prealloc = not args.map_flags & F.BPF_F_NO_PREALLOC
        self.elems: dict[bytes, object] = {}          # key -> element linked in a bucket
        self.buckets: dict[int, list] = {}            # bucket index -> elements, head LAST
        self.n_buckets = 0
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


def htab_map_alloc(ops, args, kernel) -> BpfHtab:
    """htab_map_alloc(): sizes, buckets, seed, and for LRU maps the preallocated nodes."""
    htab = BpfHtab(ops, args, kernel)
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
    if htab.is_lru:
        target_free = min(max((htab.max_entries // ncpu) // 2, 1), LOCAL_FREE_TARGET)
        htab.lru = BpfLru(htab.percpu_lru, ncpu, target_free,
                          lambda node: htab_lru_map_delete_node(htab, node))
        nodes = [HtabLruElem() for _ in range(htab.max_entries)]
        for node in nodes:
            node.key = None
            node.hash = 0
            node.value = None
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


# --- bucket lists ----------------------------------------------------------------------

def _link_head(htab: BpfHtab, l) -> None:
    """hlist_nulls_add_head_rcu() + the key index."""
    b = l.hash & (htab.n_buckets - 1)
    bucket = htab.buckets.get(b)
    if bucket is None:
        htab.buckets[b] = [l]
    else:
        bucket.append(l)
    htab.elems[l.key] = l


def _unlink(htab: BpfHtab, l) -> None:
    """hlist_nulls_del_rcu() + the key index."""
    b = l.hash & (htab.n_buckets - 1)
    bucket = htab.buckets[b]
    if len(bucket) == 1:
        del htab.buckets[b]
    else:
        bucket.remove(l)
    del htab.elems[l.key]


def _first_in_bucket_from(htab: BpfHtab, start: int):
    """Head element of the first non-empty bucket >= start, or None."""
    buckets = htab.buckets
    n = htab.n_buckets
    # Walk like the kernel when buckets are dense; otherwise pick from the non-empty ones.
    stop = min(n, start + 64)
    for b in range(start, stop):
        bucket = buckets.get(b)
        if bucket is not None:
            return bucket[-1]
    if stop >= n:
        return None
    later = [b for b in buckets if b >= stop]
    return buckets[min(later)][-1] if later else None


# --- syscall and helper operations -----------------------------------------------------

def htab_map_get_next_key(htab: BpfHtab, key):
    """htab_map_get_next_key(): NULL or a missing key restarts at the first element."""
    if key is not None:
        l = htab.elems.get(key)
        if l is not None:
            b = l.hash & (htab.n_buckets - 1)
            bucket = htab.buckets[b]
            i = bucket.index(l)
            if i:
                return bucket[i - 1].key          # next toward the tail of the same bucket
            nxt = _first_in_bucket_from(htab, b + 1)
            if nxt is None:
                raise BpfError(errno.ENOENT)
            return nxt.key
    first = _first_in_bucket_from(htab, 0)
    if first is None:
        raise BpfError(errno.ENOENT)
    return first.key


def htab_map_lookup_elem_sys(htab: BpfHtab, key):
    """The value copy of map_lookup_elem(): value_size bytes, or the whole per-CPU buffer."""
    l = htab.elems.get(key)
    if l is None:
        raise BpfError(errno.ENOENT)
    return l.value


def _check_flags(l_old, flags: int) -> None:
    """check_flags()"""
    mode = flags & ~BPF_F_LOCK
    if l_old is not None and mode == BPF_NOEXIST:
        raise BpfError(errno.EEXIST)             # elem already exists
    if l_old is None and mode == BPF_EXIST:
        raise BpfError(errno.ENOENT)             # elem doesn't exist, cannot update it


def htab_map_update_elem(htab: BpfHtab, key: bytes, value, flags: int) -> None:
    """htab_map_update_elem(): a new element replaces the old one at the bucket head."""
    if (flags & ~BPF_F_LOCK) > BPF_EXIST:
        raise BpfError(errno.EINVAL)
    elems = htab.elems
    l_old = elems.get(key)
    if flags:
        _check_flags(l_old, flags)
    if l_old is None:
        if len(elems) >= htab.max_entries:      # alloc_htab_elem(): no free element
            raise BpfError(errno.E2BIG)
        l_new = HtabElem()
        l_new.key = key
        l_new.hash = htab_map_hash(key, htab.hashrnd)
    else:
        _unlink(htab, l_old)
        l_new = HtabElem()
        l_new.key = key
        l_new.hash = l_old.hash
    l_new.value = bytearray(value)
    _link_head(htab, l_new)


def _pcpu_copy_value(htab, l, value, onallcpus: bool, cpu: int) -> None:
    """pcpu_copy_value(): the syscall writes every CPU's slot (padding included); a program
    writes value_size bytes of its own CPU's slot."""
    if onallcpus:
        l.value[:] = value
    else:
        off = cpu * htab.round_value_size
        l.value[off:off + htab.value_size] = value[:htab.value_size]


def _pcpu_init_value(htab, l, value, onallcpus: bool, cpu: int) -> None:
    """pcpu_init_value(): a program creating an element zeroes the other CPUs' values."""
    if onallcpus:
        l.value = bytearray(value)
    else:
        # DEVIATION(percpu-padding): PERCPU_HASH only (LRU_PERCPU_HASH is exact, see
        # _lru_pcpu_init_value). A program-side insert writes value_size bytes on this CPU
        # and zeroes value_size bytes on the others; the padding up to round_up(value_size,
        # 8) in every slot is not written, so in Linux it is whatever the element's previous
        # occupant left there (a syscall update stores the caller's padding bytes). Which
        # element is reused depends on the per-CPU freelist (prealloc) or on bpf_mem_alloc's
        # caches (NO_PREALLOC), which we do not model: our rule is that every slot's padding
        # of an element created from the program side is zero. Kernel and emulator agree on
        # the value_size bytes of every slot, and on padding of elements never used before.
        l.value = bytearray(htab.value_size_sys)
        off = cpu * htab.round_value_size
        l.value[off:off + htab.value_size] = value[:htab.value_size]


def __htab_percpu_map_update_elem(htab, key, value, flags, onallcpus, cpu=0) -> None:
    if flags > BPF_EXIST:
        raise BpfError(errno.EINVAL)
    l_old = htab.elems.get(key)
    _check_flags(l_old, flags)
    if l_old is not None:
        _pcpu_copy_value(htab, l_old, value, onallcpus, cpu)   # in place: position unchanged
        return
    if len(htab.elems) >= htab.max_entries:
        raise BpfError(errno.E2BIG)
    l_new = HtabElem()
    l_new.key = key
    l_new.hash = htab_map_hash(key, htab.hashrnd)
    _pcpu_init_value(htab, l_new, value, onallcpus, cpu)
    _link_head(htab, l_new)


def htab_percpu_map_update_elem_sys(htab, key, value, flags) -> None:
    """bpf_percpu_hash_update(): the syscall writes all CPUs."""
    __htab_percpu_map_update_elem(htab, key, value, flags, True)


def htab_map_delete_elem(htab: BpfHtab, key: bytes) -> None:
    """htab_map_delete_elem()"""
    l = htab.elems.get(key)
    if l is None:
        raise BpfError(errno.ENOENT)
    _unlink(htab, l)


def htab_map_lookup_and_delete_elem(htab: BpfHtab, key: bytes, flags: int):
    """__htab_map_lookup_and_delete_elem(): copy the value out, then unlink and free."""
    l = htab.elems.get(key)
    if l is None:
        raise BpfError(errno.ENOENT)
    value = bytes(l.value)
    _unlink(htab, l)
    if htab.is_lru:
        bpf_lru_push_free(htab.lru, l)
    return value


# --- LRU ------------------------------------------------------------------------------

def htab_lru_map_delete_node(htab: BpfHtab, node) -> bool:
    """htab_lru_map_delete_node(): the LRU evicts node; unlink it if it is still linked."""
    if node.key is not None and htab.elems.get(node.key) is node:
        _unlink(htab, node)
        return True
    return False


def _prealloc_lru_pop(htab: BpfHtab, key: bytes, hash_: int, cpu: int):
    """prealloc_lru_pop(): may evict; ENOMEM when no node can be found anywhere."""
    node = bpf_lru_pop_free(htab.lru, hash_, cpu)
    if node is None:
        raise BpfError(errno.ENOMEM)
    node.key = key
    node.hash = hash_
    return node


def htab_lru_map_update_elem(htab: BpfHtab, key: bytes, value, flags: int) -> None:
    """htab_lru_map_update_elem(): a node is taken (and evictions happen) before the lookup."""
    if flags > BPF_EXIST:
        raise BpfError(errno.EINVAL)
    hash_ = htab_map_hash(key, htab.hashrnd)
    l_new = _prealloc_lru_pop(htab, key, hash_, htab.kernel.cpu)
    buf = l_new.value
    if buf is None:
        l_new.value = bytearray(value)
    else:
        buf[:] = value      # the node's own memory, reused as in the kernel (stale views see it)
    l_old = htab.elems.get(key)
    try:
        _check_flags(l_old, flags)
    except BpfError:
        bpf_lru_push_free(htab.lru, l_new)
        raise
    if l_old is not None:
        _unlink(htab, l_old)
        bpf_lru_node_set_ref(l_new)
    _link_head(htab, l_new)
    if l_old is not None:
        bpf_lru_push_free(htab.lru, l_old)       # htab_lru_push_free()


def _lru_pcpu_init_value(htab, l, value, onallcpus: bool, cpu: int) -> None:
    """pcpu_init_value() on an LRU node. Each node owns its per-CPU area for the map's whole
    life (prealloc_init() allocates it once, zeroed), and the LRU lists decide which node an
    insert reuses, so the padding bytes a program-side insert leaves alone are the previous
    occupant's, as in the kernel: no deviation here, as long as lru.py hands nodes out in
    the kernel's order (tests/differential/test_percpu_padding.py checks it)."""
    buf = l.value
    if buf is None:
        buf = l.value = bytearray(htab.value_size_sys)   # bpf_map_alloc_percpu(): zeroed
    if onallcpus:
        buf[:] = value
        return
    size = htab.value_size
    step = htab.round_value_size
    zero = bytes(size)
    for c in range(htab.nr_cpus):
        off = c * step
        # copy_map_value() on this CPU, zero_map_value() elsewhere: value_size bytes each.
        buf[off:off + size] = value[:size] if c == cpu else zero


def __htab_lru_percpu_map_update_elem(htab, key, value, flags, onallcpus, cpu) -> None:
    """An existing key is updated in place; BPF_EXIST takes no node, so it evicts nothing."""
    if flags > BPF_EXIST:
        raise BpfError(errno.EINVAL)
    hash_ = htab_map_hash(key, htab.hashrnd)
    l_new = None
    if flags != BPF_EXIST:
        l_new = _prealloc_lru_pop(htab, key, hash_, cpu)
    l_old = htab.elems.get(key)
    try:
        _check_flags(l_old, flags)
    except BpfError:
        if l_new is not None:
            bpf_lru_push_free(htab.lru, l_new)
        raise
    if l_old is not None:
        bpf_lru_node_set_ref(l_old)
        _pcpu_copy_value(htab, l_old, value, onallcpus, cpu)
    else:
        _lru_pcpu_init_value(htab, l_new, value, onallcpus, cpu)
        _link_head(htab, l_new)
        l_new = None
    if l_new is not None:
        bpf_lru_push_free(htab.lru, l_new)


def htab_lru_percpu_map_update_elem_sys(htab, key, value, flags) -> None:
    __htab_lru_percpu_map_update_elem(htab, key, value, flags, True, htab.kernel.cpu)


def htab_lru_map_delete_elem(htab: BpfHtab, key: bytes) -> None:
    """htab_lru_map_delete_elem(): unlink, then give the node back to the LRU."""
    l = htab.elems.get(key)
    if l is None:
        raise BpfError(errno.ENOENT)
    _unlink(htab, l)
    bpf_lru_push_free(htab.lru, l)


# --- ops tables -------------------------------------------------------------------------

def _alloc(ops):
    return lambda args, kernel: htab_map_alloc(ops, args, kernel)


htab_map_ops = MapOps(
    name="htab_map_ops",
    map_alloc_check=htab_map_alloc_check,
    map_alloc=None,
    map_lookup_elem_sys=htab_map_lookup_elem_sys,
    map_update_elem_sys=htab_map_update_elem,
    map_delete_elem=htab_map_delete_elem,
    map_get_next_key=htab_map_get_next_key,
    map_lookup_and_delete_elem=htab_map_lookup_and_delete_elem,
)
htab_percpu_map_ops = MapOps(
    name="htab_percpu_map_ops",
    map_alloc_check=htab_map_alloc_check,
    map_alloc=None,
    map_lookup_elem_sys=htab_map_lookup_elem_sys,
    map_update_elem_sys=htab_percpu_map_update_elem_sys,
    map_delete_elem=htab_map_delete_elem,
    map_get_next_key=htab_map_get_next_key,
    map_lookup_and_delete_elem=htab_map_lookup_and_delete_elem,
)
htab_lru_map_ops = MapOps(
    name="htab_lru_map_ops",
    map_alloc_check=htab_map_alloc_check,
    map_alloc=None,
    map_lookup_elem_sys=htab_map_lookup_elem_sys,   # htab_lru_map_lookup_elem_sys: no ref bit
    map_update_elem_sys=htab_lru_map_update_elem,
    map_delete_elem=htab_lru_map_delete_elem,
    map_get_next_key=htab_map_get_next_key,
    map_lookup_and_delete_elem=htab_map_lookup_and_delete_elem,
)
htab_lru_percpu_map_ops = MapOps(
    name="htab_lru_percpu_map_ops",
    map_alloc_check=htab_map_alloc_check,
    map_alloc=None,
    map_lookup_elem_sys=htab_map_lookup_elem_sys,   # bpf_percpu_hash_copy(): no ref bit
    map_update_elem_sys=htab_lru_percpu_map_update_elem_sys,
    map_delete_elem=htab_lru_map_delete_elem,
    map_get_next_key=htab_map_get_next_key,
    map_lookup_and_delete_elem=htab_map_lookup_and_delete_elem,
)
for _ops in (htab_map_ops, htab_percpu_map_ops, htab_lru_map_ops, htab_lru_percpu_map_ops):
    _ops.map_alloc = _alloc(_ops)
del _ops


# --- the BPF-program side (helpers) ---------------------------------------------------------
#
# What bpf_map_lookup_elem() and friends do when a program calls them (bpfemu.progs plays the
# program). A lookup returns a live, writable memoryview of the element's value: the whole
# value of a HASH/LRU_HASH element, or value_size bytes of one CPU's slot of a per-CPU one.
# Updates and deletes raise BpfError like the syscall-side functions; the helper turns that
# into its negative return value. The CPU a program runs on is htab.kernel.cpu.

def htab_map_lookup_elem(htab: BpfHtab, key: bytes):
    """htab_map_lookup_elem() (and its verifier-inlined form, htab_map_gen_lookup())."""
    l = htab.elems.get(key)
    if l is None:
        return None
    return memoryview(l.value)


def htab_lru_map_lookup_elem(htab: BpfHtab, key: bytes):
    """htab_lru_map_lookup_elem(): a program's lookup marks the node referenced. The
    verifier inlines it (htab_lru_map_gen_lookup(): "if (!ref) ref = 1") with the same
    effect. The syscall's lookup (htab_lru_map_lookup_elem_sys) does not mark."""
    l = htab.elems.get(key)
    if l is None:
        return None
    bpf_lru_node_set_ref(l)
    return memoryview(l.value)


def _this_cpu_value(htab: BpfHtab, l, cpu: int):
    """per_cpu_ptr(htab_elem_get_ptr(l, key_size), cpu), value_size bytes of it."""
    off = cpu * htab.round_value_size
    return memoryview(l.value)[off:off + htab.value_size]


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
    bpf_lru_node_set_ref(l)
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
    bpf_lru_node_set_ref(l)
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


def _register_prog_ops(ops, lookup, update, delete, lookup_percpu=None):
    ops.map_lookup_elem_prog = lookup
    ops.map_update_elem_prog = update
    ops.map_delete_elem_prog = delete
    ops.map_lookup_percpu_elem = lookup_percpu


_register_prog_ops(htab_map_ops, htab_map_lookup_elem, htab_map_update_elem_prog,
                   htab_map_delete_elem)
_register_prog_ops(htab_percpu_map_ops, htab_percpu_map_lookup_elem,
                   htab_percpu_map_update_elem, htab_map_delete_elem,
                   htab_percpu_map_lookup_percpu_elem)
_register_prog_ops(htab_lru_map_ops, htab_lru_map_lookup_elem, htab_lru_map_update_elem,
                   htab_lru_map_delete_elem)
_register_prog_ops(htab_lru_percpu_map_ops, htab_lru_percpu_map_lookup_elem,
                   htab_lru_percpu_map_update_elem, htab_lru_map_delete_elem,
                   htab_lru_percpu_map_lookup_percpu_elem)
