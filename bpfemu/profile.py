"""What differs between kernel versions lives here, not in ifs scattered through the handlers."""
import os
from dataclasses import dataclass, field



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
    # cmd -> the end of its last field (CHECK_ATTR), where this kernel's differs from the
    # command table's (syscall.COMMANDS, Linux 6.18).
    last_field_end: dict = field(default_factory=dict)
    nr_cpus: int = field(default_factory=host_possible_cpus)   # num_possible_cpus()
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
