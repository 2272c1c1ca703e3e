"""The one exception type that carries an errno out of a handler.

Inside bpfemu every failure the kernel would report is ``raise BpfError(errno.X)``.
It is converted exactly once at each boundary: ``-errno`` at the syscall entry,
a negative errno in the libbpf-style layer, and left as an ``OSError`` (which it
is) in the Pythonic map API.
"""
import errno as _errno
import os

# Kernel-internal code that leaks to user space (include/linux/errno.h); libc has no name for it.
ENOTSUPP = 524
# EBADFD is in errno but named here for readers of docs/linux-6.18.md#numbers.
EBADFD = _errno.EBADFD

_EXTRA_NAMES = {ENOTSUPP: "ENOTSUPP"}


def errno_name(err: int) -> str:
    """Symbolic name of an errno value ("ENOENT"), including the kernel-only ENOTSUPP."""
    return _EXTRA_NAMES.get(err) or _errno.errorcode.get(err, str(err))


def _message(err: int) -> str:
    return "Operation not supported" if err == ENOTSUPP else os.strerror(err)


_MESSAGES = {err: _message(err) for err in (*_errno.errorcode, ENOTSUPP)}
_oserror_init = OSError.__init__


class BpfError(OSError):
    """An errno the emulated kernel returns. ``BpfError(errno.ENOENT).errno == 2``.

    Raised to Python users (``Map``), it says what failed, as attributes and in its message:
    ``cmd`` (the command's name), ``fd``, ``map_name``, ``map_type`` (names) and ``key``,
    each None when unknown. Inside the emulator, where errors are many and become -errno at
    the syscall boundary, it is made without them (``BpfError(errno.E2BIG)``), at no cost."""

    # Class attributes: an error made without context pays nothing for them.
    cmd = fd = map_name = map_type = key = None

    def __init__(self, err: int, message: str | None = None):
        # A missed lookup raises one of these inside every call that misses: the message is
        # looked up, not formatted, and OSError's own __init__ is called directly (no super()).
        if message is None:
            message = _MESSAGES.get(err) or _message(err)
        _oserror_init(self, err, message)

    @classmethod
    def with_context(cls, err: int, message: str | None = None, *, cmd=None, fd=None,
                     map_name=None, map_type=None, key=None) -> "BpfError":
        """The error for a user: ``[Errno 7] Argument list too long (E2BIG):
        BPF_MAP_UPDATE_ELEM on fd 3 (BPF_MAP_TYPE_HASH 'flows'), key 7``."""
        base = message or ("Operation not supported" if err == ENOTSUPP else os.strerror(err))
        base += f" ({errno_name(err)})"
        where = [str(cmd)] if cmd is not None else []
        if fd is not None:
            where.append(f"on fd {fd}")
        what = " ".join(x for x in (map_type, repr(map_name) if map_name else None) if x)
        if what:
            where.append(f"({what})")
        text = " ".join(where)
        if key is not None:
            text = f"{text}, key {key!r}" if text else f"key {key!r}"
        e = cls(err, f"{base}: {text}" if text else base)
        e.cmd, e.fd, e.map_name, e.map_type, e.key = cmd, fd, map_name, map_type, key
        return e

    def __repr__(self) -> str:
        return f"BpfError({errno_name(self.errno)})"


class EmulatorFault(RuntimeWarning):
    """Warned when the emulator itself failed inside a call (a bug, or Python out of
    memory): the call returned an errno the kernel could give, and the warning carries the
    traceback of what really happened."""
