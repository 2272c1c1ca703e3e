"""Map objects as a whole: OBJ_GET_INFO_BY_FD, MAP_GET_NEXT_ID, MAP_GET_FD_BY_ID, MAP_FREEZE,
OBJ_PIN and OBJ_GET (kernel/bpf/syscall.c and kernel/bpf/inode.c), in their check order.

Handlers have the entry's signature: (emulator, the 168-byte attr copy already
CHECK_ATTR'ed, the caller's attr reference for the fields written back).
"""
import errno
import os
import struct

from .bpffs import AT_FDCWD
from .errors import ENOTSUPP, BpfError
from .btf_cmds import bpf_btf_get_info_by_fd
from .prog_cmds import bpf_prog_get_info_by_fd, bpf_prog_new_fd
from .fdtable import BTF_KIND, FMODE_WRITE, MAP_KIND, PROG_KIND
from .map_cmds import bpf_get_file_flag, map_get_sys_perms
from .obj_ids import bpf_obj_get_next_id, idr_find_live, info_from_user
from .uapi import consts as F  # plain-int flag values (see consts.py)
from .uapi.attr import GET_ID, INFO, OBJ, compiled
from .usercopy import put_attr, strncpy_from_user

_INFO = compiled(INFO)
_GET_ID = compiled(GET_ID)
_OBJ = compiled(OBJ)
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_EINVAL = errno.EINVAL

BPF_OBJ_FLAG_MASK = F.BPF_F_RDONLY | F.BPF_F_WRONLY
SHA256_DIGEST_SIZE = 32

# struct bpf_map_info: offsets of the fields the kernel fills for a map.
_INFO_HEAD = struct.Struct("<IIIIII16s")       # type .. name, at 0
_OFF_BTF_VMLINUX_VALUE_TYPE_ID = 44
_OFF_BTF_ID = 64
_OFF_MAP_EXTRA = 80
_OFF_HASH = 88
_OFF_HASH_SIZE = 96
_INFO_LEN_OFF = 4                               # offsetof(union bpf_attr, info.info_len)


def bpf_map_new_fd(emu, m, f_mode: int) -> int:
    """bpf_map_new_fd() for a map that already has its id (GET_FD_BY_ID, OBJ_GET): a new
    fd and a new reference. EMFILE leaves the map as it was."""
    fd = emu.fds.install(m, f_mode)
    m.refcnt += 1
    return fd


# --- OBJ_GET_INFO_BY_FD --------------------------------------------------------------------

def bpf_obj_get_info_by_fd(emu, raw: bytes, uattr) -> int:
    bpf_fd, info_len, uinfo = _INFO.unpack_from(raw)
    try:
        f = emu.fds.lookup_any(bpf_fd)
    except BpfError as e:
        if e.errno == errno.EBADF:
            raise BpfError(errno.EBADFD) from None   # fd_empty(f): -EBADFD here, not -EBADF
        raise
    if f.kind == BTF_KIND:
        return bpf_btf_get_info_by_fd(emu, f.obj, info_len, uinfo, uattr)
    if f.kind == PROG_KIND:
        return bpf_prog_get_info_by_fd(emu, f.obj, info_len, uinfo, uattr)
    return bpf_map_get_info_by_fd(emu, f, f.obj, info_len, uinfo, uattr)


def bpf_map_get_info_by_fd(emu, f, m, info_len: int, uinfo: int, uattr) -> int:
    profile = emu.profile
    mem = emu.mem
    size = profile.map_info_size                 # sizeof(struct bpf_map_info)
    # The 6.18.44 backport checks the tail from offsetofend(hash_size). Before 6.18 (no
    # info.hash input) the kernel did not read the caller's info: unfilled fields come back 0.
    info, info_len = info_from_user(emu, uinfo, info_len, size, profile.map_info_tail_from,
                                    copy_in=profile.map_info_reads_input)
    _INFO_HEAD.pack_into(info, 0, m.map_type, m.id, m.key_size, m.value_size, m.max_entries,
                         m.map_flags & ~BPF_OBJ_FLAG_MASK, m.name)
    _U64.pack_into(info, _OFF_MAP_EXTRA, m.map_extra)
    if m.btf is not None:
        struct.pack_into("<III", info, _OFF_BTF_ID, m.btf_id, m.btf_key_type_id,
                         m.btf_value_type_id)
    _U32.pack_into(info, _OFF_BTF_VMLINUX_VALUE_TYPE_ID, m.btf_vmlinux_value_type_id)

    # hash and hash_size exist from Linux 6.18 on; an older profile's info ends before them.
    uhash, hash_size = (0, 0) if size < _OFF_HASH_SIZE + 4 else (
        _U64.unpack_from(info, _OFF_HASH)[0], _U32.unpack_from(info, _OFF_HASH_SIZE)[0])
    if uhash:
        get_hash = m.ops.map_value_hash          # map->ops->map_get_hash
        if get_hash is None:
            raise BpfError(_EINVAL)
        if hash_size != SHA256_DIGEST_SIZE:
            raise BpfError(_EINVAL)
        digest = get_hash(m)                     # EPERM unless frozen
        mem.write(uhash, digest)
    elif hash_size:
        raise BpfError(_EINVAL)

    mem.write(uinfo, bytes(info[:info_len]))
    put_attr(emu, uattr, _INFO_LEN_OFF, _U32.pack(info_len))
    return 0


# --- ids ---------------------------------------------------------------------------------------

def bpf_map_get_next_id(emu, raw: bytes, uattr) -> int:
    return bpf_obj_get_next_id(emu, raw, uattr, emu.map_idr)


def bpf_map_get_fd_by_id(emu, raw: bytes, uattr) -> int:
    map_id, _, open_flags, _ = _GET_ID.unpack_from(raw)
    if open_flags & ~BPF_OBJ_FLAG_MASK:
        raise BpfError(_EINVAL)
    if not emu.profile.cap_sys_admin:
        raise BpfError(errno.EPERM)
    f_mode = bpf_get_file_flag(open_flags)
    m = idr_find_live(emu, emu.map_idr, map_id)  # idr_find() + __bpf_map_inc_not_zero()
    return bpf_map_new_fd(emu, m, f_mode)


# --- MAP_FREEZE --------------------------------------------------------------------------------

def map_freeze(emu, raw: bytes, uattr) -> int:
    ufd = _U32.unpack_from(raw)[0]
    f = emu.fds.lookup(ufd)
    m = f.obj
    if m.has_spin_lock:                          # map->record: BTF special fields
        raise BpfError(ENOTSUPP)
    # Not on 6.1: there any fd may freeze (a read-only one too) and a second freeze is EBUSY.
    if emu.profile.freeze_needs_write and not map_get_sys_perms(m, f) & FMODE_WRITE:
        raise BpfError(errno.EPERM)              # so a second freeze is EPERM, too
    write_active = getattr(m, "write_active", None)
    if write_active is not None and write_active():
        raise BpfError(errno.EBUSY)              # bpf_map_write_active(): a writable mmap
    if m.frozen:
        raise BpfError(errno.EBUSY)
    m.frozen = True
    on_freeze = getattr(m, "on_freeze", None)
    if on_freeze is not None:
        on_freeze()                              # mmapable: no writable mapping from now on
    emu.forget_decoded_calls()                   # decoded updates and deletes must now fail
    return 0


# --- OBJ_PIN / OBJ_GET -------------------------------------------------------------------------

def _pathname(emu, addr: int) -> str:
    """getname(): the user's path string."""
    return os.fsdecode(strncpy_from_user(emu.mem, addr))


def _path_fd_flag(emu) -> int:
    """BPF_F_PATH_FD where the profile's kernel knows it (Linux 6.5 on), else no flag."""
    return F.BPF_F_PATH_FD if emu.profile.obj_path_fd else 0


def bpf_obj_pin(emu, raw: bytes, uattr) -> int:
    pathname, bpf_fd, file_flags, path_fd = _OBJ.unpack_from(raw)
    if file_flags & ~_path_fd_flag(emu):         # 6.1: file_flags != 0 is EINVAL
        raise BpfError(_EINVAL)
    if not file_flags & F.BPF_F_PATH_FD and path_fd:
        raise BpfError(_EINVAL)                  # path_fd needs BPF_F_PATH_FD
    dirfd = path_fd if file_flags & F.BPF_F_PATH_FD else AT_FDCWD
    # bpf_fd_probe_obj(): a map, else a prog, else a link; anything else (closed too) EINVAL.
    try:
        f = emu.fds.lookup_any(bpf_fd)
    except BpfError:
        raise BpfError(_EINVAL) from None
    if f.kind not in (MAP_KIND, PROG_KIND):
        raise BpfError(_EINVAL)
    obj = f.obj
    obj.refcnt += 1                              # bpf_map_get_with_uref() / bpf_prog_get()
    try:
        emu.bpffs.pin(_pathname(emu, pathname), dirfd, obj)
    except BpfError:
        emu.bpf_obj_put_ref(obj)
        raise
    return 0


def bpf_obj_get(emu, raw: bytes, uattr) -> int:
    pathname, bpf_fd, file_flags, path_fd = _OBJ.unpack_from(raw)
    if bpf_fd != 0 or file_flags & ~(BPF_OBJ_FLAG_MASK | _path_fd_flag(emu)):
        raise BpfError(_EINVAL)
    if not file_flags & F.BPF_F_PATH_FD and path_fd:
        raise BpfError(_EINVAL)
    dirfd = path_fd if file_flags & F.BPF_F_PATH_FD else AT_FDCWD
    f_mode = bpf_get_file_flag(file_flags)       # RDONLY|WRONLY: EINVAL
    # DEVIATION(bpffs): no permission check on the pinned file (the caller is treated as
    # root, who may open a 0600 pin for reading and writing).
    obj = emu.bpffs.get(_pathname(emu, pathname), dirfd)
    if not hasattr(obj, "map_type"):
        # bpf_obj_get_user(): a program's fd is read-write whatever the flags asked.
        return bpf_prog_new_fd(emu, obj)
    return bpf_map_new_fd(emu, obj, f_mode)
