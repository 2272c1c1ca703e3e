"""Reading the caller's memory for the recorder, holes and read-only pages included.

A recorded buffer is its bytes plus two lists of (offset, length) ranges: ``unmapped`` (no
access: an unmapped or PROT_NONE page, or the end of an emulator's simulated region) and
``readonly`` (readable, not writable). Replay recreates exactly that, so an EFAULT in the
middle of a copy happens at the same byte.
"""
import ctypes

from ..errors import BpfError
from ..memory import ProcessMemory

PAGE = 4096


def _page_down(a):
    return a & ~(PAGE - 1)


class Snapshot:
    """One buffer as read: ``data`` up to the end of its last mapped byte (holes inside read
    as zeros), its full ``length``, and (offset, length) lists ``unmapped`` and ``readonly``."""
    __slots__ = ("addr", "data", "length", "unmapped", "readonly")

    def __init__(self, addr, data, unmapped=(), readonly=(), length=None):
        self.addr = addr
        self.data = data
        self.length = len(data) if length is None else length
        self.unmapped = list(unmapped)
        self.readonly = list(readonly)


def _assemble(addr, n, runs, read):
    """A Snapshot from mapped runs [(start, end)] (absolute, sorted, inside [addr, addr+n)).

    Only the part before the first unreachable byte is kept: every access the kernel makes
    to a user buffer is a sequential copy that stops at its first fault, so bytes after a
    hole can never be read or written (and recording them would only cost space).
    """
    pos = addr
    for s, e in runs:
        if s > pos:
            break
        try:
            chunk = read(s, e - s) if e > s else b""
        except BpfError:            # a mapping we cannot read after all (vvar, guard pages)
            break
        if pos == addr:
            data = bytearray(chunk)
        else:
            data += chunk
        pos = e
    if pos == addr:
        data = bytearray()
    unmapped = [(pos - addr, addr + n - pos)] if pos < addr + n else []
    return Snapshot(addr, bytes(data), unmapped, length=n)


def _clip_ranges(ranges, n):
    return [(o, min(l, n - o)) for o, l in ranges if o < n and l > 0]


class ProcessProbe:
    """This process's memory (what the live kernel and a ProcessMemory emulator read)."""

    def __init__(self, mem: ProcessMemory | None = None):
        self.mem = mem if mem is not None else ProcessMemory()

    @staticmethod
    def maps():
        """[(start, end, writable, readable)] of this process, from /proc/self/maps."""
        out = []
        with open("/proc/self/maps") as f:
            for line in f:
                rng, perms = line.split(None, 2)[:2]
                s, e = rng.split("-")
                out.append((int(s, 16), int(e, 16), perms[1] == "w", perms[0] == "r"))
        return out

    def read(self, addr: int, n: int) -> Snapshot:
        if n == 0:
            return Snapshot(addr, b"")
        try:
            return Snapshot(addr, self.mem.read(addr, n))
        except BpfError:
            pass
        # Some of it faults: walk the mappings and read the readable parts.
        runs = []
        end = addr + n
        for s, e, _w, r in self.maps():
            if e <= addr or not r:
                continue
            if s >= end:
                break
            runs.append((max(s, addr), min(e, end)))
        return _assemble(addr, n, runs, self.mem.read)

    def readonly(self, addr: int, n: int) -> list:
        """(offset, length) ranges of [addr, addr+n) that are mapped readable but not writable."""
        out = []
        end = addr + n
        for s, e, w, r in self.maps():
            if e <= addr or s >= end or w or not r:
                continue
            lo, hi = max(s, addr), min(e, end)
            out.append((lo - addr, hi - lo))
        return _merge(out)

    def strlen(self, addr: int, maxlen: int = 4096) -> int | None:
        """Length of the NUL-terminated string at addr including the NUL, as far as it is
        readable (None if not even its first byte is)."""
        n = 0
        pos = addr
        while n < maxlen:
            chunk = min(maxlen - n, PAGE - (pos & (PAGE - 1)))
            try:
                data = self.mem.read(pos, chunk)
            except BpfError:
                return n or None
            i = data.find(b"\0")
            if i >= 0:
                return n + i + 1
            n += chunk
            pos += chunk
        return n


class MemoryProbe:
    """A bpfemu ArenaMemory (or any Memory exposing its regions): holes are the gaps between
    regions; there are no read-only pages."""

    def __init__(self, mem):
        self.mem = mem

    def _regions(self):
        regions = getattr(self.mem, "_regions", None)
        if regions is None:
            raise TypeError(f"cannot record through {type(self.mem).__name__}: it does not "
                            "expose its regions")
        return sorted((a, a + len(r)) for a, r in regions.items())

    def read(self, addr: int, n: int) -> Snapshot:
        if n == 0:
            return Snapshot(addr, b"")
        try:
            return Snapshot(addr, self.mem.read(addr, n))
        except BpfError:
            pass
        end = addr + n
        runs = [(max(s, addr), min(e, end)) for s, e in self._regions() if e > addr and s < end]
        return _assemble(addr, n, runs, self.mem.read)

    def readonly(self, addr: int, n: int) -> list:
        return []

    def strlen(self, addr: int, maxlen: int = 4096) -> int | None:
        n = 0
        while n < maxlen:
            try:
                b = self.mem.read(addr + n, 1)
            except BpfError:
                return n or None
            n += 1
            if b == b"\0":
                return n
        return n


def _merge(ranges):
    out = []
    for o, l in sorted(ranges):
        if out and o <= out[-1][0] + out[-1][1]:
            po, pl = out[-1]
            out[-1] = (po, max(pl, o + l - po))
        else:
            out.append((o, l))
    return out


def probe_for(mem):
    """The probe that reads what a backend with this Memory reads."""
    if mem is None or isinstance(mem, ProcessMemory):
        return ProcessProbe(mem if isinstance(mem, ProcessMemory) else None)
    return MemoryProbe(mem)


def buffer_address(obj) -> int | None:
    """The address of a writable Python buffer (ctypes object, bytearray, memoryview)."""
    if isinstance(obj, (ctypes.Array, ctypes.Structure, ctypes.Union, ctypes._SimpleCData)):
        return ctypes.addressof(obj)
    view = memoryview(obj).cast("B")
    if view.readonly or view.nbytes == 0:
        return None
    return ctypes.addressof((ctypes.c_char * view.nbytes).from_buffer(view))
