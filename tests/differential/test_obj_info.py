"""OBJ_GET_INFO_BY_FD on maps, byte for byte, on the emulator and the live kernel.

Expectations: docs: #info-ids-freeze-and-pins (which fields the kernel fills, which it echoes) and
and (the check order, info_len truncation and growth, the zero tail from offset 100 of the
6.18.44 backport, and the SHA-256 of a frozen ARRAY).
"""
import hashlib
import os
import struct

import pytest

from bpfemu.uapi import consts as c
from tests.support import NCPU, Buf, dirty_tail_result, profile_under_test

from tests.differential.abi_support import (ALL_TYPES, ARRAY, CLOSED_FD, E2BIG, EBADFD, EFAULT,
                                            EINVAL, EPERM, HASH, HASH_TYPES, KERNEL_ADDR,
                                            LRU_HASH, LRU_PERCPU_HASH, PERCPU_ARRAY, TYPE_IDS,
                                            call, fill, freeze, get_info, info_attr, keys_of,
                                            map_id, round_up, sys_value_size, u32)
from tests.differential.hash_support import NONE_PAGE

INFO = c.BPF_OBJ_GET_INFO_BY_FD


@pytest.fixture(params=ALL_TYPES, ids=[TYPE_IDS[t] for t in ALL_TYPES])
def map_type(request):
    return request.param


def info_size(client) -> int:
    """sizeof(struct bpf_map_info) on the kernel under test: 104 on 6.18, 88 on 6.1 and 6.12."""
    return profile_under_test(client.b).map_info_size


def on_this_kernel(client, expected, init=b"", info_len=104):
    """6.18's answer as the kernel under test gives it: where bpf_map_info has no hash fields
    (6.1, 6.12: it ends at 88), a caller's non-zero byte in them is past the struct (E2BIG)."""
    tail_from = profile_under_test(client.b).map_info_tail_from
    return -E2BIG if any(init[tail_from:info_len]) and tail_from < 100 else expected


def expected_head(map_type, key_size, value_size, max_entries, map_flags, name):
    """Bytes 0..39 of the info with the id (4..7) zeroed: what the kernel fills."""
    return struct.pack("<IIIIII16s", map_type, 0, key_size, value_size, max_entries,
                       map_flags, name.ljust(16, b"\0"))


def head_without_id(data):
    return data[:4] + bytes(4) + data[8:40]


def test_fields(client, map_type):
    fd = client.create(map_type, 4, 12, 8, c.BPF_F_RDONLY_PROG, name=b"info_map")
    assert fd >= 0
    ret, info_len, data, guards = get_info(client.b, fd)
    assert (ret, info_len, guards) == (0, info_size(client), True)
    assert head_without_id(data) == expected_head(map_type, 4, 12, 8, c.BPF_F_RDONLY_PROG,
                                                  b"info_map")
    assert struct.unpack_from("<I", data, 4)[0] > 0
    assert data[40:] == bytes(64)            # nothing else set, zeros echoed


def test_value_size_is_as_created_not_the_percpu_buffer(client):
    fd = client.create(PERCPU_ARRAY, 4, 3, 2)
    ret, _, data, _ = get_info(client.b, fd)
    assert ret == 0 and struct.unpack_from("<I", data, 12)[0] == 3


@pytest.mark.parametrize("flags,shown", [
    (c.BPF_F_RDONLY, 0), (c.BPF_F_WRONLY, 0),
    (c.BPF_F_RDONLY | c.BPF_F_RDONLY_PROG, c.BPF_F_RDONLY_PROG),
    (c.BPF_F_WRONLY | c.BPF_F_NUMA_NODE, c.BPF_F_NUMA_NODE),
    (c.BPF_F_WRONLY_PROG, c.BPF_F_WRONLY_PROG),
])
def test_map_flags_without_fd_mode(client, map_type, flags, shown):
    fd = client.create(map_type, 4, 8, 4, flags, numa_node=0xFFFFFFFF)
    assert fd >= 0
    ret, _, data, _ = get_info(client.b, fd)
    assert ret == 0 and struct.unpack_from("<I", data, 20)[0] == shown


def test_hash_only_flags_are_shown(client):
    fd = client.create(HASH, 4, 8, 4, c.BPF_F_NO_PREALLOC | c.BPF_F_ZERO_SEED)
    ret, _, data, _ = get_info(client.b, fd)
    assert ret == 0 and struct.unpack_from("<I", data, 20)[0] == 0x41


@pytest.mark.parametrize("lru_type", [LRU_HASH, LRU_PERCPU_HASH],
                         ids=["lru_hash", "lru_percpu_hash"])
@pytest.mark.parametrize("max_entries", [1, 3, 5, 8])
def test_effective_max_entries(client, lru_type, max_entries):
    """NO_COMMON_LRU rounds max_entries up to a multiple of the CPU count (docs: #map-creation)."""
    fd = client.create(lru_type, 4, 8, max_entries, c.BPF_F_NO_COMMON_LRU)
    ret, _, data, _ = get_info(client.b, fd)
    assert ret == 0
    assert struct.unpack_from("<I", data, 16)[0] == round_up(max_entries, NCPU)


def test_max_entries_not_rounded_for_arrays(client):
    fd = client.create(ARRAY, 4, 8, 3)
    assert struct.unpack_from("<I", get_info(client.b, fd)[2], 16)[0] == 3


def test_name_is_zero_filled_after_the_nul(client):
    fd = client.create(HASH, 4, 8, 4, name=b"ab\0cdefgh")
    assert get_info(client.b, fd)[2][24:40] == b"ab" + bytes(14)


def test_input_fields_are_echoed(client, map_type):
    """Fields the kernel does not fill for a plain map come back as the caller gave them:
    ifindex, netns_dev, netns_ino, the BTF ids, btf_vmlinux_id (docs: #info-ids-freeze-and-pins).
    Before 6.18 (which reads the caller's struct for its hash) they come back zero."""
    fd = client.create(map_type, 4, 8, 4)
    junk = bytes((i * 7 + 3) & 0xFF or 1 for i in range(88))
    echoed = junk if profile_under_test(client.b).map_info_reads_input else bytes(88)
    ret, info_len, data, _ = get_info(client.b, fd, 104, junk)
    assert (ret, info_len) == (0, info_size(client))
    assert data[40:44] == echoed[40:44]                  # ifindex
    assert data[44:48] == bytes(4)                       # btf_vmlinux_value_type_id: set
    assert data[48:80] == echoed[48:80]                  # netns_dev .. btf_vmlinux_id
    assert data[80:88] == bytes(8)                       # map_extra: set
    assert data[88:104] == bytes(16)
    assert head_without_id(data)[8:] == expected_head(map_type, 4, 8, 4, 0, b"")[8:]


@pytest.mark.parametrize("info_len", [0, 1, 4, 7, 8, 39, 40, 64, 87, 88, 96, 99, 100])
def test_short_info_len(client, info_len):
    """Only info_len bytes are written; info_len comes back unchanged (up to the struct's
    size: 88 before 6.18)."""
    fd = client.create(HASH, 4, 8, 4)
    full = get_info(client.b, fd)[2]
    ret, out_len, data, guards = get_info(client.b, fd, info_len, size=104)
    written = min(info_len, info_size(client))
    assert (ret, out_len, guards) == (0, written, True)
    assert data == full[:written] + bytes(104 - written)


@pytest.mark.parametrize("info_len", [101, 104, 105, 200, 4096])
def test_long_info_len_with_zero_tail(client, info_len):
    """Past 100 the caller's bytes must be zero; at most 104 are written and reported."""
    fd = client.create(HASH, 4, 8, 4)
    ret, out_len, data, guards = get_info(client.b, fd, info_len)
    assert (ret, out_len, guards) == (0, min(info_len, info_size(client)), True)
    assert data[104:] == bytes(info_len - 104) if info_len > 104 else True


def test_info_len_past_a_page_is_e2big(client):
    fd = client.create(HASH, 4, 8, 4)
    ret, out_len, _, _ = get_info(client.b, fd, 4097)
    assert (ret, out_len) == (-E2BIG, 4097)


@pytest.mark.parametrize("off", [100, 101, 103, 104, 150, 199])
def test_non_zero_tail_is_e2big(client, off):
    """Bytes 100..103 (the struct's padding, since the 6.18.44 backport) and beyond."""
    fd = client.create(HASH, 4, 8, 4)
    init = bytearray(200)
    init[off] = 1
    ret, out_len, data, _ = get_info(client.b, fd, 200, bytes(init))
    assert (ret, out_len) == (-E2BIG, 200)
    assert data == bytes(init)                           # nothing written


@pytest.mark.parametrize("off", [88, 92, 96, 99])
def test_hash_fields_without_a_hash_map_are_einval(client, off):
    """Any non-zero byte in hash / hash_size on a map without hashing: EINVAL."""
    fd = client.create(HASH, 4, 8, 4)
    init = bytearray(104)
    init[off] = 1
    ret, out_len, data, _ = get_info(client.b, fd, 104, bytes(init))
    assert (ret, out_len) == (on_this_kernel(client, -EINVAL, init), 104)


def test_null_info(client):
    fd = client.create(HASH, 4, 8, 4)
    ret, raw = call(client.b, INFO, info_attr(fd, 0, 0), 16)
    assert (ret, struct.unpack_from("<I", raw, 4)[0]) == (0, 0)
    for n in (1, 104, 200):
        ret, raw = call(client.b, INFO, info_attr(fd, n, 0), 16)
        assert (ret, struct.unpack_from("<I", raw, 4)[0]) == (-EFAULT, n)


def test_faults(client):
    fd = client.create(HASH, 4, 8, 4)
    for addr in (NONE_PAGE, KERNEL_ADDR):
        ret, raw = call(client.b, INFO, info_attr(fd, 104, addr), 16)
        assert (ret, struct.unpack_from("<I", raw, 4)[0]) == (-EFAULT, 104)


def test_bad_fds(client):
    r, w = os.pipe()
    try:
        buf = Buf(size=104)
        for fd, want in ((CLOSED_FD, -EBADFD), (0xFFFFFFFF, -EBADFD), (r, -EINVAL)):
            ret, raw = call(client.b, INFO, info_attr(fd, 104, buf.addr), 16)
            assert (ret, struct.unpack_from("<I", raw, 4)[0]) == (want, 104)
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("off", [16, 20, 167])
def test_dirty_attr_tail(client, off):
    fd = client.create(HASH, 4, 8, 4)
    buf = Buf(size=104)
    want = dirty_tail_result(client, off)
    assert call(client.b, INFO, info_attr(fd, 104, buf.addr), 168, tail={off: 1})[0] == want
    # The tail is checked before the fd: a closed fd with a dirty tail is EINVAL.
    assert call(client.b, INFO, info_attr(CLOSED_FD, 104, buf.addr), 168,
                tail={off: 1})[0] == want


def test_id_matches_get_next_id(client, map_type):
    from tests.differential.abi_support import get_next_id
    fd = client.create(map_type, 4, 8, 4)
    mid = map_id(client.b, fd)
    assert get_next_id(client.b, mid - 1) == (0, mid)


# --- the SHA-256 of a frozen ARRAY (docs: #info-ids-freeze-and-pins) ------------------------------

def info_with_hash(hash_addr, hash_size, n=104):
    return bytes(88) + struct.pack("<QI", hash_addr, hash_size) + bytes(n - 100)


def expected_digest(values, value_size, max_entries):
    stride = round_up(value_size, 8)
    area = b"".join(v.ljust(stride, b"\0") for v in values)
    return hashlib.sha256(area + bytes(stride * (max_entries - len(values)))).digest()


@pytest.mark.parametrize("value_size,max_entries", [(4, 5), (8, 3), (13, 7), (1, 1)])
def test_frozen_array_digest(client, value_size, max_entries):
    fd = client.create(ARRAY, 4, value_size, max_entries)
    values = [bytes([i + 1]) * value_size for i in range(max_entries - 1)]
    fill(client, fd, keys_of(len(values)), values)
    digest = Buf(size=32)
    init = info_with_hash(digest.addr, 32)
    assert get_info(client.b, fd, 104, init)[0] == on_this_kernel(client, -EPERM, init)
    assert digest.data == bytes(32)                                # (EPERM: not frozen yet)
    assert freeze(client.b, fd) == 0
    ret, out_len, data, guards = get_info(client.b, fd, 104, init)
    if on_this_kernel(client, 0, init):
        assert ret == -E2BIG and digest.data == bytes(32)          # no hash fields (6.1, 6.12)
        return
    assert (ret, out_len, guards) == (0, 104, True)
    assert digest.data == expected_digest(values, value_size, max_entries)
    assert digest.guards_intact()
    assert data[88:100] == init[88:100]                            # hash, hash_size echoed


def test_digest_errors(client):
    fd = client.create(ARRAY, 4, 8, 2)
    assert freeze(client.b, fd) == 0
    digest = Buf(size=32)
    for hash_addr, hash_size, want in ((digest.addr, 31, -EINVAL), (digest.addr, 33, -EINVAL),
                                       (digest.addr, 0, -EINVAL), (0, 32, -EINVAL),
                                       (NONE_PAGE, 32, -EFAULT), (0, 0, 0)):
        init = info_with_hash(hash_addr, hash_size)
        assert get_info(client.b, fd, 104, init)[0] == on_this_kernel(client, want, init)
    # Shorter than the hash fields: they are not even read.
    assert get_info(client.b, fd, 88, info_with_hash(digest.addr, 31))[0] == 0
    # A hash field cut at 96: hash read, hash_size (from 96) is 0 -> EINVAL.
    init = info_with_hash(digest.addr, 32)
    assert get_info(client.b, fd, 96, init)[0] == on_this_kernel(client, -EINVAL, init, 96)


@pytest.mark.parametrize("other", [t for t in ALL_TYPES if t != ARRAY],
                         ids=[TYPE_IDS[t] for t in ALL_TYPES if t != ARRAY])
def test_no_digest_for_other_types(client, other):
    fd = client.create(other, 4, 8, 2)
    assert freeze(client.b, fd) == 0
    digest = Buf(size=32)
    init = info_with_hash(digest.addr, 32)
    assert get_info(client.b, fd, 104, init)[0] == on_this_kernel(client, -EINVAL, init)


def test_info_works_through_any_fd_mode(client, map_type):
    for flags in (c.BPF_F_RDONLY, c.BPF_F_WRONLY):
        fd = client.create(map_type, 4, 8, 2, flags)
        assert get_info(client.b, fd)[0] == 0


def test_both_agree_byte_for_byte(both):
    """Everything but the id, for a spread of maps, compared with the kernel directly."""
    outs = []
    for cl in both:
        res = []
        for map_type in ALL_TYPES:
            for flags in (0, c.BPF_F_RDONLY, c.BPF_F_NUMA_NODE):
                fd = cl.create(map_type, 4, 24, 6, flags, numa_node=0xFFFFFFFF, name=b"m.1_x")
                for n in (0, 3, 40, 104, 120):
                    ret, out_len, data, guards = get_info(cl.b, fd, n, bytes(range(1, 89)),
                                                          size=max(n, 104))
                    res.append((ret, out_len, data[:4] + data[8:], guards))
        outs.append(res)
    assert outs[0] == outs[1]
