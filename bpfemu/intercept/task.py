"""The calling task of a served call: the notified thread of a supervised process.

The emulator serves a call on behalf of ``current`` (Emulator.bpf_as): its memory, its fd
table and the CPU it runs on. Here that is the thread whose tid the notification names:
- memory: process_vm_readv/writev on the tid (ProcessMemory), which honour page protections
  as copy_from_user/copy_to_user do (a write into a read-only page is EFAULT, where a write
  through /proc/<tid>/mem would be forced). Every read is followed by NOTIF_ID_VALID before
  its bytes are used (and so every write comes after one): the tid names the caller only
  while the caller waits for our reply. Once it is gone the tid may name a newcomer, or,
  when another thread of its process exec'd, the new image (de_thread() hands the leader's
  tid to the exec'ing thread, and a map fd with FD_CLOEXEC cleared is still open there:
  tests/intercept/test_exec_race.py); nothing read then is used or written anywhere.
- fds: numbers in the thread's own table, resolved through /proc/<tid>/fd (files.py).
- CPU: the thread's CPU at the call (field 39 of /proc/<tid>/stat), read only when a call
  needs it (LRU maps, a program-side per-CPU access), as smp_processor_id() would give it.

One object serves every notification (its tid and id are switched per call), so a tree of
a thousand short-lived processes costs nothing per process here.
"""
import errno
import fcntl
import struct

from ..errors import BpfError
from ..memory import ProcessMemory
from . import seccomp

_ioctl = fcntl.ioctl
_pack_id = struct.Struct("<Q").pack_into
_NOTIF_ID_VALID = seccomp.NOTIF_ID_VALID
_PROCESSOR_FIELD = 39          # proc(5): "processor", the CPU the task last ran on


class CallerMemory(ProcessMemory):
    """The memory of the task being served (ProcessMemory on its tid, switched per call)."""

    def __init__(self, caller):
        super().__init__(0)
        self.caller = caller
        self.attr_copy = None           # the first read of the call: its attr (decoded.py)

    def read(self, addr: int, n: int) -> bytes:
        data = super().read(addr, n)
        self.caller.check_read()
        if self.attr_copy is None:
            self.attr_copy = data
        return data

    def read2(self, addr1: int, n1: int, addr2: int, n2: int) -> tuple[bytes, bytes]:
        data = super().read2(addr1, n1, addr2, n2)
        self.caller.check_read()
        return data

    def write(self, addr: int, data) -> None:
        self.caller.check_alive()
        super().write(addr, data)


class Caller:
    """``current`` for a call from a supervised thread: mem, fds, proc, current_cpu()."""

    def __init__(self, listener: int, files):
        self.listener = listener
        self.tid = 0
        self.notif_id = 0
        self.checked = False
        self._id_buf = bytearray(8)     # NOTIF_ID_VALID's argument (see seccomp.id_valid)
        self.mem = CallerMemory(self)
        self.fds = files.task_view(0)
        self.decodable = None           # what the last call's handler left (Emulator.bpf_as)

    def switch(self, tid: int, notif_id: int) -> None:
        self.tid = self.mem.pid = self.fds.tid = tid
        self.notif_id = notif_id
        self.checked = False
        self.mem.attr_copy = self.fds.last_file = None

    @property
    def proc(self) -> str:
        """The task's /proc directory (for paths relative to its cwd)."""
        return f"/proc/{self.tid}"

    def id_valid(self) -> bool:
        """NOTIF_ID_VALID: the caller still waits for this call's reply, so what was read
        from its tid before now was its own."""
        buf = self._id_buf
        _pack_id(buf, 0, self.notif_id)
        try:
            _ioctl(self.listener, _NOTIF_ID_VALID, buf, True)
        except OSError:
            # Gone for good (an id never becomes valid again): a write after a failed read
            # whose ESRCH some copy swallowed (a batch's copy-out) must check again and fail,
            # not trust an earlier check.
            self.checked = False
            return False
        self.checked = True
        return True

    def check_read(self) -> None:
        """After each read of the caller's memory: ESRCH (no reply will land) if it is gone."""
        if not self.id_valid():
            raise BpfError(errno.ESRCH)

    def check_alive(self) -> None:
        """Before a write: NOTIF_ID_VALID, unless one was made since the call's reads."""
        if not self.checked and not self.id_valid():
            raise BpfError(errno.ESRCH)     # the caller is gone: no reply will land

    def current_cpu(self) -> int:
        stat = self.fds.table.task_stat(self.tid)
        try:
            # Counted from the end: the fields after "processor" are fewer than those before
            # it, and the command name (which may hold spaces and parentheses) is not reached.
            return int(stat.rsplit(None, _fields_after_processor(stat) + 1)[1])
        except (ValueError, IndexError):
            return 0


_FIELDS_AFTER = []


def _fields_after_processor(stat: bytes) -> int:
    """How many fields of /proc/<tid>/stat follow "processor" (13 on Linux 6.18: up to
    exit_code, field 52), counted once from a whole line."""
    if not _FIELDS_AFTER:
        # The fields after the command name, which may itself hold spaces and parentheses.
        n = len(stat[stat.rindex(b")") + 2:].split()) - (_PROCESSOR_FIELD - 2)
        if n < 0:
            raise ValueError("short /proc/<tid>/stat")
        _FIELDS_AFTER.append(n)
    return _FIELDS_AFTER[0]
