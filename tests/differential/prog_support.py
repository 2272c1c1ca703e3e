"""Raw BPF_PROG_LOAD calls for the differential tests of programs as objects."""
import struct

from bpfemu.uapi import consts as c
from tests.support import Buf, attr_buf

SOCKET_FILTER, XDP = 1, 6


def insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def mov_r0(v):
    return insn(0xB7, 0, 0, 0, v)


EXIT = insn(0x95)
RET0 = mov_r0(0) + EXIT
RET1 = mov_r0(1) + EXIT


def ld_imm64(dst, src, imm, imm2=0):
    return insn(0x18, dst, src, 0, imm) + insn(0, 0, 0, 0, imm2)


def prog_load_attr(prog_type, insns_addr, insn_cnt, license_addr, *, log_level=0, log_size=0,
                   log_buf=0, prog_flags=0, name=b"", ifindex=0, eat=0, prog_btf_fd=0,
                   attach_btf_id=0, attach_prog_fd=0, fd_array=0, token_fd=0,
                   fd_array_cnt=0):
    a = bytearray(168)
    struct.pack_into("<IIQQIIQII16sIII", a, 0, prog_type, insn_cnt, insns_addr, license_addr,
                     log_level, log_size, log_buf, 0, prog_flags, name.ljust(16, b"\0")[:16],
                     ifindex, eat, prog_btf_fd)
    struct.pack_into("<II", a, 108, attach_btf_id, attach_prog_fd)
    struct.pack_into("<Q", a, 120, fd_array)
    struct.pack_into("<iI", a, 144, token_fd, fd_array_cnt)
    return bytes(a)


def prog_load(backend, prog_type=SOCKET_FILTER, insns=RET0, license=b"GPL", *, insn_cnt=None,
              size=168, insns_addr=None, license_addr=None, **kw):
    """BPF_PROG_LOAD: the fd or -errno."""
    ib = Buf(insns)
    lb = Buf(license + b"\0")
    attr = attr_buf(prog_load_attr(prog_type, ib.addr if insns_addr is None else insns_addr,
                                   len(insns) // 8 if insn_cnt is None else insn_cnt,
                                   lb.addr if license_addr is None else license_addr, **kw))
    return backend.bpf(c.BPF_PROG_LOAD, attr, size)


def fd_array(*fds):
    """A buffer of u32 fds (kept alive by the caller): (Buf, address)."""
    b = Buf(b"".join(struct.pack("<I", fd) for fd in fds))
    return b, b.addr
