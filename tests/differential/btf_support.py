"""Hand-built BTF blobs for the differential tests of BTF objects, maps with BTF and
programs: a small builder of types and strings, and the raw BPF_BTF_LOAD call."""
import struct

from bpfemu.uapi import consts as c
from tests.support import Buf, attr_buf

INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
SIGNED = 1


def info(kind, vlen=0, kflag=0):
    return (kflag << 31) | (kind << 24) | vlen


class BtfBuilder:
    """Types appended in order get ids 1, 2, ...; names are added to the string section."""

    def __init__(self):
        self.strings = b"\0"
        self.types = b""
        self.n = 0

    def name(self, s) -> int:
        if not s:
            return 0
        s = s.encode() if isinstance(s, str) else s
        off = self.strings.find(b"\0" + s + b"\0")
        if off >= 0:
            return off + 1
        off = len(self.strings)
        self.strings += s + b"\0"
        return off

    def raw(self, name_off, info_word, size_type, extra=b"") -> int:
        self.types += struct.pack("<III", name_off, info_word, size_type) + extra
        self.n += 1
        return self.n

    def int(self, name="int", size=4, bits=32, encoding=SIGNED, offset=0):
        return self.raw(self.name(name), info(INT), size,
                        struct.pack("<I", (encoding << 24) | (offset << 16) | bits))

    def ptr(self, to):
        return self.raw(0, info(PTR), to)

    def modifier(self, kind, to, name=None):
        return self.raw(self.name(name) if name else 0, info(kind), to)

    def array(self, elem, index, nelems):
        return self.raw(0, info(ARRAY), 0, struct.pack("<III", elem, index, nelems))

    def struct(self, name, size, members, kind=STRUCT, kflag=0):
        """members: (name, type id, bit offset)."""
        extra = b"".join(struct.pack("<III", self.name(n), t, off) for n, t, off in members)
        return self.raw(self.name(name), info(kind, len(members), kflag), size, extra)

    def enum(self, name, size, values):
        extra = b"".join(struct.pack("<Ii", self.name(n), v) for n, v in values)
        return self.raw(self.name(name), info(ENUM, len(values)), size, extra)

    def fwd(self, name):
        return self.raw(self.name(name), info(FWD), 0)

    def func_proto(self, ret, args):
        extra = b"".join(struct.pack("<II", self.name(n), t) for n, t in args)
        return self.raw(0, info(FUNC_PROTO, len(args)), ret, extra)

    def func(self, name, proto, linkage=1):
        return self.raw(self.name(name), info(FUNC, linkage), proto)

    def var(self, name, type_id, linkage=1):
        return self.raw(self.name(name), info(VAR), type_id, struct.pack("<I", linkage))

    def datasec(self, name, size, vars_):
        extra = b"".join(struct.pack("<III", t, off, sz) for t, off, sz in vars_)
        return self.raw(self.name(name), info(DATASEC, len(vars_)), size, extra)

    def blob(self, *, magic=0xEB9F, version=1, flags=0, hdr_len=24, hdr_tail=b"",
             type_off=0, type_len=None, str_off=None, str_len=None, types=None,
             strings=None) -> bytes:
        types = self.types if types is None else types
        strings = self.strings if strings is None else strings
        type_len = len(types) if type_len is None else type_len
        str_off = len(types) if str_off is None else str_off
        str_len = len(strings) if str_len is None else str_len
        hdr = struct.pack("<HBBIIIII", magic, version, flags, hdr_len, type_off, type_len,
                          str_off, str_len) + hdr_tail
        return hdr + types + strings


def spin_lock_btf():
    """int; struct bpf_spin_lock {int val}; struct val {int cnt; struct bpf_spin_lock lock}:
    ids 1, 2, 3 (value size 8, the lock at offset 4)."""
    b = BtfBuilder()
    i = b.int()
    lock = b.struct("bpf_spin_lock", 4, [("val", i, 0)])
    b.struct("val", 8, [("cnt", i, 0), ("lock", lock, 32)])
    return b


def btf_load_attr(data_addr, size, log_buf=0, log_size=0, log_level=0, flags=0, token_fd=0):
    return struct.pack("<QQIIIIIi", data_addr, log_buf, size, log_size, log_level, 0, flags,
                       token_fd)


def btf_load(backend, blob: bytes, *, size=None, attr_size=40, **kw):
    """BPF_BTF_LOAD of blob: (result, the attr after the call)."""
    data = Buf(blob)
    attr = attr_buf(btf_load_attr(data.addr, len(blob) if size is None else size, **kw))
    ret = backend.bpf(c.BPF_BTF_LOAD, attr, attr_size)
    return ret, attr.raw


def load_ok(backend, blob: bytes) -> int:
    fd, _ = btf_load(backend, blob)
    assert fd >= 0, fd
    return fd
