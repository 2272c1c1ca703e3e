"""The libbpf layer checks Python buffers against the map's sizes (it learns them once per
fd) and names out-of-range or mistyped arguments; raw addresses keep C's contract.

Before: ``bpf_map_update_elem(fd, b"\\1", value)`` on a 4-byte-key map returned 0 and stored
bytes from past the key's buffer; a lookup of a 64 KiB value into an 8-byte bytearray wrote
past it (a segfault); ``max_entries=-1`` or ``2**40`` raised struct.error and a None fd
"unsupported operand type(s) for &"."""
import ctypes

import pytest

from bpfemu import Map
from bpfemu.libbpf import LibBpf, bpf_map_info
from bpfemu.uapi.consts import (BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_HASH,
                                BPF_MAP_TYPE_PERCPU_HASH)


@pytest.fixture
def lib(backend):
    yield LibBpf(backend)
    backend.close_all()


def _map(lib, map_type=BPF_MAP_TYPE_HASH, ks=4, vs=8, n=4):
    fd = lib.bpf_map_create(map_type, "buf", ks, vs, n, None)
    assert fd >= 0
    return fd


def _count(lib, fd):
    n, key, nxt = 0, None, bytearray(4)
    while lib.bpf_map_get_next_key(fd, key, nxt) == 0:
        n, key = n + 1, bytes(nxt)
    return n


def test_a_short_key_is_a_value_error_and_stores_nothing(lib):
    fd = _map(lib)
    with pytest.raises(ValueError, match=r"key is a 1-byte buffer; .* 4 bytes .*key 4 bytes"):
        lib.bpf_map_update_elem(fd, b"\1", bytes(8), 0)
    assert _count(lib, fd) == 0


def test_a_short_value_buffer_for_a_big_value_is_a_value_error(lib):
    fd = _map(lib, vs=65536)
    assert lib.bpf_map_update_elem(fd, bytes(4), bytes(65536), 0) == 0
    out = bytearray(8)
    with pytest.raises(ValueError, match="value is a 8-byte buffer.*65536 bytes"):
        lib.bpf_map_lookup_elem(fd, bytes(4), out)
    assert out == bytearray(8)
    with pytest.raises(ValueError, match="value is a 8-byte buffer"):
        lib.bpf_map_lookup_and_delete_elem(fd, bytes(4), out)
    assert _count(lib, fd) == 1


def test_per_cpu_values_need_a_slot_per_cpu(lib, backend):
    fd = _map(lib, BPF_MAP_TYPE_PERCPU_HASH, vs=4)
    ncpu = lib.libbpf_num_possible_cpus()
    with pytest.raises(ValueError, match=f"value {8 * ncpu} bytes"):
        lib.bpf_map_update_elem(fd, bytes(4), bytes(4), 0)
    assert lib.bpf_map_update_elem(fd, bytes(4), bytes(8 * ncpu), 0) == 0


def test_next_key_and_batches_are_checked(lib):
    fd = _map(lib, n=8)
    for k in range(3):
        assert lib.bpf_map_update_elem(fd, k.to_bytes(4, "little"), bytes(8), 0) == 0
    with pytest.raises(ValueError, match="next_key is a 2-byte buffer"):
        lib.bpf_map_get_next_key(fd, None, bytearray(2))
    count = ctypes.c_uint32(3)
    with pytest.raises(ValueError, match="values is a 16-byte buffer.*count 3"):
        lib.bpf_map_lookup_batch(fd, None, bytearray(4), bytearray(12), bytearray(16), count)
    with pytest.raises(ValueError, match="out_batch is a 2-byte buffer"):
        lib.bpf_map_lookup_batch(fd, None, bytearray(2), bytearray(12), bytearray(24), count)
    assert lib.bpf_map_lookup_batch(fd, None, bytearray(4), bytearray(12), bytearray(24),
                                    count) in (0, -2)
    assert count.value == 3


def test_longer_buffers_and_raw_addresses_keep_cs_contract(lib):
    fd = _map(lib)
    key = ctypes.c_uint64(7)                      # 8 bytes for a 4-byte key: C reads 4
    assert lib.bpf_map_update_elem(fd, key, bytes(16), 0) == 0
    out = ctypes.create_string_buffer(8)
    k = ctypes.c_uint32(7)
    assert lib.bpf_map_lookup_elem(fd, ctypes.addressof(k), ctypes.addressof(out)) == 0


def test_the_sizes_are_learned_again_for_a_new_map_at_the_same_fd(lib):
    fd = _map(lib, ks=4)
    assert lib.bpf_map_update_elem(fd, bytes(4), bytes(8), 0) == 0
    lib.close(fd)
    fd2 = _map(lib, ks=16)
    assert fd2 == fd
    with pytest.raises(ValueError, match="key is a 4-byte buffer.*key 16 bytes"):
        lib.bpf_map_update_elem(fd2, bytes(4), bytes(8), 0)


def test_an_fd_that_is_no_map_gets_the_kernels_answer(lib):
    assert lib.bpf_map_update_elem(0x7FFFFFF0, b"\1", b"\2", 0) == -9       # EBADF


def test_info_shorter_than_info_len_is_a_value_error(lib):
    fd = _map(lib)
    with pytest.raises(ValueError, match="info is a 8-byte buffer; info_len says 104"):
        lib.bpf_obj_get_info_by_fd(fd, bytearray(8), ctypes.c_uint32(104))
    info = bpf_map_info()
    assert lib.bpf_obj_get_info_by_fd(fd, info, ctypes.c_uint32(ctypes.sizeof(info))) == 0


@pytest.mark.parametrize("max_entries", [2 ** 40, -1])
def test_out_of_range_arguments_name_the_argument(lib, backend, max_entries):
    with pytest.raises(OverflowError, match=f"max_entries={max_entries} does not fit"):
        lib.bpf_map_create(BPF_MAP_TYPE_ARRAY, "x", 4, 4, max_entries, None)
    with pytest.raises(OverflowError, match="max_entries"):
        Map.create(backend, BPF_MAP_TYPE_HASH, ctypes.c_uint32, ctypes.c_uint32, max_entries)


def test_a_none_fd_is_a_type_error_naming_it(lib, backend):
    with pytest.raises(TypeError, match="fd must be an int, not NoneType"):
        lib.bpf_map_update_elem(None, bytes(4), bytes(8), 0)
    with pytest.raises(TypeError, match="fd must be an int, not NoneType"):
        Map.open(backend, None)


# --- Map: values that do not fit their ctypes type (point 8) --------------------------------

class _S(ctypes.Structure):
    _fields_ = [("a", ctypes.c_uint8), ("b", ctypes.c_int16), ("c", ctypes.c_uint32, 3)]


@pytest.mark.parametrize("key, value, message", [
    (-1, 2, r"key -1 does not fit c_uint \(0..4294967295\)"),
    (1, 2 ** 70 + 3, "value 1180591620717411303427 does not fit c_ulong"),
    (1, -1, "value -1 does not fit c_ulong"),
])
def test_map_ints_that_do_not_fit_raise_instead_of_wrapping(backend, key, value, message):
    """`m[-1] = 2**70 + 3` on a c_uint32 -> c_uint64 Map stored (4294967295, 3)."""
    m = Map.create(backend, BPF_MAP_TYPE_HASH, ctypes.c_uint32, ctypes.c_uint64, 4)
    with pytest.raises(OverflowError, match=message):
        m[key] = value
    assert len(m) == 0
    m.close()


@pytest.mark.parametrize("value, message", [
    ((256, 0, 0), "value field 'a': 256 does not fit c_ubyte"),
    ({"b": -40000}, "value field 'b': -40000 does not fit c_short"),
    ((1, 1, 9), "value field 'c': 9 does not fit its 3 bits"),
])
def test_map_structure_fields_that_do_not_fit_name_the_field(backend, value, message):
    m = Map.create(backend, BPF_MAP_TYPE_HASH, ctypes.c_uint32, _S, 4)
    with pytest.raises(OverflowError, match=message):
        m[1] = value
    m[1] = (255, -32768, 7)
    assert (m[1].a, m[1].b, m[1].c) == (255, -32768, 7)
    m.close()


def test_sizes_learned_before_an_fd_was_closed_behind_the_layer_are_learned_again(backend):
    """An fd closed with the backend's close() (not this layer's) and reused by a map with
    smaller sizes: the check learns the sizes again before it refuses a buffer."""
    a, b = LibBpf(backend), LibBpf(backend)
    fd = a.bpf_map_create(BPF_MAP_TYPE_HASH, "big", 4, 64, 4, None)
    assert a.bpf_map_update_elem(fd, bytes(4), bytes(64), 0) == 0      # a learns 4/64
    backend.close(fd)
    fd2 = b.bpf_map_create(BPF_MAP_TYPE_HASH, "small", 4, 8, 4, None)
    assert fd2 == fd
    assert a.bpf_map_update_elem(fd2, bytes(4), bytes(8), 0) == 0      # not a ValueError
    backend.close(fd2)
