"""bpfemu.progs: the program side of maps on the emulator (no privileges needed).

Expected behaviour is the kernel's helpers as described in docs: #lru-maps, #per-cpu-values
and checked against the live kernel in tests/differential/test_dataplane.py; here the
emulator-only properties: live views, CPU selection, reference bits, argument checks.
"""
import errno
import struct

import pytest

from bpfemu import BpfError, Emulator
from bpfemu.progs import DataPlane, fetch_add
from bpfemu.uapi import consts as c

from tests.support import Client

HASH, PERCPU_HASH = c.BPF_MAP_TYPE_HASH, c.BPF_MAP_TYPE_PERCPU_HASH
LRU_HASH, LRU_PERCPU_HASH = c.BPF_MAP_TYPE_LRU_HASH, c.BPF_MAP_TYPE_LRU_PERCPU_HASH


@pytest.fixture
def env():
    emu = Emulator(nr_cpus=2, seed=1)
    cl = Client(emu)
    yield emu, cl, DataPlane(emu)
    cl.close_all()


def k(n):
    return struct.pack("<I", n)


def test_lookup_returns_live_view(env):
    emu, cl, dp = env
    fd = cl.create(HASH, 4, 8, 4)
    assert dp.lookup_elem(fd, k(1)) is None
    assert dp.update_elem(fd, k(1), b"A" * 8, c.BPF_NOEXIST) == 0
    v = dp.lookup_elem(fd, k(1))
    assert isinstance(v, memoryview) and len(v) == 8 and not v.readonly
    v[0:2] = b"xy"
    assert cl.lookup(fd, k(1), 8) == (0, b"xyAAAAAA")


def test_percpu_view_is_the_current_cpus_slot(env):
    emu, cl, dp = env
    fd = cl.create(PERCPU_HASH, 4, 4, 4)
    emu.cpu = 1
    assert dp.update_elem(fd, k(1), b"\x11\x22\x33\x44") == 0
    # a new element from a program zeroes the other CPU's value
    assert cl.lookup(fd, k(1), 16) == (0, bytes(8) + b"\x11\x22\x33\x44" + bytes(4))
    v = dp.lookup_elem(fd, k(1))
    assert bytes(v) == b"\x11\x22\x33\x44"
    emu.cpu = 0
    assert bytes(dp.lookup_elem(fd, k(1))) == bytes(4)
    v0 = dp.lookup_percpu_elem(fd, k(1), 1)
    assert bytes(v0) == b"\x11\x22\x33\x44"
    assert dp.lookup_percpu_elem(fd, k(1), 2) is None          # past the last possible CPU
    assert dp.lookup_percpu_elem(fd, k(1), -1) is None          # u32: a huge CPU number
    # an update of an existing element writes this CPU's value only, in place
    assert dp.update_elem(fd, k(1), b"\x55" * 4, c.BPF_EXIST) == 0
    assert bytes(v0) == b"\x11\x22\x33\x44"
    assert cl.lookup(fd, k(1), 16) == (0, b"\x55" * 4 + bytes(4) + b"\x11\x22\x33\x44" + bytes(4))


def test_percpu_view_survives_syscall_update(env):
    """Per-CPU values are updated in place (the element stays), so a view stays live."""
    emu, cl, dp = env
    for map_type in (PERCPU_HASH, LRU_PERCPU_HASH):
        fd = cl.create(map_type, 4, 8, 4)
        assert cl.update(fd, k(1), bytes(16)) == 0
        v = dp.lookup_elem(fd, k(1))
        assert cl.update(fd, k(1), b"\x01" * 8 + b"\x02" * 8) == 0
        assert bytes(v) == b"\x01" * 8


def test_update_and_delete_return_errnos(env):
    emu, cl, dp = env
    for map_type in (HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH):
        fd = cl.create(map_type, 4, 8, 2)
        assert dp.update_elem(fd, k(1), bytes(8), c.BPF_EXIST) == -errno.ENOENT
        assert dp.update_elem(fd, k(1), bytes(8), c.BPF_NOEXIST) == 0
        assert dp.update_elem(fd, k(1), bytes(8), c.BPF_NOEXIST) == -errno.EEXIST
        assert dp.update_elem(fd, k(1), bytes(8), 3) == -errno.EINVAL
        assert dp.update_elem(fd, k(1), bytes(8), c.BPF_F_LOCK) == -errno.EINVAL
        assert dp.update_elem(fd, k(1), bytes(8), 1 << 40) == -errno.EINVAL
        assert dp.delete_elem(fd, k(1)) == 0
        assert dp.delete_elem(fd, k(1)) == -errno.ENOENT
    fd = cl.create(HASH, 4, 8, 1)
    assert dp.update_elem(fd, k(1), bytes(8)) == 0
    assert dp.update_elem(fd, k(2), bytes(8)) == -errno.E2BIG


def test_program_lookup_sets_ref_syscall_lookup_does_not(env):
    emu, cl, dp = env
    for map_type in (LRU_HASH, LRU_PERCPU_HASH):
        fd = cl.create(map_type, 4, 8, 8)
        assert cl.update(fd, k(1), bytes(8 * (2 if map_type == LRU_PERCPU_HASH else 1))) == 0
        m = emu.map_of(fd)
        node = m.store.lookup(k(1))         # element i is LRU node i
        assert m.lru.ref[node] == 0
        cl.lookup(fd, k(1), 16 if map_type == LRU_PERCPU_HASH else 8)
        assert m.lru.ref[node] == 0
        assert dp.lookup_elem(fd, k(1)) is not None
        assert m.lru.ref[node] == 1
    fd = cl.create(LRU_PERCPU_HASH, 4, 8, 8)
    assert cl.update(fd, k(1), bytes(16)) == 0
    m = emu.map_of(fd)
    node = m.store.lookup(k(1))
    assert dp.lookup_percpu_elem(fd, k(1), 5) is None and m.lru.ref[node] == 0   # NULL before lookup
    assert dp.lookup_percpu_elem(fd, k(1), 1) is not None and m.lru.ref[node] == 1


def test_fetch_add_wraps_and_checks_the_instruction():
    buf = bytearray(16)
    v = memoryview(buf)
    assert fetch_add(v, 0, 8, 5) == 0
    assert fetch_add(v, 0, 8, -6) == 5
    assert bytes(v[0:8]) == b"\xff" * 8                        # 5 - 6 wraps modulo 2**64
    assert fetch_add(v, 0, 8, 1) == 2**64 - 1 and bytes(v[0:8]) == bytes(8)
    assert fetch_add(v, 12, 4, 2**32 + 3) == 0 and buf[12:16] == b"\x03\0\0\0"
    for offset, size in ((0, 2), (0, 1), (4, 8), (2, 4), (-4, 4)):
        with pytest.raises(ValueError):
            fetch_add(v, offset, size, 1)
    with pytest.raises(ValueError):
        fetch_add(v, 16, 8, 1)                                  # past the value


def test_update_stats_example(env):
    """The seed documentation's update_stats(): lookup, create with NOEXIST if missing,
    then atomically add to packets and bytes."""
    emu, cl, dp = env
    fd = cl.create(PERCPU_HASH, 4, 16, 16)

    def update_stats(key, nbytes):
        v = dp.lookup_elem(fd, key)
        if v is None:
            dp.update_elem(fd, key, bytes(16), c.BPF_NOEXIST)
            v = dp.lookup_elem(fd, key)
            if v is None:
                return
        dp.fetch_add(v, 0, 8, 1)
        dp.fetch_add(v, 8, 8, nbytes)

    for cpu, nbytes in ((0, 100), (1, 60), (0, 40), (1, 1)):
        emu.cpu = cpu
        update_stats(k(7), nbytes)
    ret, buf = cl.lookup(fd, k(7), 32)
    assert ret == 0
    assert struct.unpack("<4Q", buf) == (2, 140, 2, 61)
    assert dp.lookup_fetch_add(fd, k(7), 0, 8, 10) == 2
    assert dp.lookup_fetch_add(fd, k(8), 0, 8, 10) is None


def test_what_the_verifier_would_refuse(env):
    emu, cl, dp = env
    fd = cl.create(HASH, 4, 8, 4)
    with pytest.raises(BpfError) as e:
        dp.lookup_elem(999, k(1))
    assert e.value.errno == errno.EBADF
    with pytest.raises(BpfError) as e:
        dp.lookup_percpu_elem(fd, k(1), 0)                      # not a per-CPU map
    assert e.value.errno == errno.EINVAL
    with pytest.raises(ValueError):
        dp.lookup_elem(fd, b"\x01\x02")                        # key shorter than key_size
    with pytest.raises(ValueError):
        dp.update_elem(fd, k(1), b"\x01")                       # value shorter than value_size
    assert dp.update_elem(fd, k(1) + b"junk", bytes(8) + b"more") == 0   # longer is fine
    assert cl.keys(fd, 4) == [k(1)]


def test_lru_stale_view_sees_node_reuse(env):
    """As in the kernel, a view of an LRU element points into its preallocated node: once
    the element is deleted and the node reused, the view shows the new occupant."""
    emu, cl, dp = env
    fd = cl.create(LRU_HASH, 4, 8, 1)
    assert dp.update_elem(fd, k(1), b"A" * 8) == 0
    v = dp.lookup_elem(fd, k(1))
    assert dp.delete_elem(fd, k(1)) == 0
    assert dp.update_elem(fd, k(2), b"B" * 8) == 0
    assert bytes(v) == b"B" * 8


def test_lookup_elem_returns_a_typed_view_on_request():
    """A program casts the value pointer to its struct; so can DataPlane.lookup_elem."""
    import ctypes

    from bpfemu import Emulator, Map
    from bpfemu.progs import DataPlane
    from bpfemu.uapi.consts import BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_PERCPU_HASH

    class Counters(ctypes.Structure):
        _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]

    emu = Emulator(nr_cpus=2)
    dp = DataPlane(emu)
    m = Map.create(emu, BPF_MAP_TYPE_HASH, ctypes.c_uint32, Counters, 4)
    p = Map.create(emu, BPF_MAP_TYPE_PERCPU_HASH, ctypes.c_uint32, Counters, 4)
    for fd in (m.fd, p.fd):
        assert dp.update_elem(fd, bytes(4), bytes(16)) == 0
        v = dp.lookup_elem(fd, bytes(4), Counters)
        assert isinstance(v, Counters)
        v.packets += 3                              # writes the map in place
        v.bytes = 1500
    assert (m[0].packets, m[0].bytes) == (3, 1500)
    assert [(c.packets, c.bytes) for c in p[0]] == [(3, 1500), (0, 0)]   # CPU 0's slot only
    assert dp.lookup_elem(m.fd, (9).to_bytes(4, "little"), Counters) is None
    with pytest.raises(ValueError, match="is 24 bytes; the value is 16"):
        dp.lookup_elem(m.fd, bytes(4), ctypes.c_uint64 * 3)
    emu.close_all()
