"""The map half of kernel/bpf/syscall.c: map_create, map_lookup_elem, ... in its check order.

Each handler takes the emulator, the 168-byte attr copy (already CHECK_ATTR'ed by the entry)
and the caller's attr reference (for the few fields the kernel writes back). It returns the
syscall's non-negative result or raises BpfError.
"""
import errno

from . import fastpath
from .errors import ENOTSUPP, BpfError
from .fdtable import FMODE_READ, FMODE_RDWR, FMODE_WRITE, INT_MAX
from .btf_cmds import btf_get_by_fd
from .maps import MAP_TYPES
from .maps.map_btf import map_check_btf
from .maps.core import MapCreateArgs
from .uapi.attr import MAP_CREATE, MAP_ELEM, compiled
from .uapi.consts import BPF_F_LOCK
from .uapi.consts import BpfMapType as T
from .uapi import consts as F  # plain-int flag values (see consts.py)

_CREATE = compiled(MAP_CREATE)
_ELEM = compiled(MAP_ELEM)
_EINVAL, _EPERM, _EFAULT = errno.EINVAL, errno.EPERM, errno.EFAULT

NUMA_NO_NODE = -1

# The kernel's isalnum() uses its Latin-1 ctype table: letters are A-Z, a-z, 0xc0-0xd6,
# 0xd8-0xf6 and 0xf8-0xff; digits 0-9 (lib/ctype.c).
_NAME_OK = frozenset(
    b"._0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    + bytes(range(0xC0, 0xD7)) + bytes(range(0xD8, 0xF7)) + bytes(range(0xF8, 0x100)))


def bpf_obj_name_cpy(name: bytes) -> bytes:
    """bpf_obj_name_cpy(): alnum, '_' or '.' up to a NUL that must come within 16 bytes."""
    end = name.find(b"\0")
    if end < 0:
        raise BpfError(_EINVAL)
    for c in name[:end]:
        if c not in _NAME_OK:
            raise BpfError(_EINVAL)
    return name[:end] + b"\0" * (16 - end)


def bpf_get_file_flag(flags: int) -> int:
    """bpf_get_file_flag(): the f_mode an fd gets from BPF_F_RDONLY / BPF_F_WRONLY."""
    rd, wr = flags & F.BPF_F_RDONLY, flags & F.BPF_F_WRONLY
    if rd and wr:
        raise BpfError(_EINVAL)
    if rd:
        return FMODE_READ
    if wr:
        return FMODE_WRITE
    return FMODE_RDWR


def map_get_sys_perms(m, f) -> int:
    """map_get_sys_perms(): a frozen map is not writable through any fd."""
    mode = f.mode
    if m.frozen:
        mode &= ~FMODE_WRITE
    return mode


def bpf_map_offload_map_alloc(emu, map_type: int, ifindex: int):
    """bpf_map_offload_map_alloc() (kernel/bpf/offload.c): no device here can offload a map."""
    if not emu.profile.cap_sys_admin:
        raise BpfError(_EPERM)
    if map_type not in (T.BPF_MAP_TYPE_HASH, T.BPF_MAP_TYPE_ARRAY):
        raise BpfError(_EINVAL)
    # bpf_dev_offload_check(): no such device is EINVAL; one without ndo_bpf is EOPNOTSUPP.
    import socket                               # here: only offload needs it (start-up)
    try:
        socket.if_indextoname(ifindex)
    except (OSError, OverflowError):
        raise BpfError(_EINVAL) from None
    # DEVIATION(offload): a device whose driver has ndo_bpf (virtio_net, for XDP) but no
    # offload device registered gives EINVAL in Linux (bpf_offload_find_netdev() fails);
    # user space cannot see ndo_bpf, so every existing device answers EOPNOTSUPP, as lo does.
    raise BpfError(errno.EOPNOTSUPP)


def map_create(emu, raw: bytes, attr) -> int:
    (map_type, key_size, value_size, max_entries, map_flags, inner_map_fd, numa_node,
     map_name, map_ifindex, btf_fd, btf_key_type_id, btf_value_type_id,
     btf_vmlinux_value_type_id, map_extra, _value_type_btf_obj_fd, map_token_fd,
     excl_prog_hash, excl_prog_hash_size) = _CREATE.unpack_from(raw)
    profile = emu.profile

    token_flag = map_flags & F.BPF_F_TOKEN_FD
    map_flags &= ~F.BPF_F_TOKEN_FD
    if btf_vmlinux_value_type_id:
        if map_type != T.BPF_MAP_TYPE_STRUCT_OPS or btf_key_type_id or btf_value_type_id:
            raise BpfError(_EINVAL)
    elif btf_key_type_id and not btf_value_type_id:
        raise BpfError(_EINVAL)
    if map_type not in (T.BPF_MAP_TYPE_BLOOM_FILTER, T.BPF_MAP_TYPE_ARENA) and map_extra:
        raise BpfError(_EINVAL)
    f_mode = bpf_get_file_flag(map_flags)
    # bpf_map_attr_numa_node(): numa_node only counts with BPF_F_NUMA_NODE; it is an int.
    if map_flags & F.BPF_F_NUMA_NODE:
        numa = numa_node - (1 << 32) if numa_node > INT_MAX else numa_node
        if numa != NUMA_NO_NODE and numa not in profile.numa_nodes:
            raise BpfError(_EINVAL)
    else:
        numa = NUMA_NO_NODE

    # find_and_alloc_map()
    if map_type >= profile.nr_map_types:
        raise BpfError(_EINVAL)
    ops = MAP_TYPES.get(map_type)
    if ops is None:
        # DEVIATION(map-types): Linux has these map types, each with its own checks; we do not
        # emulate them and refuse them all with EINVAL, as Linux does for a type not built in.
        raise BpfError(_EINVAL)
    args = MapCreateArgs(map_type, key_size, value_size, max_entries, map_flags, numa, map_extra,
                         inner_map_fd)
    ops.map_alloc_check(args, emu)

    # A non-zero map_ifindex only switches ops to bpf_map_offload_ops here; the offload
    # checks run in its map_alloc, after the token and capability checks.
    if token_flag:
        # bpf_token_get_from_fd(): no emulated fd is a BPF token.
        fd = map_token_fd
        if fd < 0 or not emu.fds.is_open(fd):
            raise BpfError(errno.EBADF)
        raise BpfError(_EINVAL)
    if not (profile.cap_bpf or profile.cap_sys_admin):
        raise BpfError(_EPERM)

    if map_ifindex:
        bpf_map_offload_map_alloc(emu, map_type, map_ifindex)
    m = ops.map_alloc(args, emu)
    m.ops = ops
    m.name = bpf_obj_name_cpy(map_name)

    if btf_key_type_id or btf_value_type_id:
        btf = btf_get_by_fd(emu, btf_fd)
        if btf.kernel_btf:
            raise BpfError(errno.EACCES)
        map_check_btf(emu, m, btf, btf_key_type_id, btf_value_type_id)
        # The map holds the BTF from here on (map->btf); bpf_map_put() lets it go.
        btf.refcnt += 1
        m.btf = btf
        m.btf_id = btf.id
        m.btf_key_type_id = btf_key_type_id
        m.btf_value_type_id = btf_value_type_id
    if excl_prog_hash:
        if excl_prog_hash_size != 32:
            raise BpfError(_EINVAL)
        m.excl_prog_hash = emu.mem.read(excl_prog_hash, 32)
    elif excl_prog_hash_size:
        raise BpfError(_EINVAL)

    return emu.bpf_map_new_fd(m, f_mode)


def map_lookup_elem(emu, raw: bytes, attr) -> int:
    ufd, key_ptr, value_ptr, flags = _ELEM.unpack_from(raw)
    if flags & ~BPF_F_LOCK:
        raise BpfError(_EINVAL)                 # 6.18 checks flags before the fd
    f = emu.fds.lookup(ufd)                 # fdget()
    m = f.obj
    if not f.mode & FMODE_READ:
        raise BpfError(_EPERM)
    if flags & BPF_F_LOCK and not m.has_spin_lock:
        raise BpfError(_EINVAL)
    mem = emu.mem
    emu.decodable = (fastpath.lookup_call, mem, m, key_ptr, value_ptr)
    key = mem.read(key_ptr, m.key_size)
    value = m.ops.map_lookup_elem_sys(m, key)    # bpf_map_copy_value()
    if value is None:
        raise BpfError(errno.ENOENT)             # the map's lookup found nothing
    mem.write(value_ptr, value)
    return 0


def map_update_elem(emu, raw: bytes, attr) -> int:
    ufd, key_ptr, value_ptr, flags = _ELEM.unpack_from(raw)
    f = emu.fds.lookup(ufd)                 # fdget()
    m = f.obj
    if not f.mode & FMODE_WRITE or m.frozen:
        raise BpfError(_EPERM)
    if flags & BPF_F_LOCK and not m.has_spin_lock:
        raise BpfError(_EINVAL)
    emu.decodable = (fastpath.update_call, emu.mem, m, key_ptr, value_ptr, flags)
    key, value = emu.mem.read2(key_ptr, m.key_size, value_ptr, m.value_size_sys)
    m.ops.map_update_elem_sys(m, key, value, flags)
    return 0


def map_delete_elem(emu, raw: bytes, attr) -> int:
    ufd, key_ptr, _, _ = _ELEM.unpack_from(raw)
    f = emu.fds.lookup(ufd)                 # fdget()
    m = f.obj
    if not f.mode & FMODE_WRITE or m.frozen:
        raise BpfError(_EPERM)
    emu.decodable = (fastpath.delete_call, emu.mem, m, key_ptr)
    key = emu.mem.read(key_ptr, m.key_size)
    m.ops.map_delete_elem(m, key)
    return 0


def map_get_next_key(emu, raw: bytes, attr) -> int:
    ufd, key_ptr, next_key_ptr, _ = _ELEM.unpack_from(raw)
    f = emu.fds.lookup(ufd)                 # fdget()
    m = f.obj
    if not f.mode & FMODE_READ:
        raise BpfError(_EPERM)
    emu.decodable = (fastpath.get_next_key_call, emu.mem, m, key_ptr, next_key_ptr)
    key = emu.mem.read(key_ptr, m.key_size) if key_ptr else None
    emu.mem.write(next_key_ptr, m.ops.map_get_next_key(m, key))
    return 0


def map_lookup_and_delete_elem(emu, raw: bytes, attr) -> int:
    ufd, key_ptr, value_ptr, flags = _ELEM.unpack_from(raw)
    if flags & ~BPF_F_LOCK:
        raise BpfError(_EINVAL)
    f = emu.fds.lookup(ufd)
    m = f.obj
    if map_get_sys_perms(m, f) != FMODE_RDWR:
        raise BpfError(_EPERM)
    if flags & BPF_F_LOCK and not m.has_spin_lock:
        raise BpfError(_EINVAL)
    op = m.ops.map_lookup_and_delete_elem
    if op is not None:
        emu.decodable = (fastpath.lookup_and_delete_call, emu.mem, m, key_ptr, value_ptr, flags)
    else:
        emu.decodable = (fastpath.key_then_not_supported_call, emu.mem, m, key_ptr)
    key = emu.mem.read(key_ptr, m.key_size)
    if op is None:
        raise BpfError(ENOTSUPP)
    value = op(m, key, flags)
    emu.mem.write(value_ptr, value)             # the element is already gone if this faults
    return 0
