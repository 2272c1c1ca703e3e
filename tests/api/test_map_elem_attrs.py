"""Map's element operations call bpf() on one attr per command, packed once with the map's fd
and the Map's key and value buffers: the same results as through LibBpf, on either backend,
when flags change between updates, when the caller uses the Map inside a walk, and after
close()."""
import ctypes
import errno

import pytest

from bpfemu.maps_api import Map
from bpfemu.uapi import consts as c

U32, U64 = ctypes.c_uint32, ctypes.c_uint64


def test_update_flags_change_between_calls(backend):
    with Map.create(backend, c.BPF_MAP_TYPE_HASH, U32, U64, 8, ints=True) as m:
        m.update(1, 10, c.BPF_NOEXIST)
        with pytest.raises(OSError) as e:
            m.update(1, 11, c.BPF_NOEXIST)
        assert e.value.errno == errno.EEXIST
        with pytest.raises(KeyError):
            m[2]
        with pytest.raises(OSError) as e:
            m.update(2, 20, c.BPF_EXIST)
        assert e.value.errno == errno.ENOENT
        m[1] = 12                               # BPF_ANY again
        m.update(1, 13, c.BPF_EXIST)
        assert m[1] == 13 and 1 in m and 2 not in m
        with pytest.raises(TypeError):
            m.update(1, 14, 0.0)


def test_lookups_and_deletes_inside_a_walk_do_not_disturb_it(backend):
    with Map.create(backend, c.BPF_MAP_TYPE_HASH, U32, U64, 64, ints=True) as m:
        for i in range(40):
            m[i] = i * 3
        seen = []
        for k in m:                             # uses the key buffer the walk also uses
            assert m[k] == k * 3
            assert (k + 1000) not in m
            if k % 2:
                del m[k]
            seen.append(k)
        assert sorted(seen) == list(range(40))
        assert sorted(m.keys()) == list(range(0, 40, 2))
        assert m.pop(4) == 12 and m.pop(4, None) is None


def test_array_and_percpu_array_elements(backend):
    with Map.create(backend, c.BPF_MAP_TYPE_ARRAY, U32, U64, 4, ints=True) as m:
        m[3] = 9
        assert [m[i] for i in range(4)] == [0, 0, 0, 9]
        with pytest.raises(KeyError):
            m[4]
        with pytest.raises(OSError) as e:
            del m[1]
        assert e.value.errno == errno.EINVAL
        assert list(m) == [0, 1, 2, 3]
    with Map.create(backend, c.BPF_MAP_TYPE_PERCPU_ARRAY, U32, U64, 4, ints=True) as m:
        m[2] = list(range(m.nr_cpus))
        assert m[2] == list(range(m.nr_cpus)) and m.sum(2) == sum(range(m.nr_cpus))


def test_a_closed_map_refuses_every_operation(backend):
    m = Map.create(backend, c.BPF_MAP_TYPE_HASH, U32, U64, 8, ints=True)
    m[1] = 1
    walk = iter(m)
    next(walk)
    m.close()
    for op in (lambda: m[1], lambda: m.update(1, 2), lambda: m.__delitem__(1),
               lambda: 1 in m, lambda: m.pop(1), lambda: list(m), lambda: next(walk)):
        with pytest.raises((ValueError, StopIteration)):
            op()


def test_integer_keys_and_values_keep_their_ctypes_bytes(backend):
    """Scalar integer types are packed with struct where that gives ctypes' bytes: a
    big-endian type stays big-endian, and out-of-range ints are still refused."""
    be = ctypes.c_uint32.__ctype_be__
    with Map.create(backend, c.BPF_MAP_TYPE_HASH, be, ctypes.c_int16, 8, ints=True) as m:
        m[0x01020304] = -2
        assert m.keys() == [0x01020304] and m[0x01020304] == -2
        raw = Map.open(m._lib, m.fd)
        assert raw.keys() == [b"\x01\x02\x03\x04"] and raw[b"\x01\x02\x03\x04"] == b"\xfe\xff"
        for bad in (-1, 1 << 32):
            with pytest.raises(OverflowError):
                m[bad] = 1
        with pytest.raises(OverflowError):
            m[5] = 1 << 15
