"""Emulated file descriptors and map ids.

Every emulated fd is a real fd: a memfd named "bpf-map" (bpftool checks readlink() for that
name, and a real open file description keeps the number from colliding with any file the
process opens). The OS therefore hands out the lowest free number, as the kernel does for a
real map fd, and sets FD_CLOEXEC (MFD_CLOEXEC), as bpf_map_new_fd does with O_CLOEXEC.

An open file description carries the access mode (the kernel's f_mode), so the mode lives
on the description, shared by dup()s of the fd, found again by the memfd's inode.
"""
import errno
import os
import stat

from .errors import BpfError

FMODE_READ = 1    # f_mode bits as in the kernel (FMODE_CAN_READ / FMODE_CAN_WRITE)
FMODE_WRITE = 2
FMODE_RDWR = FMODE_READ | FMODE_WRITE

INT_MAX = 0x7FFFFFFF


class OpenFile:
    """One open file description of a bpf object: the object and its access mode."""
    __slots__ = ("obj", "mode", "ino", "fds", "__weakref__")

    def __init__(self, obj, mode: int, ino: int):
        self.obj = obj
        self.mode = mode
        self.ino = ino
        self.fds: set[int] = set()


class FdTable:
    """The fds of emulated bpf objects (maps today) in this process."""

    def __init__(self):
        self.files: dict[int, OpenFile] = {}       # fd -> open file description
        self._by_ino: dict[int, OpenFile] = {}     # memfd inode -> description (finds dup()ed fds)

    def install(self, obj, mode: int, name: str = "bpf-map") -> int:
        """anon_inode_getfd(): a new lowest-free, close-on-exec fd for obj. EMFILE when full."""
        try:
            fd = os.memfd_create(name, os.MFD_CLOEXEC)
        except OSError as e:
            raise BpfError(e.errno) from None
        st = os.fstat(fd)
        os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
        f = OpenFile(obj, mode, st.st_ino)
        f.fds.add(fd)
        self.files[fd] = f
        self._by_ino[st.st_ino] = f
        return fd

    def lookup(self, ufd: int) -> OpenFile:
        """fdget() for a bpf object. EBADF when the fd is not open; EINVAL when it is open
        but is not an emulated bpf object."""
        f = self.files.get(ufd)
        if f is not None:
            return f
        return self._lookup_slow(ufd)

    def _lookup_slow(self, ufd: int) -> OpenFile:
        fd = ufd - (1 << 32) if ufd > INT_MAX else ufd   # the u32 field is an int in the kernel
        if fd < 0:
            raise BpfError(errno.EBADF)
        try:
            st = os.fstat(fd)
        except OSError:
            raise BpfError(errno.EBADF) from None
        f = self._by_ino.get(st.st_ino)
        if f is None or not stat.S_ISREG(st.st_mode):
            raise BpfError(errno.EINVAL)
        # A dup() of one of ours (dup, fcntl F_DUPFD, or an fd passed back to us).
        f.fds.add(fd)
        self.files[fd] = f
        return f

    def is_open(self, fd: int) -> bool:
        try:
            os.fstat(fd)
            return True
        except (OSError, OverflowError):
            return False

    def close(self, fd: int) -> OpenFile | None:
        """close(2): returns the description if this was its last known fd, else None.
        Raises BpfError(EBADF) when fd is not open."""
        f = self.files.pop(fd, None)
        try:
            os.close(fd)
        except OSError as e:
            raise BpfError(e.errno) from None
        if f is None:
            return None
        f.fds.discard(fd)
        if f.fds:
            return None
        self._by_ino.pop(f.ino, None)
        return f


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
