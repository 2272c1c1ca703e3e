"""A map's BTF: map_check_btf() of kernel/bpf/syscall.c and the struct bpf_spin_lock it finds.

A map created with BTF type ids holds its BTF object (btf_get_by_fd) until it is freed. When
the value type has a struct bpf_spin_lock member (btf_parse_fields), the map accepts
BPF_F_LOCK on its element commands, cannot be frozen (ENOTSUPP), and its lock word is never
copied from user space (copy_map_value skips it), so it always reads back as zero. Facts:
docs/btf.md ("Maps with BTF").
"""
import errno

from ..btf_obj import DATASEC, INT, btf_find_spin_lock
from ..errors import BpfError
from ..uapi import consts as F
from ..uapi.consts import BpfMapType as T

_EINVAL = errno.EINVAL
BPF_SPIN_LOCK_SIZE = 4
# Map types whose values may hold a bpf_spin_lock (of the ones emulated).
_SPIN_LOCK_TYPES = frozenset({T.BPF_MAP_TYPE_HASH, T.BPF_MAP_TYPE_ARRAY})


def array_map_check_btf(m, btf, key_type, value_type) -> None:
    """array_map_check_btf(): a keyless BTF only for a one-element ARRAY whose value is a
    DATASEC (.bss/.data/.rodata); otherwise the key must be a 4-byte int."""
    if key_type is None:
        if m.map_type != T.BPF_MAP_TYPE_ARRAY or m.max_entries != 1:
            raise BpfError(_EINVAL)
        if value_type.kind != DATASEC:
            raise BpfError(_EINVAL)
        return
    if key_type.kind != INT or key_type.size != 4:
        raise BpfError(_EINVAL)


def map_check_btf(emu, m, btf, key_id: int, value_id: int) -> None:
    """map_check_btf(): the key and value types must have the map's sizes; a spin lock in
    the value needs CAP_BPF, no program access flags, and a map type that allows one."""
    check = getattr(m.ops, "map_check_btf", None)
    if key_id:
        sized = btf.type_id_size(key_id)
        if sized is None or sized[2] != m.key_size:
            raise BpfError(_EINVAL)
        key_type = sized[0]
    else:
        key_type = None                         # void
        if check is None:
            raise BpfError(_EINVAL)
    sized = btf.type_id_size(value_id)
    if sized is None or sized[2] != m.value_size:
        raise BpfError(_EINVAL)
    value_type = sized[0]
    lock_off = btf_find_spin_lock(btf, value_type)
    if lock_off is not None:
        if not emu.profile.cap_bpf:
            raise BpfError(errno.EPERM)
        if m.map_flags & (F.BPF_F_RDONLY_PROG | F.BPF_F_WRONLY_PROG):
            raise BpfError(errno.EACCES)
        if m.map_type not in _SPIN_LOCK_TYPES:
            raise BpfError(errno.EOPNOTSUPP)
    if check is not None:
        check(m, btf, key_type, value_type)
    if lock_off is not None:
        _set_spin_lock(m, lock_off)


def _set_spin_lock(m, off: int) -> None:
    """The map's record has a spin lock: updates from user space leave its word alone.

    The stored word is zero (nothing here ever takes the lock), so zeroing it in the value
    before the type's own update is what copy_map_value()'s skipping it amounts to. The
    map gets its own ops table with that update, and without the pinned fast update, which
    would copy the whole value."""
    m.has_spin_lock = True
    m.spin_lock_off = off
    update = m.ops.map_update_elem_sys
    end = off + BPF_SPIN_LOCK_SIZE
    zero = bytes(BPF_SPIN_LOCK_SIZE)

    def update_skipping_lock(m, key, value, flags):
        value = bytes(value)
        update(m, key, value[:off] + zero + value[end:], flags)

    m.ops = m.ops.replace(map_update_elem_sys=update_skipping_lock,
                          map_update_elems=None)     # no bulk update past it
