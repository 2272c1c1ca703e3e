"""Emulated file descriptors and map ids.

Every emulated fd is a real fd: a memfd named "bpf-map" (bpftool checks readlink() for that
name, and a real open file description keeps the number from colliding with any file the
process opens). The OS therefore hands out the lowest free number, as the kernel does for a
real map fd, and sets FD_CLOEXEC (MFD_CLOEXEC), as bpf_map_new_fd does with O_CLOEXEC. A
read-only or write-only fd is the memfd reopened with that access mode, so F_GETFL shows
O_RDONLY / O_WRONLY as for a real map fd.

An open file description carries the access mode (the kernel's f_mode), so the mode lives
on the description, shared by dup()s of the fd, found again by the memfd's (st_dev, st_ino).

A dup() of an emulated fd keeps the map alive after the original is closed, as in the
kernel, where only the last fput() of the file releases the map. The emulator cannot see
dup() or a close() that bypasses it, so it watches each memfd inode with inotify: the inode
dies, and IN_IGNORED arrives, exactly when the last fd of its description is closed.
"""
import ctypes
import errno
import fcntl
import os
import stat
import struct
import threading
import weakref
from sys import _getframe, gettrace as _gettrace

from .errors import BpfError
from .undo import NO_JOURNAL, close_new_fds

FMODE_READ = 1    # f_mode bits as in the kernel (FMODE_CAN_READ / FMODE_CAN_WRITE)
FMODE_WRITE = 2
FMODE_RDWR = FMODE_READ | FMODE_WRITE

INT_MAX = 0x7FFFFFFF

_ACCMODE = {FMODE_READ: os.O_RDONLY, FMODE_WRITE: os.O_WRONLY}
_IN_IGNORED = 0x8000        # the watch went away with its inode
_IN_Q_OVERFLOW = 0x4000
_IN_EVENT = struct.Struct("iIII")


def inotify_events(data: bytes):
    """(wd, mask) of each struct inotify_event in what one read() of an inotify fd gave."""
    off = 0
    while off < len(data):
        wd, mask, _cookie, ln = _IN_EVENT.unpack_from(data, off)
        off += _IN_EVENT.size + ln
        yield wd, mask
_libc = ctypes.CDLL(None, use_errno=True)


class _InodeWatcher:
    """One inotify instance per process, shared by every FdTable: IN_IGNORED for a watched
    memfd inode means its last fd was closed. A forked child starts a new instance (it must
    not eat its parent's events); watches from before a fork, or from an instance that was
    closed behind our back, belong to an old generation and are no longer trusted."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pid = None
        self.fd = -1
        self.gen = 0
        self.owners: dict[int, weakref.ref] = {}     # wd -> FdTable

    def _ensure(self) -> int:
        if self.pid != os.getpid():
            if self.pid is not None and self.fd >= 0:
                try:
                    os.close(self.fd)        # the parent's instance, inherited by fork()
                except OSError:
                    pass
            self.pid = os.getpid()
            self.fd = self._init()
            self.gen += 1
            self.owners.clear()
        return self.fd

    @staticmethod
    def _init() -> int:
        """The inotify fd, moved near the top of the fd range so that it does not take a
        low number the process expects from its next open() (map fds are lowest-free numbers
        in the kernel, and a hidden fd of ours must not shift them). -1 if unavailable."""
        ifd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if ifd < 0:
            return -1
        try:
            import resource
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            high = fcntl.fcntl(ifd, fcntl.F_DUPFD_CLOEXEC, max(ifd, min(soft, 1 << 20) - 64))
        except (OSError, ValueError):
            return ifd
        os.close(ifd)
        return high

    def add(self, table, fd: int):
        """(generation, wd) of a new watch on fd's inode, or None."""
        if _gettrace() is not None:
            _getframe().f_trace = None      # the lock's release must not be skipped: undo.py
        with self.lock:
            ifd = self._ensure()
            if ifd < 0:
                return None
            wd = _libc.inotify_add_watch(ifd, b"/proc/self/fd/%d" % fd, _IN_IGNORED)
            if wd < 0:
                return None
            self.owners[wd] = weakref.ref(table)
            return self.gen, wd

    def poll(self) -> None:
        """Hand every pending IN_IGNORED to the table that owns the watch."""
        if _gettrace() is not None:
            _getframe().f_trace = None      # the lock's release must not be skipped: undo.py
        with self.lock:
            if self.pid != os.getpid() or self.fd < 0:
                return
            while True:
                try:
                    data = os.read(self.fd, 65536)
                except BlockingIOError:
                    return
                except OSError:
                    # Our fd was closed or replaced behind our back: start a new generation.
                    self.pid = None
                    self.fd = -1
                    return
                for wd, mask in inotify_events(data):
                    if mask & _IN_Q_OVERFLOW:
                        for ref in self.owners.values():
                            table = ref()
                            if table is not None:
                                table._overflowed = True
                    elif mask & _IN_IGNORED:
                        ref = self.owners.pop(wd, None)
                        table = ref() if ref is not None else None
                        if table is not None:
                            table._dead_wds.append(wd)
                if len(data) < 32768:        # drained: spare the read that would say EAGAIN
                    return

    def current(self, gen: int) -> bool:
        return gen == self.gen and self.pid == os.getpid() and self.fd >= 0


_WATCHER = _InodeWatcher()
# Fds the emulator keeps open on a map's memfd for itself (maps/array_mmap.py): not fds of
# the map, so scans for dup()s skip them.
HIDDEN_FDS: set = set()


MAP_KIND = "bpf-map"      # the anon inode's name: what kind of bpf object an fd holds
BTF_KIND = "btf"
PROG_KIND = "bpf-prog"


def _after_fork_in_child() -> None:
    # A thread of the parent may have held the lock at the fork; the child's watcher starts
    # a new inotify instance on its first use anyway (_ensure).
    _WATCHER.lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


# fstat() of the fd every checked element call looks up, with the GIL held (PyDLL): os.fstat
# lets go of it under the emulator's lock, and every call of threads that share an emulator
# then paid a GIL hand-over and a waiter's wake-up (README "Threads"). It never blocks on a
# memfd; struct stat (x86_64, aarch64) starts with st_dev, st_ino.
_fstatat = ctypes.PyDLL(None).fstatat
_AT_EMPTY_PATH = 0x1000
_dev_ino = struct.Struct("=QQ").unpack_from


def _fstat_dev_ino(fd: int):
    """(st_dev, st_ino) of the file open under fd, or None if fd is not open."""
    if not 0 <= fd <= INT_MAX:
        return None
    buf = ctypes.create_string_buffer(256)      # struct stat: 144 bytes on x86_64
    if _fstatat(fd, b"", buf, _AT_EMPTY_PATH) != 0:
        return None
    return _dev_ino(buf)


class OpenFile:
    """One open file description of a bpf object: the object, its kind (the anon inode's
    name: bpf-map, btf, bpf-prog) and its access mode."""
    __slots__ = ("obj", "kind", "mode", "key", "watch", "fds", "__weakref__")

    def __init__(self, obj, mode: int, key: tuple, watch, kind: str = MAP_KIND):
        self.obj = obj
        self.kind = kind
        self.mode = mode
        self.key = key              # (st_dev, st_ino) of the memfd
        self.watch = watch          # (generation, wd) of the inotify watch on it, or None
        self.fds: set[int] = set()  # the fds of it that we know of


class FdTable:
    """The fds of emulated bpf objects in this process. Map fds, which element commands look
    up on every call, are in `files`; BTF and program fds in `others`."""

    def __init__(self):
        self.files: dict[int, OpenFile] = {}       # map fd -> open file description
        self.others: dict[int, OpenFile] = {}      # fd of any other kind -> description
        self._by_key: dict[tuple, OpenFile] = {}   # memfd (dev, ino) -> description (finds dup()s)
        self._by_wd: dict[int, OpenFile] = {}      # watched descriptions of the current generation
        self._dead_wds: list[int] = []             # filled by _WATCHER.poll()
        self._orphans: list = []                   # released by install(), handed out by reap()
        self._overflowed = False
        self.on_stale = None        # called when lookup() finds an fd closed behind our back
        self.undo = NO_JOURNAL      # the emulator's undo journal (an fd made is closed)

    def install(self, obj, mode: int, name: str = MAP_KIND) -> int:
        """anon_inode_getfd(): a new lowest-free, close-on-exec fd for obj, the memfd named
        as the kernel names the anon inode (bpf-map, btf, bpf-prog). EMFILE when full."""
        # Journaled before it is made, and made and recorded in one C call (list.extend of a
        # map() runs no bytecode in between, so no exception lands there): a rolled-back
        # call leaves no fd open. Sealable: a frozen BPF_F_MMAPABLE array seals its memfd
        # (maps/array_mmap.py).
        made: list = []
        self.undo.append((close_new_fds, made))
        try:
            made.extend(map(os.memfd_create, (name,), (os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING,)))
        except OSError as e:
            raise BpfError(e.errno) from None
        fd = made[0]
        os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
        if mode != FMODE_RDWR:
            self._reopen(fd, _ACCMODE[mode])
        self._forget_stale(fd)
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        f = OpenFile(obj, mode, key, _WATCHER.add(self, fd), name)
        f.fds.add(fd)
        self._table(f)[fd] = f
        self._by_key[key] = f
        if f.watch is not None:
            self._by_wd[f.watch[1]] = f
        return fd

    @staticmethod
    def _reopen(fd: int, flags: int) -> None:
        """Give fd (same number, same inode) a description with this access mode."""
        try:
            nfd = os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC)
        except OSError:
            # DEVIATION(fd-mode): without a free second fd (or /proc) the fd stays O_RDWR for
            # F_GETFL; the emulated access checks still use the requested mode.
            return
        os.dup2(nfd, fd, inheritable=False)
        os.close(nfd)

    def _forget_stale(self, fd: int) -> None:
        """The OS just handed out fd, so whatever we had under that number was closed behind
        our back: drop it (in either table, where it would shadow the new object), and if
        that was its description's last fd, release the description at the next reap()."""
        for table in (self.files, self.others):
            stale = table.pop(fd, None)
            if stale is None:
                continue
            if self.on_stale is not None:
                # A decoded call kept for the old object must not serve the new one (an
                # attr repeated byte for byte now names another map).
                self.on_stale()
            stale.fds.discard(fd)
            if not stale.fds and stale.watch is None and stale.key in self._by_key \
                    and not self._scan_for_dups(stale):
                self._release(stale)
                self._orphans.append(stale)

    def _table(self, f: OpenFile) -> dict:
        return self.files if f.kind == MAP_KIND else self.others

    def lookup(self, ufd: int) -> OpenFile:
        """fdget() of a map fd (__bpf_map_get). EBADF when the fd is not open; EINVAL when it
        is open but is not an emulated map.

        A known fd is checked to be still the memfd it was (one fstat), so an fd closed
        behind our back (os.close() rather than Emulator.close()) is EBADF at once, and one
        that another file took since is that file: EINVAL, or a map if it is a dup of one."""
        # DEVIATION(fd-close): a decoded call (a raw bpf() loop on the same attr object,
        # fastpath.py) does not look its fd up, so after os.close() it still reaches the old
        # map until the emulator next forgets its decoded calls (any Emulator.close(), a
        # checked call that finds an fd gone, a new object at that number: _forget_stale,
        # a freeze, a pin change); Linux says EBADF at once. An fstat there would cost more than the decoded call itself.
        f = self._still_open(self.files, ufd)
        if f is not None:
            return f
        f = self._lookup_slow(ufd)
        if f.kind != MAP_KIND:
            raise BpfError(errno.EINVAL)
        return f

    def lookup_any(self, ufd: int) -> OpenFile:
        """fdget() of a bpf object of any kind (the caller checks f.kind, as the kernel
        checks f_op). EBADF when the fd is not open, EINVAL when it is no bpf object."""
        f = self._still_open(self.files, ufd) or self._still_open(self.others, ufd)
        if f is not None:
            return f
        return self._lookup_slow(ufd)

    def _still_open(self, table: dict, ufd: int):
        """table's description under ufd if that fd still holds its memfd, else None (and
        the stale entry dropped)."""
        f = table.get(ufd)
        if f is None:
            return None
        if _fstat_dev_ino(ufd) == f.key:
            return f
        self._drop_stale(table, ufd, f)
        return None

    def _drop_stale(self, table: dict, fd: int, f: OpenFile) -> None:
        """fd no longer holds f's memfd (closed, or reused by another file): forget it, and
        every decoded call with it (on_stale). The object itself goes when its memfd dies
        (reap())."""
        if table.get(fd) is f:
            del table[fd]
        f.fds.discard(fd)
        if self.on_stale is not None:
            self.on_stale()

    def _lookup_slow(self, ufd: int) -> OpenFile:
        fd = ufd - (1 << 32) if ufd > INT_MAX else ufd   # the u32 field is an int in the kernel
        if fd < 0:
            raise BpfError(errno.EBADF)
        try:
            st = os.fstat(fd)
        except OSError:
            raise BpfError(errno.EBADF) from None
        f = self._by_key.get((st.st_dev, st.st_ino))
        if f is None or not stat.S_ISREG(st.st_mode):
            raise BpfError(errno.EINVAL)
        # A dup() of one of ours (dup, fcntl F_DUPFD, or an fd passed back to us).
        f.fds.add(fd)
        self._table(f)[fd] = f
        return f

    def unwatch(self, fd: int) -> None:
        """fd's memfd outlives its fds (the emulator maps it): its inode's end says nothing
        about the fds, so its last close is found by close() and by scans instead."""
        f = self.files.get(fd) or self.others.get(fd)
        if f is not None and f.watch is not None:
            self._by_wd.pop(f.watch[1], None)
            f.watch = None

    def is_open(self, fd: int) -> bool:
        try:
            os.fstat(fd)
            return True
        except (OSError, OverflowError):
            return False

    def close(self, fd: int) -> list:
        """close(2). Returns the descriptions released by it: the closed fd's when that was
        its last fd, and any whose last dup() was closed behind our back since the last
        call. Raises BpfError(EBADF) when fd is not open."""
        f = self.files.pop(fd, None) or self.others.pop(fd, None)
        if f is None:
            try:                                    # maybe a dup() we have not seen yet
                st = os.fstat(fd)
                f = self._by_key.get((st.st_dev, st.st_ino))
            except OSError:
                pass
        try:
            os.close(fd)
        except OSError as e:
            raise BpfError(e.errno) from None
        released = self.reap()
        if f is not None and f.key in self._by_key:
            f.fds.discard(fd)
            if f.watch is None and not f.fds and not self._scan_for_dups(f):
                self._release(f)
                released.append(f)
        return released

    def reap(self) -> list:
        """Descriptions whose last fd has been closed (seen through their watches)."""
        _WATCHER.poll()
        out = self._orphans
        self._orphans = []
        if self._dead_wds:
            for wd in self._dead_wds:
                f = self._by_wd.get(wd)
                if f is not None:
                    self._release(f)
                    out.append(f)
            self._dead_wds.clear()
        if self._by_wd:
            gen = next(iter(self._by_wd.values())).watch[0]
            if not _WATCHER.current(gen):
                # After fork() or a lost inotify fd these watches say nothing any more.
                for f in self._by_wd.values():
                    f.watch = None
                self._by_wd.clear()
        if self._overflowed:
            self._overflowed = False
            out.extend(self._reap_by_scan())
        return out

    def _reap_by_scan(self) -> list:
        """After an inotify queue overflow: release every description with no fd left."""
        live = {key for _, key in self._open_fds()}
        out = [f for f in list(self._by_key.values()) if f.key not in live]
        for f in out:
            self._release(f)
        return out

    def _scan_for_dups(self, f: OpenFile) -> bool:
        """Without a watch: adopt any fd still open on f's memfd; True if there was one."""
        found = [fd for fd, key in self._open_fds() if key == f.key]
        for fd in found:
            f.fds.add(fd)
            self._table(f)[fd] = f
        return bool(found)

    @staticmethod
    def _open_fds():
        for name in os.listdir("/proc/self/fd"):
            if int(name) in HIDDEN_FDS:
                continue
            try:
                st = os.fstat(int(name))
            except OSError:
                continue
            yield int(name), (st.st_dev, st.st_ino)

    def _release(self, f: OpenFile) -> None:
        self._by_key.pop(f.key, None)
        if f.watch is not None:
            self._by_wd.pop(f.watch[1], None)
        table = self._table(f)
        for fd in f.fds:
            if table.get(fd) is f:
                del table[fd]
        f.fds.clear()


class IdrCyclic:
    """idr_alloc_cyclic(..., 1, INT_MAX): ids go up from the last one handed out, wrap to 1,
    and skip ids still in use; freed ids are not reused until the counter wraps."""

    def __init__(self, start: int = 1, end: int = INT_MAX):
        self.start, self.end = start, end
        self.next = start
        self.objs: dict[int, object] = {}

    def alloc(self, obj) -> int:
        span = self.end - self.start
        i = self.next
        for _ in range(span):
            if i >= self.end:
                i = self.start
            if i not in self.objs:
                self.objs[i] = obj
                self.next = i + 1
                return i
            i += 1
        raise BpfError(errno.ENOSPC)

    def remove(self, i: int) -> None:
        self.objs.pop(i, None)

    def get_next(self, start_id: int):
        """Smallest live id > start_id, or None (idr_get_next from start_id + 1)."""
        candidates = [i for i in self.objs if i > start_id]
        return min(candidates) if candidates else None
