"""BPF_F_MMAPABLE arrays: the values live in the map fd's memfd (array_map_mmap() of
kernel/bpf/arraymap.c), so mmap() of that fd, here or in a supervised child that got the
fd, reads and writes the same bytes as the bpf() commands.

The value area is round_up(max_entries * elem_size, PAGE_SIZE) bytes from offset 0, element
i at i * elem_size, as in Linux. The emulator keeps its own MAP_SHARED mapping of the memfd
(which keeps the memory alive while the map lives, pinned or not); the store below is a view
of it with the interface arraymap.py's functions use on `array.values`.

FREEZE: a writable shared mapping of the memfd in this process (read from /proc/self/maps,
our own mapping excepted) is EBUSY, as bpf_map_write_active() in Linux; freezing seals the
memfd with F_SEAL_FUTURE_WRITE, so a later mmap(PROT_WRITE, MAP_SHARED) fails with EPERM,
as Linux's bpf_map_mmap() does for a frozen map, while read-only mappings still work.
Facts: docs/mmap.md.
"""
import ctypes
import errno
import fcntl
import mmap
import os

from ..errors import BpfError
from ..fdtable import HIDDEN_FDS
from ..undo import NO_JOURNAL, restore_bytes

PAGE_SIZE = mmap.PAGESIZE
F_ADD_SEALS = getattr(fcntl, "F_ADD_SEALS", 1033)
F_SEAL_FUTURE_WRITE = getattr(fcntl, "F_SEAL_FUTURE_WRITE", 0x0010)
# libc's mmap, not Python's: mmap.mmap() keeps a dup() of the fd, which would take the
# lowest free fd number (the next map fd's, in Linux) and count as an fd of the map.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


def round_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


class MmapValues:
    """The values of an mmapable array as `array.values`: every index exists; an element is
    a writable view of value_size bytes of the shared memory."""

    def __init__(self, max_entries: int, elem_size: int, value_size: int):
        self.max_entries = max_entries
        self.elem_size = elem_size
        self.value_size = value_size
        self.size = round_up(max_entries * elem_size, PAGE_SIZE)
        self.addr = None                     # the emulator's mapping of the memfd
        self.buf = bytearray(self.size)      # until the first fd exists
        self.view = memoryview(self.buf)
        self.ino = None                      # (st_dev, st_ino) of the memfd
        self.rw_fd = -1                      # a writable fd of it, kept high, for the seal
        self.undo = NO_JOURNAL               # the emulator's undo journal

    def attach(self, fd: int) -> None:
        """Move the values into fd's memfd: size it and map it."""
        rw = os.open(f"/proc/self/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
        try:
            os.ftruncate(rw, self.size)
            addr = _libc.mmap(None, self.size, mmap.PROT_READ | mmap.PROT_WRITE,
                              mmap.MAP_SHARED, rw, 0)
            if addr in (None, _MAP_FAILED):
                raise BpfError(ctypes.get_errno() or errno.ENOMEM)
            st = os.fstat(rw)
            self.rw_fd = _high_fd(rw)
            HIDDEN_FDS.add(self.rw_fd)
        finally:
            os.close(rw)
        view = memoryview((ctypes.c_ubyte * self.size).from_address(addr)).cast("B")
        view[:] = self.buf
        self.view.release()
        self.addr = addr
        self.view = view
        self.ino = (st.st_dev, st.st_ino)
        self.buf = None

    def get(self, index: int, default=None):
        if index >= self.max_entries:
            return default
        off = index * self.elem_size
        return self.view[off:off + self.value_size]

    def __getitem__(self, index: int):
        return self.get(index)

    def put(self, index: int, value) -> None:
        off = index * self.elem_size
        view = self.view
        end = off + self.value_size
        self.undo.append((restore_bytes, view, off, view[off:end].tobytes()))   # undo.py
        view[off:end] = value

    __setitem__ = put

    def __iter__(self):
        return iter(range(self.max_entries))

    def __len__(self) -> int:
        return self.max_entries

    def area(self) -> bytes:
        """The whole value area (padding included), what the kernel hashes."""
        return bytes(self.view[:self.max_entries * self.elem_size])

    def clear(self) -> None:
        """map_free: unmap and let the memfd go (a user's mapping keeps its pages)."""
        if self.addr is not None:
            self.view.release()
            _libc.munmap(self.addr, self.size)
            self.addr = None
            self.view = memoryview(b"")
        if self.rw_fd >= 0:
            HIDDEN_FDS.discard(self.rw_fd)
            os.close(self.rw_fd)
            self.rw_fd = -1

    def writable_mappings(self) -> int:
        """Shared writable mappings of the memfd, other than ours: in this process, and in
        every other process while a supervisor serves a tree (its processes got the fd)."""
        if self.ino is None:
            return 0
        own = None
        if self.addr is not None:
            own = (self.addr, self.addr + self.size)
        count = _count_writable("/proc/self/maps", self.ino, own)
        if SUPERVISED_TREES[0]:
            me = str(os.getpid())
            for pid in os.listdir("/proc"):
                if pid.isdigit() and pid != me:
                    count += _count_writable(f"/proc/{pid}/maps", self.ino, None)
        return count

    def seal_future_writes(self) -> None:
        """After FREEZE: no new writable mapping (EPERM), existing ones (ours) keep working."""
        if self.rw_fd >= 0:
            fcntl.fcntl(self.rw_fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE)


# How many supervisors (bpfemu/intercept/) serve process trees from this process now: while
# any does, FREEZE looks for writable mappings in other processes too, as Linux's writecnt
# counts the mappings of every process (the memfd's inode is unique to the map).
SUPERVISED_TREES = [0]


def _count_writable(maps_path: str, ino: tuple, own) -> int:
    """Shared writable mappings of the inode ino = (st_dev, st_ino) in one maps file,
    the range own excepted."""
    count = 0
    dev = (os.major(ino[0]), os.minor(ino[0]))
    try:
        with open(maps_path) as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) < 5 or parts[1][1] != "w" or parts[1][3] != "s":
                    continue
                if int(parts[4]) != ino[1]:
                    continue
                if tuple(int(x, 16) for x in parts[3].split(":")) != dev:
                    continue
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                if own is not None and own[0] <= lo and hi <= own[1]:
                    continue
                count += 1
    except OSError:                  # the process is gone, or not ours to read
        pass
    return count


def _high_fd(fd: int) -> int:
    """A duplicate near the top of the fd range, so that it takes no number the process
    expects from its next open() (as fdtable's inotify fd)."""
    import resource
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, max(fd + 1, min(soft, 1 << 20) - 128))
    except OSError:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, fd + 1)


def array_map_get_hash_mmapable(array) -> bytes:
    """array_map_get_hash() over the shared value area (padding written through a mapping
    counts, as in Linux)."""
    if not array.frozen:
        raise BpfError(errno.EPERM)
    import hashlib                              # here: only a frozen array's info needs it
    return hashlib.sha256(array.values.area()).digest()
