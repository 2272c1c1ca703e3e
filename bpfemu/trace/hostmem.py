"""Recorded buffers in this process's real memory, for replaying onto the live kernel.

The kernel reads real addresses, so a record's buffers must exist at real addresses. We first
try to put every page a record uses at its *recorded* address (mmap with MAP_FIXED_NOREPLACE,
so nothing of this process is ever overwritten), which keeps the attr bytes identical. Pages
stay mapped across records, so a long trace costs a memmove per buffer, not an mmap.

When a recorded page is already in use here (ASLR put this process's heap or a library
there, or the trace is replayed in the process that recorded it), or a page that was unmapped
at recording time is mapped here, the record is *relocated*: its pages are mapped at fresh
addresses with the same offsets within their pages, and every pointer that pointed into them
is rewritten (the attr's pointer fields and ``info.hash`` inside a bpf_map_info). The
comparison then expects the relocated pointer values, so nothing else changes.

Unmapped ranges are reproduced as PROT_NONE pages and read-only ranges with mprotect; both are
page-granular, as they are in a recording of a real process.
"""
import ctypes
import errno
import mmap

PAGE = 4096
MAP_FIXED_NOREPLACE = 0x100000
USER_TOP = 0x7FFFFFFFF000

_libc = ctypes.CDLL(None, use_errno=True)
_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                  ctypes.c_long]
_munmap = _libc.munmap
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_mprotect = _libc.mprotect
_mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_msync = _libc.msync
_msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
MAP_FAILED = ctypes.c_void_p(-1).value
MS_ASYNC = 1
RW = mmap.PROT_READ | mmap.PROT_WRITE
RO = mmap.PROT_READ
NONE = 0


def _mmap_min_addr() -> int:
    try:
        with open("/proc/sys/vm/mmap_min_addr") as f:
            return max(int(f.read()), PAGE)
    except (OSError, ValueError):
        return 65536


MMAP_MIN = _mmap_min_addr()


def _pages(start: int, end: int):
    p = start & ~(PAGE - 1)
    while p < end:
        yield p
        p += PAGE


def mappable(page: int) -> bool:
    return MMAP_MIN <= page < USER_TOP


def is_mapped(page: int) -> bool:
    """Is anything mapped at this page of this process (msync says ENOMEM when not)?"""
    if _msync(page, PAGE, MS_ASYNC) == 0:
        return True
    return ctypes.get_errno() != errno.ENOMEM


class HostPages:
    """Pages this replayer owns at recorded addresses, and per-record relocation."""

    def __init__(self):
        self.owned: dict[int, int] = {}      # page -> current protection
        self.relocated = 0                   # records that needed relocation
        self._runs = []                      # mappings of the current relocated record
        self._need = set()
        self._reloc_pages = None

    def plan(self, segments, holes):
        """Map the pages a record needs. ``segments``: [(addr, length)] of mapped bytes;
        ``holes``: [(start, end)] that must fault. Returns None (the pages are at their
        recorded addresses) or a relocation function addr -> addr."""
        self._release_runs()
        need = set()
        for a, n in segments:
            need.update(_pages(a, a + n))
        # A copy stops at the first byte it cannot reach, so of each hole only its first
        # page (the one after the mapped bytes) must be missing here too.
        hole_pages = set()
        for s, e in holes:
            p = s & ~(PAGE - 1)
            if p in need:
                p += PAGE
            if p < e and mappable(p) and p not in need:
                hole_pages.add(p)
        self._need = need
        if self._fixed(need, hole_pages):
            self._reloc_pages = None
            return None
        return self._relocate(need, hole_pages)

    def fill(self, segments, readonly):
        """Write a record's bytes (at final addresses) and set read-only pages."""
        ro_pages = set()
        for s, e in readonly:
            ro_pages.update(_pages(s, e))
        if self._reloc_pages is None:
            for p in self._need:
                if self.owned[p] != RW:
                    _mprotect(p, PAGE, RW)
                    self.owned[p] = RW
            for a, data in segments:
                ctypes.memmove(a, data, len(data))
            for p in ro_pages:
                if p in self.owned:
                    _mprotect(p, PAGE, RO)
                    self.owned[p] = RO
        else:
            for a, data in segments:
                ctypes.memmove(a, data, len(data))
            for p in ro_pages:
                _mprotect(p, PAGE, RO)

    def _fixed(self, need, hole_pages) -> bool:
        for p in hole_pages:
            if p in self.owned:
                _munmap(p, PAGE)
                del self.owned[p]
            elif is_mapped(p):
                return False
        for p in need:
            if p in self.owned:
                continue
            if not mappable(p):
                return False
            r = _mmap(p, PAGE, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
            if r == MAP_FAILED or r is None or r != p:
                if r not in (MAP_FAILED, None):
                    _munmap(r, PAGE)          # an old kernel ignoring NOREPLACE: give it back
                return False
            self.owned[p] = RW
        return True

    def _relocate(self, need, hole_pages):
        self.relocated += 1
        pages = sorted(need | hole_pages)
        runs = []
        for p in pages:
            if runs and runs[-1][1] == p:
                runs[-1][1] = p + PAGE
            else:
                runs.append([p, p + PAGE])
        table = []
        for start, end in runs:
            n = end - start
            base = _mmap(None, n, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
            if base in (MAP_FAILED, None):
                raise OSError(ctypes.get_errno(), "mmap for relocation failed")
            self._runs.append((base, n))
            table.append((start, end, base))

        def reloc(addr: int) -> int:
            for s, e, b in table:
                if s <= addr < e:
                    return b + (addr - s)
            return addr

        for p in hole_pages:
            _mprotect(reloc(p), PAGE, NONE)
        self._reloc_pages = table
        return reloc

    def read(self, addr: int, n: int) -> bytes:
        return ctypes.string_at(addr, n) if n else b""

    def _release_runs(self):
        for base, n in self._runs:
            _munmap(base, n)
        self._runs = []

    def release(self):
        self._release_runs()
        for p in list(self.owned):
            _munmap(p, PAGE)
        self.owned.clear()
