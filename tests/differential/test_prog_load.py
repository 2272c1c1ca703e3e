"""BPF_PROG_LOAD of programs as inert objects, on the emulator and the live kernel: the attr
checks before the verifier, the map references of 64-bit immediate loads, ids, info and
pins. Programs here are ones the verifier accepts; what the emulator does not check
(the verifier) is DEVIATION(verifier). Facts: docs/programs.md."""
import os
import struct

import pytest

from bpfemu.uapi import consts as c
from tests.differential.abi_support import (ARRAY, HASH, KERNEL_ADDR, bpffs_mount, call,
                                            get_info, id_attr, map_ids, obj_get, pin, prog_ids,
                                            wait_gone)
from tests.differential.btf_support import load_ok, spin_lock_btf
from tests.differential.prog_support import (RET0, RET1, SOCKET_FILTER, XDP, fd_array,
                                             ld_imm64, mov_r0, prog_load)
from tests.support import Buf

E2BIG, EBADF, EFAULT, EINVAL, ENOENT, EPROTO, ENOTSUPP = 7, 9, 14, 22, 2, 71, 524
INFO_SIZE = 232
__all__ = ["bpffs_mount"]


def same(a, b):
    return (a >= 0, min(a, 0)) == (b >= 0, min(b, 0))


def both_load(both, *args, **kw):
    out = []
    for cl in both:
        r = prog_load(cl.b, *args, **kw)
        if r >= 0:
            cl.fds.append(r)
        out.append(r)
    return out


@pytest.mark.parametrize("prog_type", range(0, 35))
def test_types_and_attach_types(both, prog_type):
    """Every program type with every expected attach type up to 59 (r0 = 1; exit)."""
    got = [[], []]
    for eat in range(60):
        for i, cl in enumerate(both):
            r = prog_load(cl.b, prog_type, RET1, eat=eat)
            if r >= 0:
                cl.b.close(r)
            got[i].append(0 if r >= 0 else r)
    assert got[0] == got[1]


@pytest.mark.parametrize("bit", range(32))
def test_prog_flags(both, bit):
    for prog_type in (SOCKET_FILTER, XDP, 26, 29, 31):
        r = both_load(both, prog_type, RET0, prog_flags=1 << bit)
        assert same(*r), (prog_type, r)


@pytest.mark.parametrize("case", ["insn_cnt_0", "insn_cnt_too_many", "insns_fault",
                                  "license_fault", "name_bad", "name_ok", "name_unterminated",
                                  "long_license", "ifindex_missing", "attach_btf_id_alone",
                                  "attach_btf_id_too_big", "attach_prog_fd_closed",
                                  "attach_prog_fd_btf", "attach_prog_fd_map",
                                  "log_without_buf", "log_level_32", "unused_tail"])
def test_attr_checks(both, case):
    kw = {}
    if case == "insn_cnt_0":
        kw = dict(insn_cnt=0)
    elif case == "insn_cnt_too_many":
        kw = dict(insn_cnt=1000001)
    elif case == "insns_fault":
        kw = dict(insns_addr=KERNEL_ADDR)
    elif case == "license_fault":
        kw = dict(license_addr=KERNEL_ADDR)
    elif case == "name_bad":
        kw = dict(name=b"bad-name")
    elif case == "name_ok":
        kw = dict(name=b"good.name_1")
    elif case == "name_unterminated":
        kw = dict(name=b"x" * 16)
    elif case == "long_license":
        kw = dict(license=b"GPL" + b"x" * 300)
    elif case == "ifindex_missing":
        kw = dict(ifindex=0x7FFF0000)
    elif case == "attach_btf_id_alone":
        kw = dict(attach_btf_id=5)
    elif case == "attach_btf_id_too_big":
        kw = dict(attach_btf_id=0x100000)
    elif case == "log_without_buf":
        kw = dict(log_level=1)
    elif case == "log_level_32":
        kw = dict(log_level=32)
    out = []
    for cl in both:
        extra = dict(kw)
        if case == "attach_prog_fd_closed":
            extra["attach_prog_fd"] = 0x7FFF0000
        elif case == "attach_prog_fd_btf":
            btf = load_ok(cl.b, spin_lock_btf().blob())
            cl.fds.append(btf)
            extra["attach_prog_fd"] = btf
        elif case == "attach_prog_fd_map":
            m = cl.create(ARRAY, 4, 4, 1)
            extra["attach_prog_fd"] = m
        if case == "unused_tail":
            from tests.differential.prog_support import prog_load_attr
            from tests.support import attr_buf
            ib, lb = Buf(RET0), Buf(b"GPL\0")
            attr = attr_buf(prog_load_attr(SOCKET_FILTER, ib.addr, 2, lb.addr) + b"\1", 176)
            r = cl.b.bpf(c.BPF_PROG_LOAD, attr, 176)
        else:
            r = prog_load(cl.b, SOCKET_FILTER, RET0, **extra)
        if r >= 0:
            cl.fds.append(r)
        out.append(r)
    assert same(*out), out


# --- maps named by the program ------------------------------------------------------------

def with_map(insns_of, map_type=HASH, value_size=8, max_entries=4, use_fd_array=False):
    """Load a program built by insns_of(map fd) on both backends: [(result, map fd)]."""
    def run(cl):
        m = cl.create(map_type, 4, value_size, max_entries)
        kw = {}
        if use_fd_array:
            buf, addr = fd_array(m)
            kw = dict(fd_array=addr)
        r = prog_load(cl.b, SOCKET_FILTER, insns_of(m) + RET0, **kw)
        if r >= 0:
            cl.fds.append(r)
        return r, m
    return run


MAP_CASES = {
    "map_fd": (lambda m: ld_imm64(1, 1, m), {}),
    "map_fd_twice": (lambda m: ld_imm64(1, 1, m) + ld_imm64(2, 1, m), {}),
    "map_fd_closed": (lambda m: ld_imm64(1, 1, 0x7FFF0000), {}),
    "map_fd_stdin": (lambda m: ld_imm64(1, 1, 0), {}),
    "map_fd_with_imm2": (lambda m: ld_imm64(1, 1, m, 4), {}),
    "map_value_array": (lambda m: ld_imm64(1, 2, m, 4), dict(map_type=ARRAY, max_entries=1)),
    "map_value_past_end": (lambda m: ld_imm64(1, 2, m, 8), dict(map_type=ARRAY, max_entries=1)),
    "map_value_array_2": (lambda m: ld_imm64(1, 2, m, 0), dict(map_type=ARRAY, max_entries=2)),
    "map_value_hash": (lambda m: ld_imm64(1, 2, m, 0), {}),
    "map_idx_no_array": (lambda m: ld_imm64(1, 5, 0), {}),
    "map_idx": (lambda m: ld_imm64(1, 5, 0), dict(use_fd_array=True)),
    "map_idx_value": (lambda m: ld_imm64(1, 6, 0, 2), dict(use_fd_array=True, map_type=ARRAY,
                                                            max_entries=1)),
    "src_7": (lambda m: ld_imm64(1, 7, m), {}),
    "ld_imm64_last": (lambda m: b"", {}),
    "ld_imm64_bad_second": (lambda m: ld_imm64(1, 0, 5)[:8] + mov_r0(0), {}),
    "plain_ld_imm64": (lambda m: ld_imm64(1, 0, 5, 6), {}),
}


@pytest.mark.parametrize("name", list(MAP_CASES))
def test_map_references(both, name):
    insns_of, kw = MAP_CASES[name]
    if name == "ld_imm64_last":
        out = []
        for cl in both:
            r = prog_load(cl.b, SOCKET_FILTER, RET0 + ld_imm64(1, 0, 1)[:8])
            out.append(r)
            if r >= 0:
                cl.fds.append(r)
        assert same(*out)
        return
    out = [with_map(insns_of, **kw)(cl)[0] for cl in both]
    assert same(*out), out


def prog_info(backend, fd, init=b"", info_len=INFO_SIZE):
    return get_info(backend, fd, info_len, init=init.ljust(INFO_SIZE, b"\0"))


def test_info_of_a_program_holding_maps(both):
    """type, tag, name, gpl, map ids in first-use order, xlated instructions naming the maps
    by id; the fields that depend on the JIT or on time are left out."""
    out = []
    for cl in both:
        m1 = cl.create(HASH, 4, 8, 4)
        m2 = cl.create(ARRAY, 4, 8, 1)
        insns = ld_imm64(1, 1, m2) + ld_imm64(2, 2, m1 and m2, 4) + ld_imm64(3, 1, m1) + RET0
        fd = prog_load(cl.b, SOCKET_FILTER, insns, name=b"holder")
        assert fd >= 0
        cl.fds.append(fd)
        ids = Buf(size=16)
        xl = Buf(size=len(insns))
        tags = Buf(size=8)
        init = bytearray(INFO_SIZE)
        struct.pack_into("<II", init, 20, 0, len(insns))          # xlated_prog_len
        struct.pack_into("<Q", init, 32, xl.addr)
        struct.pack_into("<IQ", init, 52, 4, ids.addr)
        struct.pack_into("<IQ", init, 180, 1, tags.addr)
        ret, info_len, info, guards = prog_info(cl.b, fd, bytes(init))
        assert (ret, info_len, guards) == (0, INFO_SIZE, True)
        mid = lambda f: struct.unpack_from("<I", get_info(cl.b, f)[2], 4)[0]   # noqa: E731
        map_ids = [mid(m2), mid(m1)]
        got_ids = list(struct.unpack_from("<2I", ids.data))
        xlated = bytearray(xl.data)
        out.append(dict(
            type=struct.unpack_from("<I", info, 0)[0], tag=info[8:16],
            xlated_len=struct.unpack_from("<I", info, 20)[0],
            nr_map_ids=struct.unpack_from("<I", info, 52)[0], ids_ok=got_ids == map_ids,
            name=info[64:80], gpl=struct.unpack_from("<I", info, 84)[0] & 1,
            uid=struct.unpack_from("<I", info, 48)[0],
            xlated=[x for x in _imm_by_insn(xlated, map_ids)],
            rec_sizes=struct.unpack_from("<I", info, 132)[0:1] + struct.unpack_from("<II", info,
                                                                                  172),
            nr_prog_tags=struct.unpack_from("<I", info, 180)[0], prog_tag=tags.data,
            nr_jited_ksyms=struct.unpack_from("<II", info, 104),
        ))
    assert out[0] == out[1]
    assert out[0]["nr_map_ids"] == 2 and out[0]["ids_ok"]


def _imm_by_insn(xlated, map_ids):
    """The xlated instructions with map ids replaced by their index in map_ids."""
    for i in range(0, len(xlated), 8):
        code, regs, off, imm = struct.unpack_from("<BBhi", xlated, i)
        if imm in map_ids and code == 0x18:
            imm = ("map", map_ids.index(imm))
        yield (code, regs, off, imm)


@pytest.mark.parametrize("license,gpl", [(b"GPL", 1), (b"Dual BSD/GPL", 1), (b"MIT", 0),
                                         (b"", 0), (b"GPL v2", 1), (b"gpl", 0)])
def test_gpl_compatible(client, license, gpl):
    fd = prog_load(client.b, SOCKET_FILTER, RET0, license)
    assert fd >= 0
    client.fds.append(fd)
    assert struct.unpack_from("<I", prog_info(client.b, fd)[2], 84)[0] & 1 == gpl


def test_prog_fd_link_and_mode(client):
    fd = prog_load(client.b)
    client.fds.append(fd)
    import fcntl
    assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR
    assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC


def test_ids_and_the_maps_a_program_holds(client):
    m = client.create(HASH, 4, 8, 4)
    map_id = struct.unpack_from("<I", get_info(client.b, m)[2], 4)[0]
    fd = prog_load(client.b, SOCKET_FILTER, ld_imm64(1, 1, m) + RET0)
    assert fd >= 0
    pid = struct.unpack_from("<I", prog_info(client.b, fd)[2], 4)[0]
    assert pid in prog_ids(client.b)
    fd2 = call(client.b, c.BPF_PROG_GET_FD_BY_ID, id_attr(pid), 4)[0]
    assert fd2 >= 0
    assert struct.unpack_from("<I", prog_info(client.b, fd2)[2], 4)[0] == pid
    client.close(m)
    assert map_id in map_ids(client.b)           # the program holds the map
    client.b.close(fd)
    client.b.close(fd2)
    assert wait_gone(client.b, prog_ids, pid)
    assert wait_gone(client.b, map_ids, map_id)
    assert call(client.b, c.BPF_PROG_GET_FD_BY_ID, id_attr(pid), 4)[0] == -ENOENT


@pytest.mark.parametrize("size,tail", [(4, {}), (8, {4: 1}), (12, {8: 1})])
def test_get_fd_by_id_last_field(both, size, tail):
    out = [call(cl.b, c.BPF_PROG_GET_FD_BY_ID, id_attr(0x7FFFFF00), size, tail)[0]
           for cl in both]
    assert out[0] == out[1]


def test_pin_and_get_a_program(bpffs_mount):
    """A pinned program outlives its fd; OBJ_GET gives a read-write fd whatever it asks."""
    import fcntl
    from bpfemu import Emulator, HostKernel
    from tests.support import NCPU
    out = []
    for b in (Emulator(nr_cpus=NCPU, seed=1, bpffs_root=bpffs_mount), HostKernel()):
        path = os.path.join(bpffs_mount, "prog_" + type(b).__name__)
        fd = prog_load(b, SOCKET_FILTER, RET0, name=b"pinned")
        steps = [pin(b, fd, path)]
        b.close(fd)
        ro = obj_get(b, path, c.BPF_F_RDONLY)
        steps.append(fcntl.fcntl(ro, fcntl.F_GETFL) & os.O_ACCMODE if ro >= 0 else ro)
        b.close(ro)
        fd2 = obj_get(b, path)
        steps.append(fd2 >= 0)
        steps.append(prog_info(b, fd2)[2][64:80])
        b.close(fd2)
        if isinstance(b, Emulator):
            b.bpffs.unlink(path)
        else:
            os.unlink(path)
        out.append(steps)
    assert out[0] == out[1]
    assert out[0][:3] == [0, os.O_RDWR, True]


def bind(backend, prog_fd, map_fd, flags=0, size=12):
    return call(backend, c.BPF_PROG_BIND_MAP, struct.pack("<III", prog_fd & 0xFFFFFFFF,
                                                          map_fd & 0xFFFFFFFF, flags), size)[0]


def test_prog_bind_map(both):
    out = []
    for cl in both:
        p = prog_load(cl.b)
        cl.fds.append(p)
        m = cl.create(ARRAY, 4, 4, 1)
        steps = [bind(cl.b, p, m, 1), bind(cl.b, 0x7FFF0000, m), bind(cl.b, m, m),
                 bind(cl.b, p, p), bind(cl.b, p, 0x7FFF0000), bind(cl.b, p, m),
                 bind(cl.b, p, m), bind(cl.b, p, m, size=16)]
        steps.append(struct.unpack_from("<I", prog_info(cl.b, p)[2], 52)[0])    # nr_map_ids
        out.append(steps)
    assert out[0] == out[1]
    assert out[0][-1] == 1


def test_an_fd_number_closed_behind_our_back_serves_the_next_object(both):
    """os.close() of a map fd, then a program load: the program gets that number (lowest
    free) and the fd is the program's from then on."""
    out = []
    for cl in both:
        m = cl.create(ARRAY, 4, 4, 1)
        cl.fds.remove(m)
        os.close(m)
        p = prog_load(cl.b)
        cl.fds.append(p)
        ret, _, info, _ = prog_info(cl.b, p)
        out.append((p == m, ret, struct.unpack_from("<I", info, 0)[0]))
    assert out[0] == out[1] == (True, 0, SOCKET_FILTER)


@pytest.mark.parametrize("prog_type", [SOCKET_FILTER, 2, 3, 5, 6, 7, 17])
def test_spin_lock_maps_and_program_types(both, prog_type):
    """Socket filters and tracing programs cannot use a map with a bpf_spin_lock."""
    out = []
    for cl in both:
        btf = load_ok(cl.b, spin_lock_btf().blob())
        cl.fds.append(btf)
        m = cl.create(ARRAY, 4, 8, 1, btf_fd=btf, btf_key_type_id=1, btf_value_type_id=3)
        assert m >= 0
        r = prog_load(cl.b, prog_type, ld_imm64(1, 1, m) + RET0)
        if r >= 0:
            cl.fds.append(r)
        out.append(min(r, 0))
    assert out[0] == out[1]


@pytest.mark.parametrize("case", ["func_info_no_btf", "func_info_rec_4", "func_info_rec_huge",
                                  "func_info_cnt_huge", "line_info_rec_15", "line_info_no_btf"])
def test_btf_info_attrs(both, case):
    """func_info/line_info need a BTF fd and sane record sizes and counts (no huge reads)."""
    from tests.differential.prog_support import prog_load_attr
    from tests.support import attr_buf
    out = []
    for cl in both:
        btf = load_ok(cl.b, spin_lock_btf().blob())
        cl.fds.append(btf)
        ib, lb, rec = Buf(RET0), Buf(b"GPL\0"), Buf(bytes(64))
        a = bytearray(prog_load_attr(SOCKET_FILTER, ib.addr, 2, lb.addr,
                                     prog_btf_fd=0 if case.endswith("no_btf") else btf))
        fields = {"func_info_no_btf": (76, 8, 1), "func_info_rec_4": (76, 4, 1),
                  "func_info_rec_huge": (76, 0xFFFFFFF0, 1),
                  "func_info_cnt_huge": (76, 8, 0x7FFFFFFF), "line_info_rec_15": (92, 15, 1),
                  "line_info_no_btf": (92, 16, 1)}[case]
        off, rec_size, cnt = fields
        struct.pack_into("<IQI", a, off, rec_size, rec.addr, cnt)
        r = cl.b.bpf(c.BPF_PROG_LOAD, attr_buf(bytes(a)), 168)
        if r >= 0:
            cl.fds.append(r)
        out.append(min(r, 0))
    assert out[0] == out[1]


@pytest.mark.parametrize("info_len", [0, 4, 8, 16, 52, 100, 231, 232, 240, 4096, 4097])
def test_prog_info_len(both, info_len):
    """info_len is cut to 232 and written back; bytes past 232 must be zero (E2BIG); the
    fields the emulator cannot know (id, load time, JIT, verifier) are left out."""
    out = []
    for cl in both:
        fd = prog_load(cl.b, SOCKET_FILTER, RET0, name=b"lenprog")
        cl.fds.append(fd)
        ret, got_len, info, guards = get_info(cl.b, fd, info_len,
                                              init=bytes(min(max(info_len, 1), 4096)))
        keep = bytearray(info)
        for off, size in ((4, 4), (16, 4), (24, 8), (40, 8), (104, 8), (112, 16), (216, 4)):
            keep[off:off + size] = bytes(len(keep[off:off + size]))
        out.append((ret, got_len, bytes(keep), guards))
    assert out[0] == out[1]


def test_prog_info_tail_must_be_zero(both):
    out = []
    for cl in both:
        fd = prog_load(cl.b)
        cl.fds.append(fd)
        out.append(get_info(cl.b, fd, 240, init=bytes(236) + b"\1")[0])
    assert out[0] == out[1] == -E2BIG


@pytest.mark.parametrize("rec", [(132, 4), (132, 8), (172, 15), (172, 16), (176, 4), (176, 8),
                                 (144, 1)])
def test_prog_info_rec_sizes(both, rec):
    off, val = rec
    out = []
    for cl in both:
        fd = prog_load(cl.b)
        cl.fds.append(fd)
        init = bytearray(232)
        struct.pack_into("<I", init, off, val)
        out.append(get_info(cl.b, fd, 232, init=bytes(init))[0])
    assert out[0] == out[1]
