"""MAP_TYPES: map type -> ops table (the bpf_types.h of bpfemu)."""
from ..uapi.consts import BpfMapType as T
from . import htab_batch
from .arraymap import array_map_ops, percpu_array_map_ops
from .hashtab import htab_lru_map_ops, htab_lru_percpu_map_ops, htab_map_ops, htab_percpu_map_ops
from ..batch_cmds import generic_map_delete_batch, generic_map_lookup_batch, generic_map_update_batch

MAP_TYPES = {
    T.BPF_MAP_TYPE_HASH: htab_map_ops,
    T.BPF_MAP_TYPE_PERCPU_HASH: htab_percpu_map_ops,
    T.BPF_MAP_TYPE_LRU_HASH: htab_lru_map_ops,
    T.BPF_MAP_TYPE_LRU_PERCPU_HASH: htab_lru_percpu_map_ops,
    T.BPF_MAP_TYPE_ARRAY: array_map_ops,
    T.BPF_MAP_TYPE_PERCPU_ARRAY: percpu_array_map_ops,
}

# The batch operations (BATCH_OPS() in hashtab.c; generic_map_* for the arrays, which have
# no LOOKUP_AND_DELETE_BATCH or DELETE_BATCH).
for _ops, _name in ((htab_map_ops, "htab"), (htab_percpu_map_ops, "htab_percpu"),
                    (htab_lru_map_ops, "htab_lru"), (htab_lru_percpu_map_ops, "htab_lru_percpu")):
    _ops.map_lookup_batch = getattr(htab_batch, f"{_name}_map_lookup_batch")
    _ops.map_lookup_and_delete_batch = getattr(htab_batch, f"{_name}_map_lookup_and_delete_batch")
    _ops.map_update_batch = generic_map_update_batch
    _ops.map_delete_batch = generic_map_delete_batch
for _ops in (array_map_ops, percpu_array_map_ops):
    _ops.map_lookup_batch = generic_map_lookup_batch
    _ops.map_update_batch = generic_map_update_batch
del _ops, _name
