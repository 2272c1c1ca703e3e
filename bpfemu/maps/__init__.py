"""MAP_TYPES: map type -> ops table (the bpf_types.h of bpfemu)."""
from ..uapi.consts import BpfMapType as T
from .hashtab import htab_lru_map_ops, htab_lru_percpu_map_ops, htab_map_ops, htab_percpu_map_ops

MAP_TYPES = {
    T.BPF_MAP_TYPE_HASH: htab_map_ops,
    T.BPF_MAP_TYPE_PERCPU_HASH: htab_percpu_map_ops,
    T.BPF_MAP_TYPE_LRU_HASH: htab_lru_map_ops,
    T.BPF_MAP_TYPE_LRU_PERCPU_HASH: htab_lru_percpu_map_ops,
}
