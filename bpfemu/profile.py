"""What differs between kernel versions lives here, not in ifs scattered through the handlers."""
import os

from .uapi.consts import BpfCmd as C


def host_possible_cpus() -> int:
    """num_possible_cpus() of the host, from /sys/devices/system/cpu/possible ("0-1", "0,2-3")."""
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            spec = f.read().strip()
    except OSError:
        return os.cpu_count() or 1
    highest = 0
    for part in spec.split(","):
        highest = max(highest, int(part.split("-")[-1]))
    return highest + 1


# Where an older kernel's CHECK_ATTR bound differs from 6.18's (syscall.COMMANDS holds 6.18's).
# Linux 6.12: no exclusive maps yet (MAP_CREATE ends at map_token_fd, 80); 6.1: no BPF tokens,
# no value_type_btf_obj_fd (MAP_CREATE ends at map_extra, 72) and no path_fd for OBJ_PIN and
# OBJ_GET (they end at file_flags, 16). Read from each kernel's BTF and checked by its probe:
# docs/kernels.md.
LINUX_6_12_LAST_FIELD_END = {C.BPF_MAP_CREATE: 80}
LINUX_6_1_LAST_FIELD_END = {**LINUX_6_12_LAST_FIELD_END, C.BPF_MAP_CREATE: 72,
                            C.BPF_OBJ_PIN: 16, C.BPF_OBJ_GET: 16}


class KernelProfile:
    """The kernel an Emulator pretends to be. Linux 6.18 (x86_64) is the one verified today.

    KernelProfile(field=value, ...): the class attributes below are the defaults; an unknown
    field is a TypeError. (A plain class, not a dataclass: see maps/core.py.)"""
    release: str = "6.18"
    page_size: int = 4096
    attr_size: int = 168                   # sizeof(union bpf_attr)
    nr_cmds: int = 38                      # __MAX_BPF_CMD
    nr_map_types: int = 34                 # __MAX_BPF_MAP_TYPE
    nr_prog_types: int = 33                # __MAX_BPF_PROG_TYPE
    # Program types BPF_PROG_LOAD refuses with EPERM on the reference kernel (LSM: the BPF
    # LSM is not enabled; EXT): see docs/programs.md.
    prog_types_refused: frozenset = frozenset({28, 29})
    # cmd -> the end of its last field (CHECK_ATTR), where this kernel's differs from the
    # command table's (syscall.COMMANDS, Linux 6.18).
    last_field_end: dict                   # (each profile's own dict: __init__)
    nr_cpus: int                           # num_possible_cpus(): the host's unless given
    numa_nodes: frozenset = frozenset({0})  # online NUMA node ids
    cap_sys_admin: bool = True
    cap_bpf: bool = True
    # bpf_map_info: the 6.18.44 backport checks the tail from offsetofend(hash_size) = 100.
    map_info_size: int = 104
    map_info_tail_from: int = 100
    # key_size + value_size >= this is E2BIG (KMALLOC_MAX_SIZE - sizeof(struct htab_elem)).
    htab_elem_max: int = (1 << 22) - 48
    pcpu_min_unit_size: int = 32768        # PCPU_MIN_UNIT_SIZE
    # Memory the emulator agrees to allocate for one map; past it, creation fails with ENOMEM
    # instead of the process trying (and the OOM killer answering, as the kernel's would).
    max_map_bytes: int = 1 << 32
    # OBJ_PIN and OBJ_GET know BPF_F_PATH_FD and path_fd (Linux 6.5 and later).
    obj_path_fd: bool = True
    # MAP_FREEZE needs an fd that can write (EPERM otherwise, and once frozen no fd can).
    freeze_needs_write: bool = True
    # The common LRU's target_free: clamp(max_entries / nr_cpus / 2, 1, LOCAL_FREE_TARGET)
    # where True, else always LOCAL_FREE_TARGET (128).
    lru_target_free_scaled: bool = True
    # OBJ_GET_INFO_BY_FD reads the caller's bpf_map_info first (for info.hash), so the fields
    # it does not fill come back as given; where False they come back zero.
    map_info_reads_input: bool = True
    # __sys_bpf refuses MAP_CREATE and PROG_LOAD with EPERM before any other check (even the
    # size check) when the caller is not bpf_capable() and unprivileged BPF is disabled
    # (Debian's default). From Linux 6.5 map_create and prog_load check it in their own order.
    unpriv_eperm_at_entry: bool = False
    # A program's bpf_map_update_elem() and bpf_map_delete_elem() return the map op's int
    # zero-extended to 64 bits (-ENOENT reads 0xfffffffe): the verifier calls the ops
    # directly, and they returned int before Linux 6.4 (long since).
    prog_map_ops_return_int: bool = False

    def __init__(self, **fields):
        unknown = set(fields) - _PROFILE_FIELDS
        if unknown:
            raise TypeError(f"KernelProfile: no such field: {', '.join(sorted(unknown))}")
        self.last_field_end = {}
        if "nr_cpus" not in fields:
            self.nr_cpus = host_possible_cpus()
        for name, value in fields.items():
            setattr(self, name, value)

    def _fields(self) -> dict:
        return {name: getattr(self, name) for name in sorted(_PROFILE_FIELDS)}

    def __eq__(self, other):
        if not isinstance(other, KernelProfile):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None

    def __repr__(self):
        return "KernelProfile(" + ", ".join(f"{k}={v!r}" for k, v in self._fields().items()) + ")"


_PROFILE_FIELDS = frozenset(KernelProfile.__annotations__)


def linux_6_18(**kw) -> KernelProfile:
    return KernelProfile(**kw)


def linux_6_12(**kw) -> KernelProfile:
    """Debian 12's backport kernel (6.12.118 probed); differences from 6.18: docs/kernels.md."""
    return KernelProfile(**{
        "release": "6.12", "attr_size": 152, "nr_cmds": 37, "nr_map_types": 34,
        "last_field_end": dict(LINUX_6_12_LAST_FIELD_END),
        # bpf_map_info ends at map_extra and its tail is checked from there.
        "map_info_size": 88, "map_info_tail_from": 88, "map_info_reads_input": False, **kw})


def linux_6_1(**kw) -> KernelProfile:
    """Debian 12's kernel (6.1.0-57, i.e. 6.1.176, probed); differences: docs/kernels.md."""
    return KernelProfile(**{
        "release": "6.1", "attr_size": 144, "nr_cmds": 36, "nr_map_types": 32,
        "last_field_end": dict(LINUX_6_1_LAST_FIELD_END),
        "map_info_size": 88, "map_info_tail_from": 88, "map_info_reads_input": False,
        "obj_path_fd": False,
        "freeze_needs_write": False, "lru_target_free_scaled": False,
        "unpriv_eperm_at_entry": True, "prog_map_ops_return_int": True, **kw})


PROFILES = {"6.18": linux_6_18, "6.12": linux_6_12, "6.1": linux_6_1}
DEFAULT_PROFILE = "6.18"


def get_profile(name: str | None = None, **kw) -> KernelProfile:
    """A fresh KernelProfile by name ("6.1", "6.12", "6.18"), or by a kernel release such as
    "6.1.0-57-amd64" (its major.minor). None: the BPFEMU_PROFILE environment variable, which
    lets a whole test suite run on another profile, else 6.18."""
    if name is None:
        name = os.environ.get("BPFEMU_PROFILE") or DEFAULT_PROFILE
    key = profile_name_for_release(name)
    if key is None:
        raise ValueError(f"no kernel profile {name!r}: known are {', '.join(PROFILES)}")
    return PROFILES[key](**kw)


def profile_name_for_release(release: str) -> str | None:
    """The profile of a kernel release string ("6.12.118+deb12-amd64" -> "6.12"), or None."""
    if release in PROFILES:
        return release                  # a profile's own name: no need for re at start-up
    import re
    m = re.match(r"(\d+)\.(\d+)(?!\d)", release.strip())
    if not m:
        return None
    key = f"{m.group(1)}.{m.group(2)}"
    return key if key in PROFILES else None
