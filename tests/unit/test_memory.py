"""The Memory contract: bad addresses are EFAULT (never a crash), and a write that runs into
memory it cannot write leaves the bytes before that point written, as copy_to_user() does."""
import ctypes
import errno
import mmap

import pytest

from bpfemu.errors import BpfError
from bpfemu.memory import ArenaMemory, ProcessMemory

from tests.support import race, readonly_address, unmapped_address


def _two_pages_second_unmapped():
    """Address of the last 4 bytes of a mapped page whose next page is unmapped."""
    m = mmap.mmap(-1, 8192)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    libc = ctypes.CDLL(None)
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    assert libc.munmap(base + 4096, 4096) == 0
    _keep.append(m)
    return base + 4096 - 4


_keep = []


@pytest.mark.parametrize("addr", [0, 8, (1 << 64) - 1, 1 << 63, -1, 1 << 64])
def test_process_memory_bad_addresses_fault(addr):
    mem = ProcessMemory()
    with pytest.raises(BpfError) as e:
        mem.read(addr, 4)
    assert e.value.errno == errno.EFAULT
    with pytest.raises(BpfError):
        mem.write(addr, b"1234")


def test_process_memory_unmapped_and_readonly():
    mem = ProcessMemory()
    with pytest.raises(BpfError):
        mem.read(unmapped_address(), 1)
    ro = readonly_address()
    assert mem.read(ro, 4) == b"\0\0\0\0"          # readable
    with pytest.raises(BpfError):                  # but not writable, as for copy_to_user
        mem.write(ro, b"x")
    assert mem.read(ro, 1) == b"\0"


def test_process_memory_partial_write_keeps_prefix():
    mem = ProcessMemory()
    addr = _two_pages_second_unmapped()
    with pytest.raises(BpfError):
        mem.write(addr, b"ABCDEFGH")
    assert mem.read(addr, 4) == b"ABCD"


def test_read2_reports_either_fault():
    mem = ProcessMemory()
    buf = ctypes.create_string_buffer(b"key!value", 16)
    a = ctypes.addressof(buf)
    assert mem.read2(a, 4, a + 4, 5) == (b"key!", b"value")
    for first, second in ((0, a), (a, 0)):
        with pytest.raises(BpfError):
            mem.read2(first, 4, second, 4)


def test_pinned_buffers_are_copied_directly_and_bounded():
    mem = ProcessMemory()
    buf = ctypes.create_string_buffer(8)
    a = ctypes.addressof(buf)
    mem.pin(buf)
    mem.write(a, b"12345678")
    assert buf.raw == b"12345678" and mem.read(a, 8) == b"12345678"
    # Longer than the pinned buffer: falls back to the checked syscall path, no overrun.
    assert len(mem.read(a, 4)) == 4
    mem.unpin(buf)
    assert mem.read(a, 8) == b"12345678"


def test_arena_faults_outside_regions_and_writes_prefix():
    mem = ArenaMemory()
    a = mem.map(0x1000, 7)
    with pytest.raises(BpfError):
        mem.read(0x2000, 1)
    with pytest.raises(BpfError):
        mem.read(a, 8)                             # reads are all or nothing
    with pytest.raises(BpfError):
        mem.write(a, b"12345678")
    assert bytes(mem.region(a)) == b"1234567"
    mem.map(0x1007, 4)                             # an adjacent region continues the write
    mem.write(a, b"abcdefghij")
    assert bytes(mem.region(0x1007)) == b"hij\0"
    with pytest.raises(ValueError):
        mem.map(0x1005, 4)                         # overlaps


def _no_syscalls(monkeypatch):
    import bpfemu.memory as memory

    def refuse(*args):
        raise AssertionError("a copy inside a pinned buffer made a syscall")
    monkeypatch.setattr(memory, "_process_vm_readv", refuse)
    monkeypatch.setattr(memory, "_process_vm_writev", refuse)


def test_copies_anywhere_inside_a_pinned_buffer_are_slices(monkeypatch):
    mem = ProcessMemory()
    buf = ctypes.create_string_buffer(bytes(range(64)), 64)
    other = ctypes.create_string_buffer(16)
    a = ctypes.addressof(buf)
    mem.pin(buf, other)
    _no_syscalls(monkeypatch)
    assert mem.read(a + 10, 6) == bytes(range(10, 16))
    assert mem.read2(a + 60, 4, a + 1, 2) == (bytes(range(60, 64)), b"\x01\x02")
    mem.write(a + 32, b"abcd")
    assert buf.raw[32:36] == b"abcd"
    assert mem.view(a + 33, 3).tobytes() == b"bcd"
    with pytest.raises(AssertionError):     # past the end: the checked syscall path
        mem.read(a + 60, 8)
    mem.unpin(buf)
    with pytest.raises(AssertionError):
        mem.read(a + 10, 6)


def test_threads_pinning_with_owners_gone_at_once():
    """Each thread's LibBpf buffers and a Map made in a thread are pinned from that thread:
    pins whose owners have gone are dropped by whichever pin() comes next, two threads at
    once included (a KeyError, or a dict changed during iteration, came out of pin())."""
    mem = ProcessMemory()

    class Owner:
        pass
    errors = []

    def worker(_):
        for _ in range(2000):
            owner = Owner()
            bufs = [ctypes.create_string_buffer(16) for _ in range(3)]
            try:
                mem.pin(*bufs, owner=owner)
            except Exception as e:              # noqa: BLE001 - what came out is the finding
                errors.append(repr(e))
            del owner
    race(4, worker)
    assert errors == []
    assert mem.pinned_count <= 4 * 3 * 2
