"""The seccomp user-notification ABI (include/uapi/linux/seccomp.h), x86_64, stdlib only.

This module imports nothing from bpfemu: the exec helper (child.py) runs it as a plain
script next to it, so that a supervised command starts without importing the emulator.
The facts it relies on are written up in docs/seccomp.md.
"""
import ctypes
import fcntl
import struct

NR_SECCOMP = 317
NR_BPF = 321
NR_STATFS = 137
NR_FSTATFS = 138
X32_SYSCALL_BIT = 0x40000000
NR_BPF_I386 = 357

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 8
SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 16
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 32

SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_ERRNO = 0x00050000

SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
SECCOMP_ADDFD_FLAG_SETFD = 1
SECCOMP_ADDFD_FLAG_SEND = 2
SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP = 1

# ioctls on the listener fd
NOTIF_RECV = 0xC0502100
NOTIF_SEND = 0xC0182101
NOTIF_ID_VALID = 0x40082102
NOTIF_ADDFD = 0x40182103
NOTIF_SET_FLAGS = 0x40082104

PR_SET_NO_NEW_PRIVS = 38

# struct seccomp_notif: id, pid (a tid), flags, then struct seccomp_data: nr, arch, ip, args[6]
NOTIF = struct.Struct("<QIIiIQ6Q")
NOTIF_SIZE = NOTIF.size                       # 80
# struct seccomp_notif_resp: id, val, error (a negative errno), flags
RESP = struct.Struct("<QqiI")
# struct seccomp_notif_addfd: id, flags, srcfd, newfd, newfd_flags
ADDFD = struct.Struct("<QIIII")
_ID = struct.Struct("<Q")

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


# --- the filter --------------------------------------------------------------------------------

_LD_W_ABS, _JEQ_K, _RET_K = 0x20, 0x15, 0x06
_OFF_NR, _OFF_ARCH = 0, 4
_ENOSYS = 38


def x32_supported() -> bool:
    """Whether this kernel has the x32 ABI (CONFIG_X86_X32_ABI): an x32 getpid() works."""
    return _syscall(X32_SYSCALL_BIT | 39) >= 0


def filter_program(statfs: bool = True, x32: bool = True) -> bytes:
    """The classic-BPF program: bpf() (x86_64, i386, and x32 where the kernel has it) and, if
    asked, statfs() and fstatfs() go to the listener; everything else is allowed (so an x32 call on a kernel
    without x32 still gets the kernel's ENOSYS); a call from any other architecture fails
    with ENOSYS (nothing we do not understand reaches the kernel)."""
    notify = [NR_BPF] + ([X32_SYSCALL_BIT | NR_BPF] if x32 else [])
    if statfs:
        for nr in (NR_STATFS, NR_FSTATFS):
            notify += [nr] + ([X32_SYSCALL_BIT | nr] if x32 else [])
    # Instructions as (code, jt, jf, k) with jumps given as labels, resolved below.
    prog = [(_LD_W_ABS, 0, 0, _OFF_ARCH),
            (_JEQ_K, 0, "i386", AUDIT_ARCH_X86_64),
            (_LD_W_ABS, 0, 0, _OFF_NR)]
    prog += [(_JEQ_K, "notify", 0, nr) for nr in notify]
    prog += [(_RET_K, 0, 0, SECCOMP_RET_ALLOW),
             ("i386",),
             (_JEQ_K, 0, "other", AUDIT_ARCH_I386),
             (_LD_W_ABS, 0, 0, _OFF_NR),
             (_JEQ_K, "notify", 0, NR_BPF_I386),
             (_RET_K, 0, 0, SECCOMP_RET_ALLOW),
             ("other",),
             (_RET_K, 0, 0, SECCOMP_RET_ERRNO | _ENOSYS),
             ("notify",),
             (_RET_K, 0, 0, SECCOMP_RET_USER_NOTIF)]
    labels, insns = {}, []
    for ins in prog:
        if len(ins) == 1:
            labels[ins[0]] = len(insns)
        else:
            insns.append(ins)
    out = bytearray()
    for pc, (code, jt, jf, k) in enumerate(insns):
        jt = labels[jt] - pc - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - pc - 1 if isinstance(jf, str) else jf
        out += struct.pack("<HBBI", code, jt, jf, k)
    return bytes(out)


def install_filter(flags: int, statfs: bool = True) -> int:
    """NO_NEW_PRIVS, then seccomp(SET_MODE_FILTER, flags): the listener fd (raises OSError)."""
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        _raise()
    prog = filter_program(statfs, x32_supported())
    code = ctypes.create_string_buffer(prog, len(prog))
    fprog = ctypes.create_string_buffer(struct.pack("<HxxxxxxQ", len(prog) // 8,
                                                    ctypes.addressof(code)), 16)
    fd = _syscall(NR_SECCOMP, SECCOMP_SET_MODE_FILTER, ctypes.c_ulong(flags), fprog)
    if fd < 0:
        _raise()
    return fd


def _raise():
    import os
    e = ctypes.get_errno()
    raise OSError(e, os.strerror(e))


# --- the listener's ioctls -----------------------------------------------------------------------

def recv(listener: int):
    """NOTIF_RECV: the next notification as NOTIF's fields (id, tid, flags, nr, arch, ip, six
    args). Raises OSError (ENOENT: the caller went away before we received it)."""
    buf = bytearray(NOTIF_SIZE)            # the kernel wants it zeroed
    fcntl.ioctl(listener, NOTIF_RECV, buf, True)
    return NOTIF.unpack(buf)


def set_sync_wakeup(listener: int) -> bool:
    """Ask the kernel to wake the caller on this CPU when we reply (6.6+); False if refused."""
    try:
        fcntl.ioctl(listener, NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
        return True
    except OSError:
        return False


def id_valid(listener: int, notif_id: int) -> bool:
    """NOTIF_ID_VALID: is the notified task still waiting for this reply?"""
    # A bytearray: fcntl.ioctl tries a writable buffer first, and formats an error message
    # (then drops it) for bytes, which costs more than the system call.
    try:
        fcntl.ioctl(listener, NOTIF_ID_VALID, bytearray(_ID.pack(notif_id)))
        return True
    except OSError:
        return False


def send(listener: int, notif_id: int, val: int, error: int = 0, flags: int = 0) -> None:
    """NOTIF_SEND. error is a negative errno (0 for success). Raises OSError (ENOENT when
    the caller is gone)."""
    fcntl.ioctl(listener, NOTIF_SEND, bytearray(RESP.pack(notif_id, val, error, flags)))


def addfd(listener: int, notif_id: int, srcfd: int, newfd_flags: int, send: bool) -> int:
    """NOTIF_ADDFD: install srcfd in the caller (lowest free number); with send
    (ADDFD_FLAG_SEND) that number is also the reply, in one step. Returns it; raises OSError."""
    flags = SECCOMP_ADDFD_FLAG_SEND if send else 0
    buf = bytearray(ADDFD.pack(notif_id, flags, srcfd, 0, newfd_flags))
    return fcntl.ioctl(listener, NOTIF_ADDFD, buf, True)
