"""bpfemu.libbpf: libbpf 1.x's low-level functions on the emulator and on the live kernel.

Every function of issue 5 point 1 runs on both backends (the ``lib`` fixture). Expectations:
libbpf's return convention (0 or an fd, else a negative errno), the errnos the kernel gives
(each body also runs on HostKernel, which is the oracle), and the attr size libbpf sends,
offsetofend() of the last field each libbpf function sets (tools/lib/bpf/bpf.c), computed
here from the 6.18 layouts read from the kernel's BTF (abi/linux-6.18/layout.json).
"""
import ctypes
import errno
import json
import os
import pathlib
import struct

import pytest

import bpfemu.libbpf as libbpf_mod
from bpfemu import Emulator
from bpfemu.libbpf import (LibBpf, bpf_get_fd_by_id_opts, bpf_map_batch_opts,
                           bpf_map_create_opts, bpf_map_info, opts)
from bpfemu.profile import host_possible_cpus
from bpfemu.uapi import consts as c

from tests.api.conftest import is_host
from tests.support import ENOTSUPP, NCPU, u32, u64

HASH, ARRAY = c.BPF_MAP_TYPE_HASH, c.BPF_MAP_TYPE_ARRAY
PERCPU_HASH, PERCPU_ARRAY = c.BPF_MAP_TYPE_PERCPU_HASH, c.BPF_MAP_TYPE_PERCPU_ARRAY
LRU_HASH = c.BPF_MAP_TYPE_LRU_HASH

LAYOUT = json.loads((pathlib.Path(__file__).resolve().parents[2] / "abi" / "linux-6.18" /
                     "layout.json").read_text())["layouts"]


def offsetofend(group: str, field: str | None = None) -> int:
    """offsetofend(union bpf_attr, field) from the kernel's own layout (the whole member's
    end when field is None, as for offsetofend(union bpf_attr, batch))."""
    g = LAYOUT[group]
    if field is None:
        return g["end"]
    f = g["fields"][field]
    return f["offset"] + f["size"]


# The last field each libbpf function sets (tools/lib/bpf/bpf.c, libbpf 1.6 / 6.18 UAPI).
LIBBPF_ATTR_SIZE = {
    "bpf_map_create": offsetofend("map_create", "excl_prog_hash_size"),
    "bpf_map_update_elem": offsetofend("map_elem", "flags"),
    "bpf_map_lookup_elem": offsetofend("map_elem", "flags"),
    "bpf_map_lookup_elem_flags": offsetofend("map_elem", "flags"),
    "bpf_map_lookup_and_delete_elem": offsetofend("map_elem", "flags"),
    "bpf_map_lookup_and_delete_elem_flags": offsetofend("map_elem", "flags"),
    "bpf_map_delete_elem": offsetofend("map_elem", "flags"),
    "bpf_map_delete_elem_flags": offsetofend("map_elem", "flags"),
    "bpf_map_get_next_key": offsetofend("map_elem", "next_key"),
    "bpf_map_freeze": offsetofend("map_elem", "map_fd"),
    "bpf_map_lookup_batch": offsetofend("batch"),
    "bpf_map_lookup_and_delete_batch": offsetofend("batch"),
    "bpf_map_update_batch": offsetofend("batch"),
    "bpf_map_delete_batch": offsetofend("batch"),
    "bpf_obj_get_info_by_fd": offsetofend("info", "info"),
    "bpf_map_get_info_by_fd": offsetofend("info", "info"),
    "bpf_map_get_next_id": offsetofend("get_id", "open_flags"),
    "bpf_map_get_fd_by_id": offsetofend("get_id", "open_flags"),
    "bpf_map_get_fd_by_id_opts": offsetofend("get_id", "open_flags"),
    "bpf_obj_pin": offsetofend("obj", "path_fd"),
    "bpf_obj_pin_opts": offsetofend("obj", "path_fd"),
    "bpf_obj_get": offsetofend("obj", "path_fd"),
    "bpf_obj_get_opts": offsetofend("obj", "path_fd"),
}


def last_call(lib):
    return lib.rec.calls[-1]


def info_of(lib, fd) -> bpf_map_info:
    info = bpf_map_info()
    n = ctypes.c_uint32(ctypes.sizeof(info))
    assert lib.bpf_map_get_info_by_fd(fd, info, n) == 0
    return info


# --- attr sizes --------------------------------------------------------------------------------

def test_the_expected_sizes_are_libbpfs():
    """The layout gives the numbers libbpf 1.6 is known to send (the clients' recorded calls list
    libbpf 1.1's, which differ only for MAP_CREATE (72) where 6.18 grew the attr)."""
    assert LIBBPF_ATTR_SIZE["bpf_map_create"] == 92
    assert LIBBPF_ATTR_SIZE["bpf_map_update_elem"] == 32
    assert LIBBPF_ATTR_SIZE["bpf_map_get_next_key"] == 24
    assert LIBBPF_ATTR_SIZE["bpf_map_freeze"] == 4
    assert LIBBPF_ATTR_SIZE["bpf_map_lookup_batch"] == 56
    assert LIBBPF_ATTR_SIZE["bpf_obj_get_info_by_fd"] == 16
    assert LIBBPF_ATTR_SIZE["bpf_map_get_next_id"] == 12
    assert LIBBPF_ATTR_SIZE["bpf_map_get_fd_by_id"] == 12
    assert LIBBPF_ATTR_SIZE["bpf_obj_pin"] == 20


def test_every_map_function_sends_libbpfs_attr_size(lib):
    """Each function makes exactly one bpf() call, of libbpf's command and size."""
    fd = lib.bpf_map_create(HASH, "sizes", 4, 8, 8)
    assert fd >= 0
    k, v = ctypes.c_uint32(1), ctypes.c_uint64(2)
    nk = ctypes.c_uint32()
    keys, vals = (ctypes.c_uint32 * 8)(), (ctypes.c_uint64 * 8)()
    token = ctypes.c_uint32()
    info = bpf_map_info()
    mid = info_of(lib, fd).id
    C = c.BpfCmd
    calls = [
        ("bpf_map_update_elem", C.BPF_MAP_UPDATE_ELEM,
         lambda: lib.bpf_map_update_elem(fd, k, v, 0)),
        ("bpf_map_lookup_elem", C.BPF_MAP_LOOKUP_ELEM, lambda: lib.bpf_map_lookup_elem(fd, k, v)),
        ("bpf_map_lookup_elem_flags", C.BPF_MAP_LOOKUP_ELEM,
         lambda: lib.bpf_map_lookup_elem_flags(fd, k, v, 0)),
        ("bpf_map_get_next_key", C.BPF_MAP_GET_NEXT_KEY,
         lambda: lib.bpf_map_get_next_key(fd, None, nk)),
        ("bpf_map_lookup_and_delete_elem", C.BPF_MAP_LOOKUP_AND_DELETE_ELEM,
         lambda: lib.bpf_map_lookup_and_delete_elem(fd, k, v)),
        ("bpf_map_lookup_and_delete_elem_flags", C.BPF_MAP_LOOKUP_AND_DELETE_ELEM,
         lambda: lib.bpf_map_lookup_and_delete_elem_flags(fd, k, v, 0)),
        ("bpf_map_delete_elem", C.BPF_MAP_DELETE_ELEM, lambda: lib.bpf_map_delete_elem(fd, k)),
        ("bpf_map_delete_elem_flags", C.BPF_MAP_DELETE_ELEM,
         lambda: lib.bpf_map_delete_elem_flags(fd, k, 0)),
        ("bpf_map_update_batch", C.BPF_MAP_UPDATE_BATCH,
         lambda: lib.bpf_map_update_batch(fd, keys, vals, ctypes.c_uint32(2))),
        ("bpf_map_lookup_batch", C.BPF_MAP_LOOKUP_BATCH,
         lambda: lib.bpf_map_lookup_batch(fd, None, token, keys, vals, ctypes.c_uint32(8))),
        ("bpf_map_lookup_and_delete_batch", C.BPF_MAP_LOOKUP_AND_DELETE_BATCH,
         lambda: lib.bpf_map_lookup_and_delete_batch(fd, None, token, keys, vals,
                                                     ctypes.c_uint32(8))),
        ("bpf_map_delete_batch", C.BPF_MAP_DELETE_BATCH,
         lambda: lib.bpf_map_delete_batch(fd, keys, ctypes.c_uint32(0))),
        ("bpf_obj_get_info_by_fd", C.BPF_OBJ_GET_INFO_BY_FD,
         lambda: lib.bpf_obj_get_info_by_fd(fd, info, ctypes.c_uint32(ctypes.sizeof(info)))),
        ("bpf_map_get_info_by_fd", C.BPF_OBJ_GET_INFO_BY_FD,
         lambda: lib.bpf_map_get_info_by_fd(fd, info, ctypes.c_uint32(ctypes.sizeof(info)))),
        ("bpf_map_get_next_id", C.BPF_MAP_GET_NEXT_ID,
         lambda: lib.bpf_map_get_next_id(0, ctypes.c_uint32())),
        ("bpf_map_get_fd_by_id", C.BPF_MAP_GET_FD_BY_ID,
         lambda: lib.track(lib.bpf_map_get_fd_by_id(mid))),
        ("bpf_map_get_fd_by_id_opts", C.BPF_MAP_GET_FD_BY_ID,
         lambda: lib.bpf_map_get_fd_by_id_opts(mid, bpf_get_fd_by_id_opts())),
        ("bpf_map_freeze", C.BPF_MAP_FREEZE, lambda: lib.bpf_map_freeze(fd)),
    ]
    create = lib.rec.calls[0]
    assert (create[0], create[1]) == (c.BPF_MAP_CREATE, LIBBPF_ATTR_SIZE["bpf_map_create"])
    for name, want_cmd, fn in calls:
        before = len(lib.rec.calls)
        ret = fn()
        assert ret >= 0 or ret == -errno.ENOENT, (name, ret)
        assert len(lib.rec.calls) == before + 1, name
        cmd, size, _ = last_call(lib)
        assert (cmd, size) == (want_cmd, LIBBPF_ATTR_SIZE[name]), name
    assert {name for name, _, _ in calls} | {"bpf_map_create"} == \
        {n for n in LIBBPF_ATTR_SIZE if "obj_pin" not in n and "obj_get_opts" not in n
         and n != "bpf_obj_get"}


def test_pin_and_get_send_libbpfs_attr_size(pin_env):
    lib, root = pin_env
    fd = lib.bpf_map_create(HASH, None, 4, 4, 1)
    for name, fn in [
        ("bpf_obj_pin", lambda: lib.bpf_obj_pin(fd, os.path.join(root, "a"))),
        ("bpf_obj_pin_opts", lambda: lib.bpf_obj_pin_opts(fd, os.path.join(root, "b"), None)),
        ("bpf_obj_get", lambda: lib.track(lib.bpf_obj_get(os.path.join(root, "a")))),
        ("bpf_obj_get_opts", lambda: lib.bpf_obj_get_opts(os.path.join(root, "b"), None)),
    ]:
        assert fn() >= 0, name
        cmd, size, _ = last_call(lib)
        assert size == LIBBPF_ATTR_SIZE[name], name
        assert cmd == (c.BPF_OBJ_PIN if "pin" in name else c.BPF_OBJ_GET)


def test_map_create_attr_bytes(lib):
    """The fields libbpf sets, the name cut to 15 bytes plus NUL, and zeros elsewhere."""
    opts = bpf_map_create_opts(map_flags=c.BPF_F_NO_PREALLOC, numa_node=0)
    fd = lib.bpf_map_create(HASH, "a_name_longer_than_15", 4, 8, 16, opts)
    assert fd >= 0
    _, size, attr = lib.rec.calls[0]
    assert struct.unpack_from("<IIIII", attr, 0) == (HASH, 4, 8, 16, c.BPF_F_NO_PREALLOC)
    assert attr[28:44] == b"a_name_longer_t\0"
    assert attr[44:size] == bytes(size - 44)
    info = info_of(lib, fd)
    assert (info.type, info.key_size, info.value_size, info.max_entries, info.map_flags) == \
        (HASH, 4, 8, 16, c.BPF_F_NO_PREALLOC)
    assert info.name == b"a_name_longer_t"


# --- map_create -----------------------------------------------------------------------------

def test_map_create_returns_an_fd_or_a_negative_errno(lib, backend):
    fd = lib.bpf_map_create(HASH, b"bytes_name", 4, 8, 4)
    assert fd >= 0
    assert os.readlink(f"/proc/self/fd/{fd}").find("bpf-map") >= 0
    assert lib.bpf_map_create(HASH, None, 0, 8, 4) == -errno.EINVAL          # key_size 0
    assert lib.bpf_map_create(ARRAY, None, 8, 8, 4) == -errno.EINVAL         # array key != 4
    assert lib.bpf_map_create(HASH, None, 4, 8, 0) == -errno.EINVAL          # no entries
    assert lib.bpf_map_create(HASH, None, 4, 8, 4,
                              bpf_map_create_opts(map_flags=1 << 30)) == -errno.EINVAL
    assert lib.bpf_map_create(HASH, "bad name!", 4, 8, 4) == -errno.EINVAL   # '!' in a name
    assert info_of(lib, fd).name == b"bytes_name"


def test_map_create_token_fd_is_sent_as_given(lib):
    """libbpf copies map_flags as given; BPF_F_TOKEN_FD is the caller's to set. Without the
    flag the kernel does not look at map_token_fd."""
    assert lib.bpf_map_create(HASH, None, 4, 4, 1, bpf_map_create_opts(token_fd=3)) >= 0
    _, _, attr = last_call(lib)
    assert struct.unpack_from("<I", attr, 16)[0] == 0          # map_flags untouched
    assert struct.unpack_from("<i", attr, 76)[0] == 3          # map_token_fd


# --- element functions --------------------------------------------------------------------

class Pair(ctypes.Structure):
    _fields_ = [("a", ctypes.c_uint32), ("b", ctypes.c_uint32)]


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "ctypes", "ctypes_array",
                                  "address"])
def test_keys_and_values_of_every_buffer_kind(lib, kind):
    fd = lib.bpf_map_create(HASH, None, 8, 8, 4)
    keep = []

    def buf(data: bytes):
        if kind == "bytes":
            return data
        if kind == "bytearray":
            return bytearray(data)
        if kind == "memoryview":
            return memoryview(data)
        if kind == "ctypes":
            return Pair.from_buffer_copy(data)
        if kind == "ctypes_array":
            return (ctypes.c_ubyte * 8).from_buffer_copy(data)
        b = ctypes.create_string_buffer(data, 8)
        keep.append(b)
        return ctypes.addressof(b)

    key, value = u32(7) + u32(9), u64(0x1122334455667788)
    assert lib.bpf_map_update_elem(fd, buf(key), buf(value), c.BPF_ANY) == 0
    out_ba, out_ct = bytearray(8), ctypes.c_uint64()
    assert lib.bpf_map_lookup_elem(fd, buf(key), out_ba) == 0
    assert bytes(out_ba) == value
    assert lib.bpf_map_lookup_elem(fd, buf(key), out_ct) == 0
    assert out_ct.value == 0x1122334455667788
    nk = Pair()
    assert lib.bpf_map_get_next_key(fd, None, nk) == 0 and (nk.a, nk.b) == (7, 9)
    assert lib.bpf_map_delete_elem(fd, buf(key)) == 0
    assert lib.bpf_map_lookup_elem(fd, buf(key), out_ba) == -errno.ENOENT


def test_read_only_output_buffers_are_refused_before_any_call(lib):
    fd = lib.bpf_map_create(HASH, None, 4, 4, 1)
    n = len(lib.rec.calls)
    with pytest.raises(TypeError, match="writable"):
        lib.bpf_map_lookup_elem(fd, u32(1), b"\0" * 4)
    with pytest.raises(TypeError, match="writable"):
        lib.bpf_map_get_next_key(fd, None, memoryview(b"1234"))
    with pytest.raises(TypeError, match="c_uint32"):
        lib.bpf_map_lookup_batch(fd, None, bytearray(4), bytearray(4), bytearray(4), 1)
    with pytest.raises(TypeError, match="c_uint32"):
        lib.bpf_obj_get_info_by_fd(fd, bytearray(16), 16)
    with pytest.raises(TypeError, match="c_uint32"):
        lib.bpf_map_get_next_id(0, 0)
    assert len(lib.rec.calls) == n


def test_update_flags_and_errnos(lib):
    fd = lib.bpf_map_create(HASH, None, 4, 8, 2)
    k1, k2, k3, v = u32(1), u32(2), u32(3), u64(5)
    assert lib.bpf_map_update_elem(fd, k1, v, c.BPF_EXIST) == -errno.ENOENT
    assert lib.bpf_map_update_elem(fd, k1, v, c.BPF_NOEXIST) == 0
    assert lib.bpf_map_update_elem(fd, k1, v, c.BPF_NOEXIST) == -errno.EEXIST
    assert lib.bpf_map_update_elem(fd, k1, u64(6), c.BPF_EXIST) == 0
    assert lib.bpf_map_update_elem(fd, k2, v, c.BPF_ANY) == 0
    assert lib.bpf_map_update_elem(fd, k3, v, c.BPF_ANY) == -errno.E2BIG       # full
    assert lib.bpf_map_update_elem(fd, k1, v, 3) == -errno.EINVAL
    assert lib.bpf_map_update_elem(fd, k1, v, c.BPF_F_LOCK) == -errno.EINVAL   # no spin lock
    assert lib.bpf_map_update_elem(fd, k1, v, -1) == -errno.EINVAL             # as (u64)-1
    _, _, attr = last_call(lib)
    assert struct.unpack_from("<Q", attr, 24)[0] == 2**64 - 1
    out = ctypes.c_uint64()
    assert lib.bpf_map_lookup_elem(fd, k1, out) == 0 and out.value == 6


def test_lookup_and_delete_flags_variants(lib):
    fd = lib.bpf_map_create(HASH, None, 4, 8, 4)
    k, out = u32(1), bytearray(8)
    assert lib.bpf_map_update_elem(fd, k, u64(42), 0) == 0
    assert lib.bpf_map_lookup_elem_flags(fd, k, out, 0) == 0 and out == bytearray(u64(42))
    assert lib.bpf_map_lookup_elem_flags(fd, k, out, c.BPF_F_LOCK) == -errno.EINVAL
    assert lib.bpf_map_lookup_elem_flags(fd, k, out, 8) == -errno.EINVAL
    assert lib.bpf_map_delete_elem_flags(fd, k, c.BPF_F_LOCK) == -errno.EINVAL
    assert lib.bpf_map_lookup_and_delete_elem_flags(fd, k, out, c.BPF_F_LOCK) == -errno.EINVAL
    assert lib.bpf_map_lookup_and_delete_elem_flags(fd, k, out, 8) == -errno.EINVAL
    out[:] = bytes(8)
    assert lib.bpf_map_lookup_and_delete_elem(fd, k, out) == 0 and out == bytearray(u64(42))
    assert lib.bpf_map_lookup_and_delete_elem(fd, k, out) == -errno.ENOENT
    assert lib.bpf_map_update_elem(fd, k, u64(7), 0) == 0
    assert lib.bpf_map_lookup_and_delete_elem_flags(fd, k, out, 0) == 0
    assert out == bytearray(u64(7))
    assert lib.bpf_map_delete_elem(fd, k) == -errno.ENOENT
    assert lib.bpf_map_update_elem(fd, k, u64(7), 0) == 0
    assert lib.bpf_map_delete_elem_flags(fd, k, 0) == 0
    assert lib.bpf_map_delete_elem_flags(fd, k, 0) == -errno.ENOENT


def test_array_errnos(lib):
    fd = lib.bpf_map_create(ARRAY, None, 4, 8, 4)
    out = bytearray(8)
    assert lib.bpf_map_lookup_elem(fd, u32(3), out) == 0 and out == bytearray(8)
    assert lib.bpf_map_lookup_elem(fd, u32(4), out) == -errno.ENOENT
    assert lib.bpf_map_update_elem(fd, u32(4), u64(1), 0) == -errno.E2BIG
    assert lib.bpf_map_update_elem(fd, u32(0), u64(1), c.BPF_NOEXIST) == -errno.EEXIST
    assert lib.bpf_map_delete_elem(fd, u32(0)) == -errno.EINVAL
    assert lib.bpf_map_lookup_and_delete_elem(fd, u32(0), out) == -ENOTSUPP


def test_closed_fd_is_ebadf(lib, backend):
    fd = lib.bpf_map_create(HASH, None, 4, 4, 1)
    lib.fds.remove(fd)
    assert backend.close(fd) == 0
    out = bytearray(4)
    assert lib.bpf_map_update_elem(fd, u32(1), u32(1), 0) == -errno.EBADF
    assert lib.bpf_map_lookup_elem(fd, u32(1), out) == -errno.EBADF
    assert lib.bpf_map_delete_elem(fd, u32(1)) == -errno.EBADF
    assert lib.bpf_map_get_next_key(fd, None, out) == -errno.EBADF
    assert lib.bpf_map_freeze(fd) == -errno.EBADF
    info = bpf_map_info()
    # the kernel answers EBADFD here (fd not open at all: CLASS(fd) finds nothing)
    assert lib.bpf_obj_get_info_by_fd(fd, info, ctypes.c_uint32(104)) == -errno.EBADFD


def test_get_next_key_walk(lib):
    """NULL gives the first key, each key the next, the last ENOENT; a key not in the map
    starts the walk again (hash); arrays walk in index order."""
    fd = lib.bpf_map_create(HASH, None, 4, 4, 8)
    nk = ctypes.c_uint32()
    assert lib.bpf_map_get_next_key(fd, None, nk) == -errno.ENOENT
    for i in range(5):
        assert lib.bpf_map_update_elem(fd, u32(i), u32(i * 10), 0) == 0
    seen, cur = [], None
    while lib.bpf_map_get_next_key(fd, cur, nk) == 0:
        seen.append(nk.value)
        cur = ctypes.c_uint32(nk.value)
    assert sorted(seen) == list(range(5))
    assert lib.bpf_map_get_next_key(fd, u32(seen[-1]), nk) == -errno.ENOENT
    assert lib.bpf_map_get_next_key(fd, u32(99), nk) == 0 and nk.value == seen[0]

    afd = lib.bpf_map_create(ARRAY, None, 4, 4, 3)
    walk, cur = [], None
    while lib.bpf_map_get_next_key(afd, cur, nk) == 0:
        walk.append(nk.value)
        cur = u32(nk.value)
    assert walk == [0, 1, 2]
    assert lib.bpf_map_get_next_key(afd, u32(7), nk) == 0 and nk.value == 0


def test_percpu_values_take_one_8_byte_slot_per_possible_cpu(lib):
    ncpu = lib.libbpf_num_possible_cpus()
    fd = lib.bpf_map_create(PERCPU_HASH, None, 4, 4, 4)
    value = b"".join(u32(100 + i).ljust(8, b"\0") for i in range(ncpu))
    assert lib.bpf_map_update_elem(fd, u32(1), value, 0) == 0
    out = bytearray(8 * ncpu)
    assert lib.bpf_map_lookup_elem(fd, u32(1), out) == 0
    assert [struct.unpack_from("<I", out, 8 * i)[0] for i in range(ncpu)] == \
        [100 + i for i in range(ncpu)]


def test_freeze(lib):
    fd = lib.bpf_map_create(HASH, None, 4, 4, 2)
    assert lib.bpf_map_update_elem(fd, u32(1), u32(1), 0) == 0
    assert lib.bpf_map_freeze(fd) == 0
    assert lib.bpf_map_update_elem(fd, u32(2), u32(2), 0) == -errno.EPERM
    assert lib.bpf_map_delete_elem(fd, u32(1)) == -errno.EPERM
    out = bytearray(4)
    assert lib.bpf_map_lookup_elem(fd, u32(1), out) == 0 and out == bytearray(u32(1))
    assert lib.bpf_map_freeze(fd) == -errno.EPERM     # no write access left to freeze with


# --- batches ------------------------------------------------------------------------------------

def test_batch_round_trip(lib):
    n = 20
    fd = lib.bpf_map_create(HASH, None, 4, 8, 32)
    keys = (ctypes.c_uint32 * n)(*range(n))
    vals = (ctypes.c_uint64 * n)(*[i * 1000 for i in range(n)])
    count = ctypes.c_uint32(n)
    assert lib.bpf_map_update_batch(fd, keys, vals, count, bpf_map_batch_opts()) == 0
    assert count.value == n
    _, _, attr = last_call(lib)
    assert struct.unpack_from("<QQ", attr, 0) == (0, 0)        # no in/out batch for updates
    assert struct.unpack_from("<II", attr, 32) == (n, fd)

    # lookup in chunks of 8 with the in/out batch tokens, until ENOENT with count set
    got, in_batch, token = {}, None, ctypes.c_uint32()
    okeys, ovals = (ctypes.c_uint32 * 8)(), (ctypes.c_uint64 * 8)()
    for _ in range(100):
        count = ctypes.c_uint32(8)
        ret = lib.bpf_map_lookup_batch(fd, in_batch, token, okeys, ovals, count)
        assert ret in (0, -errno.ENOENT)
        for i in range(count.value):
            got[okeys[i]] = ovals[i]
        if ret == -errno.ENOENT:
            break
        assert count.value > 0
        in_batch = ctypes.c_uint32(token.value)
    assert got == {i: i * 1000 for i in range(n)}

    # delete five, then lookup-and-delete the rest in one go
    dkeys = (ctypes.c_uint32 * 5)(0, 1, 2, 3, 4)
    count = ctypes.c_uint32(5)
    assert lib.bpf_map_delete_batch(fd, dkeys, count) == 0 and count.value == 5
    count = ctypes.c_uint32(5)
    assert lib.bpf_map_delete_batch(fd, dkeys, count) == -errno.ENOENT and count.value == 0
    big_k, big_v = (ctypes.c_uint32 * 32)(), (ctypes.c_uint64 * 32)()
    count = ctypes.c_uint32(32)
    assert lib.bpf_map_lookup_and_delete_batch(fd, None, token, big_k, big_v, count) == \
        -errno.ENOENT
    assert count.value == n - 5
    assert sorted(big_k[:count.value]) == list(range(5, n))
    assert lib.bpf_map_get_next_key(fd, None, ctypes.c_uint32()) == -errno.ENOENT


def test_batch_opts_and_partial_failures(lib):
    fd = lib.bpf_map_create(HASH, None, 4, 4, 8)
    keys = b"".join(u32(i) for i in range(4))
    vals = b"".join(u32(i) for i in range(4))
    count = ctypes.c_uint32(2)
    assert lib.bpf_map_update_batch(fd, keys, vals, count) == 0 and count.value == 2
    # elem_flags may only be BPF_F_LOCK: NOEXIST is EINVAL before any element, and count
    # is not written back (libbpf copies back the attr's count, still 4)
    count = ctypes.c_uint32(4)
    assert lib.bpf_map_update_batch(fd, keys, vals, count,
                                    bpf_map_batch_opts(elem_flags=c.BPF_NOEXIST)) == -errno.EINVAL
    assert count.value == 4
    _, _, attr = last_call(lib)
    assert struct.unpack_from("<QQ", attr, 40) == (c.BPF_NOEXIST, 0)
    # opts as a dict of fields
    count = ctypes.c_uint32(4)
    assert lib.bpf_map_update_batch(fd, keys, vals, count, {"elem_flags": c.BPF_F_LOCK}) == \
        -errno.EINVAL                                   # no spin lock in the value
    # a batch that fills the map stops with E2BIG; count says how many were stored
    more_k = b"".join(u32(i) for i in range(2, 10))
    more_v = b"".join(u32(i) for i in range(2, 10))
    count = ctypes.c_uint32(8)
    assert lib.bpf_map_update_batch(fd, more_k, more_v, count) == -errno.E2BIG
    assert count.value == 6
    # batch.flags: the update batch does not look at it, the lookup batch wants it zero
    count = ctypes.c_uint32(4)
    assert lib.bpf_map_update_batch(fd, keys, vals, count, bpf_map_batch_opts(flags=1)) == 0
    assert count.value == 4
    out_k, out_v, tok = bytearray(16), bytearray(16), bytearray(4)
    count = ctypes.c_uint32(4)
    assert lib.bpf_map_lookup_batch(fd, None, tok, out_k, out_v, count,
                                    bpf_map_batch_opts(flags=1)) == -errno.EINVAL
    count = ctypes.c_uint32(4)
    assert lib.bpf_map_lookup_batch(fd, None, tok, out_k, out_v, count,
                                    bpf_map_batch_opts(elem_flags=1)) == -errno.EINVAL
    # an empty map: ENOENT and count 0
    efd = lib.bpf_map_create(HASH, None, 4, 4, 8)
    count = ctypes.c_uint32(4)
    assert lib.bpf_map_lookup_batch(efd, None, tok, out_k, out_v, count) == -errno.ENOENT
    assert count.value == 0
    # arrays cannot delete in batches
    afd = lib.bpf_map_create(ARRAY, None, 4, 4, 4)
    count = ctypes.c_uint32(1)
    assert lib.bpf_map_delete_batch(afd, u32(0), count) == -ENOTSUPP


# --- info, ids ----------------------------------------------------------------------------------

def test_info_by_fd_and_info_len(lib):
    fd = lib.bpf_map_create(LRU_HASH, "lru_info", 8, 16, 32)
    info = bpf_map_info()
    n = ctypes.c_uint32(ctypes.sizeof(info))
    assert lib.bpf_obj_get_info_by_fd(fd, info, n) == 0
    assert n.value == 104
    assert (info.type, info.key_size, info.value_size, info.max_entries, info.name) == \
        (LRU_HASH, 8, 16, 32, b"lru_info")
    assert info.id > 0
    # a longer buffer (zeroed tail) is accepted and info_len becomes the kernel's size
    big = bytearray(200)
    n = ctypes.c_uint32(200)
    assert lib.bpf_obj_get_info_by_fd(fd, big, n) == 0 and n.value == 104
    assert big[:104] == bytearray(bytes(info)) and big[104:] == bytearray(96)
    # a non-zero byte past the kernel's struct is E2BIG; info_len is left as it was
    big[150] = 1
    n = ctypes.c_uint32(200)
    assert lib.bpf_obj_get_info_by_fd(fd, big, n) == -errno.E2BIG and n.value == 200
    # a shorter one gets only its length
    small = bytearray(8)
    n = ctypes.c_uint32(8)
    assert lib.bpf_map_get_info_by_fd(fd, small, n) == 0 and n.value == 8
    assert small == bytearray(struct.pack("<II", LRU_HASH, info.id))


def test_next_id_and_fd_by_id(lib):
    fd = lib.bpf_map_create(HASH, "by_id", 4, 4, 4)
    mid = info_of(lib, fd).id
    nid = ctypes.c_uint32(0)
    assert lib.bpf_map_get_next_id(mid - 1, nid) == 0 and nid.value == mid
    # every id up from 0 ends in ENOENT and passes through ours
    ids, start = [], 0
    while lib.bpf_map_get_next_id(start, nid) == 0:
        ids.append(nid.value)
        start = nid.value
        assert len(ids) < 100000
    assert mid in ids and ids == sorted(ids)
    assert lib.bpf_map_get_next_id(0xFFFFFFFF, nid) == -errno.EINVAL
    # fd_by_id: a second fd on the same map; RDONLY refuses writes
    fd2 = lib.bpf_map_get_fd_by_id(mid)
    assert fd2 >= 0 and lib.track(fd2) != fd
    assert lib.bpf_map_update_elem(fd2, u32(1), u32(11), 0) == 0
    rfd = lib.bpf_map_get_fd_by_id_opts(mid, bpf_get_fd_by_id_opts(open_flags=c.BPF_F_RDONLY))
    assert rfd >= 0
    out = bytearray(4)
    assert lib.bpf_map_lookup_elem(rfd, u32(1), out) == 0 and out == bytearray(u32(11))
    assert lib.bpf_map_update_elem(rfd, u32(1), u32(12), 0) == -errno.EPERM
    assert lib.bpf_map_get_fd_by_id_opts(mid, bpf_get_fd_by_id_opts(open_flags=1)) == \
        -errno.EINVAL
    assert lib.bpf_map_get_fd_by_id(0) == -errno.ENOENT
    # a token fd is not sent for maps (libbpf sends it for BTF only)
    assert lib.bpf_map_get_fd_by_id_opts(mid, bpf_get_fd_by_id_opts(token_fd=5)) >= 0
    _, size, attr = last_call(lib)
    assert size == 12 and attr[12:16] == bytes(4)


def test_libbpf_num_possible_cpus(backend):
    lib = LibBpf(backend)
    assert lib.libbpf_num_possible_cpus() == NCPU == host_possible_cpus()
    assert LibBpf(Emulator(nr_cpus=5)).libbpf_num_possible_cpus() == 5


# --- pins ---------------------------------------------------------------------------------------

def test_pin_and_get(pin_env):
    lib, root = pin_env
    fd = lib.bpf_map_create(HASH, "pinned", 4, 4, 4)
    mid = info_of(lib, fd).id
    assert lib.bpf_map_update_elem(fd, u32(1), u32(5), 0) == 0
    path = os.path.join(root, "m")
    assert lib.bpf_obj_pin(fd, path) == 0
    assert lib.bpf_obj_pin(fd, path) == -errno.EEXIST
    assert lib.bpf_obj_pin(fd, pathlib.Path(root) / "missing_dir" / "m") == -errno.ENOENT
    g = lib.track(lib.bpf_obj_get(path))
    assert g >= 0 and g != fd and info_of(lib, g).id == mid
    out = bytearray(4)
    assert lib.bpf_map_lookup_elem(g, u32(1), out) == 0 and out == bytearray(u32(5))
    assert lib.bpf_obj_get(os.path.join(root, "nope")) == -errno.ENOENT
    # read-only get
    r = lib.bpf_obj_get_opts(path, opts.bpf_obj_get_opts(file_flags=c.BPF_F_RDONLY))
    assert r >= 0
    assert lib.bpf_map_update_elem(r, u32(1), u32(6), 0) == -errno.EPERM
    assert lib.bpf_obj_get_opts(path, {"file_flags": 1 << 20}) == -errno.EINVAL
    # relative paths under a directory fd (BPF_F_PATH_FD)
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert lib.bpf_obj_pin_opts(fd, "rel", opts.bpf_obj_pin_opts(
            file_flags=c.BPF_F_PATH_FD, path_fd=dfd)) == 0
        rel = lib.bpf_obj_get_opts("rel", opts.bpf_obj_get_opts(file_flags=c.BPF_F_PATH_FD,
                                                                path_fd=dfd))
        assert rel >= 0 and info_of(lib, rel).id == mid
        # path_fd without BPF_F_PATH_FD is refused
        assert lib.bpf_obj_get_opts("rel", opts.bpf_obj_get_opts(path_fd=dfd)) == -errno.EINVAL
    finally:
        os.close(dfd)
    # a pin outside the bpffs is refused
    assert lib.bpf_obj_pin(fd, "/tmp/bpfemu-not-a-bpffs-pin") == -errno.EPERM


# --- module-level functions ---------------------------------------------------------------------

@pytest.fixture
def restore_default():
    saved = libbpf_mod._default
    yield
    libbpf_mod._default = saved


def test_module_level_functions_act_on_the_chosen_backend(restore_default, backend):
    lb = libbpf_mod.use(backend)
    assert isinstance(lb, LibBpf) and libbpf_mod.default() is lb
    fd = libbpf_mod.bpf_map_create(HASH, "module_level", 4, 4, 2)
    try:
        assert fd >= 0
        assert libbpf_mod.bpf_map_update_elem(fd, u32(3), u32(4), c.BPF_NOEXIST) == 0
        out = bytearray(4)
        assert libbpf_mod.bpf_map_lookup_elem(fd, u32(3), out) == 0 and out == bytearray(u32(4))
        assert libbpf_mod.bpf_map_lookup_elem(fd, u32(5), out) == -errno.ENOENT
        assert libbpf_mod.libbpf_num_possible_cpus() == NCPU
        if not is_host(backend):
            assert backend.map_of(fd).key_size == 4      # it went to this emulator
    finally:
        backend.close(fd)


def test_default_backend_is_an_emulator(restore_default):
    libbpf_mod._default = None
    assert isinstance(libbpf_mod.default().backend, Emulator)
    fd = libbpf_mod.bpf_map_create(ARRAY, None, 4, 4, 1)
    assert fd >= 0
    assert libbpf_mod.default().close(fd) == 0


def test_public_names():
    for name in LIBBPF_ATTR_SIZE:
        assert callable(getattr(libbpf_mod, name)), name
        assert name in libbpf_mod.__all__
    assert "libbpf_num_possible_cpus" in libbpf_mod.__all__
    # C's struct/function pairs: the module name is the function, the struct is in opts
    assert libbpf_mod.bpf_obj_pin_opts.__name__ == "bpf_obj_pin_opts"
    assert opts.bpf_obj_pin_opts(file_flags=1).file_flags == 1
    assert opts.bpf_obj_get_opts().path_fd == 0
    assert opts.bpf_map_create_opts is bpf_map_create_opts


def test_module_level_pin_functions(restore_default, pin_env):
    """The module-level bpf_obj_pin_opts/bpf_obj_get_opts are libbpf's functions."""
    lib, root = pin_env
    libbpf_mod.use(lib.backend)
    fd = lib.bpf_map_create(ARRAY, None, 4, 4, 1)
    path = os.path.join(root, "mod")
    assert libbpf_mod.bpf_obj_pin_opts(fd, path, None) == 0
    g = lib.track(libbpf_mod.bpf_obj_get_opts(path, opts.bpf_obj_get_opts()))
    assert g >= 0 and info_of(lib, g).id == info_of(lib, fd).id
