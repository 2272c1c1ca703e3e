"""A failure of the emulator itself (anything but a BpfError) turned into an errno the kernel
could give, and reported: the entry (syscall.py), the decoded calls (fastpath.py) and
Emulator.bpf_as all answer through here. A module of its own, so that the decoded calls
need not import the entry (which imports the command handlers, which import them)."""
import errno
import warnings

from .errors import EmulatorFault
from .undo import undo_call

_ENOMEM = errno.ENOMEM
_EFAULT = errno.EFAULT


def our_failure(cmd: int, exc: Exception) -> int:
    """The one place where a failure of the emulator itself (anything but a BpfError)
    becomes an errno: ENOMEM for Python running out of memory, as the kernel's allocators
    answer; EFAULT for anything else (a bug of ours), an errno every command can give since
    every one copies its attr from the caller. Never silent: an EmulatorFault warning
    carries the traceback. The caller has rolled the call back."""
    # DEVIATION(memory): keys and index entries are made on insert, so even a preallocated
    # map, which never fails an update for memory in Linux, can get ENOMEM here (the call
    # is rolled back first).
    err = _ENOMEM if isinstance(exc, MemoryError) else _EFAULT
    try:
        import traceback                        # here: only a failure needs it (start-up)
        warnings.warn(EmulatorFault(
            f"bpf({cmd}) failed inside the emulator; answered -{errno.errorcode[err]}:\n"
            + "".join(traceback.format_exception(exc))), stacklevel=3)
    except MemoryError:
        pass                                    # no memory left even to say so
    return -err


def our_failure_undone(emu, cmd: int, exc: Exception) -> int:
    """our_failure() of a call that is rolled back first (bpfemu/undo.py). Out of memory
    even for that, the rollback is left to the next call (its MARK is still there)."""
    try:
        undo_call(emu)
    except MemoryError:
        pass
    return our_failure(cmd, exc)
