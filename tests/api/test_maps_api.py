"""bpfemu.Map: dict-like maps with bcc's table conventions, on the emulator and the live kernel.

Conventions checked (bcc's TableBase and friends): keys and values as ctypes objects (or
construct Containers, or raw bytes), KeyError for a missing key, BpfError (an OSError with
the kernel's errno) for every other failure, len() by walking the keys, items()/values()
that skip keys deleted during the walk, per-CPU values as a list with one value per
possible CPU. Errnos are the kernel's: each body runs on HostKernel too.
"""
import ctypes
import errno

import construct as cs
import pytest

from bpfemu import BpfError
from bpfemu.libbpf import LibBpf
from bpfemu.maps_api import Map
from bpfemu.uapi import consts as c

from tests.api.conftest import Recorder
from tests.support import ENOTSUPP, NCPU

HASH, ARRAY, LRU_HASH = c.BPF_MAP_TYPE_HASH, c.BPF_MAP_TYPE_ARRAY, c.BPF_MAP_TYPE_LRU_HASH
PERCPU_HASH, PERCPU_ARRAY = c.BPF_MAP_TYPE_PERCPU_HASH, c.BPF_MAP_TYPE_PERCPU_ARRAY
LRU_PERCPU_HASH = c.BPF_MAP_TYPE_LRU_PERCPU_HASH


class FlowKey(ctypes.Structure):
    _fields_ = [("saddr", ctypes.c_uint32), ("sport", ctypes.c_uint16),
                ("proto", ctypes.c_uint8), ("pad", ctypes.c_uint8)]


class Counters(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


def values_of(m):
    return sorted(v.value for v in m.values())


# --- creating and opening -----------------------------------------------------------------

def test_map_is_public():
    import bpfemu
    assert bpfemu.Map is Map and "Map" in bpfemu.__all__


def test_create_and_basic_mapping(maps):
    m = maps(HASH, ctypes.c_uint32, ctypes.c_uint64, 8, name="basic")
    assert (m.map_type, m.key_size, m.value_size, m.max_entries) == (HASH, 4, 8, 8)
    assert len(m) == 0 and list(m) == [] and m.items() == []
    m[1] = 10
    m[ctypes.c_uint32(2)] = ctypes.c_uint64(20)
    v = m[1]
    assert isinstance(v, ctypes.c_uint64) and v.value == 10
    assert m[2].value == 20
    assert 1 in m and 3 not in m
    assert len(m) == 2
    assert sorted(k.value for k in m) == [1, 2]
    assert sorted((k.value, v.value) for k, v in m.items()) == [(1, 10), (2, 20)]
    assert values_of(m) == [10, 20]
    assert sorted(k.value for k in m.keys()) == [1, 2]
    assert m.lookup(3) is None and m.get(3, "dflt") == "dflt" and m.get(1).value == 10
    with pytest.raises(KeyError):
        m[3]
    del m[1]
    with pytest.raises(KeyError):
        del m[1]
    assert len(m) == 1


def test_open_by_fd_reads_type_and_sizes(backend, maps):
    m = maps(LRU_HASH, FlowKey, Counters, 16)
    m[FlowKey(0x0A000001, 80, 6)] = Counters(3, 300)
    other = Map.open(backend, m.fd, FlowKey, Counters)
    assert (other.map_type, other.key_size, other.value_size, other.max_entries) == \
        (LRU_HASH, 8, 16, 16)
    (k, v), = other.items()
    assert (k.saddr, k.sport, k.proto, v.packets, v.bytes) == (0x0A000001, 80, 6, 3, 300)
    other.close()                         # does not own the fd: the first Map still works
    assert m[FlowKey(0x0A000001, 80, 6)].packets == 3
    raw = Map.open(backend, m.fd)          # no types: raw bytes
    (rk, rv), = raw.items()
    assert rk == bytes(FlowKey(0x0A000001, 80, 6)) and rv == bytes(Counters(3, 300))


def test_open_with_owns_fd_closes_it(backend):
    lib = LibBpf(backend)
    fd = lib.bpf_map_create(HASH, None, 4, 4, 1)
    with Map.open(backend, fd, owns_fd=True) as m:
        m[1] = 1
    assert backend.close(fd) == -errno.EBADF           # already closed by the Map


def test_open_refuses_types_of_the_wrong_size(backend, maps):
    m = maps(HASH, ctypes.c_uint32, ctypes.c_uint64, 4)
    with pytest.raises(ValueError, match="is 8 bytes; the map's key size is 4"):
        Map.open(backend, m.fd, ctypes.c_uint64, ctypes.c_uint64)
    with pytest.raises(BpfError) as e:
        Map.open(backend, 0x7FFF0000)
    assert e.value.errno in (errno.EBADF, errno.EBADFD)


def test_create_failure_is_bpferror_with_the_errno(backend):
    with pytest.raises(BpfError) as e:
        Map.create(backend, ARRAY, ctypes.c_uint64, ctypes.c_uint64, 4)   # array keys are u32
    assert e.value.errno == errno.EINVAL and isinstance(e.value, OSError)
    assert "EINVAL" in str(e.value)


def test_construct_structs_are_decoded_to_containers(maps):
    key_t = cs.Struct("ip" / cs.Int32ub, "port" / cs.Int16ub, cs.Padding(2))
    val_t = cs.Struct("packets" / cs.Int64ul, "bytes" / cs.Int64ul)
    m = maps(HASH, key_t, val_t, 8)
    assert (m.key_size, m.value_size) == (8, 16)
    m[dict(ip=0xC0A80001, port=443)] = dict(packets=1, bytes=60)
    v = m[dict(ip=0xC0A80001, port=443)]
    assert isinstance(v, cs.Container) and (v.packets, v.bytes) == (1, 60)
    (k, v2), = m.items()
    assert isinstance(k, cs.Container) and (k.ip, k.port) == (0xC0A80001, 443)
    # the big-endian field is stored big-endian
    assert Map.open(m._lib, m.fd).keys() == [bytes.fromhex("c0a80001 01bb 0000")]
    with pytest.raises(ValueError, match="16-byte value"):
        m[dict(ip=1, port=1)] = dict(packets=1)                # a field missing


def test_raw_bytes_and_ints_by_default(maps):
    m = maps(HASH, 4, 8, 4)                 # sizes: raw bytes
    m[1] = 2                                # ints are packed little-endian
    m[b"\x02\0\0\0"] = b"ABCDEFGH"
    m[bytearray(b"\x03\0\0\0")] = -1
    assert m[1] == (2).to_bytes(8, "little")
    assert m[2] == b"ABCDEFGH" and m[3] == b"\xff" * 8
    assert sorted(m.keys()) == [b"\x01\0\0\0", b"\x02\0\0\0", b"\x03\0\0\0"]
    with pytest.raises(ValueError, match="does not fit in the map's 4-byte key"):
        m[2 ** 32] = 0
    with pytest.raises(TypeError, match="bytes or an int"):
        m["a string"] = 0
    n = maps(HASH, None, None, 2, key_size=16, value_size=4)
    with pytest.raises(ValueError, match="16-byte key"):
        n[1] = 1
    n[bytes(range(16))] = 7
    assert n[bytes(range(16))] == b"\x07\0\0\0"


def test_ctypes_keys_from_tuples_and_other_ctypes(maps):
    m = maps(HASH, FlowKey, Counters, 4)
    m[(1, 2, 3)] = (4, 5)                         # Structure fields by position
    assert m[FlowKey(1, 2, 3)].bytes == 5
    m[{"saddr": 9}] = {"packets": 1}               # or by name
    assert m[FlowKey(saddr=9)].packets == 1
    u = maps(HASH, ctypes.c_uint32, ctypes.c_uint32, 4)
    u[ctypes.c_uint16(5)] = ctypes.c_int32(7)     # other ctypes integers: by value
    assert u[5].value == 7
    with pytest.raises(OverflowError, match="value -1 does not fit c_uint"):
        u[5] = ctypes.c_int32(-1)                 # a value that does not fit: no wrapping
    with pytest.raises(TypeError, match="c_uint"):
        u["five"] = 1


# --- errors before any syscall ----------------------------------------------------------------

def test_wrong_sizes_raise_valueerror_naming_the_size_before_any_syscall(backend):
    rec = Recorder(backend)
    m = Map.create(rec, HASH, 4, 8, 4)
    p = Map.create(rec, PERCPU_HASH, ctypes.c_uint32, ctypes.c_uint32, 4)
    try:
        before = len(rec.calls)
        for op in [lambda: m[b"abc"], lambda: m.__setitem__(b"abcde", 1),
                   lambda: m.__setitem__(1, b"short"), lambda: m.update(1, b"x" * 9),
                   lambda: m.__delitem__(b"ab"), lambda: b"ab" in m, lambda: m.pop(b"ab"),
                   lambda: m.items_update_batch([1, 2], [b"12345678", b"1"]),
                   lambda: m.items_delete_batch([b"123"])]:
            with pytest.raises(ValueError, match=r"must be (4|8) bytes, got \d+"):
                op()
        with pytest.raises(ValueError, match=f"list of {NCPU} values"):
            p[1] = 5
        with pytest.raises(ValueError, match=f"list of {NCPU} values"):
            p[1] = [1] * (NCPU + 1)
        with pytest.raises(ValueError, match="differ in length"):
            m.items_update_batch([1, 2], [1])
        assert len(rec.calls) == before, "a syscall was made for a wrong-sized argument"
    finally:
        m.close()
        p.close()


def test_closed_map_raises_a_clear_error(backend):
    rec = Recorder(backend)
    m = Map.create(rec, HASH, ctypes.c_uint32, ctypes.c_uint32, 4)
    m[1] = 1
    m.close()
    m.close()                                   # closing twice is fine
    assert "closed" in repr(m)
    n = len(rec.calls)
    for op in [lambda: m[1], lambda: m.__setitem__(1, 1), lambda: m.__delitem__(1),
               lambda: 1 in m, lambda: len(m), lambda: list(m), lambda: m.items(),
               lambda: m.values(), lambda: m.clear(), lambda: m.pop(1),
               lambda: m.items_lookup_batch(), lambda: m.items_update_batch([1], [1]),
               lambda: m.fd]:
        with pytest.raises(ValueError, match="this Map is closed"):
            op()
    assert len(rec.calls) == n


def test_repr(maps):
    m = maps(PERCPU_ARRAY, ctypes.c_uint32, ctypes.c_uint64, 4)
    assert repr(m) == (f"<Map BPF_MAP_TYPE_PERCPU_ARRAY key=4B value=8B max_entries=4 "
                       f"fd={m.fd}>")


# --- updates, deletes, pop ----------------------------------------------------------------

def test_update_flags_raise_bpferror_with_the_errno(maps):
    m = maps(HASH, ctypes.c_uint32, ctypes.c_uint32, 2)
    m.update(1, 1, c.BPF_NOEXIST)
    with pytest.raises(BpfError) as e:
        m.update(1, 2, c.BPF_NOEXIST)
    assert e.value.errno == errno.EEXIST and isinstance(e.value, OSError)
    with pytest.raises(BpfError) as e:                 # not KeyError: update is not a lookup
        m.update(2, 2, c.BPF_EXIST)
    assert e.value.errno == errno.ENOENT and not isinstance(e.value, KeyError)
    m.update(1, 3, c.BPF_EXIST)
    m[2] = 2
    with pytest.raises(BpfError) as e:
        m[3] = 3                                       # full
    assert e.value.errno == errno.E2BIG
    with pytest.raises(BpfError) as e:
        m.update(1, 1, 7)
    assert e.value.errno == errno.EINVAL
    assert m[1].value == 3


def test_array_semantics(maps):
    a = maps(ARRAY, ctypes.c_uint32, ctypes.c_uint64, 4)
    assert len(a) == 4 and [k.value for k in a] == [0, 1, 2, 3]     # arrays are always full
    assert values_of(a) == [0, 0, 0, 0]
    a[2] = 7
    with pytest.raises(KeyError):
        a[4]
    with pytest.raises(BpfError) as e:
        a[4] = 1
    assert e.value.errno == errno.E2BIG
    with pytest.raises(BpfError) as e:
        del a[2]                                  # arrays cannot delete
    assert e.value.errno == errno.EINVAL
    with pytest.raises(BpfError) as e:
        a.pop(2)
    assert e.value.errno == ENOTSUPP
    a.clear()                                     # bcc: an array's clear() zeroes it
    assert values_of(a) == [0, 0, 0, 0] and len(a) == 4


def test_pop(maps):
    m = maps(HASH, ctypes.c_uint32, Counters, 4)
    m[1] = Counters(1, 2)
    v = m.pop(1)
    assert (v.packets, v.bytes) == (1, 2) and 1 not in m
    with pytest.raises(KeyError):
        m.pop(1)
    assert m.pop(1, None) is None and m.pop(1, "x") == "x"


def test_clear(maps):
    m = maps(HASH, ctypes.c_uint32, ctypes.c_uint32, 64)
    for i in range(50):
        m[i] = i
    m.clear()
    assert len(m) == 0 and m.items() == []
    m.clear()                                     # an empty map too


# --- walks that meet deletions ------------------------------------------------------------

class DeletingBackend(Recorder):
    """Deletes ``victims`` (through the raw syscall) just before the first LOOKUP_ELEM, as
    another process would between the walk and the lookups of items()."""

    def __init__(self, backend, victims):
        super().__init__(backend)
        self.victims = victims
        self.fd = None

    def bpf(self, cmd, attr, size):
        if cmd == c.BPF_MAP_LOOKUP_ELEM and self.victims:
            victims, self.victims = self.victims, []
            lib = LibBpf(self.b)
            for k in victims:
                assert lib.bpf_map_delete_elem(self.fd, ctypes.c_uint32(k)) == 0
        return super().bpf(cmd, attr, size)


def test_items_and_values_skip_keys_deleted_during_the_walk(backend):
    for method in ("items", "values"):
        db = DeletingBackend(backend, victims=[3, 7, 11])
        m = Map.create(db, HASH, ctypes.c_uint32, ctypes.c_uint32, 32)
        db.fd = m.fd
        try:
            for i in range(16):
                m.update(i, i * 2)
            got = getattr(m, method)()
            assert db.victims == []                       # the deletions happened
            want = [(i, i * 2) for i in range(16) if i not in (3, 7, 11)]
            if method == "items":
                assert sorted((k.value, v.value) for k, v in got) == want
            else:
                assert sorted(v.value for v in got) == [v for _, v in want]
        finally:
            m.close()


def test_deleting_while_iterating_visits_each_key_once(maps):
    """Deleting the key the walk stands on makes the kernel start over from the first key;
    the iterator still gives each key exactly once."""
    m = maps(HASH, ctypes.c_uint32, ctypes.c_uint32, 64)
    for i in range(40):
        m[i] = i
    seen = []
    for k in m:
        seen.append(k.value)
        if k.value % 2 == 0:
            del m[k]
    assert sorted(seen) == list(range(40))
    assert sorted(k.value for k in m) == list(range(1, 40, 2))
    for k in m:                                    # delete everything as we go
        del m[k]
    assert len(m) == 0


# --- batches ----------------------------------------------------------------------------------

@pytest.mark.parametrize("map_type", [HASH, LRU_HASH, PERCPU_HASH, ARRAY, PERCPU_ARRAY])
def test_batch_helpers(maps, map_type):
    n = 100
    m = maps(map_type, ctypes.c_uint32, ctypes.c_uint64, n)
    percpu = map_type in (PERCPU_HASH, PERCPU_ARRAY)

    def val(i):
        return [i * 10 + cpu for cpu in range(NCPU)] if percpu else i * 10

    def plain(v):
        return [x.value for x in v] if percpu else v.value

    m.items_update_batch(range(n), [val(i) for i in range(n)])
    for chunk in (1, 7, 64, 1000):            # chunk 1 meets buckets of several keys: ENOSPC
        got = m.items_lookup_batch(chunk=chunk)
        assert sorted((k.value, plain(v)) for k, v in got) == [(i, val(i)) for i in range(n)]
    if map_type in (ARRAY, PERCPU_ARRAY):
        with pytest.raises(BpfError) as e:
            m.items_delete_batch([1])
        assert e.value.errno == ENOTSUPP
        with pytest.raises(BpfError) as e:
            m.items_lookup_and_delete_batch()
        assert e.value.errno == ENOTSUPP
        return
    m.items_delete_batch([0, 1, 2])
    assert len(m) == n - 3
    with pytest.raises(KeyError) as e:
        m.items_delete_batch([3, 4, 1, 5])       # 1 is gone: 3 and 4 are deleted, then KeyError
    assert e.value.args[0].value == 1
    assert 3 not in m and 4 not in m and 5 in m
    got = m.items_lookup_and_delete_batch(chunk=16)
    assert sorted(k.value for k, _ in got) == list(range(5, n))
    assert len(m) == 0
    m.items_update_batch([1, 2], [val(1), val(2)])
    m.items_delete_batch()                       # no keys: delete them all
    assert len(m) == 0


def test_update_batch_failure_says_how_far_it_got(maps):
    m = maps(HASH, ctypes.c_uint32, ctypes.c_uint32, 4)
    with pytest.raises(BpfError, match="after 4 of 6") as e:
        m.items_update_batch(range(6), range(6))
    assert e.value.errno == errno.E2BIG
    assert sorted(k.value for k in m) == [0, 1, 2, 3]
    m.items_update_batch([], [])                 # nothing to do, no error


# --- per-CPU ----------------------------------------------------------------------------------

@pytest.mark.parametrize("map_type", [PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH])
def test_percpu_values_are_lists_with_sum_and_max(maps, map_type):
    m = maps(map_type, ctypes.c_uint32, ctypes.c_uint32, 4)
    assert m.percpu and m.nr_cpus == NCPU
    m[1] = [cpu * 3 + 1 for cpu in range(NCPU)]
    v = m[1]
    assert isinstance(v, list) and len(v) == NCPU
    assert [x.value for x in v] == [cpu * 3 + 1 for cpu in range(NCPU)]
    assert m.sum(1) == sum(cpu * 3 + 1 for cpu in range(NCPU))
    assert m.max(1) == (NCPU - 1) * 3 + 1
    (k, vals), = [(k, vals) for k, vals in m.items() if k.value == 1]
    assert [x.value for x in vals] == [cpu * 3 + 1 for cpu in range(NCPU)]
    with pytest.raises(KeyError):
        m.sum(99)


def test_percpu_sum_of_structs_and_raw_values(maps):
    m = maps(PERCPU_HASH, ctypes.c_uint32, Counters, 4)
    m[7] = [Counters(cpu + 1, 100 * (cpu + 1)) for cpu in range(NCPU)]
    total = m.sum(7)
    assert isinstance(total, Counters)
    assert (total.packets, total.bytes) == (sum(range(1, NCPU + 1)),
                                            100 * sum(range(1, NCPU + 1)))
    biggest = m.max(7)
    assert (biggest.packets, biggest.bytes) == (NCPU, 100 * NCPU)
    raw = maps(PERCPU_ARRAY, 4, 4, 1)
    raw[0] = [5] * NCPU
    assert raw.sum(0) == 5 * NCPU
    plain = maps(HASH, ctypes.c_uint32, ctypes.c_uint32, 1)
    plain[0] = 1
    with pytest.raises(TypeError, match="per-CPU"):
        plain.sum(0)


@pytest.mark.parametrize("key_type,value_type,ints", [
    (ctypes.c_uint32, ctypes.c_uint64, True), (ctypes.c_uint32, ctypes.c_uint64, False),
    (ctypes.c_int16 * 2, ctypes.c_int64, True),
    (ctypes.c_uint32.__ctype_be__, ctypes.c_uint64.__ctype_be__, True)])
def test_lookup_batch_decodes_every_element_as_a_lookup_would(maps, key_type, value_type, ints):
    """items_lookup_batch() decodes a call's keys and values in one pass (integers with one
    struct pass): the same pairs, of the same types, as m[k] gives one by one."""
    m = maps(HASH, key_type, value_type, 64, ints=ints)
    if isinstance(key_type, type) and issubclass(key_type, ctypes.Array):
        keys = [key_type(i, -i) for i in range(40)]
    else:
        keys = list(range(40))
    for i, k in enumerate(keys):
        m[k] = i * 1000 + 7
    for chunk in (1, 16, 64):
        got = m.items_lookup_batch(chunk=chunk)
        def as_bytes(pairs):
            return sorted((m._key.encode(k), m._value.encode(v)) for k, v in pairs)
        assert as_bytes(got) == as_bytes((k, m[k]) for k in keys)
        assert {type(k) for k, _ in got} == {type(next(iter(m)))}
        assert {type(v) for _, v in got} == {type(m[keys[0]])}
