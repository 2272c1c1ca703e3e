"""The kernel's LRU selftest scenarios (tools/testing/selftests/bpf/test_lru_map.c,
test_lru_sanity0 .. test_lru_sanity8), ported in our own words.

Each scenario is one body that runs unchanged on the emulator and on the live kernel; the
selftest's own expectations are the assertions (an "expected" dict plays the selftest's
expected HASH map). Program lookups, which set the LRU reference bit, go through the data
plane twins: bpfemu.progs.DataPlane on the emulator, real BPF programs
(bpfemu.host_progs.HostDataPlane) on the kernel. The C test pins itself to the first online
CPU (and forks one child per CPU in sanity5); here the thread is pinned with
os.sched_setaffinity and emu.cpu follows. Keys and values are unsigned long long, as there;
per-CPU buffers are NCPU slots of 8 bytes with only slot 0 set.

Run for LRU_HASH and LRU_PERCPU_HASH, common LRU and BPF_F_NO_COMMON_LRU, where the scenario
applies (sanity1, 2, 3 and 5 are common-LRU only, sanity6 is NO_COMMON_LRU only).
"""
import ctypes
import errno
import os
import struct

import pytest

from bpfemu import Emulator, HostKernel
from bpfemu.host_progs import HostDataPlane
from bpfemu.progs import DataPlane
from bpfemu.uapi import consts as c

from tests.differential.lru_support import need_host, pinned  # noqa: F401
from tests.support import NCPU, map_create_attr, profile_under_test

LRU_HASH = c.BPF_MAP_TYPE_LRU_HASH
LRU_PERCPU_HASH = c.BPF_MAP_TYPE_LRU_PERCPU_HASH
NO_COMMON_LRU = c.BPF_F_NO_COMMON_LRU
ANY, NOEXIST, EXIST = c.BPF_ANY, c.BPF_NOEXIST, c.BPF_EXIST
LOCAL_FREE_TARGET = 128      # tgt_free the selftest uses for the common LRU
PERCPU_FREE_TARGET = 4       # ... and for BPF_F_NO_COMMON_LRU

MAP_TYPES = [LRU_HASH, LRU_PERCPU_HASH]
MAP_TYPE_IDS = ["lru_hash", "lru_percpu_hash"]
FLAGS = [0, NO_COMMON_LRU]
FLAG_IDS = ["common", "no_common"]


def map_size_for(tgt_free: int) -> int:
    """The selftest's __map_size(): the map size whose target_free is tgt_free (the
    inverse of target_free = (max_entries / NCPU) / 2)."""
    return tgt_free * NCPU * 2


def tgt_size_for(map_size: int) -> int:
    """The selftest's __tgt_size(): target_free of a common LRU map of that size."""
    return (map_size // NCPU) // 2


class Lru:
    """One LRU map on one backend, with the selftest's vocabulary."""

    def __init__(self, backend, map_type: int, map_flags: int, size: int):
        self.b = backend
        self.is_emu = isinstance(backend, Emulator)
        self.percpu = map_type == LRU_PERCPU_HASH
        self.vsize = 8 * NCPU if self.percpu else 8
        self.dp = DataPlane(backend) if self.is_emu else HostDataPlane(backend)
        self.profile = profile_under_test(backend)
        self.k = ctypes.c_ulonglong()
        self.v = ctypes.create_string_buffer(self.vsize)
        self.attr = ctypes.create_string_buffer(168)
        self.fd = self._create(map_type, map_flags, size)
        assert self.fd >= 0, f"map creation failed: {self.fd}"

    def _create(self, map_type, map_flags, size):
        attr = ctypes.create_string_buffer(map_create_attr(map_type, 8, 8, size, map_flags), 168)
        return self.b.bpf(c.BPF_MAP_CREATE, attr, 168)

    def target_free(self, size: int) -> int:
        """The common LRU's refill batch on the kernel under test (docs/kernels.md): scaled
        to the map since Linux 6.12's backport, always LOCAL_FREE_TARGET on 6.1."""
        if self.profile.lru_target_free_scaled:
            return min(max(size // NCPU // 2, 1), LOCAL_FREE_TARGET)
        return LOCAL_FREE_TARGET

    def close(self):
        if not self.is_emu:
            self.dp.close()
        self.b.close(self.fd)

    def set_cpu(self, cpu: int) -> None:
        if self.is_emu:
            self.b.cpu = cpu
        else:
            os.sched_setaffinity(0, {cpu})

    def _elem(self, cmd, key: int, value_addr: int, flags: int = 0) -> int:
        self.k.value = key
        struct.pack_into("<IIQQQ", self.attr, 0, self.fd, 0, ctypes.addressof(self.k),
                         value_addr, flags & (2**64 - 1))
        return self.b.bpf(cmd, self.attr, 32)

    def update(self, key: int, value0: int = 1234, flags: int = ANY) -> int:
        """bpf_map_update_elem() with value[0] = value0 (other per-CPU slots 0)."""
        ctypes.memset(self.v, 0, self.vsize)
        struct.pack_into("<Q", self.v, 0, value0)
        return self._elem(c.BPF_MAP_UPDATE_ELEM, key, ctypes.addressof(self.v), flags)

    def lookup(self, key: int):
        """Syscall lookup (never sets the reference bit): (ret, value[0] or None)."""
        ret = self._elem(c.BPF_MAP_LOOKUP_ELEM, key, ctypes.addressof(self.v))
        return ret, (struct.unpack_from("<Q", self.v, 0)[0] if ret == 0 else None)

    def lookup_and_delete(self, key: int):
        ret = self._elem(c.BPF_MAP_LOOKUP_AND_DELETE_ELEM, key, ctypes.addressof(self.v))
        return ret, (struct.unpack_from("<Q", self.v, 0)[0] if ret == 0 else None)

    def delete(self, key: int) -> int:
        return self._elem(c.BPF_MAP_DELETE_ELEM, key, 0)

    def lookup_with_ref_bit(self, key: int):
        """The selftest's bpf_map_lookup_elem_with_ref_bit(): a program's lookup (which marks
        the element) returning the first 8 bytes of the value on this CPU, or None."""
        view = self.dp.lookup_elem(self.fd, struct.pack("<Q", key))
        return None if view is None else struct.unpack("<Q", bytes(view)[:8])[0]

    def contents(self) -> dict:
        """key -> value[0] over the GET_NEXT_KEY walk (the selftest's map_equal())."""
        out = {}
        cur = ctypes.c_ulonglong()
        nxt = ctypes.c_ulonglong()
        first = True
        while True:
            struct.pack_into("<IIQQ", self.attr, 0, self.fd, 0,
                             0 if first else ctypes.addressof(cur), ctypes.addressof(nxt))
            ret = self.b.bpf(c.BPF_MAP_GET_NEXT_KEY, self.attr, 24)
            if ret != 0:
                assert ret == -errno.ENOENT, ret
                return out
            first = False
            cur.value = nxt.value
            rc, v0 = self.lookup(cur.value)
            assert rc == 0, (cur.value, rc)
            out[cur.value] = v0


@pytest.fixture(params=["emu", "host"])
def backend(request, pinned):
    if request.param == "host":
        need_host()
        b = HostKernel()
    else:
        b = Emulator(nr_cpus=NCPU, seed=1)
    maps = []

    def make(map_type, map_flags, size, cpu=0):
        m = Lru(b, map_type, map_flags, size)
        maps.append(m)
        m.set_cpu(cpu)           # sched_next_online(): the first online CPU
        return m

    yield make
    for m in maps:
        m.close()


def _sized(map_flags, common_size, no_common_size):
    return no_common_size if map_flags & NO_COMMON_LRU else common_size


def _tgt_free(map_flags):
    return PERCPU_FREE_TARGET if map_flags & NO_COMMON_LRU else LOCAL_FREE_TARGET


types = pytest.mark.parametrize("map_type", MAP_TYPES, ids=MAP_TYPE_IDS)
params = pytest.mark.parametrize("map_flags", FLAGS, ids=FLAG_IDS)         # both LRU flavours
common_only = pytest.mark.parametrize("map_flags", [0], ids=["common"])
no_common_only = pytest.mark.parametrize("map_flags", [NO_COMMON_LRU], ids=["no_common"])


def _basic_two_keys(lru):
    """The opening shared by sanity0, 7 and 8: key 1 in, key 2 in, with the flag checks."""
    assert lru.update(1, 1234, NOEXIST) == 0
    assert lru.update(1, 1234, NOEXIST) == -errno.EEXIST       # already there
    assert lru.lookup(2) == (-errno.ENOENT, None)
    assert lru.update(2, 1234, EXIST) == -errno.ENOENT         # EXIST needs the key
    assert lru.update(2, 1234, NOEXIST) == 0
    assert lru.lookup(3) == (-errno.ENOENT, None)


@types
@params
def test_sanity0_referenced_key_survives(backend, map_type, map_flags):
    """Two-entry map: a program lookup of key 1 makes key 2 the victim of key 3's insert."""
    lru = backend(map_type, map_flags, _sized(map_flags, 2, 2 * NCPU))
    assert lru.update(1, 1234, NOEXIST) == 0
    assert lru.update(1, 1234, NOEXIST) == -errno.EEXIST
    assert lru.update(1, 1234, -1) == -errno.EINVAL             # unknown flags
    assert lru.lookup(2) == (-errno.ENOENT, None)
    assert lru.update(2, 1234, EXIST) == -errno.ENOENT
    assert lru.update(2, 1234, NOEXIST) == 0
    assert lru.lookup(3) == (-errno.ENOENT, None)
    assert lru.lookup_with_ref_bit(1) == 1234
    assert lru.update(3, 1234, NOEXIST) == 0
    assert lru.lookup(2) == (-errno.ENOENT, None)                # the unreferenced one went
    assert lru.lookup_and_delete(1) == (0, 1234)
    assert lru.contents() == {3: 1234}


@types
@common_only
def test_sanity1_unreferenced_recycled_first(backend, map_type, map_flags):
    """Referenced keys outlive a whole map's worth of new, unreferenced inserts."""
    tgt = _tgt_free(map_flags)
    batch = tgt // 2
    lru = backend(map_type, map_flags, map_size_for(tgt) + batch)
    expected = {}
    for key in range(1, 1 + map_size_for(tgt)):
        assert lru.update(key, 1234, NOEXIST) == 0
    for key in range(1, 1 + batch):
        assert lru.lookup_with_ref_bit(key) == 1234
        expected[key] = 1234
    first = 1 + map_size_for(tgt)
    for key in range(first, first + map_size_for(tgt)):
        assert lru.update(key, 1234, NOEXIST) == 0
        expected[key] = 1234
    assert lru.contents() == expected


@types
@common_only
def test_sanity2_oldest_recycled_referenced_kept(backend, map_type, map_flags):
    """Inserting beyond the size recycles the oldest keys; keys re-inserted and referenced
    right away survive, fresh unreferenced ones do not."""
    tgt = _tgt_free(map_flags)
    batch = tgt // 2
    lru = backend(map_type, map_flags, map_size_for(tgt) + batch)
    expected = {}
    for key in range(1, 1 + map_size_for(tgt)):
        assert lru.update(key, 1234, NOEXIST) == 0
    # One more node allocation: the local free list is empty, the global one runs short, so
    # the shrink evicts the oldest key, key 1. On LRU_HASH even the update of key 1 itself
    # does that (the node is taken before the key is looked up) and then fails.
    if map_type == LRU_PERCPU_HASH:
        assert lru.update(1, 1234, NOEXIST) == 0
        assert lru.delete(1) == 0
    else:
        assert lru.update(1, 1234, EXIST) != 0
    for key in range(1, 1 + batch):
        assert lru.lookup(key) == (-errno.ENOENT, None)
        assert lru.update(key, 4321, NOEXIST) == 0
        assert lru.lookup_with_ref_bit(key) == 4321
        expected[key] = 4321
    first = 1 + map_size_for(tgt)
    for key in range(first, first + batch):              # to be recycled by the next shrink
        assert lru.update(key, 1234, NOEXIST) == 0
    for key in range(first + batch, first + batch + map_size_for(tgt)):
        assert lru.update(key, 1234, NOEXIST) == 0
        expected[key] = 1234
    assert lru.contents() == expected


@types
@common_only
@pytest.mark.parametrize("variant", ["partial_refill", "two_targets"])
def test_sanity3_rotation(backend, map_type, map_flags, variant):
    """Active/inactive rotation: fill the map, reference all but the last batch, insert a
    batch of new keys: exactly the unreferenced batch is replaced.

    ``partial_refill`` sizes the map as the current selftest does (target_free equal to the
    batch, so one partial refill shrinks live elements); ``two_targets`` is the earlier
    version (size 2 * tgt_free, so the map's target_free is twice the batch).

    On Linux 6.1 target_free is always 128, so on 2 CPUs the ``partial_refill`` map (128
    entries) is taken whole by the first refill; the next refill flushes every pending node
    at once, which clears the reference bits, the rotation moves them all to the inactive
    list and the shrink evicts the whole map: only the new batch is left."""
    tgt = _tgt_free(map_flags)
    batch = tgt_size_for(tgt)
    size = map_size_for(batch) if variant == "partial_refill" else 2 * tgt
    lru = backend(map_type, map_flags, size)
    referenced_survive = True
    if variant == "partial_refill" and lru.target_free(size) != batch:
        if lru.target_free(size) < size:
            pytest.skip(f"no expectation for target_free {lru.target_free(size)} on {size} entries")
        referenced_survive = False
    expected = {}
    for key in range(1, 1 + size):
        assert lru.update(key, 1234, NOEXIST) == 0
    for key in range(1, 1 + size - batch):
        assert lru.lookup_with_ref_bit(key) == 1234
        if referenced_survive:
            expected[key] = 1234
    for key in range(1 + size, 1 + size + batch):
        assert lru.update(key, 1234, NOEXIST) == 0
        expected[key] = 1234
    assert lru.contents() == expected


@types
@params
def test_sanity4_deleted_nodes_reused(backend, map_type, map_flags):
    """Deletion: nodes freed by deletes are reused by later inserts before any eviction."""
    tgt = _tgt_free(map_flags)
    lru = backend(map_type, map_flags, _sized(map_flags, 3 * map_size_for(tgt), 3 * tgt * NCPU))
    expected = {}
    for key in range(1, 2 * tgt + 1):
        assert lru.update(key, 1234, NOEXIST) == 0
    assert lru.update(1, 1234, NOEXIST) == -errno.EEXIST
    for key in range(1, tgt + 1):
        assert lru.lookup_with_ref_bit(key) == 1234
        expected[key] = 1234
    for key in range(tgt + 1, 2 * tgt + 1):
        assert lru.delete(key) == 0
        assert lru.delete(key) == -errno.ENOENT
    for key in range(2 * tgt + 1, 4 * tgt + 1):
        assert lru.update(key, 1234, NOEXIST) == 0
        expected[key] = 1234
    assert lru.contents() == expected


@types
@common_only
def test_sanity5_one_entry_every_cpu(backend, map_type, map_flags):
    """A one-entry map works from every CPU: on each CPU in turn the previous key is found,
    a new key is inserted (taking the only node, from another CPU's lists if need be) and
    referenced, and the previous key is gone. (The C test forks a child per CPU.)"""
    lru = backend(map_type, map_flags, 1)
    key = 0
    assert lru.update(key, 1234, NOEXIST) == 0
    for cpu in range(NCPU):
        lru.set_cpu(cpu)
        assert lru.lookup_with_ref_bit(key) is not None
        assert lru.update(key + 1, 1234, NOEXIST) == 0
        # found; its value on this CPU is 1234 only on CPU 0 for LRU_PERCPU_HASH (the
        # syscall wrote slot 0), so, like the selftest, only presence is checked
        assert lru.lookup_with_ref_bit(key + 1) is not None
        assert lru.lookup(key) == (-errno.ENOENT, None)
        key += 1
    assert lru.contents() == {key: 1234}


@types
@no_common_only
def test_sanity6_sticky_ref_bits(backend, map_type, map_flags):
    """Per-CPU LRU rotation: keys 1..tgt_free re-referenced before every insert stay through
    two rounds of eviction."""
    tgt = _tgt_free(map_flags)
    size = tgt * 2
    lru = backend(map_type, map_flags, size * NCPU)
    expected = {}
    for key in range(1, tgt + 1):
        assert lru.update(key, 1234, NOEXIST) == 0
        expected[key] = 1234
    for key in range(tgt + 1, 2 * tgt + 1):
        for stable in range(1, tgt + 1):
            assert lru.lookup_with_ref_bit(stable) == 1234
        assert lru.update(key, 1234, NOEXIST) == 0
    for key in range(2 * tgt + 1, 3 * tgt + 1):
        assert lru.update(key, 1234, NOEXIST) == 0
        expected[key] = 1234
    assert lru.contents() == expected


@types
@params
def test_sanity7_syscall_lookup_does_not_protect(backend, map_type, map_flags):
    """Key 1 looked up by a program, key 2 by the syscall: key 3's insert evicts key 2."""
    lru = backend(map_type, map_flags, _sized(map_flags, 2, 2 * NCPU))
    _basic_two_keys(lru)
    assert lru.lookup_with_ref_bit(1) == 1234
    assert lru.lookup(2) == (0, 1234)
    assert lru.update(3, 1234, NOEXIST) == 0
    assert lru.lookup(2) == (-errno.ENOENT, None)
    assert lru.contents() == {1: 1234, 3: 1234}


@types
@params
def test_sanity8_program_lookup_protects(backend, map_type, map_flags):
    """The mirror image: key 1 by the syscall, key 2 by a program: key 1 is evicted."""
    lru = backend(map_type, map_flags, _sized(map_flags, 2, 2 * NCPU))
    _basic_two_keys(lru)
    assert lru.lookup(1) == (0, 1234)
    assert lru.lookup_with_ref_bit(2) == 1234
    assert lru.update(3, 1234, NOEXIST) == 0
    assert lru.lookup(1) == (-errno.ENOENT, None)
    assert lru.contents() == {2: 1234, 3: 1234}
