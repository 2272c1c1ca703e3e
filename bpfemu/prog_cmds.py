"""Programs as inert objects: BPF_PROG_LOAD, BPF_PROG_GET_NEXT_ID, BPF_PROG_GET_FD_BY_ID and
OBJ_GET_INFO_BY_FD on a program fd (bpf_prog_load(), bpf_prog_get_info_by_fd() of
kernel/bpf/syscall.c), in their check order.

A loaded program is recorded, never run: its instructions, license, name, type, expected
attach type, and the maps its 64-bit immediate loads name (BPF_PSEUDO_MAP_FD, MAP_VALUE,
MAP_IDX, MAP_IDX_VALUE), which it holds as the kernel's used_maps do. Its fd is named
"bpf-prog" (O_RDWR, close-on-exec); its id comes from a cyclic space of its own. Facts:
docs/programs.md.

DEVIATION(verifier): the verifier is not emulated. What bpf_prog_load() checks before it
runs (flags, instruction count, program and attach types, the attach target, the copies of
the instructions and license, the name) is checked; of the verifier's own work only the
resolution of map references in 64-bit immediate loads is done (EBADF, EINVAL, EPROTO,
E2BIG, as in resolve_pseudo_ldimm64()), and the checks that need no attach target
(tracing, LSM, extension and struct_ops programs without one; sleepable programs of types
that cannot sleep). Every other program is accepted, even one the verifier would reject.
"""
import errno
import os
import struct
import time

from .btf_cmds import bpf_vlog_init, btf_get_by_fd
from .errors import ENOTSUPP, BpfError
from .fdtable import BTF_KIND, FMODE_RDWR, PROG_KIND
from .map_cmds import bpf_obj_name_cpy
from .obj_ids import bpf_obj_get_next_id, idr_find_live, info_from_user
from .uapi import consts as F
from .usercopy import copy_to_user, put_attr, strncpy_from_user

_EINVAL = errno.EINVAL
_U32 = struct.Struct("<I")
_INSN = struct.Struct("<BBhi")                  # code, dst_reg:4 | src_reg:4, off, imm
# union bpf_attr for BPF_PROG_LOAD, up to keyring_id (168 bytes).
_PROG_LOAD = struct.Struct("<IIQQIIQII16sIIIIQIIQIIIIQQIIiIQIi")
_LOG_TRUE_SIZE_OFF = 140
_GET_ID = struct.Struct("<IIIi")
_INFO_LEN_OFF = 4
BPF_PROG_INFO_SIZE = 232                        # sizeof(struct bpf_prog_info)

BPF_MAXINSNS = 4096
BPF_COMPLEXITY_LIMIT_INSNS = 1000000
BPF_MAX_VAR_OFF = 1 << 29
MAX_USED_MAPS = 64
BTF_MAX_TYPE = 0x000FFFFF
BPF_LD_IMM64 = 0x18                             # BPF_LD | BPF_IMM | BPF_DW
BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE = 1, 2
BPF_PSEUDO_BTF_ID, BPF_PSEUDO_FUNC = 3, 4
BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE = 5, 6

# prog_flags bits (include/uapi/linux/bpf.h)
BPF_F_STRICT_ALIGNMENT, BPF_F_ANY_ALIGNMENT, BPF_F_TEST_RND_HI32 = 1, 2, 4
BPF_F_TEST_STATE_FREQ, BPF_F_SLEEPABLE, BPF_F_XDP_HAS_FRAGS = 8, 16, 32
BPF_F_XDP_DEV_BOUND_ONLY, BPF_F_TEST_REG_INVARIANTS = 64, 128
PROG_FLAGS_MASK = (BPF_F_STRICT_ALIGNMENT | BPF_F_ANY_ALIGNMENT | BPF_F_TEST_STATE_FREQ
                   | BPF_F_SLEEPABLE | BPF_F_TEST_RND_HI32 | BPF_F_XDP_HAS_FRAGS
                   | BPF_F_XDP_DEV_BOUND_ONLY | BPF_F_TEST_REG_INVARIANTS | F.BPF_F_TOKEN_FD)

# enum bpf_prog_type (the ones whose numbers the checks below name)
(SOCKET_FILTER, KPROBE, SCHED_CLS, SCHED_ACT, TRACEPOINT, XDP, PERF_EVENT, CGROUP_SKB,
 CGROUP_SOCK, LWT_IN, LWT_OUT, LWT_XMIT, SOCK_OPS, SK_SKB, CGROUP_DEVICE, SK_MSG,
 RAW_TRACEPOINT, CGROUP_SOCK_ADDR, LWT_SEG6LOCAL, LIRC_MODE2, SK_REUSEPORT, FLOW_DISSECTOR,
 CGROUP_SYSCTL, RAW_TRACEPOINT_WRITABLE, CGROUP_SOCKOPT, TRACING, STRUCT_OPS, EXT, LSM,
 SK_LOOKUP, SYSCALL, NETFILTER) = range(1, 33)
# Program types a Linux 6.18 x86_64 kernel has (bpf_prog_types[]): all but LIRC_MODE2, which
# needs CONFIG_BPF_LIRC_MODE2. The profile may say otherwise.
PROG_TYPES = frozenset(range(1, 33)) - {LIRC_MODE2}

# enum bpf_attach_type (the ones bpf_prog_load_check_attach() names)
(CGROUP_INET_INGRESS, CGROUP_INET_EGRESS, CGROUP_INET_SOCK_CREATE) = (0, 1, 2)
CGROUP_INET4_POST_BIND, CGROUP_INET6_POST_BIND = 12, 13
CGROUP_INET_SOCK_RELEASE = 34
SOCK_ADDR_ATTACH = frozenset({8, 9, 10, 11, 14, 15, 19, 20, 29, 30, 31, 32, 49, 50, 51, 52, 53})
CGROUP_GETSOCKOPT, CGROUP_SETSOCKOPT = 21, 22
TRACE_FENTRY, TRACE_FEXIT, MODIFY_RETURN, TRACE_ITER = 24, 25, 26, 28
SK_LOOKUP_ATTACH = 36
SK_REUSEPORT_SELECT, SK_REUSEPORT_SELECT_OR_MIGRATE = 39, 40
NETFILTER_ATTACH = 45


class BpfProg:
    """struct bpf_prog with its aux: what was loaded, and what it holds."""

    def __init__(self, prog_type: int, insns: bytes, *, expected_attach_type: int, flags: int,
                 gpl_compatible: bool, name: bytes, used_maps: list, btf, attach_btf_id: int,
                 func_info: bytes, func_info_cnt: int, line_info: bytes, line_info_cnt: int,
                 kernel):
        self.type = prog_type
        self.insns = insns
        self.len = len(insns) // 8
        self.expected_attach_type = expected_attach_type
        self.sleepable = bool(flags & BPF_F_SLEEPABLE)
        self.gpl_compatible = gpl_compatible
        self.name = name
        self.used_maps = used_maps
        self.btf = btf                          # prog_btf_fd's BTF, held
        self.attach_btf_id = attach_btf_id
        self.func_info, self.func_info_cnt = func_info, func_info_cnt
        self.line_info, self.line_info_cnt = line_info, line_info_cnt
        self.tag = bpf_prog_calc_tag(insns)
        self.load_time = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        self.uid = os.getuid()
        self.insn_maps = {}                     # insn index -> (map, pseudo kind) for the dump
        self.id = 0
        self.refcnt = 1
        self.kernel = kernel

    def put(self, emu) -> None:
        """bpf_prog_put(): the last reference frees the id and lets the maps and BTF go."""
        self.refcnt -= 1
        if self.refcnt == 0:
            emu.prog_idr.remove(self.id)
            for m in self.used_maps:
                emu.bpf_map_put(m)
            if self.btf is not None:
                self.btf.put(emu)


def bpf_prog_calc_tag(insns: bytes) -> bytes:
    """The first 8 bytes of the SHA-256 of the instructions with the map fds of 64-bit
    immediate loads (and their second halves' imm) zeroed: fds are not stable."""
    out = bytearray(insns)
    was_ld_map = False
    for i in range(0, len(out), 8):
        code, regs, off, imm = _INSN.unpack_from(out, i)
        src = regs >> 4
        if not was_ld_map and code == BPF_LD_IMM64 and src in (BPF_PSEUDO_MAP_FD,
                                                                BPF_PSEUDO_MAP_VALUE):
            was_ld_map = True
            _INSN.pack_into(out, i, code, regs, off, 0)
        elif was_ld_map and code == 0 and regs == 0 and off == 0:
            was_ld_map = False
            _INSN.pack_into(out, i, code, regs, off, 0)
        else:
            was_ld_map = False
    import hashlib                              # here, not at start-up: programs only
    return hashlib.sha256(out).digest()[:8]


def bpf_prog_load_fixup_attach_type(prog_type: int, eat: int) -> int:
    """Old programs of two types did not say their attach type: give them the default."""
    if prog_type == CGROUP_SOCK and not eat:
        return CGROUP_INET_SOCK_CREATE
    if prog_type == SK_REUSEPORT and not eat:
        return SK_REUSEPORT_SELECT
    return eat


def bpf_prog_load_check_attach(prog_type: int, eat: int, attach_btf, btf_id: int,
                               dst_prog) -> None:
    """bpf_prog_load_check_attach(): the attach types each program type may be loaded for."""
    if btf_id:
        if btf_id > BTF_MAX_TYPE:
            raise BpfError(_EINVAL)
        if attach_btf is None and dst_prog is None:
            raise BpfError(_EINVAL)
        if prog_type not in (TRACING, LSM, STRUCT_OPS, EXT):
            raise BpfError(_EINVAL)
    if attach_btf is not None and (not btf_id or dst_prog is not None):
        raise BpfError(_EINVAL)
    if dst_prog is not None and prog_type not in (TRACING, EXT):
        raise BpfError(_EINVAL)
    allowed = {
        CGROUP_SOCK: {CGROUP_INET_SOCK_CREATE, CGROUP_INET_SOCK_RELEASE,
                      CGROUP_INET4_POST_BIND, CGROUP_INET6_POST_BIND},
        CGROUP_SOCK_ADDR: SOCK_ADDR_ATTACH,
        CGROUP_SKB: {CGROUP_INET_INGRESS, CGROUP_INET_EGRESS},
        CGROUP_SOCKOPT: {CGROUP_GETSOCKOPT, CGROUP_SETSOCKOPT},
        SK_LOOKUP: {SK_LOOKUP_ATTACH},
        SK_REUSEPORT: {SK_REUSEPORT_SELECT, SK_REUSEPORT_SELECT_OR_MIGRATE},
        NETFILTER: {NETFILTER_ATTACH},
        SYSCALL: {0},
    }.get(prog_type)
    if allowed is not None and eat not in allowed:
        raise BpfError(_EINVAL)


def _check_without_verifier(prog_type: int, eat: int, flags: int, attach_btf_id: int,
                            dst_prog) -> None:
    """What Linux's verifier answers from the attr alone (check_attach_btf_id() and the
    sleepable check), as measured on the reference kernel for any instructions."""
    sleepable = flags & BPF_F_SLEEPABLE
    if sleepable and prog_type not in (TRACING, LSM, KPROBE, STRUCT_OPS, SYSCALL):
        raise BpfError(_EINVAL)                 # "Only ... programs can be sleepable"
    if prog_type == STRUCT_OPS:
        raise BpfError(ENOTSUPP)
    if prog_type == TRACING:
        # fentry/fexit/fmod_ret are EPERM on the reference kernel, even with a target.
        raise BpfError(errno.EPERM if eat in (TRACE_FENTRY, TRACE_FEXIT, MODIFY_RETURN)
                       else _EINVAL)
    if prog_type == SYSCALL and not sleepable:
        raise BpfError(_EINVAL)                 # "Syscall programs can only be sleepable"


def bpf_prog_load(emu, raw: bytes, uattr) -> int:
    (prog_type, insn_cnt, uinsns, ulicense, log_level, log_size, log_buf, _kern_version,
     prog_flags, prog_name, prog_ifindex, eat, prog_btf_fd, func_info_rec_size, ufunc_info,
     func_info_cnt, line_info_rec_size, uline_info, line_info_cnt, attach_btf_id,
     attach_prog_fd, _core_relo_cnt, ufd_array, _core_relos, _core_relo_rec_size, _,
     token_fd, fd_array_cnt, signature, _signature_size, _keyring_id) = _PROG_LOAD.unpack_from(raw)
    profile = emu.profile
    if prog_flags & ~PROG_FLAGS_MASK:
        raise BpfError(_EINVAL)
    if prog_type in profile.prog_types_refused:
        # Measured on the reference kernel (docs/programs.md): LSM programs (the BPF LSM is
        # not enabled there) and extension programs are EPERM here, whatever the rest says.
        raise BpfError(errno.EPERM)
    eat = bpf_prog_load_fixup_attach_type(prog_type, eat)
    if prog_flags & F.BPF_F_TOKEN_FD:
        if token_fd < 0 or not emu.fds.is_open(token_fd):
            raise BpfError(errno.EBADF)
        raise BpfError(_EINVAL)                 # no emulated fd is a BPF token
    bpf_cap = profile.cap_bpf or profile.cap_sys_admin
    if not insn_cnt or insn_cnt > (BPF_COMPLEXITY_LIMIT_INSNS if bpf_cap else BPF_MAXINSNS):
        raise BpfError(errno.E2BIG)
    if prog_type not in (SOCKET_FILTER, CGROUP_SKB) and not bpf_cap:
        raise BpfError(errno.EPERM)

    # attach_prog_fd / attach_btf_obj_fd: a program, or else a (kernel) BTF object.
    dst_prog = attach_btf = None
    if attach_prog_fd:
        f = _fd_or_none(emu, attach_prog_fd)
        if f is not None and f.kind == PROG_KIND:
            dst_prog = f.obj
        else:
            if f is None or f.kind != BTF_KIND:
                raise BpfError(_EINVAL)
            if not f.obj.kernel_btf:
                raise BpfError(ENOTSUPP)
            attach_btf = f.obj
    elif attach_btf_id:
        attach_btf = emu.btf_idr.objs.get(1)    # bpf_get_btf_vmlinux()
        if attach_btf is None:
            raise BpfError(_EINVAL)
    bpf_prog_load_check_attach(prog_type, eat, attach_btf, attach_btf_id, dst_prog)

    insns = emu.mem.read(uinsns, insn_cnt * 8)  # EFAULT
    try:
        license = strncpy_from_user(emu.mem, ulicense, 127)
    except BpfError as e:
        if e.errno != errno.ENAMETOOLONG:
            raise
        license = emu.mem.read(ulicense, 127)   # cut at 127 bytes, as license[127] = 0
    gpl = license_is_gpl_compatible(license)
    if signature:
        # DEVIATION(verifier): signed programs (keyrings) are not emulated.
        raise BpfError(_EINVAL)
    if prog_type not in PROG_TYPES or prog_type >= profile.nr_prog_types:
        raise BpfError(_EINVAL)                 # find_prog_type()
    name = bpf_obj_name_cpy(prog_name)
    if prog_ifindex:
        raise BpfError(_EINVAL)                 # no device here can bind a program

    # bpf_check(), the part done here.
    bpf_vlog_init(log_level, log_buf, log_size)
    _check_without_verifier(prog_type, eat, prog_flags, attach_btf_id, dst_prog)
    btf, func_info, line_info = check_btf_info(
        emu, prog_btf_fd, insn_cnt, func_info_rec_size, ufunc_info, func_info_cnt,
        line_info_rec_size, uline_info, line_info_cnt)
    used_maps = []
    try:
        if fd_array_cnt:
            for i in range(fd_array_cnt):
                fd = _U32.unpack(emu.mem.read(ufd_array + 4 * i, 4))[0]
                _add_used_map(emu, used_maps, fd)
        insn_maps = resolve_pseudo_ldimm64(emu, insns, ufd_array, used_maps, prog_type,
                                           bool(prog_flags & BPF_F_SLEEPABLE))
        _finalize_log(emu, uattr, log_level, log_buf, log_size)
    except BpfError:
        for m in used_maps:
            emu.bpf_map_put(m)
        raise
    if btf is not None:
        btf.refcnt += 1
    prog = BpfProg(prog_type, insns, expected_attach_type=eat, flags=prog_flags,
                   gpl_compatible=gpl, name=name, used_maps=used_maps, btf=btf,
                   attach_btf_id=attach_btf_id, func_info=func_info,
                   func_info_cnt=func_info_cnt, line_info=line_info,
                   line_info_cnt=line_info_cnt, kernel=emu)
    prog.insn_maps = insn_maps
    prog.id = emu.prog_idr.alloc(prog)
    try:
        return emu.fds.install(prog, FMODE_RDWR, PROG_KIND)
    except BpfError:
        prog.put(emu)
        raise


MIN_BPF_FUNCINFO_SIZE, MIN_BPF_LINEINFO_SIZE, MAX_INFO_REC_SIZE = 8, 16, 252


def check_btf_info(emu, prog_btf_fd: int, insn_cnt: int, func_rec: int, ufunc: int,
                   func_cnt: int, line_rec: int, uline: int, line_cnt: int):
    """check_btf_info(), the part that needs no verifier: with func or line info, prog_btf_fd
    must be a BTF (EBADF/EINVAL); then for each: a record size within the kernel's bounds and
    4-aligned (EINVAL), the kernel's copy allocated (ENOMEM), the records copied in (EFAULT),
    and no more records than instructions (EINVAL; Linux wants exactly one func_info record
    per subprogram). (BTF or None, func_info bytes, line_info bytes)."""
    if not func_cnt and not line_cnt:
        return None, b"", b""
    btf = btf_get_by_fd(emu, prog_btf_fd)
    copies = []
    for cnt, rec, low, krec, uptr in ((func_cnt, func_rec, MIN_BPF_FUNCINFO_SIZE, 8, ufunc),
                                      (line_cnt, line_rec, MIN_BPF_LINEINFO_SIZE, 16, uline)):
        if not cnt:
            copies.append(b"")
            continue
        if rec < low or rec > MAX_INFO_REC_SIZE or rec % 4:
            raise BpfError(_EINVAL)
        if cnt * krec > emu.profile.max_map_bytes:
            # DEVIATION(memory): kvcalloc() of the records fails in Linux as the machine
            # decides; here past the profile's budget.
            raise BpfError(errno.ENOMEM)
        data = emu.mem.read(uptr, cnt * rec)
        if cnt > insn_cnt:
            raise BpfError(_EINVAL)
        copies.append(b"".join(data[i * rec:i * rec + krec].ljust(krec, b"\0")
                               for i in range(cnt)))
    return btf, copies[0], copies[1]


def _fd_or_none(emu, ufd: int):
    try:
        return emu.fds.lookup_any(ufd)
    except BpfError:
        return None


def license_is_gpl_compatible(license: bytes) -> bool:
    return license in (b"GPL", b"GPL v2", b"GPL and additional rights", b"Dual BSD/GPL",
                       b"Dual MIT/GPL", b"Dual MPL/GPL")


def _add_used_map(emu, used_maps: list, fd: int):
    """add_used_map_from_fd(): the map once in used_maps (64 at most), holding a reference."""
    m = emu.fds.lookup(fd).obj                  # EBADF, or EINVAL for an fd not a map
    for i, used in enumerate(used_maps):
        if used is m:
            return i
    if len(used_maps) >= MAX_USED_MAPS:
        raise BpfError(errno.E2BIG)
    m.refcnt += 1
    used_maps.append(m)
    return len(used_maps) - 1


def resolve_pseudo_ldimm64(emu, insns: bytes, ufd_array: int, used_maps: list,
                           prog_type: int = SOCKET_FILTER, sleepable: bool = False) -> dict:
    """The map references of 64-bit immediate loads: fds (or fd_array indexes) of maps,
    each map held once; a direct value address needs a map that has one (an ARRAY of one
    element) and an offset inside its value. Returns {insn index: (map, pseudo kind)}."""
    found = {}
    n = len(insns) // 8
    i = 0
    while i < n:
        code, regs, off, imm = _INSN.unpack_from(insns, 8 * i)
        if code != BPF_LD_IMM64:
            i += 1
            continue
        if i == n - 1:
            raise BpfError(_EINVAL)             # "invalid bpf_ld_imm64 insn"
        code2, regs2, off2, imm2 = _INSN.unpack_from(insns, 8 * i + 8)
        if code2 or regs2 or off2:
            raise BpfError(_EINVAL)
        src = regs >> 4
        if src == 0 or src in (BPF_PSEUDO_BTF_ID, BPF_PSEUDO_FUNC):
            i += 2
            continue
        if src in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX):
            if imm2:
                raise BpfError(_EINVAL)         # "unrecognized bpf_ld_imm64 insn"
        elif src not in (BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_MAP_IDX_VALUE):
            raise BpfError(_EINVAL)
        if src in (BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE):
            if not ufd_array:
                raise BpfError(errno.EPROTO)    # "fd_idx without fd_array is invalid"
            fd = _U32.unpack(emu.mem.read(ufd_array + 4 * (imm & 0xFFFFFFFF), 4))[0]
        else:
            fd = imm & 0xFFFFFFFF
        idx = _add_used_map(emu, used_maps, fd)
        m = used_maps[idx]
        check_map_prog_compatibility(m, prog_type, sleepable)
        if src in (BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_MAP_IDX_VALUE):
            value_off = imm2 & 0xFFFFFFFF
            if value_off >= BPF_MAX_VAR_OFF:
                raise BpfError(_EINVAL)
            map_direct_value_addr(m, value_off)
            found[i] = (m, BPF_PSEUDO_MAP_VALUE)
        else:
            found[i] = (m, BPF_PSEUDO_MAP_FD)
        i += 2
    return found


# Tracing program types (is_tracing_prog_type()).
_TRACING_TYPES = frozenset({KPROBE, TRACEPOINT, PERF_EVENT, RAW_TRACEPOINT,
                            RAW_TRACEPOINT_WRITABLE})
# Map types a sleepable program may use (of the emulated ones).
_SLEEPABLE_MAP_TYPES = frozenset({1, 2, 5, 6, 9, 10, 3, 12, 13})


def check_map_prog_compatibility(m, prog_type: int, sleepable: bool) -> None:
    """check_map_prog_compatibility(), the parts about the map and the program type: no spin
    lock for socket filters and tracing programs; sleepable programs use arrays and hashes."""
    if m.has_spin_lock and (prog_type == SOCKET_FILTER or prog_type in _TRACING_TYPES):
        raise BpfError(_EINVAL)                 # "... cannot use bpf_spin_lock yet"
    if sleepable and m.map_type not in _SLEEPABLE_MAP_TYPES:
        raise BpfError(_EINVAL)


def map_direct_value_addr(m, off: int) -> None:
    """array_map_direct_value_addr(): only a one-element ARRAY has a value address."""
    if m.map_type != 2:                         # BPF_MAP_TYPE_ARRAY
        raise BpfError(_EINVAL)                 # "no direct value access support"
    if m.max_entries != 1:
        raise BpfError(ENOTSUPP)
    if off >= m.value_size:
        raise BpfError(_EINVAL)


def _finalize_log(emu, uattr, log_level: int, log_buf: int, log_size: int) -> None:
    """DEVIATION(verifier-log): an accepted program's log is empty (Linux writes the
    verifier's trace at level 1 or more; nothing at level 0 but the stats at level 4)."""
    # log_true_size is written only into an attr that has it (bpf_check(): uattr_size).
    has_field = emu.uattr_size >= _LOG_TRUE_SIZE_OFF + 4
    if not log_level:
        if has_field:
            put_attr(emu, uattr, _LOG_TRUE_SIZE_OFF, _U32.pack(0))
        return
    if log_buf:
        copy_to_user(emu.mem, log_buf, b"\0")
    if has_field:
        put_attr(emu, uattr, _LOG_TRUE_SIZE_OFF, _U32.pack(1))


# --- ids -------------------------------------------------------------------------------------

def bpf_prog_get_next_id(emu, raw: bytes, uattr) -> int:
    return bpf_obj_get_next_id(emu, raw, uattr, emu.prog_idr)


def bpf_prog_get_fd_by_id(emu, raw: bytes, uattr) -> int:
    prog_id, _, open_flags, _ = _GET_ID.unpack_from(raw)
    if open_flags & ~F.BPF_F_TOKEN_FD:
        raise BpfError(_EINVAL)
    if not emu.profile.cap_sys_admin:
        raise BpfError(errno.EPERM)
    prog = idr_find_live(emu, emu.prog_idr, prog_id)    # idr_find() + bpf_prog_inc_not_zero()
    return bpf_prog_new_fd(emu, prog)


def bpf_prog_new_fd(emu, prog) -> int:
    fd = emu.fds.install(prog, FMODE_RDWR, PROG_KIND)
    prog.refcnt += 1
    return fd


# --- OBJ_GET_INFO_BY_FD -------------------------------------------------------------------------

_INFO_FIELDS = {
    # name: (offset, struct format)
    "type": (0, "I"), "id": (4, "I"), "tag": (8, "8s"), "jited_prog_len": (16, "I"),
    "xlated_prog_len": (20, "I"), "jited_prog_insns": (24, "Q"),
    "xlated_prog_insns": (32, "Q"), "load_time": (40, "Q"), "created_by_uid": (48, "I"),
    "nr_map_ids": (52, "I"), "map_ids": (56, "Q"), "name": (64, "16s"),
    "gpl_compatible": (84, "I"), "nr_jited_ksyms": (104, "I"),
    "nr_jited_func_lens": (108, "I"), "jited_ksyms": (112, "Q"), "jited_func_lens": (120, "Q"),
    "btf_id": (128, "I"), "func_info_rec_size": (132, "I"), "func_info": (136, "Q"),
    "nr_func_info": (144, "I"), "nr_line_info": (148, "I"), "line_info": (152, "Q"),
    "jited_line_info": (160, "Q"), "nr_jited_line_info": (168, "I"),
    "line_info_rec_size": (172, "I"), "jited_line_info_rec_size": (176, "I"),
    "nr_prog_tags": (180, "I"), "prog_tags": (184, "Q"), "verified_insns": (216, "I"),
    "attach_btf_obj_id": (220, "I"), "attach_btf_id": (224, "I"),
}


def _get(info, field):
    off, fmt = _INFO_FIELDS[field]
    return struct.unpack_from("<" + fmt, info, off)[0]


def _set(info, field, value):
    off, fmt = _INFO_FIELDS[field]
    struct.pack_into("<" + fmt, info, off, value)


def bpf_prog_get_info_by_fd(emu, prog: BpfProg, info_len: int, uinfo: int, uattr) -> int:
    mem = emu.mem
    info, info_len = info_from_user(emu, uinfo, info_len, BPF_PROG_INFO_SIZE)

    _set(info, "type", prog.type)
    _set(info, "id", prog.id)
    _set(info, "load_time", prog.load_time)
    _set(info, "created_by_uid", prog.uid)
    _set(info, "gpl_compatible", (_get(info, "gpl_compatible") & ~1) | int(prog.gpl_compatible))
    _set(info, "tag", prog.tag)
    _set(info, "name", prog.name)

    ulen = _get(info, "nr_map_ids")
    _set(info, "nr_map_ids", len(prog.used_maps))
    ulen = min(ulen, len(prog.used_maps))
    if ulen:
        uids = _get(info, "map_ids")
        for i in range(ulen):
            copy_to_user(mem, uids + 4 * i, _U32.pack(prog.used_maps[i].id))

    set_info_rec_size(info)
    _set(info, "verified_insns", prog.len)       # DEVIATION(verifier): what was loaded
    if prog.btf is not None:
        _set(info, "btf_id", prog.btf.id)

    ulen = _get(info, "xlated_prog_len")
    xlated = bpf_insn_prepare_dump(prog)
    _set(info, "xlated_prog_len", len(xlated))
    if ulen:
        copy_to_user(mem, _get(info, "xlated_prog_insns"), xlated[:min(ulen, len(xlated))])

    # DEVIATION(prog-jit): no program is JIT-compiled here: no image, no kernel addresses.
    _set(info, "jited_prog_len", 0)
    _set(info, "nr_jited_ksyms", 1)
    _set(info, "nr_jited_func_lens", 1)
    _set(info, "attach_btf_id", prog.attach_btf_id)

    ulen = _get(info, "nr_func_info")
    _set(info, "nr_func_info", prog.func_info_cnt)
    if prog.func_info_cnt and ulen:
        n = min(ulen, prog.func_info_cnt) * 8
        copy_to_user(mem, _get(info, "func_info"), prog.func_info[:n])
    ulen = _get(info, "nr_line_info")
    _set(info, "nr_line_info", prog.line_info_cnt)
    if prog.line_info_cnt and ulen:
        n = min(ulen, prog.line_info_cnt) * 16
        copy_to_user(mem, _get(info, "line_info"), prog.line_info[:n])
    _set(info, "nr_jited_line_info", 0)

    ulen = _get(info, "nr_prog_tags")
    _set(info, "nr_prog_tags", 1)
    if ulen:
        copy_to_user(mem, _get(info, "prog_tags"), prog.tag)

    copy_to_user(mem, uinfo, bytes(info[:info_len]))
    put_attr(emu, uattr, _INFO_LEN_OFF, _U32.pack(info_len))
    return 0


def set_info_rec_size(info) -> None:
    """A record size given must be the kernel's (or zero with a zero count); then the
    kernel's sizes are reported."""
    for cnt, rec, size in (("nr_func_info", "func_info_rec_size", 8),
                           ("nr_line_info", "line_info_rec_size", 16),
                           ("nr_jited_line_info", "jited_line_info_rec_size", 8)):
        if (_get(info, cnt) or _get(info, rec)) and _get(info, rec) != size:
            raise BpfError(_EINVAL)
    _set(info, "func_info_rec_size", 8)
    _set(info, "line_info_rec_size", 16)
    _set(info, "jited_line_info_rec_size", 8)


def bpf_insn_prepare_dump(prog: BpfProg) -> bytes:
    """The instructions as the kernel dumps them: a 64-bit immediate load of a map names
    the map by id (imm) and says MAP_FD or MAP_VALUE (src_reg); the value offset stays."""
    out = bytearray(prog.insns)
    for i, (m, kind) in prog.insn_maps.items():
        code, regs, off, _ = _INSN.unpack_from(out, 8 * i)
        _INSN.pack_into(out, 8 * i, code, (regs & 0x0F) | kind << 4, off, m.id)
    return bytes(out)


# --- BPF_PROG_BIND_MAP -------------------------------------------------------------------------

_BIND = struct.Struct("<III")


def bpf_prog_bind_map(emu, raw: bytes, uattr) -> int:
    """bpf_prog_bind_map(): the program holds the map from now on (once), as if it used it
    (libbpf binds .rodata to every program this way)."""
    prog_fd, map_fd, flags = _BIND.unpack_from(raw)
    if flags:
        raise BpfError(_EINVAL)
    f = emu.fds.lookup_any(prog_fd)             # bpf_prog_get(): EBADF, or EINVAL
    if f.kind != PROG_KIND:
        raise BpfError(_EINVAL)
    prog = f.obj
    m = emu.fds.lookup(map_fd).obj              # bpf_map_get(): EBADF, or EINVAL
    if any(used is m for used in prog.used_maps):
        return 0
    m.refcnt += 1
    prog.used_maps.append(m)
    return 0
