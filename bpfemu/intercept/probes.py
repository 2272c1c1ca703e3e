"""Clients' feature probes that load a program, answered so that clients take their best path.

The emulator serves maps, not programs. Clients load a trivial program once, to learn what
the kernel supports, and fall back when it fails:
- libbpf's name probe (probe_kern_prog_name: PROG_LOAD of SOCKET_FILTER "r0 = 0; exit" with
  prog_name "libbpf_nametest", size 64): if it fails, libbpf silently drops every map name.
- libbpf's memcg probe (probe_memcg_account: SOCKET_FILTER "call ktime_get_coarse_ns; exit",
  size 116) and bpftool's known_to_need_rlimit ("r0 = 0; exit", size 144, RLIMIT_MEMLOCK at 0
  around it): if one fails they try setrlimit(RLIMIT_MEMLOCK, infinity), which fails for an
  unprivileged user.
cilium/ebpf probes with MAP_CREATE (names, memcg accounting), which the emulator serves.
docs/seccomp.md §6 has what each sends.

Such a probe is answered with a fd of its own (a memfd named "bpf-prog", as a program fd's
link names contain "bpf-prog"), installed in the caller like a map fd: the caller may close
it; no map command accepts it (EINVAL, as for a program fd). Any other PROG_LOAD goes to the
emulator, which today fails it with EINVAL (DEVIATION(commands)); once the emulator has a
PROG_LOAD of its own, every PROG_LOAD goes there and this module answers nothing.
"""
import os
import struct

from ..errors import BpfError
from ..uapi.consts import BpfCmd

BPF_PROG_LOAD = int(BpfCmd.BPF_PROG_LOAD)
BPF_PROG_TYPE_SOCKET_FILTER = 1
_PROG_HEAD = struct.Struct("<IIQQ")        # prog_type, insn_cnt, insns, license
_EXIT = 0x95                                # BPF_JMP | BPF_EXIT


def emulator_loads_programs(emu) -> bool:
    """Whether the emulator has a PROG_LOAD of its own (then it answers the probes too)."""
    try:
        from ..syscall import COMMANDS
    except ImportError:
        return False
    return BPF_PROG_LOAD in COMMANDS


# DEVIATION(probes): a feature probe's program is not loaded, verified or run: the fd that
# answers it is a "bpf-prog" memfd that no command accepts as a program.
def is_probe(mem, attr: int, size: int) -> bool:
    """A feature probe: a SOCKET_FILTER program of two instructions ending in exit."""
    if size < _PROG_HEAD.size:
        return False
    try:
        prog_type, insn_cnt, insns, _license = _PROG_HEAD.unpack(mem.read(attr, _PROG_HEAD.size))
        if prog_type != BPF_PROG_TYPE_SOCKET_FILTER or insn_cnt != 2:
            return False
        code = mem.read(insns, 16)
    except BpfError:
        return False
    return code[8] == _EXIT


def probe_fd() -> int:
    """The fd that answers a probe (the supervisor's; ADDFD installs it in the caller)."""
    return os.memfd_create("bpf-prog", os.MFD_CLOEXEC)
