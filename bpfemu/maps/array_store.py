"""The value area of an ARRAY or PERCPU_ARRAY: one zeroed block, as struct bpf_array's
value[] in Linux (element i at i * stride), instead of a Python object per element.

ARRAY's stride is elem_size = round_up(value_size, 8) and the syscall sees value_size bytes
of each element; PERCPU_ARRAY's stride is every possible CPU's elem_size slot side by side,
all of which the syscall sees. The block is allocated zeroed by calloc (through ctypes), so
pages no element was written to cost no physical memory, and tracemalloc counts the block.

The interface is the one arraymap.py's functions use on ``array.values`` (shared with
array_mmap.MmapValues): get(index) is a writable view of the element's bytes (None out of
range), put(index, bytes) writes them (also as values[index] = bytes), area() is the whole
block, clear() frees it.
``view`` and ``stride`` are the block and its layout.
"""
import ctypes

from ..undo import NO_JOURNAL, restore_bytes


class ArrayValues:
    def __init__(self, max_entries: int, stride: int, size: int):
        self.max_entries = max_entries
        self.stride = stride                 # bytes from one element to the next
        self.size = size                     # bytes of an element the syscall copies
        self.buf = (ctypes.c_ubyte * max(max_entries * stride, 1))()
        self.view = memoryview(self.buf).cast("B")
        self.undo = NO_JOURNAL               # the emulator's undo journal

    def get(self, index: int, default=None):
        if index >= self.max_entries:
            return default
        off = index * self.stride
        return self.view[off:off + self.size]

    __getitem__ = get

    def put(self, index: int, value) -> None:
        off = index * self.stride
        view = self.view
        end = off + self.size
        self.undo.append((restore_bytes, view, off, view[off:end].tobytes()))   # undo.py
        view[off:end] = value

    # A method call, not a subscript: CPython 3.11 runs a Python-level __setitem__ or
    # __getitem__ in a new C call, a called method inline.
    __setitem__ = put

    def _unclear(self, view, buf, max_entries: int) -> None:
        self.view, self.buf, self.max_entries = view, buf, max_entries

    def area(self) -> bytes:
        """Every element with its padding, in index order: what array_map_get_hash() hashes."""
        return bytes(self.view[:self.max_entries * self.stride])

    def clear(self) -> None:
        """map_free: let the block go (views handed to the program side keep it alive)."""
        self.undo.append((self._unclear, self.view, self.buf, self.max_entries))
        self.view = memoryview(b"")
        self.buf = None
        self.max_entries = 0
