"""What differs between kernel versions lives here, not in ifs scattered through the handlers."""
import os
from dataclasses import dataclass, field

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


# Offset just past each command's last field (the kernel's CHECK_ATTR(CMD) via <CMD>_LAST_FIELD).
LINUX_6_18_LAST_FIELD_END = {
    C.BPF_MAP_CREATE: 92,                  # excl_prog_hash_size
    C.BPF_MAP_LOOKUP_ELEM: 32,             # flags
    C.BPF_MAP_UPDATE_ELEM: 32,             # flags
    C.BPF_MAP_DELETE_ELEM: 16,             # key
    C.BPF_MAP_GET_NEXT_KEY: 24,            # next_key
    C.BPF_MAP_LOOKUP_AND_DELETE_ELEM: 32,  # flags
    C.BPF_MAP_FREEZE: 4,                   # map_fd
    C.BPF_MAP_LOOKUP_BATCH: 56,            # batch.flags
    C.BPF_MAP_LOOKUP_AND_DELETE_BATCH: 56,
    C.BPF_MAP_UPDATE_BATCH: 56,
    C.BPF_MAP_DELETE_BATCH: 56,
    C.BPF_OBJ_GET_INFO_BY_FD: 16,          # info.info
    C.BPF_MAP_GET_NEXT_ID: 8,              # next_id
    C.BPF_MAP_GET_FD_BY_ID: 12,            # open_flags
    C.BPF_OBJ_PIN: 20,                     # path_fd
    C.BPF_OBJ_GET: 20,
    C.BPF_BTF_LOAD: 40,                    # btf_token_fd
    C.BPF_BTF_GET_FD_BY_ID: 16,            # fd_by_id_token_fd
    C.BPF_BTF_GET_NEXT_ID: 8,              # next_id
    C.BPF_PROG_LOAD: 168,                  # keyring_id
    C.BPF_PROG_GET_NEXT_ID: 8,             # next_id
    C.BPF_PROG_GET_FD_BY_ID: 4,            # prog_id
    C.BPF_PROG_BIND_MAP: 12,               # prog_bind_map.flags
}


@dataclass
class KernelProfile:
    """The kernel an Emulator pretends to be. Linux 6.18 (x86_64) is the one verified today."""
    release: str = "6.18"
    page_size: int = 4096
    attr_size: int = 168                   # sizeof(union bpf_attr)
    nr_cmds: int = 38                      # __MAX_BPF_CMD
    nr_map_types: int = 34                 # __MAX_BPF_MAP_TYPE
    nr_prog_types: int = 33                # __MAX_BPF_PROG_TYPE
    # Program types BPF_PROG_LOAD refuses with EPERM on the reference kernel (LSM: the BPF
    # LSM is not enabled; EXT): see docs/programs.md.
    prog_types_refused: frozenset = frozenset({28, 29})
    last_field_end: dict = field(default_factory=lambda: dict(LINUX_6_18_LAST_FIELD_END))
    nr_cpus: int = field(default_factory=host_possible_cpus)   # num_possible_cpus()
    numa_nodes: frozenset = frozenset({0})  # online NUMA node ids
    cap_sys_admin: bool = True
    cap_bpf: bool = True
    # bpf_map_info: the 6.18.44 backport checks the tail from offsetofend(hash_size) = 100.
    map_info_size: int = 104
    map_info_tail_from: int = 100
    # Hash maps: max_entries above this is E2BIG (n_buckets * sizeof(struct bucket) must fit in u32).
    htab_max_entries: int = 1 << 27
    # key_size + value_size >= this is E2BIG (KMALLOC_MAX_SIZE - sizeof(struct htab_elem)).
    htab_elem_max: int = (1 << 22) - 48
    pcpu_min_unit_size: int = 32768        # PCPU_MIN_UNIT_SIZE
    # Memory the emulator agrees to allocate for one map; past it, creation fails with ENOMEM
    # instead of the process trying (and the OOM killer answering, as the kernel's would).
    max_map_bytes: int = 1 << 32
