"""BTF objects through bpf(): BPF_BTF_LOAD, BPF_BTF_GET_FD_BY_ID, BPF_BTF_GET_NEXT_ID and
OBJ_GET_INFO_BY_FD on a BTF fd (bpf_btf_load(), btf_new_fd(), btf_get_fd_by_id() and
btf_get_info_by_fd() of kernel/bpf/syscall.c and kernel/bpf/btf.c), in their check order.

A BTF fd is read-only and close-on-exec, named "btf" like the kernel's anon inode
(readlink shows /memfd:btf here, anon_inode:btf on Linux). BTF ids come from their own
cyclic space; id 1 is the kernel's own BTF (vmlinux) when /sys/kernel/btf/vmlinux exists,
as on Linux. Facts: docs/btf.md.
"""
import errno
import os
import struct

from .btf_obj import BTF_MAX_SIZE, Btf, btf_parse
from .errors import BpfError
from .fdtable import BTF_KIND, FMODE_READ
from .obj_ids import bpf_obj_get_next_id, idr_find_live, info_from_user
from .uapi import consts as F
from .usercopy import copy_to_user, put_attr

_EINVAL = errno.EINVAL
_U32 = struct.Struct("<I")
# union bpf_attr for BPF_BTF_LOAD: btf, btf_log_buf, btf_size, btf_log_size,
# btf_log_level, btf_log_true_size, btf_flags, btf_token_fd.
_BTF_LOAD = struct.Struct("<QQIIIIIi")
_BTF_LOG_TRUE_SIZE_OFF = 28
_GET_ID = struct.Struct("<IIIi")
_INFO_LEN_OFF = 4
# struct bpf_btf_info: btf, btf_size, id, name, name_len, kernel_btf.
_BTF_INFO = struct.Struct("<QIIQII")
BPF_BTF_INFO_SIZE = _BTF_INFO.size              # 32
BPF_LOG_MASK = 0xF                              # BPF_LOG_LEVEL1|2|STATS|FIXED
VMLINUX_BTF_PATH = "/sys/kernel/btf/vmlinux"


class KernelBtf(Btf):
    """The kernel's own BTF (vmlinux): id 1, kernel_btf set, its bytes read when asked for."""

    def __init__(self, path: str = VMLINUX_BTF_PATH):
        super().__init__(b"", name="vmlinux", kernel_btf=True)
        self.path = path
        self._loaded = False
        self.data_size = os.stat(path).st_size

    @property
    def data(self) -> bytes:
        if not self._loaded:
            with open(self.path, "rb") as f:
                self._data = f.read()
            self._loaded = True
        return self._data

    @data.setter
    def data(self, value) -> None:
        self._data = value


def register_kernel_btf(emu) -> None:
    """btf_parse_vmlinux() + btf_alloc_id() at boot: the kernel's BTF takes the first id."""
    try:
        btf = KernelBtf()
    except OSError:
        return
    btf.id = emu.btf_idr.alloc(btf)


def bpf_vlog_init(log_level: int, log_buf: int, log_size: int) -> None:
    """bpf_verifier_log_attr_valid(): buffer and size together, a level with a buffer, known
    level bits, a size below 2^30."""
    if bool(log_buf) != bool(log_size):
        raise BpfError(_EINVAL)
    if log_buf and not log_level:
        raise BpfError(_EINVAL)
    if log_level & ~BPF_LOG_MASK:
        raise BpfError(_EINVAL)
    if log_size > 0xFFFFFFFF >> 2:
        raise BpfError(_EINVAL)


def check_token_flags(emu, flags: int, token_fd: int) -> None:
    """EINVAL for a flag other than BPF_F_TOKEN_FD; with it, bpf_token_get_from_fd(): EBADF
    for a closed fd, else EINVAL, since no emulated fd is a BPF token."""
    if flags & ~F.BPF_F_TOKEN_FD:
        raise BpfError(_EINVAL)
    if flags & F.BPF_F_TOKEN_FD:
        if token_fd < 0 or not emu.fds.is_open(token_fd):
            raise BpfError(errno.EBADF)
        raise BpfError(_EINVAL)


def bpf_btf_load(emu, raw: bytes, uattr) -> int:
    (ubtf, log_buf, btf_size, log_size, log_level, _, btf_flags,
     token_fd) = _BTF_LOAD.unpack_from(raw)
    check_token_flags(emu, btf_flags, token_fd)
    if not (emu.profile.cap_bpf or emu.profile.cap_sys_admin):
        raise BpfError(errno.EPERM)
    return btf_new_fd(emu, ubtf, btf_size, log_buf, log_size, log_level, uattr)


def btf_new_fd(emu, ubtf: int, btf_size: int, log_buf: int, log_size: int, log_level: int,
               uattr) -> int:
    """btf_parse(), then an id and a read-only fd."""
    if btf_size > BTF_MAX_SIZE:
        raise BpfError(errno.E2BIG)
    bpf_vlog_init(log_level, log_buf, log_size)
    data = emu.mem.read(ubtf, btf_size)
    try:
        btf = btf_parse(data)
    except BpfError as e:
        finalize_log(emu, uattr, log_buf, log_size, log_level, f"bpfemu: BTF rejected: "
                     f"{errno.errorcode.get(e.errno, e.errno)}\n")
        raise
    finalize_log(emu, uattr, log_buf, log_size, log_level, "")
    btf.id = emu.btf_idr.alloc(btf)
    try:
        return emu.fds.install(btf, FMODE_READ, BTF_KIND)
    except BpfError:
        btf.put(emu)
        raise


def finalize_log(emu, uattr, log_buf: int, log_size: int, log_level: int, text: str) -> None:
    """What the log buffer receives, and btf_log_true_size.

    DEVIATION(verifier-log): Linux writes its verifier's trace (at level 1, every type it
    checked); the emulator writes only a one-line reason when it rejects the BTF, nothing
    when it accepts it (an empty string). btf_log_true_size is the size of what was
    written, NUL included (0 without a log level), written only when the caller's attr is
    long enough to have it (uattr_size), and a log that does not fit is ENOSPC, as in Linux."""
    if not log_level:
        true_size = 0
    else:
        msg = text.encode() + b"\0"
        true_size = len(msg)
        if log_buf:
            n = min(len(msg), log_size)
            copy_to_user(emu.mem, log_buf, msg[:n - 1] + b"\0")
    if emu.uattr_size >= _BTF_LOG_TRUE_SIZE_OFF + 4:   # an attr that has the field
        put_attr(emu, uattr, _BTF_LOG_TRUE_SIZE_OFF, _U32.pack(true_size))
    if log_level and log_buf and true_size > log_size:
        raise BpfError(errno.ENOSPC)


def btf_get_by_fd(emu, ufd: int) -> Btf:
    """btf_get_by_fd(): EBADF for a closed fd, EINVAL for an fd that is not BTF."""
    f = emu.fds.lookup_any(ufd)
    if f.kind != BTF_KIND:
        raise BpfError(_EINVAL)
    return f.obj


def bpf_btf_get_fd_by_id(emu, raw: bytes, uattr) -> int:
    btf_id, _, open_flags, token_fd = _GET_ID.unpack_from(raw)
    check_token_flags(emu, open_flags, token_fd)
    if not emu.profile.cap_sys_admin:
        raise BpfError(errno.EPERM)
    btf = idr_find_live(emu, emu.btf_idr, btf_id)   # idr_find() + refcount_inc_not_zero()
    fd = emu.fds.install(btf, FMODE_READ, BTF_KIND)
    btf.refcnt += 1
    return fd


def bpf_btf_get_next_id(emu, raw: bytes, uattr) -> int:
    return bpf_obj_get_next_id(emu, raw, uattr, emu.btf_idr)


def bpf_btf_get_info_by_fd(emu, btf: Btf, info_len: int, uinfo: int, uattr) -> int:
    """bpf_btf_get_info_by_fd() and btf_get_info_by_fd()."""
    mem = emu.mem
    info, info_copy = info_from_user(emu, uinfo, info_len, BPF_BTF_INFO_SIZE)
    ubtf, ubtf_size, _, uname, uname_len, _ = _BTF_INFO.unpack(info)
    data = btf.data
    copy_to_user(mem, ubtf, data[:min(btf.data_size, ubtf_size)])
    if bool(uname) != bool(uname_len):
        raise BpfError(_EINVAL)
    name = btf.name.encode()
    ret = 0
    if uname:
        if uname_len >= len(name) + 1:
            copy_to_user(mem, uname, name + b"\0")
        else:
            copy_to_user(mem, uname, name[:uname_len - 1])
            copy_to_user(mem, uname + uname_len - 1, b"\0")
            ret = -errno.ENOSPC                 # the name did not fit: still filled in
    _BTF_INFO.pack_into(info, 0, ubtf, btf.data_size, btf.id, uname, len(name),
                        int(btf.kernel_btf))
    copy_to_user(mem, uinfo, bytes(info[:info_copy]))
    put_attr(emu, uattr, _INFO_LEN_OFF, _U32.pack(info_copy))
    if ret:
        raise BpfError(-ret)
    return 0
