"""Map is complete (pin, from_pin, from_id, freeze, info, ints, hashable keys, to_dict, a
per-CPU helper), and BpfError says what failed. On the emulator and the live kernel."""
import ctypes
import errno
import os

import pytest

from bpfemu import BpfError, Emulator, Map
from bpfemu.maps_api import MapInfo
from bpfemu.uapi.consts import (BPF_F_ZERO_SEED, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_HASH,
                                BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_PERCPU_HASH,
                                BPF_NOEXIST, BpfMapType)

U32, U64 = ctypes.c_uint32, ctypes.c_uint64


class Flow(ctypes.Structure):
    _fields_ = [("saddr", ctypes.c_uint32), ("dport", ctypes.c_uint16),
                ("proto", ctypes.c_uint8), ("pad", ctypes.c_uint8)]


def _unpin(backend, path):
    if isinstance(backend, Emulator):
        backend.bpffs.unlink(path)
    else:
        os.unlink(path)


def test_info(maps):
    m = maps(BPF_MAP_TYPE_HASH, U32, U64, 16, name="flows", flags=BPF_F_ZERO_SEED)
    info = m.info
    assert isinstance(info, MapInfo) and info.id > 0
    assert (info.name, info.type, info.key_size, info.value_size, info.max_entries,
            info.flags) == ("flows", BpfMapType.BPF_MAP_TYPE_HASH, 4, 8, 16, BPF_F_ZERO_SEED)
    assert m.name == "flows"


def test_pin_and_from_pin(backend, maps):
    m = maps(BPF_MAP_TYPE_HASH, U32, U64, 16, name="pinned")
    m[1] = 10
    path = f"/sys/fs/bpf/bpfemu_test_pin_{os.getpid()}"
    m.pin(path)
    try:
        with pytest.raises(BpfError) as e:
            m.pin(path)                           # the name is taken
        assert e.value.errno == errno.EEXIST and path in str(e.value)
        m.close()
        with Map.from_pin(backend, path, U32, U64, ints=True) as again:
            assert again.to_dict() == {1: 10}
            assert again.info.name == "pinned"
    finally:
        _unpin(backend, path)
    with pytest.raises(BpfError) as e:
        Map.from_pin(backend, path)
    assert e.value.errno == errno.ENOENT and "BPF_OBJ_GET" in str(e.value)


def test_from_id(backend, maps):
    m = maps(BPF_MAP_TYPE_ARRAY, U32, U32, 4)
    m[2] = 7
    with Map.from_id(backend, m.info.id, U32, U32, ints=True) as same:
        assert same[2] == 7 and same.fd != m.fd
    with pytest.raises(BpfError) as e:
        Map.from_id(backend, 0x7FFFFFFE)
    assert e.value.errno == errno.ENOENT


def test_freeze(maps):
    m = maps(BPF_MAP_TYPE_HASH, U32, U64, 4)
    m[1] = 1
    m.freeze()
    with pytest.raises(BpfError) as e:
        m[2] = 2
    assert e.value.errno == errno.EPERM
    assert m[1].value == 1


def test_ints_on_request(maps):
    m = maps(BPF_MAP_TYPE_HASH, U32, U64, 8, ints=True)
    m[3] = 30
    assert m[3] == 30 and m.keys() == [3] and m.items() == [(3, 30)]
    assert m.items_lookup_batch() == [(3, 30)]
    p = maps(BPF_MAP_TYPE_PERCPU_HASH, U32, U64, 8, ints=True)
    p.set_all_cpus(1, 5)
    assert p[1] == [5] * p.nr_cpus


def test_keys_are_hashable_without_ints(maps):
    """Decoded ctypes keys compared and hashed by identity: `dict(m.items())` kept one entry
    per object, `set(m)` could not say `7 in`. Now by bytes (scalars: by value)."""
    m = maps(BPF_MAP_TYPE_HASH, U32, U64, 8)
    for k in (7, 8):
        m[k] = k * 10
    d = dict(m.items())
    assert set(d) == {7, 8} and 7 in set(m)
    assert d[7].value == 70 and d[m.Key(7)].value == 70
    assert m.to_dict()[8].value == 80
    assert list(m)[0] == U32(list(m)[0].value)
    assert isinstance(list(m)[0], U32)                 # still the ctypes type


def test_structure_keys_are_hashable(maps):
    m = maps(BPF_MAP_TYPE_HASH, Flow, U64, 8)
    m[(1, 80, 6, 0)] = 1
    m[Flow(2, 443, 6, 0)] = 2
    d = m.to_dict()
    # A plain ctypes Structure is unhashable; m.Key is Flow, hashable by its bytes.
    assert m.Key(1, 80, 6, 0) in d and d[m.Key(2, 443, 6, 0)].value == 2
    assert isinstance(m.Key(), Flow)
    assert len(set(m) | set(m)) == 2
    assert "dport=443" in repr(next(k for k in d if k.saddr == 2))


def test_set_all_cpus(maps):
    m = maps(BPF_MAP_TYPE_PERCPU_ARRAY, U32, U64, 2)
    m.set_all_cpus(1, 9)
    assert [v.value for v in m[1]] == [9] * m.nr_cpus
    with pytest.raises(TypeError, match="per-CPU"):
        maps(BPF_MAP_TYPE_HASH, U32, U64, 2).set_all_cpus(1, 9)


def test_bpferror_says_what_failed(maps):
    """`[Errno 7] Argument list too long` named neither the command, the map nor the key."""
    m = maps(BPF_MAP_TYPE_HASH, U32, U64, 1, name="tiny")
    m[1] = 1
    with pytest.raises(BpfError) as e:
        m[2] = 2
    err = e.value
    assert err.errno == errno.E2BIG
    assert (err.cmd, err.fd, err.map_name, err.map_type, err.key) == (
        "BPF_MAP_UPDATE_ELEM", m.fd, "tiny", "BPF_MAP_TYPE_HASH", 2)
    assert str(err) == (f"[Errno 7] Argument list too long (E2BIG): BPF_MAP_UPDATE_ELEM on fd "
                        f"{m.fd} (BPF_MAP_TYPE_HASH 'tiny'), key 2")
    with pytest.raises(BpfError) as e:
        m.update(1, 1, BPF_NOEXIST)
    assert e.value.errno == errno.EEXIST and e.value.key == 1


def test_create_failure_names_the_command_and_type(backend):
    with pytest.raises(BpfError) as e:
        Map.create(backend, BPF_MAP_TYPE_ARRAY, U64, U64, 4, name="bad")
    assert e.value.cmd == "BPF_MAP_CREATE" and e.value.map_type == "BPF_MAP_TYPE_ARRAY"
    assert "BPF_MAP_CREATE (BPF_MAP_TYPE_ARRAY 'bad')" in str(e.value)


def test_errors_inside_the_emulator_carry_no_context_and_cost_nothing():
    e = BpfError(errno.ENOENT)
    assert (e.cmd, e.fd, e.key) == (None, None, None) and "cmd" not in e.__dict__
