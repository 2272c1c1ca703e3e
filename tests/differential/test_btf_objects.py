"""BTF objects once loaded: their fds, ids, OBJ_GET_INFO_BY_FD, BTF_GET_NEXT_ID and
BTF_GET_FD_BY_ID, on the emulator and the live kernel. Facts: docs/btf.md."""
import fcntl
import os
import struct

import pytest

from bpfemu.uapi import consts as c
from tests.differential.abi_support import (CLOSED_FD, E2BIG, EBADFD, EINVAL, ENOENT, call,
                                            freeze, get_info, id_attr)
from tests.differential.btf_support import load_ok, spin_lock_btf
from tests.support import Buf, elem_attr

ENOSPC = 28
INFO_SIZE = 32


def btf_info(backend, fd, info_len=INFO_SIZE, btf_buf=None, name_buf=None, init=None):
    """OBJ_GET_INFO_BY_FD on a BTF fd with optional data and name buffers (Bufs)."""
    head = struct.pack("<QIIQII", btf_buf.addr if btf_buf else 0,
                       btf_buf.size if btf_buf else 0, 0,
                       name_buf.addr if name_buf else 0, name_buf.size if name_buf else 0, 0)
    return get_info(backend, fd, info_len, init=init if init is not None else head)


def next_btf_id(backend, start):
    ret, raw = call(backend, c.BPF_BTF_GET_NEXT_ID, id_attr(start), 8)
    return ret, struct.unpack_from("<I", raw, 4)[0]


def btf_fd_by_id(backend, btf_id, open_flags=0, size=16):
    return call(backend, c.BPF_BTF_GET_FD_BY_ID, id_attr(btf_id, open_flags=open_flags), size)[0]


def all_ids(backend):
    ids, start = [], 0
    while True:
        ret, nxt = next_btf_id(backend, start)
        if ret:
            assert ret == -ENOENT
            return ids
        ids.append(nxt)
        start = nxt


def test_fd_is_read_only_and_close_on_exec(client):
    fd = load_ok(client.b, spin_lock_btf().blob())
    client.fds.append(fd)
    assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
    assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC


def test_info(client):
    blob = spin_lock_btf().blob()
    fd = load_ok(client.b, blob)
    client.fds.append(fd)
    data, name = Buf(size=len(blob)), Buf(size=8)
    ret, info_len, info, guards = btf_info(client.b, fd, btf_buf=data, name_buf=name)
    assert (ret, info_len, guards) == (0, INFO_SIZE, True)
    ubtf, size, btf_id, uname, name_len, kernel_btf = struct.unpack("<QIIQII", info)
    assert (ubtf, size, uname, name_len, kernel_btf) == (data.addr, len(blob), name.addr, 0, 0)
    assert btf_id > 0
    assert data.data == blob and data.guards_intact()
    assert name.data == bytes(8) and name.guards_intact()


def test_info_short_data_buffer_gets_a_prefix(client):
    blob = spin_lock_btf().blob()
    fd = load_ok(client.b, blob)
    client.fds.append(fd)
    data = Buf(size=10)
    ret, _, info, _ = btf_info(client.b, fd, btf_buf=data)
    assert ret == 0 and data.data == blob[:10] and data.guards_intact()
    assert struct.unpack_from("<I", info, 8)[0] == len(blob)     # the size it would need


@pytest.mark.parametrize("info_len", [0, 4, 8, 12, 16, 31, 32, 40, 4096])
def test_info_len(both, info_len):
    emu, host = both
    out = []
    for cl in (emu, host):
        fd = load_ok(cl.b, spin_lock_btf().blob())
        cl.fds.append(fd)
        ret, got_len, info, guards = get_info(cl.b, fd, info_len, init=bytes(max(info_len, 1)))
        info = info[:12] + bytes(4) + info[16:] if len(info) >= 16 else info   # the id differs
        out.append((ret, got_len, info, guards))
    assert out[0] == out[1]


def test_info_nonzero_tail_is_e2big(client):
    fd = load_ok(client.b, spin_lock_btf().blob())
    client.fds.append(fd)
    ret, _, _, _ = get_info(client.b, fd, 40, init=bytes(36) + b"\1")
    assert ret == -E2BIG


@pytest.mark.parametrize("name_ptr,name_len,want", [(True, 0, -EINVAL), (False, 8, -EINVAL),
                                                    (True, 1, 0)])
def test_info_name_buffer(client, name_ptr, name_len, want):
    fd = load_ok(client.b, spin_lock_btf().blob())
    client.fds.append(fd)
    name = Buf(b"\xff" * 8)
    head = struct.pack("<QIIQII", 0, 0, 0, name.addr if name_ptr else 0, name_len, 0)
    ret, _, _, _ = get_info(client.b, fd, INFO_SIZE, init=head)
    assert ret == want
    if want == 0:
        assert name.data == b"\0" + b"\xff" * 7


def test_kernel_btf_is_id_1(client):
    """The kernel's own BTF has the first id, its name and kernel_btf set."""
    fd = btf_fd_by_id(client.b, 1)
    assert fd >= 0
    client.fds.append(fd)
    name = Buf(size=16)
    ret, _, info, _ = btf_info(client.b, fd, name_buf=name)
    assert ret == 0
    _, size, btf_id, _, name_len, kernel_btf = struct.unpack("<QIIQII", info)
    assert (btf_id, name_len, kernel_btf) == (1, 7, 1)
    assert size == os.stat("/sys/kernel/btf/vmlinux").st_size
    assert name.data == b"vmlinux\0" + bytes(8)


def test_kernel_btf_name_too_short_is_enospc(client):
    fd = btf_fd_by_id(client.b, 1)
    client.fds.append(fd)
    name = Buf(b"\xff" * 4)
    ret, _, info, _ = btf_info(client.b, fd, name_buf=name)
    assert ret == -ENOSPC and name.data == b"vml\0"
    assert struct.unpack_from("<I", info, 24)[0] == 7     # the info says what it needs


def test_ids_live_and_die_with_the_fds(client):
    fd = load_ok(client.b, spin_lock_btf().blob())
    ret, _, info, _ = btf_info(client.b, fd)
    btf_id = struct.unpack_from("<I", info, 12)[0]
    assert btf_id in all_ids(client.b)
    fd2 = btf_fd_by_id(client.b, btf_id)
    assert fd2 >= 0
    assert fcntl.fcntl(fd2, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
    assert struct.unpack_from("<I", btf_info(client.b, fd2)[2], 12)[0] == btf_id
    client.b.close(fd)
    assert btf_id in all_ids(client.b)                  # fd2 still holds it
    client.b.close(fd2)
    assert btf_id not in all_ids(client.b)
    assert btf_fd_by_id(client.b, btf_id) == -ENOENT
    fd3 = load_ok(client.b, spin_lock_btf().blob())     # ids go up, not back
    client.fds.append(fd3)
    assert struct.unpack_from("<I", btf_info(client.b, fd3)[2], 12)[0] > btf_id


@pytest.mark.parametrize("args,want", [
    (dict(btf_id=0x7FFFFFF0), -ENOENT), (dict(btf_id=1, open_flags=c.BPF_F_RDONLY), -EINVAL),
    (dict(btf_id=1, size=20, open_flags=0), None)])
def test_get_fd_by_id_errors(both, args, want):
    emu, host = both
    r = [btf_fd_by_id(cl.b, **args) for cl in (emu, host)]
    for cl, x in zip((emu, host), r):
        if x >= 0:
            cl.fds.append(x)
    assert (r[0] >= 0, min(r[0], 0)) == (r[1] >= 0, min(r[1], 0))
    if want is not None:
        assert r[0] == want


@pytest.mark.parametrize("start,size", [(0x7FFFFFFF, 8), (0xFFFFFFFF, 8), (0, 12)])
def test_get_next_id_errors(both, start, size):
    emu, host = both
    r = [call(cl.b, c.BPF_BTF_GET_NEXT_ID, id_attr(start, open_flags=1), size)[0]
         for cl in (emu, host)]
    assert r[0] == r[1] == -EINVAL


def test_map_commands_on_a_btf_fd_are_einval(both):
    emu, host = both
    out = []
    for cl in (emu, host):
        fd = load_ok(cl.b, spin_lock_btf().blob())
        cl.fds.append(fd)
        k, v = Buf(bytes(4)), Buf(size=8)
        path = Buf(b"/sys/fs/bpf/bpfemu_btf_pin_test\0")
        out.append((
            cl.bpf(c.BPF_MAP_LOOKUP_ELEM, elem_attr(fd, k.addr, v.addr), 32),
            cl.bpf(c.BPF_MAP_UPDATE_ELEM, elem_attr(fd, k.addr, v.addr), 32),
            cl.bpf(c.BPF_MAP_GET_NEXT_KEY, elem_attr(fd, 0, v.addr), 24),
            freeze(cl.b, fd),
            cl.bpf(c.BPF_OBJ_PIN, struct.pack("<QII", path.addr, fd, 0), 16),
        ))
    assert out[0] == out[1] == (-EINVAL,) * 5


def test_info_of_closed_fd(client):
    assert get_info(client.b, CLOSED_FD)[0] == -EBADFD
