"""The bpf() entry (__sys_bpf): size, tail, copy-in, unknown commands and CHECK_ATTR.

Every test body runs on the emulator and on the live kernel (the host run skips when bpf()
is not permitted). Expected values are the live kernel's, as recorded in
docs/linux-6.18.md#the-entry, and re-checked by the host run.
"""
import ctypes
import errno
import struct

import pytest

from bpfemu.uapi import consts as c

from tests.support import (PAGE, Buf, attr_buf, dirty_byte_errno, elem_attr, last_field_end,
                           map_create_attr, page_before_hole, profile_under_test)

E2BIG, EFAULT, EINVAL, EBADF, ENOENT = errno.E2BIG, errno.EFAULT, errno.EINVAL, errno.EBADF, errno.ENOENT
ATTR = 168          # sizeof(union bpf_attr) on 6.18

HASH_ATTR = map_create_attr(c.BPF_MAP_TYPE_HASH, 4, 8, 4)

# Each emulated command and the offset just past its last field (docs/linux-6.18.md#the-entry).
LAST_FIELD_END = {
    c.BPF_MAP_CREATE: 92,
    c.BPF_MAP_LOOKUP_ELEM: 32,
    c.BPF_MAP_UPDATE_ELEM: 32,
    c.BPF_MAP_DELETE_ELEM: 16,
    c.BPF_MAP_GET_NEXT_KEY: 24,
    c.BPF_MAP_LOOKUP_AND_DELETE_ELEM: 32,
}
ELEM_CMDS = [cmd for cmd in LAST_FIELD_END if cmd != c.BPF_MAP_CREATE]
UNKNOWN_CMDS = [38, 100, -1, 2**31]

def close_if_fd(backend, ret, cmd=c.BPF_MAP_CREATE):
    """Close what a MAP_CREATE returned (only MAP_CREATE returns an fd)."""
    if ret >= 0 and cmd == c.BPF_MAP_CREATE:
        backend.close(ret)
    return ret


def call(backend, cmd, data: bytes, size: int) -> int:
    """bpf(cmd, buffer holding data, size); a created fd is closed and reported as 0."""
    buf = attr_buf(data, max(len(data), size, ATTR))
    ret = backend.bpf(cmd, buf, size)
    return 0 if close_if_fd(backend, ret, cmd) >= 0 else ret


def closed_fd_number(n: int = 999) -> int:
    import os
    while True:
        try:
            os.fstat(n)
        except OSError:
            return n
        n += 1


@pytest.fixture
def hmap(client):
    """A HASH k4 v8 n4 holding key 1 -> 0x1111..., and the client."""
    fd = client.create(c.BPF_MAP_TYPE_HASH, 4, 8, 4)
    assert fd >= 0
    assert client.update(fd, struct.pack("<I", 1), b"\x11" * 8) == 0
    return client, fd


# --- 2.1 step 1: size > PAGE_SIZE ---------------------------------------------------------

@pytest.mark.parametrize("size", [PAGE + 1, 5000, 1 << 20, 0xFFFFFFFF])
@pytest.mark.parametrize("cmd", [c.BPF_MAP_CREATE, c.BPF_MAP_LOOKUP_ELEM, 100])
def test_size_over_page_is_e2big(backend, cmd, size):
    # A zeroed attr (and the buffer need not be that long: nothing is read).
    assert backend.bpf(cmd, attr_buf(HASH_ATTR), size) == -E2BIG
    assert backend.bpf(cmd, 0, size) == -E2BIG                 # NULL attr too


def test_size_page_exactly_is_fine(backend):
    assert call(backend, c.BPF_MAP_CREATE, HASH_ATTR, PAGE) == 0


# --- 2.1 step 2: bytes past the union -----------------------------------------------------

@pytest.mark.parametrize("pos", [168, 169, 175, 176, 200, 1000, 4095])
@pytest.mark.parametrize("cmd", [c.BPF_MAP_CREATE, c.BPF_MAP_LOOKUP_ELEM, 100])
def test_nonzero_past_union_is_e2big(backend, cmd, pos):
    data = bytearray(HASH_ATTR.ljust(PAGE, b"\0"))
    data[pos] = 0x01
    assert call(backend, cmd, bytes(data), PAGE) == -E2BIG


def test_byte_167_is_the_commands_einval(backend):
    """EINVAL on 6.18 (inside its union); E2BIG on 6.1 and 6.12, whose union is shorter."""
    data = bytearray(HASH_ATTR.ljust(PAGE, b"\0"))
    data[167] = 0x01
    expect = -dirty_byte_errno(profile_under_test(backend), 167)
    assert call(backend, c.BPF_MAP_CREATE, bytes(data), PAGE) == expect
    data[167] = 0
    assert call(backend, c.BPF_MAP_CREATE, bytes(data), PAGE) == 0


def test_bytes_past_size_are_not_read(backend):
    # Size 200: byte 199 counts, byte 200 is beyond the call.
    data = bytearray(HASH_ATTR.ljust(PAGE, b"\xff"))
    data[ATTR:200] = bytes(200 - ATTR)
    data[92:ATTR] = bytes(ATTR - 92)
    assert call(backend, c.BPF_MAP_CREATE, bytes(data), 200) == 0
    data[199] = 1
    assert call(backend, c.BPF_MAP_CREATE, bytes(data), 200) == -E2BIG


@pytest.mark.parametrize("cmd", [c.BPF_MAP_CREATE, 100])
def test_unreadable_tail_is_efault(backend, cmd):
    base = page_before_hole()
    attr = base + PAGE - ATTR                 # the union fits; byte 168 is in the hole
    ctypes.memmove(attr, HASH_ATTR.ljust(ATTR, b"\0"), ATTR)
    assert backend.bpf(cmd, attr, ATTR + 1) == -EFAULT
    assert backend.bpf(cmd, attr, PAGE) == -EFAULT
    # The same attr with size 168 reads nothing past the page.
    expect = 0 if cmd == c.BPF_MAP_CREATE else -EINVAL
    assert min(close_if_fd(backend, backend.bpf(cmd, attr, ATTR), cmd), 0) == expect


def test_unreadable_union_is_efault(backend):
    # The union itself runs into the hole: copy_from_user faults.
    base = page_before_hole()
    attr = base + PAGE - 16
    ctypes.memmove(attr, HASH_ATTR[:16], 16)
    assert backend.bpf(c.BPF_MAP_CREATE, attr, 17) == -EFAULT
    assert backend.bpf(c.BPF_MAP_CREATE, attr, ATTR) == -EFAULT
    assert backend.bpf(100, attr, ATTR) == -EFAULT     # before the command is looked at
    # 16 readable bytes are a complete MAP_CREATE (the rest zero-fills).
    assert close_if_fd(backend, backend.bpf(c.BPF_MAP_CREATE, attr, 16)) >= 0


# --- 2.1 step 3: short sizes zero-fill ----------------------------------------------------

def test_short_size_zero_fills(backend):
    # Garbage after `size` is never copied: flags, name and the CHECK_ATTR tail are all dirty.
    dirty = HASH_ATTR[:16] + b"\xff" * (ATTR - 16)
    assert call(backend, c.BPF_MAP_CREATE, dirty, 16) == 0
    assert call(backend, c.BPF_MAP_CREATE, dirty, 12) == -EINVAL      # max_entries 0
    assert call(backend, c.BPF_MAP_CREATE, dirty, 17) == -EINVAL      # one byte of flags 0xff
    assert call(backend, c.BPF_MAP_CREATE, HASH_ATTR, 92) == 0


@pytest.mark.parametrize("size", [1, 4, 8, 11, 12])
def test_tiny_sizes(backend, size):
    # Any prefix shorter than max_entries leaves a zero in key/value/max_entries.
    assert call(backend, c.BPF_MAP_CREATE, HASH_ATTR, size) == -EINVAL


def test_null_attr(backend):
    assert backend.bpf(c.BPF_MAP_CREATE, 0, ATTR) == -EFAULT
    assert backend.bpf(c.BPF_MAP_CREATE, 0, 1) == -EFAULT
    assert backend.bpf(c.BPF_MAP_LOOKUP_ELEM, 0, ATTR) == -EFAULT
    # Size 0 copies nothing: the all-zero attr reaches the command.
    assert backend.bpf(c.BPF_MAP_CREATE, 0, 0) == -EINVAL           # map_type 0 / sizes 0


def test_null_attr_size_0_element_command(both):
    # The zero attr names fd 0: whatever fd 0 is in this process, both sides must agree.
    emu, host = both
    for cmd in ELEM_CMDS:
        assert emu.b.bpf(cmd, 0, 0) == host.b.bpf(cmd, 0, 0), cmd


# --- 2.1 step 4: unknown commands, only after size and copy -------------------------------

@pytest.mark.parametrize("cmd", UNKNOWN_CMDS)
def test_unknown_command(backend, cmd):
    assert call(backend, cmd, HASH_ATTR, ATTR) == -EINVAL
    assert call(backend, cmd, b"", 0) == -EINVAL
    assert backend.bpf(cmd, 0, 0) == -EINVAL
    # The size and copy steps come first.
    assert backend.bpf(cmd, 0, ATTR) == -EFAULT
    assert backend.bpf(cmd, attr_buf(HASH_ATTR), PAGE + 1) == -E2BIG
    data = bytearray(PAGE)
    data[ATTR] = 1
    assert call(backend, cmd, bytes(data), PAGE) == -E2BIG


# --- 2.2 CHECK_ATTR -----------------------------------------------------------------------

def _clean_attr(cmd, fd, key, value, next_key):
    """A valid attr for cmd on the hmap fixture, and the result it gives."""
    if cmd == c.BPF_MAP_CREATE:
        return HASH_ATTR, 0
    if cmd == c.BPF_MAP_LOOKUP_ELEM:
        return elem_attr(fd, key.addr, value.addr), 0
    if cmd == c.BPF_MAP_UPDATE_ELEM:
        return elem_attr(fd, key.addr, value.addr), 0
    if cmd == c.BPF_MAP_DELETE_ELEM:
        return elem_attr(fd, next_key.addr), -ENOENT            # key 2 is absent
    if cmd == c.BPF_MAP_GET_NEXT_KEY:
        return elem_attr(fd, 0, next_key.addr), 0
    if cmd == c.BPF_MAP_LOOKUP_AND_DELETE_ELEM:
        return elem_attr(fd, next_key.addr, value.addr), -ENOENT
    raise AssertionError(cmd)


@pytest.mark.parametrize("cmd", list(LAST_FIELD_END), ids=lambda v: c.BpfCmd(v).name)
def test_check_attr_every_tail_byte(hmap, cmd):
    client, fd = hmap
    key, value = Buf(struct.pack("<I", 1)), Buf(b"\x22" * 8)
    other = Buf(struct.pack("<I", 2))
    clean, ok = _clean_attr(cmd, fd, key, value, other)
    b = client.b

    def run(data):
        ret = b.bpf(cmd, attr_buf(data), ATTR)
        return 0 if close_if_fd(b, ret, cmd) >= 0 else ret

    clean = clean.ljust(ATTR, b"\0")
    profile = profile_under_test(b)
    end = last_field_end(profile, cmd, LAST_FIELD_END[cmd])
    for pos in range(end, ATTR):
        for v in (0x01, 0x80):
            data = bytearray(clean)
            data[pos] = v
            assert run(bytes(data)) == -dirty_byte_errno(profile, pos), (pos, v)
    # Nothing above changed the map; the clean attr still gives its own answer.
    assert run(clean) == ok
    if cmd != c.BPF_MAP_CREATE:
        assert client.lookup(fd, struct.pack("<I", 1), 8) == (0, b"\x22" * 8 if cmd in (
            c.BPF_MAP_UPDATE_ELEM,) else b"\x11" * 8)


@pytest.mark.parametrize("cmd", ELEM_CMDS, ids=lambda v: c.BpfCmd(v).name)
def test_check_attr_precedes_fd_lookup(backend, cmd):
    k, v = Buf(bytes(4)), Buf(bytes(8))
    for bad_fd in (0xFFFFFFFF, closed_fd_number()):
        clean = elem_attr(bad_fd, k.addr, v.addr if LAST_FIELD_END[cmd] > 16 else 0)
        assert backend.bpf(cmd, attr_buf(clean), ATTR) == -EBADF
        data = bytearray(clean.ljust(ATTR, b"\0"))
        data[LAST_FIELD_END[cmd]] = 1
        assert backend.bpf(cmd, attr_buf(bytes(data)), ATTR) == -EINVAL
        data = bytearray(clean.ljust(ATTR, b"\0"))
        data[167] = 1
        expect = -dirty_byte_errno(profile_under_test(backend), 167)
        assert backend.bpf(cmd, attr_buf(bytes(data)), ATTR) == expect


def test_check_attr_first_for_map_create(backend):
    # A dirty tail wins over every other MAP_CREATE fault.
    data = bytearray(map_create_attr(100, 0, 0, 1 << 31, 0xFFFFFFFF, map_extra=1,
                                     btf_vmlinux_value_type_id=1, name=b"-" * 16).ljust(ATTR, b"\0"))
    data[100] = 1
    assert backend.bpf(c.BPF_MAP_CREATE, attr_buf(bytes(data)), ATTR) == -EINVAL


def test_element_padding_is_never_checked(hmap):
    client, fd = hmap
    b = client.b
    pad = 0xFFFFFFFF
    k1, k2 = Buf(struct.pack("<I", 1)), Buf(struct.pack("<I", 2))
    val, out, nxt = Buf(b"\x33" * 8), Buf(size=8), Buf(size=4)

    def run(cmd, *args, **kw):
        return b.bpf(cmd, attr_buf(elem_attr(fd, *args, pad=pad, **kw)), ATTR)

    assert run(c.BPF_MAP_UPDATE_ELEM, k2.addr, val.addr) == 0
    assert run(c.BPF_MAP_LOOKUP_ELEM, k2.addr, out.addr) == 0 and out.data == b"\x33" * 8
    assert run(c.BPF_MAP_GET_NEXT_KEY, 0, nxt.addr) == 0
    assert struct.unpack("<I", nxt.data)[0] in (1, 2)
    assert run(c.BPF_MAP_LOOKUP_AND_DELETE_ELEM, k2.addr, out.addr) == 0
    assert run(c.BPF_MAP_DELETE_ELEM, k1.addr) == 0
    assert run(c.BPF_MAP_DELETE_ELEM, k1.addr) == -ENOENT
    assert all(x.guards_intact() for x in (val, out, nxt))


# --- attr buffer kinds --------------------------------------------------------------------

def _as_kind(kind: str, data: bytes):
    """(attr argument, keep-alive) for data in the given kind of buffer."""
    data = data.ljust(ATTR, b"\0")
    if kind == "bytearray":
        a = bytearray(data)
        return a, a
    if kind == "ctypes":
        a = ctypes.create_string_buffer(data, ATTR)
        return a, a
    if kind == "ctypes_array":
        a = (ctypes.c_uint8 * ATTR).from_buffer_copy(data)
        return a, a
    if kind == "memoryview":
        backing = bytearray(b"\xee" * 8 + data + b"\xee" * 8)
        return memoryview(backing)[8:8 + ATTR], backing
    if kind == "int":
        a = ctypes.create_string_buffer(data, ATTR)
        return ctypes.addressof(a), a
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["bytearray", "ctypes", "ctypes_array", "memoryview", "int"])
def test_attr_buffer_kinds(backend, kind):
    attr, keep = _as_kind(kind, HASH_ATTR)
    fd = backend.bpf(c.BPF_MAP_CREATE, attr, ATTR)
    assert fd >= 0
    try:
        k, v, out = Buf(struct.pack("<I", 7)), Buf(b"\x44" * 8), Buf(size=8)
        attr, keep = _as_kind(kind, elem_attr(fd, k.addr, v.addr))
        assert backend.bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32) == 0
        attr, keep = _as_kind(kind, elem_attr(fd, k.addr, out.addr))
        assert backend.bpf(c.BPF_MAP_LOOKUP_ELEM, attr, 32) == 0
        assert out.data == b"\x44" * 8 and out.guards_intact()
        # Faults and tails behave the same whatever the buffer is.
        attr, keep = _as_kind(kind, elem_attr(fd, k.addr, out.addr, flags=1 << 40))
        assert backend.bpf(c.BPF_MAP_LOOKUP_ELEM, attr, ATTR) == -EINVAL
        attr, keep = _as_kind(kind, elem_attr(fd, 0, out.addr))
        assert backend.bpf(c.BPF_MAP_LOOKUP_ELEM, attr, ATTR) == -EFAULT
    finally:
        backend.close(fd)


# --- short sizes on the element commands --------------------------------------------------

SHORT_ELEM = [
    # (cmd, size, expected, key 1 still present afterwards)
    (c.BPF_MAP_LOOKUP_ELEM, 4, -EFAULT, True),        # key pointer cut off: NULL
    (c.BPF_MAP_LOOKUP_ELEM, 8, -EFAULT, True),
    (c.BPF_MAP_LOOKUP_ELEM, 16, -EFAULT, True),       # value pointer cut off
    (c.BPF_MAP_LOOKUP_ELEM, 24, 0, True),             # flags cut off (the dirty ones)
    (c.BPF_MAP_UPDATE_ELEM, 16, -EFAULT, True),
    (c.BPF_MAP_UPDATE_ELEM, 24, 0, True),
    (c.BPF_MAP_DELETE_ELEM, 8, -EFAULT, True),
    (c.BPF_MAP_DELETE_ELEM, 16, 0, False),            # value and flags never read
    (c.BPF_MAP_GET_NEXT_KEY, 8, -EFAULT, True),       # NULL key restarts; NULL next_key faults
    (c.BPF_MAP_GET_NEXT_KEY, 16, -EFAULT, True),      # key 2 is absent: restarts at key 1
    (c.BPF_MAP_GET_NEXT_KEY, 24, 0, True),
    (c.BPF_MAP_LOOKUP_AND_DELETE_ELEM, 8, -EFAULT, True),
    (c.BPF_MAP_LOOKUP_AND_DELETE_ELEM, 24, 0, False),
]


@pytest.mark.parametrize("cmd,size,expected,present", SHORT_ELEM,
                         ids=[f"{c.BpfCmd(x[0]).name}-{x[1]}" for x in SHORT_ELEM])
def test_short_sizes_on_element_commands(hmap, cmd, size, expected, present):
    client, fd = hmap
    # GET_NEXT_KEY gets an absent key, so that it restarts at key 1 instead of ENOENT.
    key = Buf(struct.pack("<I", 2 if cmd == c.BPF_MAP_GET_NEXT_KEY else 1))
    value = Buf(b"\x11" * 8)
    # Everything past `size` is poison that would fail if it were copied.
    attr = bytearray(elem_attr(fd, key.addr, value.addr, flags=0xFF).ljust(ATTR, b"\xff"))
    assert client.b.bpf(cmd, attr_buf(bytes(attr)), size) == expected
    assert (client.lookup(fd, struct.pack("<I", 1), 8)[0] == 0) == present
    assert value.guards_intact()
