"""Page-for-page copies of a caller's memory in the supervisor (record mode).

The kernel's copy_from_user/copy_to_user fault at page granularity, on pages that are
unmapped, PROT_NONE, or (for writes) read-only. A mirror keeps, for each page the call may
touch, the same bytes at the same offset in a page of ours with the same protection, so a
call made on the mirror faults exactly where it would have faulted in the caller.
"""
import ctypes

from ..errors import BpfError

PAGE = 4096
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_PROT_NONE, _PROT_READ, _PROT_RW = 0, 1, 3
_MAP_PRIVATE_ANON = 0x02 | 0x20


def _child_maps(tid: int):
    """[(start, end, readable, writable)] of the caller's mappings."""
    out = []
    try:
        with open(f"/proc/{tid}/maps") as f:
            for line in f:
                rng, perms = line.split(None, 2)[:2]
                s, e = rng.split("-")
                out.append((int(s, 16), int(e, 16), perms[0] == "r", perms[1] == "w"))
    except OSError:
        pass
    return out


class Mirror:
    """Page-for-page copies, in this process, of spans of the caller's memory."""

    def __init__(self, mem, tid: int):
        self.mem = mem
        self.tid = tid
        self.spans = []                   # [start page, end page) of the caller
        self.maps = None
        self.regions = []                 # (caller start, local start, length, bytes before)

    def add(self, addr: int, n: int) -> None:
        if n > 0:
            self.spans.append((addr & ~(PAGE - 1), (addr + n + PAGE - 1) & ~(PAGE - 1)))

    def build(self) -> None:
        merged = []
        for s, e in sorted(self.spans):
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        self.maps = _child_maps(self.tid)
        for s, e in merged:
            n = e - s
            local = _libc.mmap(None, n, _PROT_RW, _MAP_PRIVATE_ANON, -1, 0)
            if local in (None, ctypes.c_void_p(-1).value):
                raise OSError(ctypes.get_errno(), "mmap")
            before = bytearray(n)
            prots = []
            for off in range(0, n, PAGE):
                prot = self._prot(s + off)
                if prot != _PROT_NONE:
                    try:
                        before[off:off + PAGE] = self.mem.read(s + off, PAGE)
                    except BpfError:
                        prot = _PROT_NONE
                prots.append(prot)
            ctypes.memmove(local, bytes(before), n)
            for i, prot in enumerate(prots):
                if prot != _PROT_RW:
                    _libc.mprotect(local + i * PAGE, PAGE, prot)
            self.regions.append((s, local, n, bytes(before)))

    def _prot(self, page: int) -> int:
        for s, e, r, w in self.maps:
            if s <= page < e:
                return _PROT_RW if w else (_PROT_READ if r else _PROT_NONE)
        return _PROT_NONE

    def local(self, addr: int) -> int:
        for s, local, n, _ in self.regions:
            if s <= addr < s + n:
                return local + (addr - s)
        raise KeyError(addr)

    def write_back(self) -> None:
        """Every byte the call changed, written to the caller (page by page)."""
        for s, local, n, before in self.regions:
            for off in range(0, n, PAGE):
                old = before[off:off + PAGE]
                if self._prot(s + off) != _PROT_RW:
                    continue
                new = ctypes.string_at(local + off, PAGE)
                if new == old:
                    continue
                lo = next(i for i in range(PAGE) if new[i] != old[i])
                hi = PAGE - next(i for i in range(PAGE) if new[PAGE - 1 - i] != old[PAGE - 1 - i])
                self.mem.write(s + off + lo, new[lo:hi])

    def free(self) -> None:
        for _, local, n, _ in self.regions:
            _libc.munmap(local, n)
        self.regions = []
