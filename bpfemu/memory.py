"""The caller's memory, as the emulated kernel sees it through copy_from_user/copy_to_user.

Every pointer in an attr is read and written through a Memory. A bad address is
``BpfError(EFAULT)``, never a crash.

``ProcessMemory`` reaches real addresses of this process with process_vm_readv(2) and
process_vm_writev(2): unlike /proc/self/mem (which reads and writes through FOLL_FORCE)
they honour page protections exactly as copy_{from,to}_user do, so a write into a
read-only page is EFAULT here too, and they cost less than os.pread on /proc/self/mem
(README, speed). Still, each is a syscall, as costly as a whole real bpf() call, so
buffers the caller *pins* (``pin(obj)``) are served by slicing a memoryview:
the pin holds a reference, so the memory cannot go away while it is pinned.

``ArenaMemory`` is a simulated address space for traces and pure-Python use.
"""
import bisect
import ctypes
import errno
import os
import struct
import threading
import weakref

from .errors import BpfError
from .weak_registry import WeakBoundMethod, WeakRegistry

_EFAULT = errno.EFAULT


class Memory:
    """Interface: read(addr, n) -> bytes and write(addr, data), raising BpfError(EFAULT).

    A write that runs into memory it cannot write leaves the bytes before that point written,
    then raises, as copy_to_user() does: a lookup whose value buffer ends in an unmapped page
    fills what it can and returns EFAULT.
    """

    def read(self, addr: int, n: int) -> bytes:
        raise NotImplementedError

    def write(self, addr: int, data) -> None:
        raise NotImplementedError

    def read2(self, addr1: int, n1: int, addr2: int, n2: int) -> tuple[bytes, bytes]:
        """Two copy_from_user calls in order (the key, then the value)."""
        return self.read(addr1, n1), self.read(addr2, n2)

    def view(self, addr: int, n: int):
        """A writable memoryview of exactly n bytes at addr, valid until the callbacks of
        on_views_changed() are called, or None. Only pinned buffers have one."""
        return None

    @staticmethod
    def char_array(view):
        """A ctypes char array over a view from view(): its ``raw`` setter copies bytes in at
        half the cost of a slice assignment to the view."""
        return (ctypes.c_char * len(view)).from_buffer(view)

    def on_views_changed(self, callback) -> None:
        """Call callback() (held weakly) whenever views handed out may have become stale."""

    # A decoded call (fastpath.py) copies through the same addresses every time: these give
    # it a copier for one address, with whatever can be prepared done once.

    def reader(self, addr: int, n: int):
        """A function () -> the n bytes at addr, raising BpfError(EFAULT) like read()."""
        return lambda: self.read(addr, n)

    def reader2(self, addr1: int, n1: int, addr2: int, n2: int):
        """A function () -> read2(addr1, n1, addr2, n2)."""
        return lambda: self.read2(addr1, n1, addr2, n2)

    def writer(self, addr: int, n: int):
        """A function (data) -> None that does write(addr, data), for data of n bytes."""
        return lambda data: self.write(addr, data)


# struct iovec {void *iov_base; size_t iov_len;}: the local iovecs at 0, the remote ones at 32.
_IOVEC_SIZE = 16
_pack_iov1 = struct.Struct("=QQ16xQQ").pack_into
_pack_iov2 = struct.Struct("=QQQQQQQQ").pack_into


# A PyDLL: the copies keep the GIL. A CDLL function lets go of it for the syscall, and the
# copies of an update run under the emulator's lock, so every such copy let the other
# threads in to find the lock held and queue on it (README "Threads"); a lookup paid two GIL
# hand-overs besides. A copy is a memcpy in the kernel, one page walk: shorter than a GIL
# hand-over. (A page whose fault waits for a userfaultfd or FUSE server run by a Python
# thread of this process would hang the process here: not memory a bpf() caller passes.)
_libc = ctypes.PyDLL(None)
# No argtypes on purpose: argument conversion tripled the cost of each call. Pointers go in
# as prebuilt byref() objects (a bare int would be truncated to a C int), the rest are small ints.
_process_vm_readv = _libc.process_vm_readv
_process_vm_writev = _libc.process_vm_writev
_process_vm_readv.restype = ctypes.c_ssize_t
_process_vm_writev.restype = ctypes.c_ssize_t


class ProcessMemory(Memory):
    """Addresses in a live process (this one by default).

    Not thread-safe on its own: one scratch buffer serves every call. The Emulator
    serialises calls under its lock, and each thread that uses a ProcessMemory outside
    an Emulator should have its own.
    """

    _SCRATCH_MIN = 1 << 16

    def __init__(self, pid: int | None = None):
        self.pid = os.getpid() if pid is None else pid
        if pid is None:
            # "This process": a child made by fork() must copy to and from its own memory,
            # not its parent's (whose pid the copy would otherwise keep).
            _own_process.add(self)
        # Two local iovecs, then two remote ones, filled by one pack_into per call (setting
        # ctypes Structure fields cost more than the syscall itself).
        self._iov = ctypes.create_string_buffer(4 * _IOVEC_SIZE)
        self._local_addr = ctypes.byref(self._iov, 0)
        self._remote_addr = ctypes.byref(self._iov, 2 * _IOVEC_SIZE)
        self._pinned: dict[int, memoryview] = {}   # start address -> byte view of a pinned buffer
        self._owners: dict[int, weakref.ref] = {}   # start address -> what the pin lasts for
        # The same, sorted by start, to find the pinned buffer an address falls inside:
        # (starts, views), replaced as one object so that a reader in another thread never
        # pairs one pin's start with another's view.
        self._ranges: tuple = ((), ())
        self._listeners: list[WeakBoundMethod] = []
        self._grow(self._SCRATCH_MIN)

    def pin(self, *objs, owner=None) -> None:
        """Let the emulator access these buffers (ctypes objects, bytearrays) without a syscall.

        Copies that fall inside a pinned buffer (a batch's whole keys array, or any slice of
        it) are then made by slicing. The pin keeps each object alive and unresizable until
        ``unpin``, or, given an owner (a ``Map``, the ``LibBpf`` layer's per-fd calls), until
        the owner is gone: a layer object dropped without close() would otherwise keep its
        buffers pinned for the process's life. Such pins are dropped by the next pin() after
        their owner's end, not from a weakref callback (weak_registry.py says why).
        """
        self._drop_orphans()
        for obj in objs:
            view = memoryview(obj).cast("B")
            if view.readonly:
                raise ValueError("only writable buffers can be pinned")
            start = ctypes.addressof((ctypes.c_char * 1).from_buffer(view))
            self._pinned[start] = view
            if owner is not None:
                self._owners[start] = weakref.ref(owner)
            else:
                self._owners.pop(start, None)
        self._sort_pins()
        self._views_changed()               # calls decoded before now may copy through them

    def unpin(self, *objs) -> None:
        for obj in objs:
            view = memoryview(obj).cast("B")
            start = ctypes.addressof((ctypes.c_char * 1).from_buffer(view))
            self._pinned.pop(start, None)
            self._owners.pop(start, None)
        self._sort_pins()
        self._views_changed()               # views of these buffers may be cached

    def _drop_orphans(self) -> None:
        """Unpin the buffers whose owner has gone. Threads pin at once (each LibBpf thread's
        buffers, a Map made in a thread): the items are taken in one C call, and a pin
        another thread dropped first is no error."""
        gone = [start for start, owner in list(self._owners.items()) if owner() is None]
        for start in gone:
            self._owners.pop(start, None)
            self._pinned.pop(start, None)

    @property
    def pinned_count(self) -> int:
        """How many buffers are pinned now (their owners' ends not yet seen by a pin())."""
        return len(self._pinned)

    def _sort_pins(self) -> None:
        pins = sorted(self._pinned.items())
        self._ranges = (tuple(start for start, _ in pins), tuple(view for _, view in pins))

    def _pinned_span(self, addr: int, n: int):
        """A view of the n bytes at addr if they lie inside one pinned buffer (the one that
        starts last at or before addr), else None."""
        starts, views = self._ranges
        i = bisect.bisect_right(starts, addr) - 1
        if i < 0:
            return None
        off = addr - starts[i]
        view = views[i]
        if off + n <= len(view):
            return view[off:off + n]
        return None

    def on_views_changed(self, callback) -> None:
        self._listeners.append(WeakBoundMethod(callback))

    def _views_changed(self) -> None:
        self._listeners = [call for call in self._listeners if call()]

    def view(self, addr: int, n: int):
        pinned = self._pinned.get(addr)
        if pinned is not None and n <= len(pinned):
            return pinned[:n]
        if self._pinned:
            return self._pinned_span(addr, n)
        return None

    def reader(self, addr: int, n: int):
        iov = self._fixed_iovs(((addr, n),))
        if iov is None or n == 0:
            return super().reader(addr, n)
        local, remote, scratch = iov
        pid, readv = self.pid, _process_vm_readv

        def read():
            if readv(pid, local, 1, remote, 1, 0) != n:
                raise BpfError(_EFAULT)
            return scratch.tobytes()
        return read

    def reader2(self, addr1: int, n1: int, addr2: int, n2: int):
        iov = self._fixed_iovs(((addr1, n1), (addr2, n2)))
        if iov is None or not n1 or not n2:
            return super().reader2(addr1, n1, addr2, n2)
        local, remote, scratch = iov
        pid, readv, total = self.pid, _process_vm_readv, n1 + n2

        def read2():
            if readv(pid, local, 2, remote, 2, 0) != total:
                raise BpfError(_EFAULT)
            data = scratch.tobytes()
            return data[:n1], data[n1:]
        return read2

    def writer(self, addr: int, n: int):
        iov = self._fixed_iovs(((addr, n),))
        if iov is None or n == 0:
            return super().writer(addr, n)
        local, remote, scratch = iov
        pid, writev, write_any = self.pid, _process_vm_writev, self.write

        def write(data):
            if len(data) != n:
                return write_any(addr, data)
            scratch[:] = data
            if writev(pid, local, 1, remote, 1, 0) != n:
                raise BpfError(_EFAULT)
        return write

    def _fixed_iovs(self, spans):
        """(local iovec ref, remote iovec ref, view of a scratch buffer) for copies of these
        (addr, n) spans, packed once; None when an address is not a 64-bit one."""
        total = sum(n for _, n in spans)
        scratch = ctypes.create_string_buffer(max(total, 1))
        iov = ctypes.create_string_buffer(4 * _IOVEC_SIZE)
        base = ctypes.addressof(scratch)
        local = []
        remote = []
        for addr, n in spans:
            local += [base, n]
            remote += [addr, n]
            base += n
        local += [0, 0] * (2 - len(spans))
        remote += [0, 0] * (2 - len(spans))
        try:
            _pack_iov2(iov, 0, *local, *remote)
        except struct.error:
            return None
        return (ctypes.byref(iov, 0), ctypes.byref(iov, 2 * _IOVEC_SIZE),
                memoryview(scratch).cast("B")[:total])

    def _grow(self, n: int) -> None:
        self._scratch = ctypes.create_string_buffer(n)
        self._scratch_addr = ctypes.addressof(self._scratch)
        self._scratch_view = memoryview(self._scratch).cast("B")
        self._scratch_len = n

    def read(self, addr: int, n: int) -> bytes:
        pinned = self._pinned.get(addr)
        if pinned is not None and n <= len(pinned):
            return pinned[:n].tobytes()
        if n == 0:
            return b""
        if self._pinned:
            span = self._pinned_span(addr, n)
            if span is not None:
                return span.tobytes()
        if n > self._scratch_len:
            self._grow(max(n, 2 * self._scratch_len))
        try:
            _pack_iov1(self._iov, 0, self._scratch_addr, n, addr, n)
        except struct.error:                # not a 64-bit address
            raise BpfError(_EFAULT) from None
        if _process_vm_readv(self.pid, self._local_addr, 1, self._remote_addr, 1, 0) != n:
            raise BpfError(_EFAULT)
        return self._scratch_view[:n].tobytes()

    def read2(self, addr1: int, n1: int, addr2: int, n2: int) -> tuple[bytes, bytes]:
        pinned = self._pinned
        if pinned and (addr1 in pinned or self._pinned_span(addr1, n1) is not None
                       or self._pinned_span(addr2, n2) is not None):
            return self.read(addr1, n1), self.read(addr2, n2)
        # One syscall for key and value; a short count says which copy faulted first.
        total = n1 + n2
        if total > self._scratch_len:
            self._grow(max(total, 2 * self._scratch_len))
        scratch = self._scratch_addr
        try:
            _pack_iov2(self._iov, 0, scratch, n1, scratch + n1, n2, addr1, n1, addr2, n2)
        except struct.error:
            raise BpfError(_EFAULT) from None
        if _process_vm_readv(self.pid, self._local_addr, 2, self._remote_addr, 2, 0) != total:
            raise BpfError(_EFAULT)
        view = self._scratch_view
        return view[:n1].tobytes(), view[n1:total].tobytes()

    def write(self, addr: int, data) -> None:
        n = len(data)
        pinned = self._pinned.get(addr)
        if pinned is not None and n <= len(pinned):
            pinned[:n] = data
            return
        if n == 0:
            return
        if self._pinned:
            span = self._pinned_span(addr, n)
            if span is not None:
                span[:] = data
                return
        if n > self._scratch_len:
            self._grow(max(n, 2 * self._scratch_len))
        try:
            _pack_iov1(self._iov, 0, self._scratch_addr, n, addr, n)
        except struct.error:
            raise BpfError(_EFAULT) from None
        self._scratch_view[:n] = data
        if _process_vm_writev(self.pid, self._local_addr, 1, self._remote_addr, 1, 0) != n:
            raise BpfError(_EFAULT)


# ProcessMemory objects made for this process, which follow it into a forked child.
_own_process = WeakRegistry()


def _after_fork_in_child() -> None:
    pid = os.getpid()
    for mem in list(_own_process):
        mem.pid = pid
    for arena in list(_arenas):
        arena._lock = threading.Lock()      # a thread of the parent may have held it


# Arenas, whose lock a forked child must not inherit held.
_arenas = WeakRegistry()


class ArenaMemory(Memory):
    """A simulated address space: regions of bytearrays at chosen addresses.

    Anything outside a mapped region faults, like an unmapped page. Used to replay
    traces at their recorded addresses and by pure-Python callers with no real pointers.
    """

    def __init__(self, base: int = 0x10000000):
        self._regions: dict[int, bytearray] = {}   # start -> bytes
        self._next = base
        self._lock = threading.Lock()
        _arenas.add(self)

    def map(self, addr: int, data_or_size) -> int:
        """Place a region at addr (bytes to copy in, or a size to zero-fill); returns addr."""
        buf = bytearray(data_or_size) if isinstance(data_or_size, int) else bytearray(data_or_size)
        with self._lock:
            for start, region in self._regions.items():
                if addr < start + len(region) and start < addr + len(buf):
                    raise ValueError(f"region at {addr:#x} overlaps one at {start:#x}")
            self._regions[addr] = buf
        return addr

    def alloc(self, data_or_size) -> int:
        """Map a region at the next free address (16-byte aligned, with a gap to catch overruns)."""
        size = data_or_size if isinstance(data_or_size, int) else len(data_or_size)
        with self._lock:
            addr = self._next
            self._next += (size + 16 + 15) & ~15
        return self.map(addr, data_or_size)

    def unmap(self, addr: int) -> None:
        with self._lock:
            del self._regions[addr]

    def _find(self, addr: int, n: int) -> tuple[bytearray, int]:
        for start, region in self._regions.items():
            if start <= addr and addr + n <= start + len(region):
                return region, addr - start
        raise BpfError(_EFAULT)

    def read(self, addr: int, n: int) -> bytes:
        if n == 0:
            return b""
        region, off = self._find(addr, n)
        return bytes(region[off:off + n])

    def write(self, addr: int, data) -> None:
        n = len(data)
        if n == 0:
            return
        done = 0
        while done < n:                  # region by region, stopping at the first gap
            hit = self._containing(addr + done)
            if hit is None:
                raise BpfError(_EFAULT)
            region, off = hit
            chunk = min(n - done, len(region) - off)
            region[off:off + chunk] = data[done:done + chunk]
            done += chunk

    def _containing(self, addr: int):
        for start, region in self._regions.items():
            if start <= addr < start + len(region):
                return region, addr - start
        return None

    def region(self, addr: int) -> bytearray:
        """The bytearray of the region starting at addr (for callers and trace replay)."""
        return self._regions[addr]


os.register_at_fork(after_in_child=_after_fork_in_child)
