"""What kernel/bpf/syscall.c shares between maps, programs and BTF objects: the id walk
(bpf_obj_get_next_id), the find-by-id under a reference (idr_find + *_inc_not_zero), and the
size check of an info struct a caller passes (bpf_check_uarg_tail_zero)."""
import errno
import struct

from .errors import BpfError
from .fdtable import INT_MAX
from .usercopy import check_zeroed_user, put_attr

_GET_ID = struct.Struct("<I")                   # start_id / map_id / prog_id / btf_id
_NEXT_ID_OFF = 4                                # offsetof(union bpf_attr, next_id)
_U32 = struct.Struct("<I")


def bpf_obj_get_next_id(emu, raw: bytes, uattr, idr) -> int:
    """The smallest live id above start_id, written to attr->next_id."""
    start_id = _GET_ID.unpack_from(raw)[0]
    if start_id >= INT_MAX:
        raise BpfError(errno.EINVAL)
    if not emu.profile.cap_sys_admin:
        raise BpfError(errno.EPERM)
    emu.reap_closed_fds()                       # an id dies with its last fd, even os.close()d
    next_id = idr.get_next(start_id)
    if next_id is None:
        raise BpfError(errno.ENOENT)
    put_attr(emu, uattr, _NEXT_ID_OFF, _U32.pack(next_id))
    return 0


def idr_find_live(emu, idr, obj_id: int):
    """idr_find() then the *_inc_not_zero() of a *_get_fd_by_id: ENOENT for no object, or
    one whose last reference is gone. The caller takes the new reference with its fd."""
    emu.reap_closed_fds()
    obj = idr.objs.get(obj_id)
    if obj is None or obj.refcnt <= 0:
        raise BpfError(errno.ENOENT)
    return obj


def bpf_check_uarg_tail_zero(emu, uaddr: int, expected_size: int, actual_size: int) -> None:
    """E2BIG for a struct larger than a page, or one whose bytes past what this kernel knows
    (expected_size) are not all zero."""
    if actual_size > emu.profile.page_size:
        raise BpfError(errno.E2BIG)
    # Word by word where the range faults: E2BIG at a non-zero word read before any fault.
    if actual_size > expected_size and not check_zeroed_user(
            emu.mem.read, uaddr + expected_size, actual_size - expected_size):
        raise BpfError(errno.E2BIG)


def info_from_user(emu, uinfo: int, info_len: int, size: int, tail_from=None,
                   copy_in: bool = True):
    """The start of every *_get_info_by_fd(): bpf_check_uarg_tail_zero() (from tail_from,
    sizeof(info) unless given), then memset(&info, 0) and, where the kernel reads it
    (copy_in), the caller's first min(info_len, size) bytes copied in, so fields a command
    leaves alone echo back. (info, that length)."""
    bpf_check_uarg_tail_zero(emu, uinfo, size if tail_from is None else tail_from, info_len)
    n = min(info_len, size)
    info = bytearray(size)
    if copy_in:
        info[:n] = emu.mem.read(uinfo, n)
    return info, n
