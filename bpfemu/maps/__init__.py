"""MAP_TYPES: map type -> ops table (the bpf_types.h of bpfemu)."""
from ..uapi.consts import BpfMapType as T
from .arraymap import array_map_ops, percpu_array_map_ops
from .fd_maps import array_of_maps_map_ops, htab_of_maps_map_ops, prog_array_map_ops
from .htab_ops import htab_lru_map_ops, htab_lru_percpu_map_ops, htab_map_ops, htab_percpu_map_ops

MAP_TYPES = {
    T.BPF_MAP_TYPE_HASH: htab_map_ops,
    T.BPF_MAP_TYPE_PERCPU_HASH: htab_percpu_map_ops,
    T.BPF_MAP_TYPE_LRU_HASH: htab_lru_map_ops,
    T.BPF_MAP_TYPE_LRU_PERCPU_HASH: htab_lru_percpu_map_ops,
    T.BPF_MAP_TYPE_ARRAY: array_map_ops,
    T.BPF_MAP_TYPE_PERCPU_ARRAY: percpu_array_map_ops,
    T.BPF_MAP_TYPE_PROG_ARRAY: prog_array_map_ops,
    T.BPF_MAP_TYPE_ARRAY_OF_MAPS: array_of_maps_map_ops,
    T.BPF_MAP_TYPE_HASH_OF_MAPS: htab_of_maps_map_ops,
}
