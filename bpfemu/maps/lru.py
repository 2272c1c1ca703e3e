"""The LRU lists behind LRU_HASH and LRU_PERCPU_HASH (kernel/bpf/bpf_lru_list.c).

Which key an LRU map evicts, and when, is observable through the syscall ABI, so
this module reproduces the kernel's list machinery step for step
(docs/linux-6.18.md#lru-maps): circular doubly linked lists with sentinels, the
active/inactive/free lists with their counters and the ``next_inactive_rotation``
cursor, and for the common LRU the per-CPU local free/pending lists and the
round-robin steal.  Function names follow the kernel so the two read side by side.

A node is a number: node i is the hash map's element i (the kernel embeds struct
bpf_lru_node in struct htab_elem).  The fields of struct bpf_lru_node are columns of
the BpfLru, indexed by node: ``lru.next[node]``, ``lru.prev[node]``, ``lru.type[node]``,
``lru.ref[node]``, ``lru.cpu[node]`` (a few bytes a node instead of a Python object).
The list sentinels (struct list_head) are numbers too, after the nodes, with next and
prev columns of their own entries.

List orientation is the kernel's: ``next[head]`` is the newest node ("head"),
``prev[head]`` the oldest ("tail"); a node's ``prev`` is its head-side neighbour.

The CPU is always an explicit argument; nothing here reads the scheduler.  CPUs
are ``0 .. nr_cpus-1`` (the possible-CPU mask is assumed to be contiguous).

Undo journal (bpfemu/undo.py): every change is journaled in ``lru.undo`` before it is
made, so that a call stopped half-way puts the lists back as they were.  A list_move of a
node is one entry (``_unmove``: the node's old neighbours, the target's old first node and
the node's type/ref/cpu); a list's counters and rotation cursor are journaled once an
operation, where the kernel takes the list's lock (bpf_lru_list_pop_free_to_local,
bpf_lru_list_push_free, the per-CPU pop and push); the rest (steal path, reversal, ref
bit) where it changes.  Populating a new map is not journaled: a rolled-back create drops
the map.
"""
from __future__ import annotations

from itertools import compress
from operator import itemgetter, not_
from collections.abc import Callable, Iterator

from ..undo import NO_JOURNAL, restore_attr, restore_item

__all__ = [
    "BPF_LRU_LIST_T_ACTIVE",
    "BPF_LRU_LIST_T_INACTIVE",
    "BPF_LRU_LIST_T_FREE",
    "BPF_LRU_LOCAL_LIST_T_FREE",
    "BPF_LRU_LOCAL_LIST_T_PENDING",
    "LOCAL_FREE_TARGET",
    "LOCAL_NR_SCANS",
    "PERCPU_FREE_TARGET",
    "PERCPU_NR_SCANS",
    "BpfLruList",
    "BpfLruLocallist",
    "BpfLru",
    "bpf_lru_target_free",
    "bpf_lru_populate",
    "bpf_lru_pop_free",
    "bpf_lru_push_free",
    "bpf_lru_local_free_peek",
    "bpf_common_lru_pop_free_many",
    "bpf_lru_push_free_many",
    "bpf_lru_node_set_ref",
    "bpf_lru_node_is_ref",
    "bpf_lru_dump",
]

# enum bpf_lru_list_type.  The first NR_BPF_LRU_LIST_COUNT types are counted,
# the first NR_BPF_LRU_LIST_T live on an LRU list, the rest on a CPU's local list.
BPF_LRU_LIST_T_ACTIVE = 0
BPF_LRU_LIST_T_INACTIVE = 1
BPF_LRU_LIST_T_FREE = 2
BPF_LRU_LOCAL_LIST_T_FREE = 3
BPF_LRU_LOCAL_LIST_T_PENDING = 4

NR_BPF_LRU_LIST_T = 3
NR_BPF_LRU_LIST_COUNT = 2
NR_BPF_LRU_LOCAL_LIST_T = 2
BPF_LOCAL_LIST_T_OFFSET = NR_BPF_LRU_LIST_T

# Index of a local list type inside BpfLruLocallist.lists.
LOCAL_FREE_LIST_IDX = BPF_LRU_LOCAL_LIST_T_FREE - BPF_LOCAL_LIST_T_OFFSET
LOCAL_PENDING_LIST_IDX = BPF_LRU_LOCAL_LIST_T_PENDING - BPF_LOCAL_LIST_T_OFFSET

LOCAL_FREE_TARGET = 128
LOCAL_NR_SCANS = LOCAL_FREE_TARGET
PERCPU_FREE_TARGET = 4
PERCPU_NR_SCANS = PERCPU_FREE_TARGET


# --------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------


class BpfLruList:
    """struct bpf_lru_list: active, inactive and free lists (their sentinels), two
    counters, the NIR cursor."""

    __slots__ = ("lists", "counts", "next_inactive_rotation")

    def __init__(self, heads: tuple) -> None:
        self.lists = heads
        # Only ACTIVE and INACTIVE are counted (the rotation compares them).
        self.counts = [0, 0]
        # Where the next inactive rotation starts: an inactive node or the sentinel.
        self.next_inactive_rotation = heads[BPF_LRU_LIST_T_INACTIVE]


class BpfLruLocallist:
    """struct bpf_lru_locallist: one CPU's local free and pending lists (common LRU only)."""

    __slots__ = ("lists", "next_steal")

    def __init__(self, heads: tuple, cpu: int) -> None:
        self.lists = heads
        self.next_steal = cpu


class BpfLru:
    """struct bpf_lru, with the struct bpf_lru_node of every node as columns.

    ``percpu`` is True for BPF_F_NO_COMMON_LRU.  ``target_free`` is the common
    LRU's harvest batch (see ``bpf_lru_target_free``); it is ignored by the
    per-CPU LRU, which always uses PERCPU_FREE_TARGET.  ``del_from_htab(node)``
    is the eviction callback (htab_lru_map_delete_node): it unlinks the node's
    element from the hash table and returns True, or False if it was not there.
    ``nr_nodes`` nodes, 0..nr_nodes-1, exist from the start; bpf_lru_populate()
    puts them on the free list(s).

    The kernel's node also holds the key's hash (``hash``), for the hash table's
    own use; the hash map here does not read it back, so it is not kept.
    """

    __slots__ = (
        "percpu",
        "nr_cpus",
        "target_free",
        "nr_scans",
        "del_from_htab",
        "common_lru",
        "local_list",
        "percpu_lru",
        "nr_nodes",
        "undo",                 # the emulator's undo journal (bpfemu/undo.py)
        # struct bpf_lru_node, a column per field, indexed by node (sentinels after the nodes)
        "next",
        "prev",
        "type",
        "ref",
        "cpu",
    )

    def __init__(
        self,
        percpu: bool,
        nr_cpus: int,
        target_free: int,
        del_from_htab: Callable[[int], bool],
        nr_nodes: int = 0,
        undo: list = NO_JOURNAL,
    ) -> None:
        if nr_cpus < 1:
            raise ValueError("nr_cpus must be at least 1")
        self.percpu = bool(percpu)
        self.nr_cpus = nr_cpus
        self.target_free = target_free
        self.del_from_htab = del_from_htab
        self.nr_nodes = nr_nodes
        self.undo = undo
        n_heads = NR_BPF_LRU_LIST_T * nr_cpus if self.percpu else (
            NR_BPF_LRU_LIST_T + NR_BPF_LRU_LOCAL_LIST_T * nr_cpus)
        total = nr_nodes + n_heads
        # One int object per node, shared by both link columns (and by the hash map's
        # index, which holds the same numbers): a list entry costs a pointer.
        ids = list(range(total))
        self.next = ids
        self.prev = ids[:]                  # every sentinel points at itself: empty lists
        self.type = bytearray([BPF_LRU_LIST_T_FREE]) * total
        self.ref = bytearray(total)
        self.cpu = bytearray(total) if nr_cpus <= 256 else [0] * total
        heads = iter(ids[nr_nodes:])
        if self.percpu:
            self.nr_scans = PERCPU_NR_SCANS
            self.common_lru = None
            self.local_list = None
            self.percpu_lru = [BpfLruList((next(heads), next(heads), next(heads)))
                               for _ in range(nr_cpus)]
        else:
            self.nr_scans = LOCAL_NR_SCANS
            self.common_lru = BpfLruList((next(heads), next(heads), next(heads)))
            self.local_list = [BpfLruLocallist((next(heads), next(heads)), cpu)
                               for cpu in range(nr_cpus)]
            self.percpu_lru = None


def bpf_lru_target_free(nr_elems: int, nr_cpus: int) -> int:
    """The common LRU's harvest batch since Linux 6.16 (bpf_common_lru_populate):
    clamp((nr_elems / nr_cpus) / 2, 1, LOCAL_FREE_TARGET)."""
    return min(max((nr_elems // nr_cpus) // 2, 1), LOCAL_FREE_TARGET)


# --------------------------------------------------------------------------------------
# list_head primitives
# --------------------------------------------------------------------------------------


def _list_del(lru: BpfLru, node: int) -> None:
    nxt, prv = lru.next, lru.prev
    p = prv[node]
    n = nxt[node]
    nxt[p] = n
    prv[n] = p


def _list_add(lru: BpfLru, node: int, head: int) -> None:
    # Link right after the sentinel, i.e. at the head (newest end).
    nxt, prv = lru.next, lru.prev
    n = nxt[head]
    nxt[node] = n
    prv[node] = head
    prv[n] = node
    nxt[head] = node


def _list_move(lru: BpfLru, node: int, head: int) -> None:
    nxt, prv = lru.next, lru.prev
    p = prv[node]
    n = nxt[node]
    nxt[p] = n
    prv[n] = p
    n = nxt[head]
    nxt[node] = n
    prv[node] = head
    prv[n] = node
    nxt[head] = node


# --- undo journal entries (bpfemu/undo.py): each restores recorded values, so it is
# idempotent ---------------------------------------------------------------------------


def _unmove(lru: BpfLru, node: int, p: int, n: int, head: int, hn: int,
            t: int, r: int, c: int) -> None:
    """The inverse of a list_move(node, head) (or a list_del + list_add) that found node
    between p and n, and hn first after head; t, r, c: the node's type, ref and cpu then."""
    nxt, prv = lru.next, lru.prev
    nxt[head] = hn
    prv[hn] = head
    nxt[p] = node
    prv[n] = node
    nxt[node] = n
    prv[node] = p
    lru.type[node] = t
    lru.ref[node] = r
    lru.cpu[node] = c


def _restore_counts(l: BpfLruList, active: int, inactive: int, nir: int) -> None:
    l.counts[:] = (active, inactive)
    l.next_inactive_rotation = nir


def _save_counts(lru: BpfLru, l: BpfLruList) -> None:
    """Journal a list's counters and rotation cursor (once an operation, under the
    kernel's l->lock)."""
    counts = l.counts
    lru.undo.append((_restore_counts, l, counts[0], counts[1], l.next_inactive_rotation))


def _restore_order(lru: BpfLru, head: int, order: list) -> None:
    """Relink the list at head with the nodes of order, first to last."""
    lru.next[head] = head                       # empty, whatever it holds now
    _splice_head(lru, head, order)


def _restore_node(lru: BpfLru, node: int, n: int, p: int, t: int, r: int, c: int) -> None:
    lru.next[node] = n
    lru.prev[node] = p
    lru.type[node] = t
    lru.ref[node] = r
    lru.cpu[node] = c


def _save(lru: BpfLru, *nodes: int) -> None:
    """Journal every field of nodes (sentinels too) about to change (the cold paths)."""
    undo = lru.undo
    for i in nodes:
        undo.append((_restore_node, lru, i, lru.next[i], lru.prev[i], lru.type[i],
                     lru.ref[i], lru.cpu[i]))


def _gather(seq, nodes: list) -> tuple:
    """The items of seq at nodes, at C speed."""
    return itemgetter(*nodes)(seq) if len(nodes) > 1 else tuple(seq[i] for i in nodes)


def _list_iter(lru: BpfLru, head: int) -> Iterator[int]:
    """Nodes from head (newest) to tail (oldest).  Not for use while the list changes."""
    nxt = lru.next
    node = nxt[head]
    while node != head:
        yield node
        node = nxt[node]


# --------------------------------------------------------------------------------------
# Node helpers
# --------------------------------------------------------------------------------------


def get_next_cpu(lru: BpfLru, cpu: int) -> int:
    cpu += 1
    return 0 if cpu >= lru.nr_cpus else cpu


def bpf_lru_node_is_ref(lru: BpfLru, node: int) -> bool:
    return lru.ref[node] != 0


def bpf_lru_node_set_ref(lru: BpfLru, node: int) -> None:
    """Mark the node referenced (BPF-program lookups, updates of an existing key)."""
    ref = lru.ref
    if not ref[node]:
        lru.undo.append((restore_item, ref, node, 0))
        ref[node] = 1


def __bpf_lru_node_move_to_free(lru: BpfLru, l: BpfLruList, node: int, free_list: int,
                                tgt_free_type: int) -> None:
    """Active/inactive node -> a free list (the global one or a CPU's local one).

    The ref bit is left alone; it is cleared when the node is handed out again.
    """
    t = lru.type[node]
    if t >= BPF_LOCAL_LIST_T_OFFSET:  # kernel: WARN_ON_ONCE, ignored
        return
    _save(lru, node, lru.prev[node], lru.next[node], free_list, lru.next[free_list])
    # Keep the rotation cursor on the inactive list: step it to the head-side neighbour.
    if node == l.next_inactive_rotation:
        l.next_inactive_rotation = lru.prev[node]
    if t < NR_BPF_LRU_LIST_COUNT:
        l.counts[t] -= 1
    lru.type[node] = tgt_free_type
    _list_move(lru, node, free_list)


def __bpf_lru_node_move_in(lru: BpfLru, l: BpfLruList, node: int, tgt_type: int) -> None:
    """Local pending node -> head of the global active or inactive list."""
    if lru.type[node] < BPF_LOCAL_LIST_T_OFFSET or tgt_type >= BPF_LOCAL_LIST_T_OFFSET:
        return  # kernel: WARN_ON_ONCE, ignored
    head = l.lists[tgt_type]
    _save(lru, node, lru.prev[node], lru.next[node], head, lru.next[head])
    if tgt_type < NR_BPF_LRU_LIST_COUNT:
        l.counts[tgt_type] += 1
    lru.type[node] = tgt_type
    lru.ref[node] = 0
    _list_move(lru, node, head)


def __bpf_lru_node_move(lru: BpfLru, l: BpfLruList, node: int, tgt_type: int) -> None:
    """Move within/between active, inactive and free of one LRU list, to the head of tgt_type."""
    types = lru.type
    t = types[node]
    if t >= BPF_LOCAL_LIST_T_OFFSET or tgt_type >= BPF_LOCAL_LIST_T_OFFSET:
        return  # kernel: WARN_ON_ONCE, ignored
    nxt, prv = lru.next, lru.prev
    p = prv[node]
    n = nxt[node]
    head = l.lists[tgt_type]
    lru.undo.append((_unmove, lru, node, p, n, head, nxt[head], t, lru.ref[node], lru.cpu[node]))
    if t != tgt_type:
        counts = l.counts
        if t < NR_BPF_LRU_LIST_COUNT:
            counts[t] -= 1
        if tgt_type < NR_BPF_LRU_LIST_COUNT:
            counts[tgt_type] += 1
        types[node] = tgt_type
    lru.ref[node] = 0
    if node == l.next_inactive_rotation:
        l.next_inactive_rotation = p
    # list_move, inlined (hot: rotation, push_free, per-CPU pop)
    nxt[p] = n
    prv[n] = p
    n = nxt[head]
    nxt[node] = n
    prv[node] = head
    prv[n] = node
    nxt[head] = node


# --------------------------------------------------------------------------------------
# Rotation and shrinking of one LRU list
# --------------------------------------------------------------------------------------


def bpf_lru_list_inactive_low(l: BpfLruList) -> bool:
    counts = l.counts
    return counts[BPF_LRU_LIST_T_INACTIVE] < counts[BPF_LRU_LIST_T_ACTIVE]


def __bpf_lru_list_rotate_active(lru: BpfLru, l: BpfLruList) -> None:
    """Walk active from the tail: referenced nodes go back to the active head (one more
    chance), the others to the inactive head.  At most nr_scans nodes, and never past
    the node that was at the head when the walk began."""
    active = l.lists[BPF_LRU_LIST_T_ACTIVE]
    nr_scans = lru.nr_scans
    prv, ref = lru.prev, lru.ref
    first_node = lru.next[active]
    node = prv[active]
    i = 0
    while node != active:
        tmp = prv[node]
        if ref[node]:
            __bpf_lru_node_move(lru, l, node, BPF_LRU_LIST_T_ACTIVE)
        else:
            __bpf_lru_node_move(lru, l, node, BPF_LRU_LIST_T_INACTIVE)
        i += 1
        if i == nr_scans or node == first_node:
            break
        node = tmp


def __bpf_lru_list_rotate_inactive(lru: BpfLru, l: BpfLruList) -> None:
    """A clock hand over the inactive list: from the cursor toward the head (wrapping
    from the sentinel to the tail), promote referenced nodes to the active head, and
    leave the cursor at the first node not visited."""
    inactive = l.lists[BPF_LRU_LIST_T_INACTIVE]
    nxt, prv, ref = lru.next, lru.prev, lru.ref
    if nxt[inactive] == inactive:
        return

    cur = l.next_inactive_rotation
    # The node reached after one full lap.
    last = nxt[cur]
    if last == inactive:
        last = nxt[last]

    nr_scans = lru.nr_scans
    nx = inactive
    i = 0
    while i < nr_scans:
        if cur == inactive:
            # Stepping over the sentinel is free and wraps to the tail.
            cur = prv[cur]
            continue
        nx = prv[cur]
        if ref[cur]:
            __bpf_lru_node_move(lru, l, cur, BPF_LRU_LIST_T_ACTIVE)
        if cur == last:
            break
        cur = nx
        i += 1

    l.next_inactive_rotation = nx


def __bpf_lru_list_shrink_inactive(
    lru: BpfLru, l: BpfLruList, tgt_nshrink: int, free_list: int, tgt_free_type: int
) -> int:
    """From the inactive tail: promote referenced nodes, evict the others into free_list,
    until tgt_nshrink were freed or nr_scans nodes were looked at.  Returns the number freed."""
    inactive = l.lists[BPF_LRU_LIST_T_INACTIVE]
    nr_scans = lru.nr_scans
    del_from_htab = lru.del_from_htab
    nxt, prv, ref, types = lru.next, lru.prev, lru.ref, lru.type
    cpus, undo = lru.cpu, lru.undo
    counts = l.counts
    nshrinked = 0
    i = 0
    node = prv[inactive]
    while node != inactive:
        tmp = prv[node]
        if ref[node]:
            __bpf_lru_node_move(lru, l, node, BPF_LRU_LIST_T_ACTIVE)
        elif del_from_htab(node):
            # __bpf_lru_node_move_to_free inlined for an INACTIVE node (the hot
            # eviction step).  Not necessarily the tail: nodes the hash table
            # refused to give up stay behind it.
            n = nxt[node]
            undo.append((_unmove, lru, node, tmp, n, free_list, nxt[free_list],
                         types[node], 0, cpus[node]))
            if node == l.next_inactive_rotation:
                l.next_inactive_rotation = tmp
            counts[BPF_LRU_LIST_T_INACTIVE] -= 1
            types[node] = tgt_free_type
            nxt[tmp] = n
            prv[n] = tmp
            n = nxt[free_list]
            nxt[node] = n
            prv[node] = free_list
            prv[n] = node
            nxt[free_list] = node
            nshrinked += 1
            if nshrinked == tgt_nshrink:
                break
        i += 1
        if i == nr_scans:
            break
        node = tmp
    return nshrinked


def __bpf_lru_list_rotate(lru: BpfLru, l: BpfLruList) -> None:
    counts = l.counts
    if counts[BPF_LRU_LIST_T_INACTIVE] < counts[BPF_LRU_LIST_T_ACTIVE]:  # bpf_lru_list_inactive_low
        __bpf_lru_list_rotate_active(lru, l)
    __bpf_lru_list_rotate_inactive(lru, l)


def __bpf_lru_list_shrink(
    lru: BpfLru, l: BpfLruList, tgt_nshrink: int, free_list: int, tgt_free_type: int
) -> int:
    """Shrink the inactive list; if that frees nothing, force-evict the oldest node of
    the inactive list (or of the active list when inactive is empty), ignoring ref."""
    nshrinked = __bpf_lru_list_shrink_inactive(lru, l, tgt_nshrink, free_list, tgt_free_type)
    if nshrinked:
        return nshrinked

    nxt, prv = lru.next, lru.prev
    inactive = l.lists[BPF_LRU_LIST_T_INACTIVE]
    if nxt[inactive] != inactive:
        force_shrink_list = inactive
    else:
        force_shrink_list = l.lists[BPF_LRU_LIST_T_ACTIVE]

    del_from_htab = lru.del_from_htab
    node = prv[force_shrink_list]
    while node != force_shrink_list:
        tmp = prv[node]
        if del_from_htab(node):
            __bpf_lru_node_move_to_free(lru, l, node, free_list, tgt_free_type)
            return 1
        node = tmp
    return 0


# --------------------------------------------------------------------------------------
# Common LRU: global list + per-CPU local lists
# --------------------------------------------------------------------------------------


def __local_list_flush(lru: BpfLru, l: BpfLruList, loc_l: BpfLruLocallist) -> None:
    """Pending nodes -> global list, oldest first, so their order is kept (newest at head)."""
    # __bpf_lru_node_move_in of each node, oldest first, done at once: every node here is
    # PENDING, so its checks hold; the referenced ones end at the active list's head, the
    # others at the inactive list's, in the pending list's order; their ref bits cleared.
    pending = loc_l.lists[LOCAL_PENDING_LIST_IDX]
    nxt, prv = lru.next, lru.prev
    nodes = []                                  # head (newest) first
    node = nxt[pending]
    while node != pending:
        nodes.append(node)
        node = nxt[node]
    if not nodes:
        return
    lists = l.lists
    active, inactive = lists[BPF_LRU_LIST_T_ACTIVE], lists[BPF_LRU_LIST_T_INACTIVE]
    refs = _gather(lru.ref, nodes)
    lru.undo.append((_unflush, lru, pending, nodes, refs, _gather(lru.type, nodes),
                     active, nxt[active], inactive, nxt[inactive]))
    to_active = list(compress(nodes, refs))
    to_inactive = list(compress(nodes, map(not_, refs))) if to_active else nodes
    nxt[pending] = prv[pending] = pending
    counts = l.counts
    types = lru.type
    if to_active:
        _splice_head(lru, active, to_active)
        counts[BPF_LRU_LIST_T_ACTIVE] += len(to_active)
        ref = lru.ref
        for node in to_active:
            types[node] = BPF_LRU_LIST_T_ACTIVE
            ref[node] = 0
    if to_inactive:
        _splice_head(lru, inactive, to_inactive)
        counts[BPF_LRU_LIST_T_INACTIVE] += len(to_inactive)
        for node in to_inactive:
            types[node] = BPF_LRU_LIST_T_INACTIVE


def _splice_head(lru: BpfLru, head: int, nodes: list) -> None:
    """Link nodes (in no list) at the head of the list at head, in their order."""
    nxt, prv = lru.next, lru.prev
    last = nxt[head]
    p = head
    for node in nodes:
        nxt[p] = node
        prv[node] = p
        p = node
    nxt[p] = last
    prv[last] = p


def _unflush(lru: BpfLru, pending: int, nodes: list, refs, types, active: int,
             active_first: int, inactive: int, inactive_first: int) -> None:
    """The inverse of __local_list_flush(): the nodes back on the pending list, the global
    lists' heads as they were (the counters are the caller's entry)."""
    nxt, prv = lru.next, lru.prev
    nxt[active] = active_first
    prv[active_first] = active
    nxt[inactive] = inactive_first
    prv[inactive_first] = inactive
    nxt[pending] = prv[pending] = pending
    _splice_head(lru, pending, nodes)
    ref, type_ = lru.ref, lru.type
    for node, r, t in zip(nodes, refs, types):
        ref[node] = r
        type_[node] = t


def bpf_lru_list_push_free(lru: BpfLru, l: BpfLruList, node: int) -> None:
    if lru.type[node] >= BPF_LOCAL_LIST_T_OFFSET:
        return  # kernel: WARN_ON_ONCE, ignored
    # The kernel takes l->lock here: _save_counts(lru, l), inlined (every LRU delete).
    counts = l.counts
    lru.undo.append((_restore_counts, l, counts[0], counts[1], l.next_inactive_rotation))
    __bpf_lru_node_move(lru, l, node, BPF_LRU_LIST_T_FREE)


def bpf_lru_list_pop_free_to_local(lru: BpfLru, loc_l: BpfLruLocallist) -> None:
    """Refill a CPU's local free list with up to target_free nodes: flush its pending
    list, rotate, take from the global free list, and evict the shortfall."""
    l = lru.common_lru
    target_free = lru.target_free
    local_free = loc_l.lists[LOCAL_FREE_LIST_IDX]

    _save_counts(lru, l)                    # the kernel takes l->lock here
    __local_list_flush(lru, l, loc_l)
    __bpf_lru_list_rotate(lru, l)

    # __bpf_lru_node_move_to_free of each node taken, done at once: FREE nodes are uncounted
    # and never the rotation cursor, so only the relink and the type change remain.
    nxt = lru.next
    free = l.lists[BPF_LRU_LIST_T_FREE]
    taken = []
    node = nxt[free]
    while node != free and len(taken) < target_free:
        taken.append(node)
        node = nxt[node]
    nfree = len(taken)
    if nfree == target_free and nxt[local_free] == local_free:
        # The usual refill: nothing to evict, into an empty local free list. The kernel
        # stacks the nodes there and the reversal below turns them first-moved-first: the
        # order they have on the global free list, which they keep here.
        _move_to_empty(lru, free, taken, node, local_free)
        return
    if nfree:
        _move_stacked(lru, free, taken, node, local_free)

    if nfree < target_free:
        __bpf_lru_list_shrink(lru, l, target_free - nfree, local_free, BPF_LRU_LOCAL_LIST_T_FREE)

    # The live 6.18.44 kernel hands a refilled batch out in the order its nodes were moved
    # (first moved, first reused), which the reuse of per-CPU padding bytes shows; the list_move
    # above stacks them the other way. The refill only runs on an empty local free list, so
    # reversing the list gives the kernel's order (tests/differential/test_percpu_padding.py).
    _list_reverse(lru, local_free)


def _move_to_empty(lru: BpfLru, free: int, taken: list, after: int, local_free: int) -> None:
    """taken, the first nodes of the global free list (then after), onto the empty local
    free list in their order, typed LOCAL_FREE."""
    lru.undo.append((_unmove_run, lru, free, taken, after, local_free, local_free,
                     _gather(lru.type, taken)))
    nxt, prv = lru.next, lru.prev
    nxt[free] = after
    prv[after] = free
    nxt[local_free] = prv[local_free] = local_free
    _splice_head(lru, local_free, taken)
    types = lru.type
    for node in taken:
        types[node] = BPF_LRU_LOCAL_LIST_T_FREE


def _move_stacked(lru: BpfLru, free: int, taken: list, after: int, local_free: int) -> None:
    """taken, the first nodes of the global free list (then after), list_move()d to the local
    free list's head one after the other (so the last one first), typed LOCAL_FREE."""
    nxt, prv = lru.next, lru.prev
    lru.undo.append((_unmove_run, lru, free, taken, after, local_free, nxt[local_free],
                     _gather(lru.type, taken)))
    nxt[free] = after
    prv[after] = free
    _splice_head(lru, local_free, taken[::-1])
    types = lru.type
    for node in taken:
        types[node] = BPF_LRU_LOCAL_LIST_T_FREE


def _unmove_run(lru: BpfLru, free: int, taken: list, after: int, local_free: int,
                local_first: int, types) -> None:
    """The inverse of _move_to_empty() and _move_stacked()."""
    nxt, prv = lru.next, lru.prev
    nxt[local_free] = local_first
    prv[local_first] = local_free
    nxt[free] = after
    prv[after] = free
    _splice_head(lru, free, taken)
    type_ = lru.type
    for node, t in zip(taken, types):
        type_[node] = t


def _list_reverse(lru: BpfLru, head: int) -> None:
    nxt, prv = lru.next, lru.prev
    lru.undo.append((_restore_order, lru, head, list(_list_iter(lru, head))))
    node = head
    while True:
        n, p = nxt[node], prv[node]
        nxt[node], prv[node] = p, n
        node = n                       # the old next
        if node == head:
            return


def __local_list_add_pending(
    lru: BpfLru, loc_l: BpfLruLocallist, cpu: int, node: int, hash: int
) -> None:
    head = loc_l.lists[LOCAL_PENDING_LIST_IDX]
    _save(lru, node, head, lru.next[head])
    lru.cpu[node] = cpu
    lru.type[node] = BPF_LRU_LOCAL_LIST_T_PENDING
    lru.ref[node] = 0
    _list_add(lru, node, head)


def __local_list_pop_free(lru: BpfLru, loc_l: BpfLruLocallist) -> int | None:
    free = loc_l.lists[LOCAL_FREE_LIST_IDX]
    node = lru.next[free]
    if node == free:
        return None
    _save(lru, lru.prev[node], lru.next[node])
    _list_del(lru, node)
    return node


def __local_list_pop_pending(lru: BpfLru, loc_l: BpfLruLocallist) -> int | None:
    """Steal the oldest pending node that is unreferenced and evictable; failing that,
    the oldest evictable one regardless of ref."""
    pending = loc_l.lists[LOCAL_PENDING_LIST_IDX]
    del_from_htab = lru.del_from_htab
    prv, ref = lru.prev, lru.ref
    for force in (False, True):
        node = prv[pending]
        while node != pending:
            if (force or not ref[node]) and del_from_htab(node):
                _save(lru, prv[node], lru.next[node])
                _list_del(lru, node)
                return node
            node = prv[node]
    return None


def bpf_common_lru_pop_free(lru: BpfLru, hash: int, cpu: int) -> int | None:
    loc_l = lru.local_list[cpu]

    # Fast path, inlined __local_list_pop_free + __local_list_add_pending: a node
    # from this CPU's local free list goes to the head of its pending list.
    lists = loc_l.lists
    nxt = lru.next
    free = lists[LOCAL_FREE_LIST_IDX]
    node = nxt[free]
    if node == free:
        bpf_lru_list_pop_free_to_local(lru, loc_l)
        node = nxt[free]
    if node != free:
        prv = lru.prev
        n = nxt[node]  # node is the local free head
        pending = lists[LOCAL_PENDING_LIST_IDX]
        lru.undo.append((_unmove, lru, node, free, n, pending, nxt[pending],
                         lru.type[node], lru.ref[node], lru.cpu[node]))
        nxt[free] = n
        prv[n] = free
        lru.cpu[node] = cpu
        lru.type[node] = BPF_LRU_LOCAL_LIST_T_PENDING
        lru.ref[node] = 0
        n = nxt[pending]
        nxt[node] = n
        prv[node] = pending
        prv[n] = node
        nxt[pending] = node
        return node

    # Nothing locally nor globally (the map is tiny compared with the CPU count):
    # steal round-robin from the CPUs' local lists, starting at next_steal.
    first_steal = loc_l.next_steal
    steal = first_steal
    while True:
        steal_loc_l = lru.local_list[steal]
        node = __local_list_pop_free(lru, steal_loc_l)
        if node is None:
            node = __local_list_pop_pending(lru, steal_loc_l)
        steal = get_next_cpu(lru, steal)
        if node is not None or steal == first_steal:
            break

    lru.undo.append((restore_attr, loc_l, "next_steal", first_steal))
    loc_l.next_steal = steal

    if node is not None:
        __local_list_add_pending(lru, loc_l, cpu, node, hash)
    return node


def bpf_common_lru_push_free(lru: BpfLru, node: int) -> None:
    t = lru.type[node]
    if t == BPF_LRU_LIST_T_FREE or t == BPF_LRU_LOCAL_LIST_T_FREE:
        return  # kernel: WARN_ON_ONCE (double free), ignored

    if t == BPF_LRU_LOCAL_LIST_T_PENDING:
        # Still pending: back to the owning CPU's local free list, not the global one.
        head = lru.local_list[lru.cpu[node]].lists[LOCAL_FREE_LIST_IDX]
        nxt = lru.next
        lru.undo.append((_unmove, lru, node, lru.prev[node], nxt[node], head, nxt[head],
                         t, lru.ref[node], lru.cpu[node]))
        lru.type[node] = BPF_LRU_LOCAL_LIST_T_FREE
        lru.ref[node] = 0
        _list_move(lru, node, head)
        return

    bpf_lru_list_push_free(lru, lru.common_lru, node)


# --------------------------------------------------------------------------------------
# Per-CPU LRU (BPF_F_NO_COMMON_LRU): one independent list per CPU
# --------------------------------------------------------------------------------------


def bpf_percpu_lru_pop_free(lru: BpfLru, hash: int, cpu: int) -> int | None:
    l = lru.percpu_lru[cpu]
    lists = l.lists
    counts = l.counts
    _save_counts(lru, l)                    # the kernel takes l->lock here

    # Rotation runs on every allocation, not only when the free list is empty.
    # (__bpf_lru_list_rotate, inlined: this is the per-CPU hot path.)
    if counts[BPF_LRU_LIST_T_INACTIVE] < counts[BPF_LRU_LIST_T_ACTIVE]:
        __bpf_lru_list_rotate_active(lru, l)
    __bpf_lru_list_rotate_inactive(lru, l)

    nxt, prv = lru.next, lru.prev
    free_list = lists[BPF_LRU_LIST_T_FREE]
    if nxt[free_list] == free_list:
        __bpf_lru_list_shrink(lru, l, PERCPU_FREE_TARGET, free_list, BPF_LRU_LIST_T_FREE)

    node = nxt[free_list]
    if node == free_list:
        return None
    head = lists[BPF_LRU_LIST_T_INACTIVE]
    lru.undo.append((_unmove, lru, node, free_list, nxt[node], head, nxt[head],
                     lru.type[node], lru.ref[node], lru.cpu[node]))
    # Straight onto the inactive list head: evictable at once, no pending stage.
    # (__bpf_lru_node_move from FREE, inlined: FREE is uncounted and never the
    # rotation cursor; the move clears ref.)
    lru.ref[node] = 0
    lru.type[node] = BPF_LRU_LIST_T_INACTIVE
    counts[BPF_LRU_LIST_T_INACTIVE] += 1
    n = nxt[node]  # node is the free head
    nxt[free_list] = n
    prv[n] = free_list
    n = nxt[head]
    nxt[node] = n
    prv[node] = head
    prv[n] = node
    nxt[head] = node
    return node


def bpf_percpu_lru_push_free(lru: BpfLru, node: int) -> None:
    # Always back to the owner's list, whichever CPU frees it.
    l = lru.percpu_lru[lru.cpu[node]]
    _save_counts(lru, l)                    # the kernel takes l->lock here
    __bpf_lru_node_move(lru, l, node, BPF_LRU_LIST_T_FREE)


# --------------------------------------------------------------------------------------
# Entry points used by the hash map
# --------------------------------------------------------------------------------------


def bpf_lru_pop_free(lru: BpfLru, hash: int, cpu: int) -> int | None:
    """A node for a new element, on behalf of ``cpu`` (docs: #lru-maps).  May evict (del_from_htab).

    Common LRU: the node ends at the head of cpu's pending list with ``cpu`` set.
    Per-CPU LRU: it ends at the head of cpu's inactive list.  Either way ref is
    clear.  None only if no node can be found anywhere.
    """
    if lru.percpu:
        return bpf_percpu_lru_pop_free(lru, hash, cpu)
    return bpf_common_lru_pop_free(lru, hash, cpu)


def bpf_lru_push_free(lru: BpfLru, node: int) -> None:
    """Give a node back (delete, failed update, replaced element) (docs: #lru-maps)."""
    if lru.percpu:
        bpf_percpu_lru_push_free(lru, node)
    else:
        bpf_common_lru_push_free(lru, node)


# --------------------------------------------------------------------------------------
# Runs of the entry points, for the batch commands (maps/htab_batch.py): what n calls in a
# row do, with no Python call per node and one undo entry for the run
# --------------------------------------------------------------------------------------


def bpf_lru_local_free_peek(lru: BpfLru, cpu: int, n: int) -> list:
    """The first n nodes (fewer if it holds fewer) of cpu's local free list: the nodes that
    n bpf_lru_pop_free(cpu) calls in a row take from it without a refill, in order. Empty for
    the per-CPU LRU (its pop rotates the lists every time)."""
    if lru.percpu:
        return []
    free = lru.local_list[cpu].lists[LOCAL_FREE_LIST_IDX]
    nxt = lru.next
    nodes = []
    node = nxt[free]
    while node != free and len(nodes) < n:
        nodes.append(node)
        node = nxt[node]
    return nodes


def bpf_common_lru_pop_free_many(lru: BpfLru, cpu: int, nodes: list) -> None:
    """bpf_common_lru_pop_free(cpu) once per node of nodes, the first nodes of cpu's local
    free list (bpf_lru_local_free_peek): each goes from the local free list's head to the
    pending list's head, typed PENDING with ref clear and cpu set."""
    loc_l = lru.local_list[cpu]
    free = loc_l.lists[LOCAL_FREE_LIST_IDX]
    pending = loc_l.lists[LOCAL_PENDING_LIST_IDX]
    nxt, prv = lru.next, lru.prev
    after = nxt[nodes[-1]]
    first = nxt[pending]
    lru.undo.append((_unpop_many, lru, free, pending, nodes, after, first,
                     _gather(lru.type, nodes), _gather(lru.ref, nodes), _gather(lru.cpu, nodes)))
    nxt[free] = after
    prv[after] = free
    # The pending list, head first: the last node popped, ..., the first, the old first.
    types, ref, cpus = lru.type, lru.ref, lru.cpu
    n = first
    for node in nodes:
        nxt[node] = n
        prv[n] = node
        n = node
        types[node] = BPF_LRU_LOCAL_LIST_T_PENDING
        ref[node] = 0
        cpus[node] = cpu
    nxt[pending] = n
    prv[n] = pending


def _unpop_many(lru: BpfLru, free: int, pending: int, nodes: list, after: int, first: int,
                types, refs, cpus) -> None:
    """The inverse of bpf_common_lru_pop_free_many(): nodes back at the local free list's
    head in their order, the pending list's first node first again, their fields restored."""
    nxt, prv = lru.next, lru.prev
    nxt[pending] = first
    prv[first] = pending
    nxt[free] = after
    prv[after] = free
    _splice_head(lru, free, nodes)
    type_, ref, cpu = lru.type, lru.ref, lru.cpu
    for node, t, r, c in zip(nodes, types, refs, cpus):
        type_[node] = t
        ref[node] = r
        cpu[node] = c


def bpf_lru_push_free_many(lru: BpfLru, nodes: list) -> None:
    """bpf_lru_push_free() of each of nodes in turn (distinct nodes of deleted elements),
    journaled as one entry: the moves' inverses, newest first, and the counters and rotation
    cursor of the lists the moves take their lock on."""
    nxt, prv, types, ref, cpus = lru.next, lru.prev, lru.type, lru.ref, lru.cpu
    if not lru.percpu and len(nodes) > 1:
        listed = _gather(types, nodes)
        if listed.count(BPF_LRU_LIST_T_ACTIVE) + listed.count(BPF_LRU_LIST_T_INACTIVE) == \
                len(nodes):
            _common_push_free_listed(lru, nodes, listed)
            return
    moves = []                      # one _unmove's arguments a move, in order
    lists = lru.percpu_lru if lru.percpu else [lru.common_lru]
    lru.undo.append((_unpush_many, lru, moves,
                     [(l, l.counts[0], l.counts[1], l.next_inactive_rotation) for l in lists]))
    add = moves.append
    percpu = lru.percpu
    for node in nodes:
        t = types[node]
        if percpu:
            l = lru.percpu_lru[cpus[node]]          # bpf_percpu_lru_push_free()
        elif t == BPF_LRU_LIST_T_FREE or t == BPF_LRU_LOCAL_LIST_T_FREE:
            continue                                # kernel: WARN_ON_ONCE (double free)
        elif t == BPF_LRU_LOCAL_LIST_T_PENDING:
            # Still pending: back to the owning CPU's local free list.
            l = None
            head = lru.local_list[cpus[node]].lists[LOCAL_FREE_LIST_IDX]
            p, n = prv[node], nxt[node]
            first = nxt[head]
            add((node, p, n, head, first, t, ref[node], cpus[node]))
            types[node] = BPF_LRU_LOCAL_LIST_T_FREE
            ref[node] = 0
        else:
            l = lru.common_lru                      # bpf_lru_list_push_free()
        if l is not None:
            if t >= BPF_LOCAL_LIST_T_OFFSET:
                continue                            # kernel: WARN_ON_ONCE, ignored
            # __bpf_lru_node_move(lru, l, node, BPF_LRU_LIST_T_FREE), inlined
            head = l.lists[BPF_LRU_LIST_T_FREE]
            p, n = prv[node], nxt[node]
            first = nxt[head]
            add((node, p, n, head, first, t, ref[node], cpus[node]))
            if t != BPF_LRU_LIST_T_FREE:
                if t < NR_BPF_LRU_LIST_COUNT:
                    l.counts[t] -= 1
                types[node] = BPF_LRU_LIST_T_FREE
            ref[node] = 0
            if node == l.next_inactive_rotation:
                l.next_inactive_rotation = p
        # list_move(node, head), inlined
        nxt[p] = n
        prv[n] = p
        if first == node:                   # node was head's first: it is again
            first = n
        nxt[node] = first
        prv[node] = head
        prv[first] = node
        nxt[head] = node


def _common_push_free_listed(lru: BpfLru, nodes: list, listed: tuple) -> None:
    """bpf_lru_push_free_many() of nodes that are all on the common LRU's active or inactive
    list (their types in listed): each __bpf_lru_node_move() to the free list's head in
    turn, done as the unlinks in order, then one splice (the last node first)."""
    l = lru.common_lru
    nxt, prv = lru.next, lru.prev
    free = l.lists[BPF_LRU_LIST_T_FREE]
    unlinked = []                   # (node, its prev, its next) as each was taken out
    lru.undo.append((_unpush_listed, lru, l, nodes, unlinked, listed, _gather(lru.ref, nodes),
                     nxt[free], l.counts[0], l.counts[1], l.next_inactive_rotation))
    add = unlinked.append
    nir = l.next_inactive_rotation
    for node in nodes:
        p = prv[node]
        n = nxt[node]
        add((node, p, n))           # recorded before the unlink: the inverse relinks it
        nxt[p] = n
        prv[n] = p
        if node == nir:             # the rotation cursor steps to the head-side neighbour
            nir = p
    l.next_inactive_rotation = nir
    counts = l.counts
    counts[BPF_LRU_LIST_T_ACTIVE] -= listed.count(BPF_LRU_LIST_T_ACTIVE)
    counts[BPF_LRU_LIST_T_INACTIVE] -= listed.count(BPF_LRU_LIST_T_INACTIVE)
    _splice_head(lru, free, nodes[::-1])
    types, ref = lru.type, lru.ref
    for node in nodes:
        types[node] = BPF_LRU_LIST_T_FREE
        ref[node] = 0


def _unpush_listed(lru: BpfLru, l: BpfLruList, nodes: list, unlinked: list, types, refs,
                   free_first: int, active: int, inactive: int, nir: int) -> None:
    """The inverse of _common_push_free_listed() (of as many unlinks as it made)."""
    nxt, prv = lru.next, lru.prev
    free = l.lists[BPF_LRU_LIST_T_FREE]
    nxt[free] = free_first
    prv[free_first] = free
    for node, p, n in reversed(unlinked):
        nxt[p] = node
        prv[n] = node
        nxt[node] = n
        prv[node] = p
    type_, ref = lru.type, lru.ref
    for node, t, r in zip(nodes, types, refs):
        type_[node] = t
        ref[node] = r
    _restore_counts(l, active, inactive, nir)


def _unpush_many(lru: BpfLru, moves: list, saved: list) -> None:
    """The inverse of bpf_lru_push_free_many()."""
    for args in reversed(moves):
        _unmove(lru, *args)
    for l, active, inactive, nir in saved:
        _restore_counts(l, active, inactive, nir)


def bpf_common_lru_populate(lru: BpfLru, nr_elems: int) -> None:
    free = lru.common_lru.lists[BPF_LRU_LIST_T_FREE]
    ids = lru.next[:nr_elems]               # the nodes' own int objects
    for node in ids:
        lru.type[node] = BPF_LRU_LIST_T_FREE
        lru.ref[node] = 0
        lru.cpu[node] = 0
        _list_add(lru, node, free)


def bpf_percpu_lru_populate(lru: BpfLru, nr_elems: int) -> None:
    pcpu_entries = nr_elems // lru.nr_cpus
    if nr_elems and not pcpu_entries:
        # The kernel divides by zero here; hashtab rounds max_entries up to a
        # multiple of the CPU count so it cannot happen.
        raise ValueError("per-CPU LRU needs at least one node per CPU")
    ids = lru.next[:nr_elems]               # the nodes' own int objects
    # CPU c owns nodes c*P .. c*P+P-1 (any remainder is left unused, as in the kernel).
    i = 0
    for cpu in range(lru.nr_cpus):
        free = lru.percpu_lru[cpu].lists[BPF_LRU_LIST_T_FREE]
        while i < nr_elems:
            node = ids[i]
            lru.cpu[node] = cpu
            lru.type[node] = BPF_LRU_LIST_T_FREE
            lru.ref[node] = 0
            _list_add(lru, node, free)
            i += 1
            if i % pcpu_entries == 0:
                break
        if i == nr_elems:
            break


def bpf_lru_populate(lru: BpfLru, nr_elems: int | None = None) -> None:
    """Put the map's preallocated nodes 0..N-1 on the free list(s) (docs: #lru-maps)."""
    if nr_elems is None:
        nr_elems = lru.nr_nodes
    if nr_elems > lru.nr_nodes:
        raise ValueError("more nodes than the LRU was made with")
    if lru.percpu:
        bpf_percpu_lru_populate(lru, nr_elems)
    else:
        bpf_common_lru_populate(lru, nr_elems)


# --------------------------------------------------------------------------------------
# Introspection (tests, debugging of differential mismatches)
# --------------------------------------------------------------------------------------


def _dump_list(lru: BpfLru, l: BpfLruList) -> dict:
    lists = l.lists
    nir = l.next_inactive_rotation
    return {
        "active": list(_list_iter(lru, lists[BPF_LRU_LIST_T_ACTIVE])),
        "inactive": list(_list_iter(lru, lists[BPF_LRU_LIST_T_INACTIVE])),
        "free": list(_list_iter(lru, lists[BPF_LRU_LIST_T_FREE])),
        "counts": list(l.counts),
        "next_inactive_rotation": None if nir == lists[BPF_LRU_LIST_T_INACTIVE] else nir,
    }


def bpf_lru_dump(lru: BpfLru) -> dict:
    """Every list's nodes, head (newest) first.  O(n); for tests and debugging only.

    Common LRU: {"global": {...}, "local": [{"free": [...], "pending": [...],
    "next_steal": c}, ...]}.  Per-CPU LRU: {"percpu": [{...}, ...]}.
    ``next_inactive_rotation`` is the cursor node, or None for the sentinel.
    """
    if lru.percpu:
        return {"percpu": [_dump_list(lru, l) for l in lru.percpu_lru]}
    return {
        "global": _dump_list(lru, lru.common_lru),
        "local": [
            {
                "free": list(_list_iter(lru, loc.lists[LOCAL_FREE_LIST_IDX])),
                "pending": list(_list_iter(lru, loc.lists[LOCAL_PENDING_LIST_IDX])),
                "next_steal": loc.next_steal,
            }
            for loc in lru.local_list
        ],
    }
