"""The four hash map ops tables: what the end of kernel/bpf/hashtab.c declares.

Each table is complete here, syscall side, program side (helpers) and batches, built from the
functions in hashtab.py (elements, LRU, helpers), htab_batch.py (BATCH_OPS: bucket walks) and
batch_cmds.py (generic update and delete batches).
"""
from ..batch_cmds import generic_map_delete_batch, generic_map_update_batch
from . import htab_batch as batch
from .core import MapOps
from .hashtab import (htab_lru_map_delete_elem, htab_lru_map_lookup_elem, htab_lru_map_update_elem,
                      htab_lru_percpu_map_lookup_elem, htab_lru_percpu_map_lookup_percpu_elem,
                      htab_lru_percpu_map_update_elem, htab_lru_percpu_map_update_elem_sys,
                      htab_map_alloc, htab_map_alloc_check, htab_map_delete_elem,
                      htab_map_get_next_key, htab_map_lookup_and_delete_elem, htab_map_lookup_elem,
                      htab_map_lookup_elem_sys, htab_map_update_elem, htab_map_update_elem_prog,
                      htab_percpu_map_lookup_elem, htab_percpu_map_lookup_percpu_elem,
                      htab_percpu_map_update_elem, htab_percpu_map_update_elem_sys)

htab_map_ops = MapOps(
    name="htab_map_ops",
    map_alloc_check=htab_map_alloc_check,
    map_alloc=htab_map_alloc,
    map_lookup_elem_sys=htab_map_lookup_elem_sys,
    map_update_elem_sys=htab_map_update_elem,
    map_delete_elem=htab_map_delete_elem,
    map_get_next_key=htab_map_get_next_key,
    map_lookup_and_delete_elem=htab_map_lookup_and_delete_elem,
    map_lookup_batch=batch.htab_map_lookup_batch,
    map_lookup_and_delete_batch=batch.htab_map_lookup_and_delete_batch,
    map_update_batch=generic_map_update_batch,
    map_delete_batch=generic_map_delete_batch,
    map_update_elems=batch.htab_map_update_elems,
    map_delete_elems=batch.htab_map_delete_elems,
    map_lookup_elem_prog=htab_map_lookup_elem,
    map_update_elem_prog=htab_map_update_elem_prog,
    map_delete_elem_prog=htab_map_delete_elem,
)
htab_percpu_map_ops = MapOps(
    name="htab_percpu_map_ops",
    map_alloc_check=htab_map_alloc_check,
    map_alloc=htab_map_alloc,
    map_lookup_elem_sys=htab_map_lookup_elem_sys,   # bpf_percpu_hash_copy()
    map_update_elem_sys=htab_percpu_map_update_elem_sys,
    map_delete_elem=htab_map_delete_elem,
    map_get_next_key=htab_map_get_next_key,
    map_lookup_and_delete_elem=htab_map_lookup_and_delete_elem,
    map_lookup_batch=batch.htab_percpu_map_lookup_batch,
    map_lookup_and_delete_batch=batch.htab_percpu_map_lookup_and_delete_batch,
    map_update_batch=generic_map_update_batch,
    map_delete_batch=generic_map_delete_batch,
    map_update_elems=batch.htab_map_update_elems,
    map_delete_elems=batch.htab_map_delete_elems,
    map_lookup_elem_prog=htab_percpu_map_lookup_elem,
    map_update_elem_prog=htab_percpu_map_update_elem,
    map_delete_elem_prog=htab_map_delete_elem,
    map_lookup_percpu_elem=htab_percpu_map_lookup_percpu_elem,
)
htab_lru_map_ops = MapOps(
    name="htab_lru_map_ops",
    map_alloc_check=htab_map_alloc_check,
    map_alloc=htab_map_alloc,
    map_lookup_elem_sys=htab_map_lookup_elem_sys,   # htab_lru_map_lookup_elem_sys: no ref bit
    map_update_elem_sys=htab_lru_map_update_elem,
    map_delete_elem=htab_lru_map_delete_elem,
    map_get_next_key=htab_map_get_next_key,
    map_lookup_and_delete_elem=htab_map_lookup_and_delete_elem,
    map_lookup_batch=batch.htab_lru_map_lookup_batch,
    map_lookup_and_delete_batch=batch.htab_lru_map_lookup_and_delete_batch,
    map_update_batch=generic_map_update_batch,
    map_delete_batch=generic_map_delete_batch,
    map_update_elems=batch.htab_lru_map_update_elems,
    map_delete_elems=batch.htab_map_delete_elems,
    map_lookup_elem_prog=htab_lru_map_lookup_elem,
    map_update_elem_prog=htab_lru_map_update_elem,
    map_delete_elem_prog=htab_lru_map_delete_elem,
)
htab_lru_percpu_map_ops = MapOps(
    name="htab_lru_percpu_map_ops",
    map_alloc_check=htab_map_alloc_check,
    map_alloc=htab_map_alloc,
    map_lookup_elem_sys=htab_map_lookup_elem_sys,   # bpf_percpu_hash_copy(): no ref bit
    map_update_elem_sys=htab_lru_percpu_map_update_elem_sys,
    map_delete_elem=htab_lru_map_delete_elem,
    map_get_next_key=htab_map_get_next_key,
    map_lookup_and_delete_elem=htab_map_lookup_and_delete_elem,
    map_lookup_batch=batch.htab_lru_percpu_map_lookup_batch,
    map_lookup_and_delete_batch=batch.htab_lru_percpu_map_lookup_and_delete_batch,
    map_update_batch=generic_map_update_batch,
    map_delete_batch=generic_map_delete_batch,
    map_update_elems=batch.htab_lru_map_update_elems,
    map_delete_elems=batch.htab_map_delete_elems,
    map_lookup_elem_prog=htab_lru_percpu_map_lookup_elem,
    map_update_elem_prog=htab_lru_percpu_map_update_elem,
    map_delete_elem_prog=htab_lru_map_delete_elem,
    map_lookup_percpu_elem=htab_lru_percpu_map_lookup_percpu_elem,
)
