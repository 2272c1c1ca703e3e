"""ARRAY and PERCPU_ARRAY: kernel/bpf/arraymap.c in Python (value layout: docs/array-layout.md).

Every element exists from creation and reads as zero bytes. The kernel lays the values out
with a stride of elem_size = round_up(value_size, 8); ARRAY copies value_size bytes in and
out (the padding stays zero), PERCPU_ARRAY copies the whole 8-byte-rounded slot of every
possible CPU, padding included.

The values live in one zeroed block of max_entries elements (array_store.py), as the
kernel's array->value; calloc leaves pages no element was written to unbacked, so a big map
costs memory only where it is used, and the memory budget of the profile, not the Python
heap, decides whether creation succeeds. Decoded calls on pinned buffers: array_fastpath.py.
"""
import errno
import struct

from ..batch_cmds import generic_map_lookup_batch, generic_map_update_batch
from ..errors import BpfError
from ..memlimit import reservation_fits
from ..uapi import consts as F  # plain-int flag values (see consts.py)
from ..uapi.consts import BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST
from ..uapi.consts import BpfMapType as T
from .core import BpfMap, MapOps, round_up
from .array_mmap import MmapValues, array_map_get_hash_mmapable
from .array_store import ArrayValues
from .map_btf import array_map_check_btf

NUMA_NO_NODE = -1
INT_MAX = 0x7FFFFFFF
U32_MAX = 0xFFFFFFFF
# BPF_F_ACCESS_MASK and ARRAY_CREATE_FLAG_MASK (kernel/bpf/arraymap.c)
BPF_F_ACCESS_MASK = F.BPF_F_RDONLY | F.BPF_F_RDONLY_PROG | F.BPF_F_WRONLY | F.BPF_F_WRONLY_PROG
ARRAY_CREATE_FLAG_MASK = (F.BPF_F_NUMA_NODE | F.BPF_F_MMAPABLE | BPF_F_ACCESS_MASK
                          | F.BPF_F_PRESERVE_ELEMS | F.BPF_F_INNER_MAP)
_PROG_ACCESS = F.BPF_F_RDONLY_PROG | F.BPF_F_WRONLY_PROG
# sizeof(struct bpf_array) before its value area, for the memory budget only.
_BPF_ARRAY_HEADER = 0x140
SHA256_DIGEST_SIZE = 32


class BpfArray(BpfMap):
    """struct bpf_array."""

    def __init__(self, args, kernel):
        super().__init__(args, kernel)
        self.percpu = args.map_type == T.BPF_MAP_TYPE_PERCPU_ARRAY
        self.elem_size = round_up(args.value_size, 8)
        self.values = self.alloc_values(args)
        self.values.undo = kernel.undo          # writes are journaled (bpfemu/undo.py)

    def alloc_values(self, args):
        """The value area: element i's bytes as the syscall sees them (value_size of an
        elem_size stride, or every CPU's elem_size slot for PERCPU_ARRAY)."""
        stride = self.elem_size * self.nr_cpus if self.percpu else self.elem_size
        return ArrayValues(args.max_entries, stride, self.value_size_sys)


def _index(key: bytes) -> int:
    """u32 index = *(u32 *)key"""
    return int.from_bytes(key, "little")


# u32 index = *(u32 *)key, written in place in the syscall-side functions below, whose key is
# always the 4 bytes copied in (a struct unpack costs less than int.from_bytes and a call).
_u32 = struct.Struct("<I").unpack


def array_map_alloc_check(args, kernel) -> None:
    """array_map_alloc_check()"""
    percpu = args.map_type == T.BPF_MAP_TYPE_PERCPU_ARRAY
    flags = args.map_flags
    if (args.max_entries == 0 or args.key_size != 4 or args.value_size == 0
            or flags & ~ARRAY_CREATE_FLAG_MASK
            or (flags & _PROG_ACCESS) == _PROG_ACCESS          # !bpf_map_flags_access_ok()
            or (percpu and args.numa_node != NUMA_NO_NODE)):
        raise BpfError(errno.EINVAL)
    if args.map_type != T.BPF_MAP_TYPE_ARRAY and flags & (F.BPF_F_MMAPABLE | F.BPF_F_INNER_MAP):
        raise BpfError(errno.EINVAL)
    if args.map_type != T.BPF_MAP_TYPE_PERF_EVENT_ARRAY and flags & F.BPF_F_PRESERVE_ELEMS:
        raise BpfError(errno.EINVAL)
    if args.value_size > INT_MAX:                   # avoid overflow on round_up(value_size)
        raise BpfError(errno.E2BIG)
    if percpu and round_up(args.value_size, 8) > kernel.profile.pcpu_min_unit_size:
        raise BpfError(errno.E2BIG)


class MmapableArray(BpfArray):
    """An ARRAY with BPF_F_MMAPABLE: its values are in the memfd of its first fd
    (array_mmap.py), so that mmap() of that fd shares them."""

    def alloc_values(self, args):
        return MmapValues(args.max_entries, self.elem_size, args.value_size)

    def attach_memfd(self, fd: int) -> None:
        """Called once the map's first fd exists (bpf_map_new_fd)."""
        self.values.attach(fd)
        if self.map_flags & F.BPF_F_RDONLY_PROG:
            # DEVIATION(mmap): Linux refuses a writable mapping of a map programs may only
            # read with EACCES; the sealed memfd refuses it with EPERM.
            self.values.seal_future_writes()

    def write_active(self) -> bool:
        """bpf_map_write_active(): a writable mapping of the values exists."""
        return self.values.writable_mappings() > 0

    def on_freeze(self) -> None:
        self.values.seal_future_writes()


def array_map_alloc(args, kernel) -> BpfArray:
    """array_map_alloc(): all elements exist and are zero from the start."""
    profile = kernel.profile
    elem_size = round_up(args.value_size, 8)
    max_entries = args.max_entries
    # bpf_bypass_spec_v1(): without CAP_PERFMON (implied by CAP_SYS_ADMIN) the kernel sizes
    # the array to a power of two so speculation stays inside it.
    bypass_spec_v1 = profile.cap_sys_admin or getattr(profile, "cap_perfmon", False)
    if not bypass_spec_v1:
        max_entries = 1 << (max_entries - 1).bit_length()
        if max_entries > U32_MAX:                   # the u32 wrapped: "check for overflows"
            raise BpfError(errno.E2BIG)
    percpu = args.map_type == T.BPF_MAP_TYPE_PERCPU_ARRAY
    # bpf_map_area_alloc() / bpf_array_alloc_percpu(): what the kernel would allocate.
    if percpu:
        size = _BPF_ARRAY_HEADER + max_entries * 8 + max_entries * elem_size * kernel.nr_cpus
    elif args.map_flags & F.BPF_F_MMAPABLE:
        size = round_up(_BPF_ARRAY_HEADER, 4096) + round_up(max_entries * elem_size, 4096)
    else:
        size = _BPF_ARRAY_HEADER + max_entries * elem_size
    if size > profile.max_map_bytes or not reservation_fits(size):
        # DEVIATION(memory): Linux fails with ENOMEM when the machine cannot provide the
        # memory; we refuse past the profile's budget or what this process can still get
        # (memlimit.py: RAM, RLIMIT_AS) and never try.
        raise BpfError(errno.ENOMEM)
    if args.map_flags & F.BPF_F_MMAPABLE:
        return MmapableArray(args, kernel)
    return BpfArray(args, kernel)


# --- syscall side ------------------------------------------------------------------------

def array_map_elem_sys(array: BpfArray, key):
    """The element bpf_map_copy_value() copies out: ARRAY's map_lookup_elem() pointer
    (value_size bytes), PERCPU_ARRAY's every-CPU slots (bpf_percpu_array_copy); None (NULL)
    out of range."""
    return array.values.get(_u32(key)[0])


def array_map_lookup_elem_sys(array: BpfArray, key):
    """bpf_map_copy_value() for ARRAY and PERCPU_ARRAY: the element's bytes; a NULL element
    (out of range) is ENOENT."""
    value = array_map_elem_sys(array, key)
    if value is None:
        raise BpfError(errno.ENOENT)
    return value


def array_map_update_elem(array: BpfArray, key: bytes, value, flags: int) -> None:
    """array_map_update_elem(), syscall side: value_size bytes into the element."""
    if (flags & ~BPF_F_LOCK) > BPF_EXIST:           # unknown flags
        raise BpfError(errno.EINVAL)
    index = _u32(key)[0]
    if index >= array.max_entries:                  # all elements were pre-allocated
        raise BpfError(errno.E2BIG)
    if flags & BPF_NOEXIST:                         # all elements already exist
        raise BpfError(errno.EEXIST)
    if flags & BPF_F_LOCK and not array.has_spin_lock:
        raise BpfError(errno.EINVAL)
    array.values.put(index, value)                  # in place: live views see the write


def bpf_percpu_array_update(array: BpfArray, key: bytes, value, flags: int) -> None:
    """bpf_percpu_array_update(): every possible CPU's slot, padding included
    (copy_map_value_long copies round_up(value_size, 8) bytes per CPU)."""
    if flags > BPF_EXIST:                           # unknown flags
        raise BpfError(errno.EINVAL)
    index = _u32(key)[0]
    if index >= array.max_entries:
        raise BpfError(errno.E2BIG)
    if flags == BPF_NOEXIST:
        raise BpfError(errno.EEXIST)
    array.values.put(index, value)


def array_map_delete_elem(array: BpfArray, key: bytes) -> None:
    """array_map_delete_elem(): elements of an array cannot be deleted."""
    raise BpfError(errno.EINVAL)


array_map_delete_elem.always_errno = errno.EINVAL   # read by bpfemu.support's matrix


def array_map_get_next_key(array: BpfArray, key):
    """array_map_get_next_key(): NULL or an out-of-range key starts at 0; the last is ENOENT."""
    index = U32_MAX if key is None else _u32(key)[0]
    if index >= array.max_entries:
        return b"\0\0\0\0"
    if index == array.max_entries - 1:
        raise BpfError(errno.ENOENT)
    return (index + 1).to_bytes(4, "little")


# --- the generic batch commands' bulk forms (batch_cmds.py) ---------------------------------

def array_map_update_elems(array: BpfArray, kbuf: bytes, vbuf: bytes, flags: int, start: int,
                           end: int) -> int:
    """array_map_update_elem() / bpf_percpu_array_update() of elements start.. of a batch at
    once, as far as their indices are in range (E2BIG after): with BPF_ANY or BPF_EXIST every
    such element is written in place, in turn. Returns the index of the first element not
    updated (any other flags: the element op, which refuses them)."""
    put_run = getattr(array.values, "put_run", None)    # (not an mmapable array's)
    if flags and flags != BPF_EXIST or put_run is None:
        return start
    indices = struct.unpack_from(f"<{end - start}I", kbuf, start * 4)
    max_entries = array.max_entries
    if max(indices) >= max_entries:
        for n, index in enumerate(indices):
            if index >= max_entries:
                break
        indices = indices[:n]
        if not n:
            return start
    size = array.value_size_sys
    put_run(indices, vbuf[start * size:(start + len(indices)) * size])
    return start + len(indices)


def array_map_lookup_run(array: BpfArray, prev_key, count: int):
    """array_map_get_next_key() then the lookup, count times from prev_key, at once:
    (keys, values, n, ended): n elements' keys and values joined; ended when the walk
    reached the last index before count (the next get_next_key is ENOENT). None for an
    mmapable array (its values are read one by one)."""
    get_run = getattr(array.values, "get_run", None)
    if get_run is None:
        return None
    index = U32_MAX if prev_key is None else _u32(prev_key)[0]
    max_entries = array.max_entries
    first = 0 if index >= max_entries else index + 1
    n = min(count, max_entries - first)
    keys = struct.pack(f"<{n}I", *range(first, first + n))
    return keys, get_run(first, n), n, n < count


def array_map_get_hash(array: BpfArray) -> bytes:
    """The SHA-256 of the value area (max_entries * elem_size bytes, padding included) that
    OBJ_GET_INFO_BY_FD reports for a frozen ARRAY; EPERM while the map can still change."""
    if isinstance(array.values, MmapValues):
        return array_map_get_hash_mmapable(array)
    if not array.frozen:
        raise BpfError(errno.EPERM)
    import hashlib                              # here: only a frozen array's info needs it
    return hashlib.sha256(array.values.area()).digest()


def array_map_free(array: BpfArray) -> None:
    array.values.clear()


def array_map_mem_usage(array: BpfArray) -> int:
    """array_map_mem_usage(), approximately: the header plus the value area."""
    if array.percpu:
        return _BPF_ARRAY_HEADER + array.max_entries * (8 + array.elem_size * array.nr_cpus)
    return _BPF_ARRAY_HEADER + array.max_entries * array.elem_size


# --- program side (helpers) ----------------------------------------------------------------
# As bpfemu.progs calls them: lookups return a writable memoryview of the stored bytes (what
# the program's pointer reaches), created on first use; the CPU is the emulator's (emu.cpu).

def _elem_buffer(array: BpfArray, index: int) -> memoryview:
    return array.values.get(index)


def array_map_lookup_elem(array: BpfArray, key: bytes):
    """array_map_lookup_elem(): a live view of value_size bytes, or None out of range."""
    index = _index(key)
    if index >= array.max_entries:
        return None
    return memoryview(_elem_buffer(array, index))[:array.value_size]


def percpu_array_map_lookup_percpu_elem(array: BpfArray, key: bytes, cpu: int):
    """percpu_array_map_lookup_percpu_elem(): that CPU's value; None for a CPU past the last
    possible one or an index out of range."""
    if not 0 <= cpu < array.nr_cpus:
        return None
    index = _index(key)
    if index >= array.max_entries:
        return None
    off = cpu * array.elem_size
    return memoryview(_elem_buffer(array, index))[off:off + array.value_size]


def percpu_array_map_lookup_elem(array: BpfArray, key: bytes):
    """percpu_array_map_lookup_elem(): this CPU's value (this_cpu_ptr), or None."""
    return percpu_array_map_lookup_percpu_elem(array, key, array.kernel.cpu)


def array_map_update_elem_prog(array: BpfArray, key: bytes, value, flags: int) -> None:
    """array_map_update_elem() as the bpf_map_update_elem() helper reaches it: value_size
    bytes; for PERCPU_ARRAY into this CPU's value only (its padding is not written)."""
    if (flags & ~BPF_F_LOCK) > BPF_EXIST:
        raise BpfError(errno.EINVAL)
    index = _index(key)
    if index >= array.max_entries:
        raise BpfError(errno.E2BIG)
    if flags & BPF_NOEXIST:
        raise BpfError(errno.EEXIST)
    if flags & BPF_F_LOCK and not array.has_spin_lock:
        raise BpfError(errno.EINVAL)
    off = array.kernel.cpu * array.elem_size if array.percpu else 0
    _elem_buffer(array, index)[off:off + array.value_size] = bytes(value)[:array.value_size]


# --- ops tables ------------------------------------------------------------------------------

array_map_ops = MapOps(
    name="array_map_ops",
    map_alloc_check=array_map_alloc_check,
    map_alloc=array_map_alloc,
    map_lookup_elem_sys=array_map_lookup_elem_sys,
    map_update_elem_sys=array_map_update_elem,
    map_delete_elem=array_map_delete_elem,
    map_get_next_key=array_map_get_next_key,
    map_mem_usage=array_map_mem_usage,
    map_free=array_map_free,
    map_lookup_elem_prog=array_map_lookup_elem,
    map_update_elem_prog=array_map_update_elem_prog,
    map_delete_elem_prog=array_map_delete_elem,
    map_value_hash=array_map_get_hash,
    map_check_btf=array_map_check_btf,
    map_lookup_batch=generic_map_lookup_batch,      # no LOOKUP_AND_DELETE_BATCH or DELETE_BATCH
    map_update_batch=generic_map_update_batch,
    map_update_elems=array_map_update_elems,
    map_lookup_run=array_map_lookup_run,
)
percpu_array_map_ops = MapOps(
    name="percpu_array_map_ops",
    map_alloc_check=array_map_alloc_check,
    map_alloc=array_map_alloc,
    map_lookup_elem_sys=array_map_lookup_elem_sys,     # bpf_percpu_array_copy()
    map_update_elem_sys=bpf_percpu_array_update,
    map_delete_elem=array_map_delete_elem,
    map_get_next_key=array_map_get_next_key,
    map_mem_usage=array_map_mem_usage,
    map_free=array_map_free,
    map_lookup_elem_prog=percpu_array_map_lookup_elem,
    map_update_elem_prog=array_map_update_elem_prog,
    map_delete_elem_prog=array_map_delete_elem,
    map_lookup_percpu_elem=percpu_array_map_lookup_percpu_elem,
    map_check_btf=array_map_check_btf,
    map_lookup_batch=generic_map_lookup_batch,
    map_update_batch=generic_map_update_batch,
    map_update_elems=array_map_update_elems,
    map_lookup_run=array_map_lookup_run,
)

