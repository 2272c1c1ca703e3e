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
# EBADFD is in errno but named here for readers of syscall_layer.md §2.3.
EBADFD = _errno.EBADFD

_EXTRA_NAMES = {ENOTSUPP: "ENOTSUPP"}


def errno_name(err: int) -> str:
    """Symbolic name of an errno value ("ENOENT"), including the kernel-only ENOTSUPP."""
    return _EXTRA_NAMES.get(err) or _errno.errorcode.get(err, str(err))


class BpfError(OSError):
    """An errno the emulated kernel returns. ``BpfError(errno.ENOENT).errno == 2``."""

    def __init__(self, err: int, message: str | None = None):
        if message is None:
            message = "Operation not supported" if err == ENOTSUPP else os.strerror(err)
        super().__init__(err, message)

    def __repr__(self) -> str:
        return f"BpfError({errno_name(self.errno)})"


class EmulatorFault(RuntimeWarning):
    """Warned when the emulator itself failed inside a call (a bug, or Python out of
    memory): the call returned an errno the kernel could give, and the warning carries the
    traceback of what really happened."""
