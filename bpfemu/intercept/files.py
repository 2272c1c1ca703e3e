"""The open files of emulated maps that supervised processes hold, found by inode.

A map fd in a supervised process is a memfd (named "bpf-map", so that readlink() of it
contains what bpftool looks for) that the supervisor made and installed in the caller with
NOTIF_ADDFD. The supervisor keeps no fd of it: every process of the tree may dup() it, pass
it over a socket, fork, close it and reuse the number, exactly as with a real map fd, and
the map is found from a caller's fd number by the inode behind /proc/<tid>/fd/<n>. One
memfd (one inode) per open file, so an inode names one open file and its access mode.

Close tracking: the memfd's own open file sends no fsnotify events, but a second open file
of it, made by opening /proc/self/fd/<memfd>, does. That second one is what the caller gets;
the supervisor closes both of its own, and inotify reports IN_CLOSE_* when the last
reference anywhere goes (the kernel's last fput() of the file), then IN_IGNORED as the
inode dies. Either releases the open file and drops its map reference. See docs/seccomp.md.
"""
import ctypes
import errno
import os
import stat
import struct
import types

from ..errors import BpfError
from ..fdtable import FMODE_RDWR, FMODE_READ, FMODE_WRITE, INT_MAX, MAP_KIND, OpenFile

_IN_CLOSE_WRITE, _IN_CLOSE_NOWRITE, _IN_IGNORED, _IN_Q_OVERFLOW = 0x8, 0x10, 0x8000, 0x4000
_IN_EVENT = struct.Struct("iIII")
_ACCMODE = {FMODE_READ: os.O_RDONLY, FMODE_WRITE: os.O_WRONLY, FMODE_RDWR: os.O_RDWR}
_libc = ctypes.CDLL(None, use_errno=True)

# No fd number is ever cached: every one is looked up in the caller's own table.
_NO_FILES = types.MappingProxyType({})
# Directories /proc/<tid>/fd and files /proc/<tid>/stat kept open, for the tasks that called
# last (see _stat_fd, task_stat), and files /proc/<tid>/fdinfo/<n> (keep_fdinfo).
FD_DIRS_MAX = 8
FDINFO_MAX = 16
_FD_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


def _memfd_fdinfo_mount():
    """(st_dev, mount id) of the mount every memfd is on, as /proc/<pid>/fdinfo/<n> shows
    it ("mnt_id:"), or None if fdinfo shows no "ino:" line (before Linux 5.14)."""
    fd = os.memfd_create("bpf-map-probe", os.MFD_CLOEXEC)
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
            text = f.read()
        st = os.fstat(fd)
    finally:
        os.close(fd)
    fields = dict(line.split(b":\t", 1) for line in text.splitlines() if b":\t" in line)
    if fields.get(b"ino") != str(st.st_ino).encode() or b"mnt_id" not in fields:
        return None
    return st.st_dev, int(fields[b"mnt_id"])


_MEMFD_MOUNT = []


def fdinfo_identity(key: tuple) -> bytes | None:
    """What /proc/<tid>/fdinfo/<n> shows, from its "mnt_id:" line through its "ino:" line,
    for an fd open on the memfd inode ``key`` (st_dev, st_ino); None where fdinfo cannot tell
    (another filesystem, or no "ino:" line). A mount id names one live mount (the memfds'
    one lives for ever) and an inode number one inode of its filesystem, so the pair names
    the inode as (st_dev, st_ino) does."""
    if not _MEMFD_MOUNT:
        _MEMFD_MOUNT.append(_memfd_fdinfo_mount())
    mount = _MEMFD_MOUNT[0]
    if mount is None or key[0] != mount[0]:
        return None
    return b"\nmnt_id:\t%d\nino:\t%d\n" % (mount[1], key[1])


class SupervisedFiles:
    """Every open file of an emulated bpf object held in the supervised tree."""

    def __init__(self):
        self._by_key: dict[tuple, OpenFile] = {}   # (st_dev, st_ino) -> open file
        self._by_wd: dict[int, OpenFile] = {}
        ifd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if ifd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.inotify_fd = ifd
        # The open file made by the call being served, waiting for NOTIF_ADDFD: (fd, file).
        self.pending = None
        # tid -> fd of its /proc/<tid>/fd, kept open (see _stat_fd); decoded calls look
        # their fd up through it too (decoded.py)
        self.fd_dirs: dict[int, int] = {}
        self._stat_fds: dict[int, int] = {}         # tid -> fd of its /proc/<tid>/stat
        # (tid, fd number as bytes) -> fd of /proc/<tid>/fdinfo/<n> (decoded.py); the count
        # of times any of them was closed, so that a decoded call may keep the one it uses.
        self.fdinfo_files: dict[tuple, int] = {}
        self.fdinfo_closes = 0

    def task_view(self, tid: int) -> "TaskFiles":
        return TaskFiles(self, tid)

    def __len__(self) -> int:
        return len(self._by_key)

    # --- installing -----------------------------------------------------------------------

    def install(self, obj, mode: int, name: str = MAP_KIND) -> int:
        # DEVIATION(intercept-fd): the caller's map fd is a memfd: readlink shows
        # "/memfd:bpf-map (deleted)" (anon_inode:bpf-map on Linux), fstat shows S_IFREG|0600
        # (0600 without type bits), and /proc/<pid>/fdinfo/<n> has a memfd's lines, not the
        # map's (map_type, memlock, frozen...). Emulating fdinfo would mean serving open().
        """Make the open file of a new fd (bpf_map_new_fd's anon_inode_getfd): a memfd, and
        a second open file of it with the access mode, watched. ``name`` is the anon inode's
        name for the object's kind (bpf-map, btf, bpf-prog), which readlink() shows. Returns the supervisor's fd of
        that open file, left pending: the supervisor installs it in the caller with
        NOTIF_ADDFD + SEND, which answers the call with the caller's fd number."""
        try:
            # Sealable: a frozen BPF_F_MMAPABLE array seals its memfd (maps/array_mmap.py).
            memfd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        except OSError as e:
            raise BpfError(e.errno) from None
        try:
            os.fchmod(memfd, stat.S_IRUSR | stat.S_IWUSR)
            fd = os.open(f"/proc/self/fd/{memfd}", _ACCMODE[mode] | os.O_CLOEXEC)
        except OSError as e:
            raise BpfError(e.errno) from None
        finally:
            os.close(memfd)
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        wd = _libc.inotify_add_watch(self.inotify_fd, f"/proc/self/fd/{fd}".encode(),
                                     _IN_CLOSE_WRITE | _IN_CLOSE_NOWRITE)
        if wd < 0:
            e = ctypes.get_errno()
            os.close(fd)
            raise BpfError(e or errno.ENOMEM)
        f = OpenFile(obj, mode, key, wd, name)
        self._by_key[key] = f
        self._by_wd[wd] = f
        self.pending = (fd, f)
        return fd

    def take_pending(self):
        """The (fd, open file) the call being served made, if any; no longer pending."""
        p, self.pending = self.pending, None
        return p

    def abandon(self, f: OpenFile) -> None:
        """The open file never reached the caller (ADDFD failed): forget it."""
        self._forget(f)

    # --- close tracking ------------------------------------------------------------------

    def reap(self) -> list:
        """Open files whose last reference is gone (inotify), forgotten here; the caller
        drops the map reference each held."""
        out = []
        while True:
            try:
                data = os.read(self.inotify_fd, 65536)
            except BlockingIOError:
                return out
            off = 0
            while off < len(data):
                wd, mask, _cookie, ln = _IN_EVENT.unpack_from(data, off)
                off += _IN_EVENT.size + ln
                if mask & _IN_Q_OVERFLOW:
                    out += self._reap_by_scan()
                    continue
                f = self._by_wd.get(wd)
                if f is not None and mask & (_IN_CLOSE_WRITE | _IN_CLOSE_NOWRITE | _IN_IGNORED):
                    self._forget(f)
                    out.append(f)

    def _forget(self, f: OpenFile) -> None:
        self._by_key.pop(f.key, None)
        if self._by_wd.pop(f.watch, None) is not None:
            _libc.inotify_rm_watch(self.inotify_fd, f.watch)

    def _reap_by_scan(self) -> list:
        """After an event queue overflow: every open file no supervised process holds."""
        live = set()
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                names = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for n in names:
                try:
                    st = os.stat(f"/proc/{pid}/fd/{n}")
                except OSError:
                    continue
                live.add((st.st_dev, st.st_ino))
        out = [f for key, f in list(self._by_key.items()) if key not in live]
        for f in out:
            self._forget(f)
        return out

    def close(self) -> list:
        """Stop tracking: every open file still known (their map references to drop)."""
        out = list(self._by_key.values())
        for f in out:
            self._forget(f)
        os.close(self.inotify_fd)
        self.inotify_fd = -1
        self._close_fd_dirs()
        return out

    # --- lookups --------------------------------------------------------------------------

    def lookup(self, tid: int, ufd: int) -> OpenFile:
        """fdget() of a map fd in the task's fd table (__bpf_map_get): EBADF when the fd is
        not open, EINVAL when it is not an emulated map."""
        f = self.lookup_any(tid, ufd)
        if f.kind != MAP_KIND:
            raise BpfError(errno.EINVAL)
        return f

    def lookup_any(self, tid: int, ufd: int) -> OpenFile:
        """fdget() of a bpf object of any kind (the caller checks f.kind, as the kernel checks
        f_op): EBADF when the fd is not open, EINVAL when it is no emulated bpf object."""
        fd = ufd - (1 << 32) if ufd > INT_MAX else ufd     # the u32 field is an int
        if fd < 0:
            raise BpfError(errno.EBADF)
        st = self._stat_fd(tid, fd)
        f = self._by_key.get((st.st_dev, st.st_ino))
        if f is None:
            raise BpfError(errno.EINVAL)
        return f

    def _stat_fd(self, tid: int, fd: int):
        """stat() of what the task's fd is open on; EBADF if it is not open.

        Through the task's /proc/<tid>/fd directory, kept open: one path component to walk
        instead of four. The directory is the task's, not the number's (a /proc inode holds
        the struct pid): once the task is gone it finds nothing, even if its tid is reused,
        so a failure through a kept directory is retried through a fresh one."""
        name = str(fd)
        d = self.fd_dirs.get(tid)
        if d is not None:
            try:
                return os.stat(name, dir_fd=d)
            except OSError:
                del self.fd_dirs[tid]
                os.close(d)
        try:
            d = os.open(f"/proc/{tid}/fd", _FD_DIR_FLAGS)
        except OSError:
            raise BpfError(errno.EBADF) from None
        if len(self.fd_dirs) >= FD_DIRS_MAX:
            self._close_fd_dirs()
        self.fd_dirs[tid] = d
        try:
            return os.stat(name, dir_fd=d)
        except OSError:
            raise BpfError(errno.EBADF) from None

    def _close_fd_dirs(self) -> None:
        self.fdinfo_closes += 1
        for kept in (self.fd_dirs, self._stat_fds, self.fdinfo_files):
            for fd in kept.values():
                os.close(fd)
            kept.clear()

    def keep_fdinfo(self, tid: int, name: bytes) -> int | None:
        """/proc/<tid>/fdinfo/<name>, opened and kept (None if it cannot be opened: the fd
        is not open, or the task is gone). Each read of it looks the fd up in the task's
        table again, and shows the open file there now (its inode in the "ino:" line); like
        a kept fd directory it is the task's, not the number's: once the task is gone its
        reads fail, even if the tid is reused. (Opening it checks our ptrace access, once.)"""
        try:
            fd = os.open(b"/proc/%d/fdinfo/%s" % (tid, name), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        kept = self.fdinfo_files
        if len(kept) >= FDINFO_MAX:
            self.fdinfo_closes += 1
            for old in kept.values():
                os.close(old)
            kept.clear()
        kept[(tid, name)] = fd
        return fd

    def drop_fdinfo(self, tid: int, name: bytes) -> None:
        """A kept fdinfo file whose read failed: closed (the next call opens a fresh one)."""
        fd = self.fdinfo_files.pop((tid, name), None)
        if fd is not None:
            self.fdinfo_closes += 1
            os.close(fd)

    def task_stat(self, tid: int) -> bytes:
        """/proc/<tid>/stat (b"" if the task is gone), read from offset 0 of a kept open
        file: one system call. Like a kept fd directory, the file is the task's, not the
        number's, so a failed or empty read is retried through a fresh one."""
        fd = self._stat_fds.get(tid)
        if fd is not None:
            try:
                data = os.pread(fd, 4096, 0)
                if data:
                    return data
            except OSError:
                pass
            del self._stat_fds[tid]
            os.close(fd)
        try:
            fd = os.open(f"/proc/{tid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return b""
        if len(self._stat_fds) >= FD_DIRS_MAX:
            self._close_fd_dirs()
        self._stat_fds[tid] = fd
        try:
            return os.pread(fd, 4096, 0)
        except OSError:
            return b""


class TaskFiles:
    """One task's fd table, as the emulator's current ``fds`` (the FdTable interface)."""
    __slots__ = ("table", "tid", "last_file")
    files = _NO_FILES

    def __init__(self, table: SupervisedFiles, tid: int):
        self.table = table
        self.tid = tid
        self.last_file = None           # the map file lookup() found last (decoded.py)

    def lookup(self, ufd: int) -> OpenFile:
        f = self.last_file = self.table.lookup(self.tid, ufd)
        return f

    def lookup_any(self, ufd: int) -> OpenFile:
        return self.table.lookup_any(self.tid, ufd)

    def install(self, obj, mode: int, name: str = MAP_KIND) -> int:
        return self.table.install(obj, mode, name)

    def unwatch(self, fd: int) -> None:
        """Nothing to do: the watch reports the closes of the caller's open file even while
        the emulator maps the memfd (a BPF_F_MMAPABLE array's values), through a file of its
        own that it closes only when the map is freed."""

    def is_open(self, fd: int) -> bool:
        if fd < 0 or fd > INT_MAX:
            return False
        return os.path.lexists(f"/proc/{self.tid}/fd/{fd}")

    def reap(self) -> list:
        return self.table.reap()

    def close(self, fd: int) -> list:
        raise BpfError(errno.EBADF)         # a supervised process closes its own fds
