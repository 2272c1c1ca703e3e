"""Maps whose values are fds of other objects: PROG_ARRAY (kernel/bpf/arraymap.c's fd array
and prog array), ARRAY_OF_MAPS and HASH_OF_MAPS (kernel/bpf/map_in_map.c, arraymap.c,
hashtab.c).

From user space a value goes in as an fd (a u32: a program's for PROG_ARRAY, a map's for
the map-in-map types) and comes out as that object's id. The map holds a reference on each
object it stores. An inner map must match the template given by `inner_map_fd` at creation
(bpf_map_meta_equal()). Facts: docs/fd_maps.md.
"""
import errno
import struct

from ..batch_cmds import (generic_map_delete_batch, generic_map_lookup_batch,
                          generic_map_update_batch)
from ..errors import ENOTSUPP, BpfError
from ..uapi import consts as F
from ..uapi.consts import BPF_ANY, BPF_EXIST, BPF_F_LOCK
from ..uapi.consts import BpfMapType as T
from .arraymap import array_map_alloc, array_map_alloc_check, array_map_get_next_key
from . import htab_batch
from .core import MapOps
from .hashtab import (htab_map_alloc, htab_map_alloc_check, htab_map_delete_elem,
                      htab_map_get_next_key, htab_map_lookup_elem_sys, htab_map_update_elem)

_EINVAL = errno.EINVAL
_U32 = struct.Struct("<I")
PROG_EXT = 28                                   # BPF_PROG_TYPE_EXT


def map_check_no_btf(m, btf, key_type, value_type) -> None:
    """Maps of fds take no BTF for their values."""
    raise BpfError(ENOTSUPP)


# --- the objects a value names ---------------------------------------------------------------

def prog_fd_array_get_ptr(emu, m, ufd: int):
    """prog_fd_array_get_ptr(): a program (EBADF / EINVAL), compatible with the ones the
    array took before (the first sets its owner: type, expected attach type, frags)."""
    f = emu.fds.lookup_any(ufd)
    if f.kind != "bpf-prog":
        raise BpfError(_EINVAL)
    prog = f.obj
    if prog.type == PROG_EXT or not bpf_prog_map_compatible(m, prog):
        raise BpfError(_EINVAL)
    prog.refcnt += 1
    return prog


def bpf_prog_map_compatible(m, prog) -> bool:
    owner = (prog.type, prog.expected_attach_type, getattr(prog, "xdp_has_frags", False))
    if m.owner is None:
        m.owner = owner
        return True
    return m.owner == owner


def bpf_map_fd_get_ptr(emu, m, ufd: int):
    """bpf_map_fd_get_ptr(): a map (EBADF / EINVAL) that matches the inner map template."""
    inner = emu.fds.lookup(ufd).obj
    if not map_meta_equal(m.inner_map_meta, inner):
        raise BpfError(_EINVAL)
    inner.refcnt += 1
    return inner


def fd_put_ptr(emu, obj) -> None:
    """map_fd_put_ptr(): drop the map's reference on a program or an inner map."""
    emu.bpf_obj_put_ref(obj)


# --- the inner map template -------------------------------------------------------------------

class MapMeta:
    """What bpf_map_meta_alloc() copies from the inner map given at creation."""
    __slots__ = ("map_type", "key_size", "value_size", "map_flags", "max_entries",
                 "has_spin_lock")

    def __init__(self, inner):
        self.map_type = inner.map_type
        self.key_size = inner.key_size
        self.value_size = inner.value_size
        self.map_flags = inner.map_flags
        self.max_entries = inner.max_entries
        self.has_spin_lock = inner.has_spin_lock


# Map types whose ops have map_meta_equal (of the emulated ones): the six plain types; not
# PROG_ARRAY (ENOTSUPP), and the map-in-map types are refused before as "more than one level".
_META_EQUAL = {T.BPF_MAP_TYPE_HASH, T.BPF_MAP_TYPE_ARRAY, T.BPF_MAP_TYPE_PERCPU_HASH,
               T.BPF_MAP_TYPE_PERCPU_ARRAY, T.BPF_MAP_TYPE_LRU_HASH,
               T.BPF_MAP_TYPE_LRU_PERCPU_HASH}


def bpf_map_meta_alloc(emu, inner_map_fd: int) -> MapMeta:
    inner = emu.fds.lookup(inner_map_fd).obj   # EBADF, or EINVAL for an fd not a map
    if getattr(inner, "inner_map_meta", None) is not None:
        raise BpfError(_EINVAL)                 # no more than one level of maps in maps
    if inner.map_type not in _META_EQUAL:
        raise BpfError(ENOTSUPP)
    return MapMeta(inner)


def map_meta_equal(meta: MapMeta, m) -> bool:
    """bpf_map_meta_equal(), and array_map_meta_equal(): an array inner map must also have the
    template's max_entries unless the template has BPF_F_INNER_MAP."""
    if getattr(m, "inner_map_meta", None) is not None:
        return False
    same = (meta.map_type == m.map_type and meta.key_size == m.key_size
            and meta.value_size == m.value_size and meta.map_flags == m.map_flags
            and meta.has_spin_lock == m.has_spin_lock)
    if not same:
        return False
    if meta.map_type in (T.BPF_MAP_TYPE_ARRAY, T.BPF_MAP_TYPE_PERCPU_ARRAY):
        return bool(meta.map_flags & F.BPF_F_INNER_MAP) or meta.max_entries == m.max_entries
    return True


# --- fd arrays: PROG_ARRAY and ARRAY_OF_MAPS --------------------------------------------------

def fd_array_map_alloc_check(args, kernel) -> None:
    """fd_array_map_alloc_check(): the value is a u32 fd; no program access flags."""
    if args.value_size != 4:
        raise BpfError(_EINVAL)
    if args.map_flags & (F.BPF_F_RDONLY_PROG | F.BPF_F_WRONLY_PROG):
        raise BpfError(_EINVAL)
    array_map_alloc_check(args, kernel)


def _array_alloc_as_array(args, kernel):
    """array_map_alloc() checks and sizes the array; its slots then hold objects."""
    m = array_map_alloc(args, kernel)
    m.slots = {}                                # index -> program or inner map
    m.owner = None
    m.inner_map_meta = None
    return m


def prog_array_map_alloc(args, kernel):
    return _array_alloc_as_array(args, kernel)


def array_of_map_alloc(args, kernel):
    meta = bpf_map_meta_alloc(kernel, args.inner_map_fd)
    m = _array_alloc_as_array(args, kernel)
    m.inner_map_meta = meta
    return m


def bpf_fd_array_map_lookup_elem(m, key: bytes) -> bytes:
    """The id of the object in the slot; ENOENT for an empty slot or an index out of range."""
    obj = m.slots.get(int.from_bytes(key, "little"))
    if obj is None:
        raise BpfError(errno.ENOENT)
    return _U32.pack(obj.id)


def _fd_array_update(get_ptr):
    def bpf_fd_array_map_update_elem(m, key: bytes, value, flags: int) -> None:
        if flags != BPF_ANY:
            raise BpfError(_EINVAL)
        index = int.from_bytes(key, "little")
        if index >= m.max_entries:
            raise BpfError(errno.E2BIG)
        emu = m.kernel
        new = get_ptr(emu, m, _U32.unpack(bytes(value[:4]))[0])
        old = m.slots.get(index)
        m.slots[index] = new
        if old is not None:
            fd_put_ptr(emu, old)
    return bpf_fd_array_map_update_elem


def fd_array_map_delete_elem(m, key: bytes) -> None:
    index = int.from_bytes(key, "little")
    if index >= m.max_entries:
        raise BpfError(errno.E2BIG)
    old = m.slots.pop(index, None)
    if old is None:
        raise BpfError(errno.ENOENT)
    fd_put_ptr(m.kernel, old)


def fd_array_map_free(m) -> None:
    """The map's references on what it stores go with it.

    DEVIATION(map-types): Linux also empties a PROG_ARRAY when its last fd and pin go while
    a program still holds it (prog_array_map_clear); here it keeps its programs until freed."""
    for obj in list(m.slots.values()):
        fd_put_ptr(m.kernel, obj)
    m.slots.clear()


# --- HASH_OF_MAPS ---------------------------------------------------------------------------

def fd_htab_map_alloc_check(args, kernel) -> None:
    if args.value_size != 4:
        raise BpfError(_EINVAL)
    htab_map_alloc_check(args, kernel)


def htab_of_map_alloc(args, kernel):
    meta = bpf_map_meta_alloc(kernel, args.inner_map_fd)
    m = htab_map_alloc(args, kernel)
    m.inner_map_meta = meta
    m.inner_maps = {}                           # key -> inner map (the values hold its id)
    return m


def bpf_fd_htab_map_update_elem(m, key: bytes, value, flags: int) -> None:
    """The map first (EBADF/EINVAL), then the flags; an existing key's value changes in place
    (htab_map_update_elem_in_place): the element keeps its place in its bucket."""
    emu = m.kernel
    inner = bpf_map_fd_get_ptr(emu, m, _U32.unpack(bytes(value[:4]))[0])
    try:
        if flags > BPF_EXIST:
            raise BpfError(_EINVAL)
        # BPF_F_LOCK asks hashtab.py for the in-place update of an existing element.
        htab_map_update_elem(m, key, _U32.pack(inner.id), flags | BPF_F_LOCK)
    except BpfError:
        fd_put_ptr(emu, inner)
        raise
    old = m.inner_maps.get(key)
    m.inner_maps[key] = inner
    if old is not None:
        fd_put_ptr(emu, old)


def fd_htab_map_delete_elem(m, key: bytes) -> None:
    htab_map_delete_elem(m, key)
    fd_put_ptr(m.kernel, m.inner_maps.pop(key))


def fd_htab_map_free(m) -> None:
    for inner in list(m.inner_maps.values()):
        fd_put_ptr(m.kernel, inner)
    m.inner_maps.clear()


# --- ops tables --------------------------------------------------------------------------------

prog_array_map_ops = MapOps(
    name="prog_array_map_ops",
    map_alloc_check=fd_array_map_alloc_check,
    map_alloc=prog_array_map_alloc,
    map_lookup_elem_sys=bpf_fd_array_map_lookup_elem,
    map_update_elem_sys=_fd_array_update(prog_fd_array_get_ptr),
    map_delete_elem=fd_array_map_delete_elem,
    map_get_next_key=array_map_get_next_key,
    map_free=fd_array_map_free,                 # no map_check_btf: BTF ids need a key id
)
array_of_maps_map_ops = MapOps(
    name="array_of_maps_map_ops",
    map_alloc_check=fd_array_map_alloc_check,
    map_alloc=array_of_map_alloc,
    map_lookup_elem_sys=bpf_fd_array_map_lookup_elem,
    map_update_elem_sys=_fd_array_update(bpf_map_fd_get_ptr),
    map_delete_elem=fd_array_map_delete_elem,
    map_get_next_key=array_map_get_next_key,
    map_free=fd_array_map_free,
    map_check_btf=map_check_no_btf,
    map_lookup_batch=generic_map_lookup_batch,
    map_update_batch=generic_map_update_batch,
)
htab_of_maps_map_ops = MapOps(
    name="htab_of_maps_map_ops",
    map_alloc_check=fd_htab_map_alloc_check,
    map_alloc=htab_of_map_alloc,
    map_lookup_elem_sys=htab_map_lookup_elem_sys,
    map_update_elem_sys=bpf_fd_htab_map_update_elem,
    map_delete_elem=fd_htab_map_delete_elem,
    map_get_next_key=htab_map_get_next_key,
    map_free=fd_htab_map_free,
    map_check_btf=map_check_no_btf,
    map_lookup_batch=htab_batch.htab_map_lookup_batch,
    map_lookup_and_delete_batch=htab_batch.htab_map_lookup_and_delete_batch,
    map_update_batch=generic_map_update_batch,
    map_delete_batch=generic_map_delete_batch,
)
