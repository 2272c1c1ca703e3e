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

    def put_run(self, indices, values) -> None:
        """put(i, value) for each of indices (a tuple) in turn, the values size bytes each,
        journaled as one change."""
        size, stride, view = self.size, self.stride, self.view
        n = len(indices)
        first = indices[0]
        if (stride == size and indices[-1] == first + n - 1
                and indices == tuple(range(first, first + n))):
            off = first * stride
            end = off + n * size
            self.undo.append((restore_bytes, view, off, view[off:end].tobytes()))
            view[off:end] = values
            return
        old = []
        self.undo.append((_restore_many, view, old))
        for j, i in enumerate(indices):
            off = i * stride
            old.append((off, view[off:off + size].tobytes()))
            view[off:off + size] = values[j * size:(j + 1) * size]

    def get_run(self, first: int, n: int) -> bytes:
        """The bytes of elements first..first+n-1 (all in range), joined."""
        size, stride, view = self.size, self.stride, self.view
        off = first * stride
        if stride == size:
            return view[off:off + n * size].tobytes()
        return b"".join([view[o:o + size] for o in range(off, off + n * stride, stride)])

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


def _restore_many(view, old: list) -> None:
    """The inverse of put_run's element by element writes: newest first."""
    for off, data in reversed(old):
        view[off:off + len(data)] = data
