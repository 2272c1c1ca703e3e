"""BPF_F_MMAPABLE arrays: mmap() of the map fd shares the values with the bpf() commands,
FREEZE and writable mappings exclude each other, on the emulator and the live kernel.
Facts: docs/mmap.md."""
import ctypes
import errno
import mmap
import struct

from bpfemu.uapi import consts as c
from tests.differential.abi_support import (ARRAY, EBUSY, EPERM, bpffs_mount, freeze, get_info,
                                            obj_get, pin)
from tests.support import Buf, Client

__all__ = ["bpffs_mount"]

MMAPABLE = c.BPF_F_MMAPABLE
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
SHARED, RO, RW = mmap.MAP_SHARED, mmap.PROT_READ, mmap.PROT_READ | mmap.PROT_WRITE


class Mapping:
    """mmap(2) of an fd through libc (Python's mmap refuses a length past a file's size,
    and a map fd has size 0 on Linux)."""

    def __init__(self, fd, length, prot, flags=SHARED):
        addr = _libc.mmap(None, length, prot, flags, fd, 0)
        if addr == ctypes.c_void_p(-1).value:
            raise OSError(ctypes.get_errno(), "mmap")
        self.addr, self.length = addr, length

    def read(self, off, n):
        return ctypes.string_at(self.addr + off, n)

    def write(self, off, data):
        ctypes.memmove(self.addr + off, data, len(data))

    def close(self):
        if self.addr is not None:
            _libc.munmap(self.addr, self.length)
            self.addr = None


def try_map(fd, length, prot):
    try:
        Mapping(fd, length, prot).close()
        return 0
    except OSError as e:
        return -e.errno


def k(i):
    return struct.pack("<I", i)


def test_mapping_and_commands_share_the_values(both):
    out = []
    for cl in both:
        fd = cl.create(ARRAY, 4, 12, 5, MMAPABLE)
        assert fd >= 0
        m = Mapping(fd, 4096, RW)
        try:
            steps = [m.read(0, 80)]                          # all zero
            m.write(0, b"abcd")
            m.write(16 + 2, b"xy")                           # element 1 at stride 16
            m.write(12, b"PADD")                             # element 0's padding
            steps.append(cl.lookup(fd, k(0), 12))
            steps.append(cl.lookup(fd, k(1), 12))
            steps.append(cl.update(fd, k(4), b"0123456789ab"))
            steps.append(cl.update(fd, k(0), b"ABCDEFGHIJKL"))
            steps.append(m.read(0, 80))                      # padding as the mapping left it
            out.append(steps)
        finally:
            m.close()
    assert out[0] == out[1]
    assert out[0][1] == (0, b"abcd" + bytes(8))


def test_values_span_pages(both):
    out = []
    for cl in both:
        fd = cl.create(ARRAY, 4, 1000, 9, MMAPABLE)          # 9 * 1000 bytes: three pages
        m = Mapping(fd, 3 * 4096, RW)
        try:
            m.write(8 * 1000, b"last")
            cl.update(fd, k(5), b"\x07" * 1000)
            out.append((cl.lookup(fd, k(8), 1000)[1][:4], m.read(5000, 1000)))
        finally:
            m.close()
    assert out[0] == out[1] == [(b"last", b"\x07" * 1000)][0]


def test_freeze_waits_for_writable_mappings(both):
    out = []
    for cl in both:
        fd = cl.create(ARRAY, 4, 8, 4, MMAPABLE)
        ro = Mapping(fd, 4096, RO)
        rw = Mapping(fd, 4096, RW)
        steps = [freeze(cl.b, fd)]                           # EBUSY: a writable mapping
        rw.close()
        steps.append(freeze(cl.b, fd))                       # a read-only one does not count
        steps.append(freeze(cl.b, fd))                       # frozen already
        steps.append(try_map(fd, 4096, RW))                  # EPERM from now on
        steps.append(try_map(fd, 4096, RO))
        steps.append(cl.update(fd, k(0), bytes(8)))          # EPERM: frozen
        ro.close()
        out.append(steps)
    assert out[0] == out[1]
    assert out[0][:2] == [-EBUSY, 0] and out[0][3] == -EPERM


def test_frozen_hash_covers_what_the_mapping_wrote(both):
    out = []
    for cl in both:
        fd = cl.create(ARRAY, 4, 6, 3, MMAPABLE)
        m = Mapping(fd, 4096, RW)
        m.write(0, b"\x01" * 24)                             # values and padding
        m.close()
        assert freeze(cl.b, fd) == 0
        digest = Buf(size=32)
        init = bytes(88) + struct.pack("<QI", digest.addr, 32) + bytes(4)
        ret = get_info(cl.b, fd, 104, init=init)[0]
        out.append((ret, digest.data))
    assert out[0] == out[1]


def test_read_only_fd_cannot_map_writable(both):
    out = []
    for cl in both:
        fd = cl.create(ARRAY, 4, 8, 4, MMAPABLE | c.BPF_F_RDONLY)
        out.append(try_map(fd, 4096, RW))
    assert out[0] == out[1] == -errno.EACCES


def test_pinned_values_outlive_the_fds(bpffs_mount):
    """The values stay with the map, not with its first fd, while a pin holds it."""
    import os
    from bpfemu import Emulator, HostKernel
    from tests.support import NCPU
    out = []
    for b in (Emulator(nr_cpus=NCPU, seed=1, bpffs_root=bpffs_mount), HostKernel()):
        cl = Client(b)
        path = os.path.join(bpffs_mount, "mm_" + type(b).__name__)
        fd = cl.create(ARRAY, 4, 8, 2, MMAPABLE)
        m = Mapping(fd, 4096, RW)
        m.write(8, b"pinned!!")
        m.close()
        assert pin(b, fd, path) == 0
        cl.close(fd)
        fd2 = obj_get(b, path)
        assert fd2 >= 0
        cl.fds.append(fd2)
        out.append(cl.lookup(fd2, k(1), 8))
        if isinstance(b, Emulator):
            b.bpffs.unlink(path)
        else:
            os.unlink(path)
        cl.close_all()
    assert out[0] == out[1] == (0, b"pinned!!")


def test_the_lookup_of_a_mapped_map_after_writes_through_the_mapping_is_decoded_too(client):
    """A repeated lookup (decoded call) sees what the mapping wrote since."""
    fd = client.create(ARRAY, 4, 8, 2, MMAPABLE)
    m = Mapping(fd, 4096, RW)
    key, value = Buf(k(1)), Buf(size=8)
    from tests.support import attr_buf, elem_attr
    attr = attr_buf(elem_attr(fd, key.addr, value.addr))
    try:
        seen = []
        for i in range(3):
            m.write(8, struct.pack("<Q", i + 1))
            assert client.b.bpf(c.BPF_MAP_LOOKUP_ELEM, attr, 32) == 0
            seen.append(struct.unpack("<Q", value.data)[0])
        assert seen == [1, 2, 3]
    finally:
        m.close()


def test_fd_numbers_as_in_linux(both):
    """The emulator's own handles on the values take no low fd number: with a mapping open,
    the next map gets the fd it gets without one (the lowest free number, which earlier tests'
    closed fds may have left anywhere below or between)."""
    for cl in both:
        a = cl.create(ARRAY, 4, 8, 2, MMAPABLE)
        unmapped = cl.create(ARRAY, 4, 8, 2)
        cl.close(unmapped)
        m = Mapping(a, 4096, RW)
        b = cl.create(ARRAY, 4, 8, 2)
        m.close()
        assert b == unmapped, cl
