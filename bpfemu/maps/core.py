"""struct bpf_map and struct bpf_map_ops, in Python.

A map type is an ops table built from shared functions (like htab_map_ops and
htab_lru_map_ops in kernel/bpf/hashtab.c). The syscall layer calls through the table
and never branches on the map type except where kernel/bpf/syscall.c does.
"""
from collections import namedtuple

from ..uapi.consts import BpfMapType as T

PERCPU_VALUE_TYPES = frozenset({T.BPF_MAP_TYPE_PERCPU_HASH, T.BPF_MAP_TYPE_LRU_PERCPU_HASH,
                                T.BPF_MAP_TYPE_PERCPU_ARRAY, T.BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE})


def round_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


# The MAP_CREATE attr as the alloc hooks see it (after BPF_F_TOKEN_FD was cleared).
# numa_node: bpf_map_attr_numa_node(), -1 (NUMA_NO_NODE) unless BPF_F_NUMA_NODE;
# inner_map_fd: the inner map template of ARRAY_OF_MAPS / HASH_OF_MAPS.
# (Plain classes here, not dataclasses: that module and typing cost an Emulator's start-up
# more than the whole emulator's own code does.)
MapCreateArgs = namedtuple("MapCreateArgs", ("map_type", "key_size", "value_size", "max_entries",
                                             "map_flags", "numa_node", "map_extra",
                                             "inner_map_fd"), defaults=(0,))

# struct bpf_map_ops's hooks a map type may leave out (None where it has none):
_OPTIONAL_OPS = (
    # bpf_map_copy_value()'s per-type copy: the value, or None where the kernel's lookup
    # finds nothing (bpf_map_copy_value() makes that ENOENT); it may raise BpfError itself.
    "map_lookup_elem_sys",
    "map_update_elem_sys",              # bpf_map_update_value()'s per-type update
    "map_delete_elem",
    "map_get_next_key",
    "map_lookup_and_delete_elem",
    "map_lookup_batch",
    "map_lookup_and_delete_batch",
    "map_update_batch",
    "map_delete_batch",
    # Bulk forms the generic batch commands use where a map type has them (batch_cmds.py):
    # the element operation applied to a run of elements at once, as far as it can be.
    "map_update_elems",
    "map_delete_elems",
    "map_lookup_run",
    "map_mem_usage",
    "map_free",
    # The BPF-program side (helpers): live value views, updates on the current CPU.
    "map_lookup_elem_prog",
    "map_update_elem_prog",
    "map_delete_elem_prog",
    "map_lookup_percpu_elem",
    "map_value_hash",                   # sha256 for OBJ_GET_INFO_BY_FD (arrays)
    "map_check_btf",                    # BTF checks of its own (arrays)
)


class MapOps:
    """struct bpf_map_ops: the operations a map type provides; None where it has none.

    Syscall-side element operations take and return bytes in the syscall's value layout
    (the full per-CPU buffer for per-CPU maps). Program-side operations live in progs.py
    and use the *_prog hooks.
    """
    __slots__ = ("name", "map_alloc_check", "map_alloc") + _OPTIONAL_OPS

    def __init__(self, name: str, map_alloc_check, map_alloc, **ops):
        self.name = name
        self.map_alloc_check = map_alloc_check
        self.map_alloc = map_alloc
        for hook in _OPTIONAL_OPS:
            setattr(self, hook, ops.pop(hook, None))
        if ops:
            raise TypeError(f"MapOps: no such hook: {', '.join(sorted(ops))}")

    def replace(self, **changes) -> "MapOps":
        """A copy with these hooks changed (a map type made from another's table)."""
        fields = {hook: getattr(self, hook) for hook in self.__slots__}
        fields.update(changes)
        return MapOps(**fields)

    def __eq__(self, other):
        if not isinstance(other, MapOps):
            return NotImplemented
        return all(getattr(self, h) == getattr(other, h) for h in self.__slots__)

    __hash__ = None                     # mutable, as struct bpf_map_ops is not: no hashing

    def __repr__(self):
        hooks = ", ".join(f"{h}={getattr(self, h)!r}" for h in self.__slots__
                          if getattr(self, h) is not None)
        return f"MapOps({hooks})"


class BpfMap:
    """struct bpf_map: what every map type has. Map types subclass it for their state."""

    def __init__(self, args: MapCreateArgs, kernel):
        self.ops = None                        # set by find_and_alloc_map(), as map->ops
        self.map_type = args.map_type
        self.key_size = args.key_size
        self.value_size = args.value_size
        self.max_entries = args.max_entries
        self.map_flags = args.map_flags
        self.numa_node = args.numa_node
        self.map_extra = args.map_extra
        self.kernel = kernel                   # the Emulator: current CPU, possible CPUs
        self.nr_cpus = kernel.nr_cpus
        self.id = 0
        self.name = b"\0" * 16
        self.frozen = False
        self.prog_views = False                # a program was handed an element's memory (progs.py)
        self.refcnt = 0                        # open file descriptions + pins
        self.has_spin_lock = False             # a struct bpf_spin_lock in the BTF value type
        self.spin_lock_off = None
        self.btf = None                        # the BTF object a map created with BTF holds
        self.btf_id = self.btf_key_type_id = self.btf_value_type_id = 0
        self.btf_vmlinux_value_type_id = 0
        self.excl_prog_hash = None
        self.percpu_value = args.map_type in PERCPU_VALUE_TYPES
        self.round_value_size = round_up(args.value_size, 8)
        # bpf_map_value_size(): what the syscall copies in and out per element.
        self.value_size_sys = (self.round_value_size * self.nr_cpus if self.percpu_value
                               else args.value_size)
