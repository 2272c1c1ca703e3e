"""The LRU lists behind LRU_HASH and LRU_PERCPU_HASH (kernel/bpf/bpf_lru_list.c).

Which key an LRU map evicts, and when, is observable through the syscall ABI, so
this module reproduces the kernel's list machinery step for step
(docs/linux-6.18.md#lru-maps): circular doubly linked lists with sentinels, the
active/inactive/free lists with their counters and the ``next_inactive_rotation``
cursor, and for the common LRU the per-CPU local free/pending lists and the
round-robin steal.  Function names follow the kernel so the two read side by side.

List orientation is the kernel's: ``head.next`` is the newest node ("head"),
``head.prev`` the oldest ("tail"); a node's ``prev`` is its head-side neighbour.

The CPU is always an explicit argument; nothing here reads the scheduler.  CPUs
are ``0 .. nr_cpus-1`` (the possible-CPU mask is assumed to be contiguous).

Undo journal (bpfemu/undo.py): before a node, a sentinel or a list's counters change,
its state is saved in ``lru.undo`` (``_save`` and the inlined appends of the hot paths),
so that a call stopped half-way puts every list back as it was.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional

from ..undo import NO_JOURNAL

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
    "ListHead",
    "BpfLruNode",
    "BpfLruList",
    "BpfLruLocallist",
    "BpfLru",
    "bpf_lru_target_free",
    "bpf_lru_populate",
    "bpf_lru_pop_free",
    "bpf_lru_push_free",
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


class ListHead:
    """A list sentinel (struct list_head used as a list head): an empty list points at itself."""

    __slots__ = ("next", "prev")

    def __init__(self) -> None:
        self.next = self
        self.prev = self


class BpfLruNode:
    """struct bpf_lru_node, embedded in every LRU hash element.

    The hash map's element class subclasses this and adds its own slots (key,
    value, ...).  ``hash`` lives here because the LRU writes it when it hands a
    node out, as the kernel does through ``hash_offset``; a subclass may redeclare
    it harmlessly.  No constructor arguments: ``bpf_lru_populate`` initialises the
    list state of every node, so a subclass need not call ``super().__init__()``.
    """

    __slots__ = ("next", "prev", "cpu", "type", "ref", "hash", "undo")

    def __init__(self) -> None:
        self.undo = NO_JOURNAL      # the map's undo journal, for bpf_lru_node_set_ref
        self.next = None
        self.prev = None
        self.cpu = 0
        self.type = BPF_LRU_LIST_T_FREE
        self.ref = 0
        self.hash = 0


class BpfLruList:
    """struct bpf_lru_list: active, inactive and free lists, two counters, the NIR cursor."""

    __slots__ = ("lists", "counts", "next_inactive_rotation")

    def __init__(self) -> None:
        self.lists = (ListHead(), ListHead(), ListHead())
        # Only ACTIVE and INACTIVE are counted (the rotation compares them).
        self.counts = [0, 0]
        # Where the next inactive rotation starts: an inactive node or the sentinel.
        self.next_inactive_rotation = self.lists[BPF_LRU_LIST_T_INACTIVE]


class BpfLruLocallist:
    """struct bpf_lru_locallist: one CPU's local free and pending lists (common LRU only)."""

    __slots__ = ("lists", "next_steal")

    def __init__(self, cpu: int) -> None:
        self.lists = (ListHead(), ListHead())
        self.next_steal = cpu


class BpfLru:
    """struct bpf_lru.

    ``percpu`` is True for BPF_F_NO_COMMON_LRU.  ``target_free`` is the common
    LRU's harvest batch (see ``bpf_lru_target_free``); it is ignored by the
    per-CPU LRU, which always uses PERCPU_FREE_TARGET.  ``del_from_htab(node)``
    is the eviction callback (htab_lru_map_delete_node): it unlinks the node's
    element from the hash table and returns True, or False if it was not there.
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
        "undo",
    )

    def __init__(
        self,
        percpu: bool,
        nr_cpus: int,
        target_free: int,
        del_from_htab: Callable[[BpfLruNode], bool],
    ) -> None:
        if nr_cpus < 1:
            raise ValueError("nr_cpus must be at least 1")
        self.percpu = bool(percpu)
        self.nr_cpus = nr_cpus
        self.target_free = target_free
        self.del_from_htab = del_from_htab
        self.undo = NO_JOURNAL          # the emulator's undo journal
        if self.percpu:
            self.nr_scans = PERCPU_NR_SCANS
            self.common_lru = None
            self.local_list = None
            self.percpu_lru = [BpfLruList() for _ in range(nr_cpus)]
        else:
            self.nr_scans = LOCAL_NR_SCANS
            self.common_lru = BpfLruList()
            self.local_list = [BpfLruLocallist(cpu) for cpu in range(nr_cpus)]
            self.percpu_lru = None


def bpf_lru_target_free(nr_elems: int, nr_cpus: int) -> int:
    """The common LRU's harvest batch since Linux 6.16 (bpf_common_lru_populate):
    clamp((nr_elems / nr_cpus) / 2, 1, LOCAL_FREE_TARGET)."""
    return min(max((nr_elems // nr_cpus) // 2, 1), LOCAL_FREE_TARGET)


# --------------------------------------------------------------------------------------
# list_head primitives
# --------------------------------------------------------------------------------------


def _restore_links(head, next, prev) -> None:
    head.next = next
    head.prev = prev


def _restore_node(node, next, prev, cpu, type, ref, hash) -> None:
    node.next = next
    node.prev = prev
    node.cpu = cpu
    node.type = type
    node.ref = ref
    node.hash = hash


def _restore_list(l, active: int, inactive: int, nir) -> None:
    l.counts[:] = (active, inactive)
    l.next_inactive_rotation = nir


def _save(undo, *objs) -> None:
    """Journal the state of sentinels, nodes and LRU lists about to change."""
    for o in objs:
        t = type(o)
        if t is ListHead:
            undo.append((_restore_links, o, o.next, o.prev))
        elif t is BpfLruList:
            undo.append((_restore_list, o, o.counts[0], o.counts[1], o.next_inactive_rotation))
        elif t is BpfLruLocallist:
            undo.append((setattr, o, "next_steal", o.next_steal))
        else:
            undo.append((_restore_node, o, o.next, o.prev, o.cpu, o.type, o.ref, o.hash))


def _list_del(node) -> None:
    p = node.prev
    n = node.next
    p.next = n
    n.prev = p


def _list_add(node, head) -> None:
    # Link right after the sentinel, i.e. at the head (newest end).
    n = head.next
    node.next = n
    node.prev = head
    n.prev = node
    head.next = node


def _list_move(node, head) -> None:
    p = node.prev
    n = node.next
    p.next = n
    n.prev = p
    n = head.next
    node.next = n
    node.prev = head
    n.prev = node
    head.next = node


def _list_iter(head) -> Iterator[BpfLruNode]:
    """Nodes from head (newest) to tail (oldest).  Not for use while the list changes."""
    node = head.next
    while node is not head:
        yield node
        node = node.next


# --------------------------------------------------------------------------------------
# Node helpers
# --------------------------------------------------------------------------------------


def get_next_cpu(lru: BpfLru, cpu: int) -> int:
    cpu += 1
    return 0 if cpu >= lru.nr_cpus else cpu


def bpf_lru_node_is_ref(node: BpfLruNode) -> bool:
    return node.ref != 0


def bpf_lru_node_set_ref(node: BpfLruNode) -> None:
    """Mark the node referenced (BPF-program lookups, updates of an existing key)."""
    if not node.ref:
        node.undo.append((setattr, node, "ref", node.ref))
        node.ref = 1


def __bpf_lru_node_move_to_free(l: BpfLruList, node: BpfLruNode, free_list, tgt_free_type: int) -> None:
    """Active/inactive node -> a free list (the global one or a CPU's local one).

    The ref bit is left alone; it is cleared when the node is handed out again.
    """
    t = node.type
    if t >= BPF_LOCAL_LIST_T_OFFSET:  # kernel: WARN_ON_ONCE, ignored
        return
    _save(node.undo, l, node, node.prev, node.next, free_list, free_list.next)
    # Keep the rotation cursor on the inactive list: step it to the head-side neighbour.
    if node is l.next_inactive_rotation:
        l.next_inactive_rotation = node.prev
    if t < NR_BPF_LRU_LIST_COUNT:
        l.counts[t] -= 1
    node.type = tgt_free_type
    # list_move, inlined (hot: every eviction and every harvested node)
    p = node.prev
    n = node.next
    p.next = n
    n.prev = p
    n = free_list.next
    node.next = n
    node.prev = free_list
    n.prev = node
    free_list.next = node


def __bpf_lru_node_move_in(l: BpfLruList, node: BpfLruNode, tgt_type: int) -> None:
    """Local pending node -> head of the global active or inactive list."""
    if node.type < BPF_LOCAL_LIST_T_OFFSET or tgt_type >= BPF_LOCAL_LIST_T_OFFSET:
        return  # kernel: WARN_ON_ONCE, ignored
    head = l.lists[tgt_type]
    _save(node.undo, l, node, node.prev, node.next, head, head.next)
    if tgt_type < NR_BPF_LRU_LIST_COUNT:
        l.counts[tgt_type] += 1
    node.type = tgt_type
    node.ref = 0
    _list_move(node, l.lists[tgt_type])


def __bpf_lru_node_move(l: BpfLruList, node: BpfLruNode, tgt_type: int) -> None:
    """Move within/between active, inactive and free of one LRU list, to the head of tgt_type."""
    t = node.type
    if t >= BPF_LOCAL_LIST_T_OFFSET or tgt_type >= BPF_LOCAL_LIST_T_OFFSET:
        return  # kernel: WARN_ON_ONCE, ignored
    head = l.lists[tgt_type]
    _save(node.undo, l, node, node.prev, node.next, head, head.next)
    if t != tgt_type:
        counts = l.counts
        if t < NR_BPF_LRU_LIST_COUNT:
            counts[t] -= 1
        if tgt_type < NR_BPF_LRU_LIST_COUNT:
            counts[tgt_type] += 1
        node.type = tgt_type
    node.ref = 0
    if node is l.next_inactive_rotation:
        l.next_inactive_rotation = node.prev
    # list_move, inlined (hot: rotation, push_free, per-CPU pop)
    p = node.prev
    n = node.next
    p.next = n
    n.prev = p
    n = head.next
    node.next = n
    node.prev = head
    n.prev = node
    head.next = node


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
    first_node = active.next
    node = active.prev
    i = 0
    while node is not active:
        tmp = node.prev
        if node.ref:
            __bpf_lru_node_move(l, node, BPF_LRU_LIST_T_ACTIVE)
        else:
            __bpf_lru_node_move(l, node, BPF_LRU_LIST_T_INACTIVE)
        i += 1
        if i == nr_scans or node is first_node:
            break
        node = tmp


def __bpf_lru_list_rotate_inactive(lru: BpfLru, l: BpfLruList) -> None:
    """A clock hand over the inactive list: from the cursor toward the head (wrapping
    from the sentinel to the tail), promote referenced nodes to the active head, and
    leave the cursor at the first node not visited."""
    inactive = l.lists[BPF_LRU_LIST_T_INACTIVE]
    if inactive.next is inactive:
        return

    _save(lru.undo, l)
    cur = l.next_inactive_rotation
    # The node reached after one full lap.
    last = cur.next
    if last is inactive:
        last = last.next

    nr_scans = lru.nr_scans
    nxt = inactive
    i = 0
    while i < nr_scans:
        if cur is inactive:
            # Stepping over the sentinel is free and wraps to the tail.
            cur = cur.prev
            continue
        nxt = cur.prev
        if cur.ref:
            __bpf_lru_node_move(l, cur, BPF_LRU_LIST_T_ACTIVE)
        if cur is last:
            break
        cur = nxt
        i += 1

    l.next_inactive_rotation = nxt


def __bpf_lru_list_shrink_inactive(
    lru: BpfLru, l: BpfLruList, tgt_nshrink: int, free_list, tgt_free_type: int
) -> int:
    """From the inactive tail: promote referenced nodes, evict the others into free_list,
    until tgt_nshrink were freed or nr_scans nodes were looked at.  Returns the number freed."""
    inactive = l.lists[BPF_LRU_LIST_T_INACTIVE]
    nr_scans = lru.nr_scans
    del_from_htab = lru.del_from_htab
    counts = l.counts
    nshrinked = 0
    i = 0
    node = inactive.prev
    while node is not inactive:
        tmp = node.prev
        if node.ref:
            __bpf_lru_node_move(l, node, BPF_LRU_LIST_T_ACTIVE)
        elif del_from_htab(node):
            # __bpf_lru_node_move_to_free inlined for an INACTIVE node (the hot
            # eviction step).  Not necessarily the tail: nodes the hash table
            # refused to give up stay behind it.
            _save(lru.undo, l, node, tmp, node.next, free_list, free_list.next)
            if node is l.next_inactive_rotation:
                l.next_inactive_rotation = tmp
            counts[BPF_LRU_LIST_T_INACTIVE] -= 1
            node.type = tgt_free_type
            n = node.next
            tmp.next = n
            n.prev = tmp
            n = free_list.next
            node.next = n
            node.prev = free_list
            n.prev = node
            free_list.next = node
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
    lru: BpfLru, l: BpfLruList, tgt_nshrink: int, free_list, tgt_free_type: int
) -> int:
    """Shrink the inactive list; if that frees nothing, force-evict the oldest node of
    the inactive list (or of the active list when inactive is empty), ignoring ref."""
    nshrinked = __bpf_lru_list_shrink_inactive(lru, l, tgt_nshrink, free_list, tgt_free_type)
    if nshrinked:
        return nshrinked

    inactive = l.lists[BPF_LRU_LIST_T_INACTIVE]
    if inactive.next is not inactive:
        force_shrink_list = inactive
    else:
        force_shrink_list = l.lists[BPF_LRU_LIST_T_ACTIVE]

    del_from_htab = lru.del_from_htab
    node = force_shrink_list.prev
    while node is not force_shrink_list:
        tmp = node.prev
        if del_from_htab(node):
            __bpf_lru_node_move_to_free(l, node, free_list, tgt_free_type)
            return 1
        node = tmp
    return 0


# --------------------------------------------------------------------------------------
# Common LRU: global list + per-CPU local lists
# --------------------------------------------------------------------------------------


def __local_list_flush(l: BpfLruList, loc_l: BpfLruLocallist) -> None:
    """Pending nodes -> global list, oldest first, so their order is kept (newest at head)."""
    # __bpf_lru_node_move_in inlined: every node here is PENDING, so its checks hold.
    pending = loc_l.lists[LOCAL_PENDING_LIST_IDX]
    lists = l.lists
    counts = l.counts
    node = pending.prev
    if node is not pending:
        _save(node.undo, l)
    while node is not pending:
        tmp = node.prev
        tgt_type = BPF_LRU_LIST_T_ACTIVE if node.ref else BPF_LRU_LIST_T_INACTIVE
        _save(node.undo, node, tmp, pending, lists[tgt_type], lists[tgt_type].next)
        counts[tgt_type] += 1
        node.type = tgt_type
        node.ref = 0
        # The node is the pending tail: unlinking it leaves tmp as the new tail.
        tmp.next = pending
        pending.prev = tmp
        head = lists[tgt_type]
        n = head.next
        node.next = n
        node.prev = head
        n.prev = node
        head.next = node
        node = tmp


def bpf_lru_list_push_free(l: BpfLruList, node: BpfLruNode) -> None:
    if node.type >= BPF_LOCAL_LIST_T_OFFSET:
        return  # kernel: WARN_ON_ONCE, ignored
    __bpf_lru_node_move(l, node, BPF_LRU_LIST_T_FREE)


def bpf_lru_list_pop_free_to_local(lru: BpfLru, loc_l: BpfLruLocallist) -> None:
    """Refill a CPU's local free list with up to target_free nodes: flush its pending
    list, rotate, take from the global free list, and evict the shortfall."""
    l = lru.common_lru
    target_free = lru.target_free
    local_free = loc_l.lists[LOCAL_FREE_LIST_IDX]

    __local_list_flush(l, loc_l)
    __bpf_lru_list_rotate(lru, l)

    # __bpf_lru_node_move_to_free inlined: FREE nodes are uncounted and never the
    # rotation cursor, so only the relink and the type change remain.
    free = l.lists[BPF_LRU_LIST_T_FREE]
    nfree = 0
    node = free.next
    undo = lru.undo
    while node is not free:
        tmp = node.next
        _save(undo, node, tmp, free, local_free, local_free.next)
        node.type = BPF_LRU_LOCAL_LIST_T_FREE
        free.next = tmp  # node is the free head
        tmp.prev = free
        n = local_free.next
        node.next = n
        node.prev = local_free
        n.prev = node
        local_free.next = node
        nfree += 1
        if nfree == target_free:
            break
        node = tmp

    if nfree < target_free:
        __bpf_lru_list_shrink(lru, l, target_free - nfree, local_free, BPF_LRU_LOCAL_LIST_T_FREE)

    # The live 6.18.44 kernel hands a refilled batch out in the order its nodes were moved
    # (first moved, first reused), which the reuse of per-CPU padding bytes shows; the list_move
    # above stacks them the other way. The refill only runs on an empty local free list, so
    # reversing the list gives the kernel's order (tests/differential/test_percpu_padding.py).
    _list_reverse(undo, local_free)


def _list_reverse(undo, head) -> None:
    node = head
    while True:
        _save(undo, node)
        node.next, node.prev = node.prev, node.next
        node = node.prev               # the old next
        if node is head:
            return


def __local_list_add_pending(
    lru: BpfLru, loc_l: BpfLruLocallist, cpu: int, node: BpfLruNode, hash: int
) -> None:
    head = loc_l.lists[LOCAL_PENDING_LIST_IDX]
    _save(lru.undo, node, head, head.next)
    node.hash = hash
    node.cpu = cpu
    node.type = BPF_LRU_LOCAL_LIST_T_PENDING
    node.ref = 0
    _list_add(node, head)


def __local_list_pop_free(lru: BpfLru, loc_l: BpfLruLocallist) -> Optional[BpfLruNode]:
    free = loc_l.lists[LOCAL_FREE_LIST_IDX]
    node = free.next
    if node is free:
        return None
    _save(lru.undo, node.prev, node.next)
    _list_del(node)
    return node


def __local_list_pop_pending(lru: BpfLru, loc_l: BpfLruLocallist) -> Optional[BpfLruNode]:
    """Steal the oldest pending node that is unreferenced and evictable; failing that,
    the oldest evictable one regardless of ref."""
    pending = loc_l.lists[LOCAL_PENDING_LIST_IDX]
    del_from_htab = lru.del_from_htab
    for force in (False, True):
        node = pending.prev
        while node is not pending:
            if (force or not node.ref) and del_from_htab(node):
                _save(lru.undo, node.prev, node.next)
                _list_del(node)
                return node
            node = node.prev
    return None


def bpf_common_lru_pop_free(lru: BpfLru, hash: int, cpu: int) -> Optional[BpfLruNode]:
    loc_l = lru.local_list[cpu]

    # Fast path, inlined __local_list_pop_free + __local_list_add_pending: a node
    # from this CPU's local free list goes to the head of its pending list.
    lists = loc_l.lists
    free = lists[LOCAL_FREE_LIST_IDX]
    node = free.next
    if node is free:
        bpf_lru_list_pop_free_to_local(lru, loc_l)
        node = free.next
    if node is not free:
        n = node.next  # node is the local free head
        pending = lists[LOCAL_PENDING_LIST_IDX]
        p = pending.next
        undo = lru.undo
        undo.append((_restore_links, free, node, free.prev))
        undo.append((_restore_links, n, n.next, node))
        undo.append((_restore_node, node, n, free, node.cpu, node.type, node.ref, node.hash))
        undo.append((_restore_links, pending, p, pending.prev))
        undo.append((_restore_links, p, p.next, pending))
        free.next = n
        n.prev = free
        node.hash = hash
        node.cpu = cpu
        node.type = BPF_LRU_LOCAL_LIST_T_PENDING
        node.ref = 0
        n = pending.next
        node.next = n
        node.prev = pending
        n.prev = node
        pending.next = node
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

    _save(lru.undo, loc_l)
    loc_l.next_steal = steal

    if node is not None:
        __local_list_add_pending(lru, loc_l, cpu, node, hash)
    return node


def bpf_common_lru_push_free(lru: BpfLru, node: BpfLruNode) -> None:
    t = node.type
    if t == BPF_LRU_LIST_T_FREE or t == BPF_LRU_LOCAL_LIST_T_FREE:
        return  # kernel: WARN_ON_ONCE (double free), ignored

    if t == BPF_LRU_LOCAL_LIST_T_PENDING:
        # Still pending: back to the owning CPU's local free list, not the global one.
        head = lru.local_list[node.cpu].lists[LOCAL_FREE_LIST_IDX]
        _save(lru.undo, node, node.prev, node.next, head, head.next)
        node.type = BPF_LRU_LOCAL_LIST_T_FREE
        node.ref = 0
        _list_move(node, head)
        return

    bpf_lru_list_push_free(lru.common_lru, node)


# --------------------------------------------------------------------------------------
# Per-CPU LRU (BPF_F_NO_COMMON_LRU): one independent list per CPU
# --------------------------------------------------------------------------------------


def bpf_percpu_lru_pop_free(lru: BpfLru, hash: int, cpu: int) -> Optional[BpfLruNode]:
    l = lru.percpu_lru[cpu]
    lists = l.lists
    counts = l.counts

    # Rotation runs on every allocation, not only when the free list is empty.
    # (__bpf_lru_list_rotate, inlined: this is the per-CPU hot path.)
    if counts[BPF_LRU_LIST_T_INACTIVE] < counts[BPF_LRU_LIST_T_ACTIVE]:
        __bpf_lru_list_rotate_active(lru, l)
    __bpf_lru_list_rotate_inactive(lru, l)

    free_list = lists[BPF_LRU_LIST_T_FREE]
    if free_list.next is free_list:
        __bpf_lru_list_shrink(lru, l, PERCPU_FREE_TARGET, free_list, BPF_LRU_LIST_T_FREE)

    node = free_list.next
    if node is free_list:
        return None
    head = lists[BPF_LRU_LIST_T_INACTIVE]
    _save(lru.undo, l, node, node.next, free_list, head, head.next)
    node.hash = hash
    # Straight onto the inactive list head: evictable at once, no pending stage.
    # (__bpf_lru_node_move from FREE, inlined: FREE is uncounted and never the
    # rotation cursor; the move clears ref.)
    node.ref = 0
    node.type = BPF_LRU_LIST_T_INACTIVE
    counts[BPF_LRU_LIST_T_INACTIVE] += 1
    n = node.next  # node is the free head
    free_list.next = n
    n.prev = free_list
    n = head.next
    node.next = n
    node.prev = head
    n.prev = node
    head.next = node
    return node


def bpf_percpu_lru_push_free(lru: BpfLru, node: BpfLruNode) -> None:
    # Always back to the owner's list, whichever CPU frees it.
    __bpf_lru_node_move(lru.percpu_lru[node.cpu], node, BPF_LRU_LIST_T_FREE)


# --------------------------------------------------------------------------------------
# Entry points used by the hash map
# --------------------------------------------------------------------------------------


def bpf_lru_pop_free(lru: BpfLru, hash: int, cpu: int) -> Optional[BpfLruNode]:
    """A node for a new element, on behalf of ``cpu`` (docs: #lru-maps).  May evict (del_from_htab).

    Common LRU: the node ends at the head of cpu's pending list with ``cpu`` set.
    Per-CPU LRU: it ends at the head of cpu's inactive list.  Either way ref is
    clear and ``hash`` is stored.  None only if no node can be found anywhere.
    """
    if lru.percpu:
        return bpf_percpu_lru_pop_free(lru, hash, cpu)
    return bpf_common_lru_pop_free(lru, hash, cpu)


def bpf_lru_push_free(lru: BpfLru, node: BpfLruNode) -> None:
    """Give a node back (delete, failed update, replaced element) (docs: #lru-maps)."""
    if lru.percpu:
        bpf_percpu_lru_push_free(lru, node)
    else:
        bpf_common_lru_push_free(lru, node)


def bpf_common_lru_populate(lru: BpfLru, nodes: list) -> None:
    free = lru.common_lru.lists[BPF_LRU_LIST_T_FREE]
    for node in nodes:
        _journal_of(lru, node)
        node.type = BPF_LRU_LIST_T_FREE
        node.ref = 0
        node.cpu = 0
        _list_add(node, free)


def bpf_percpu_lru_populate(lru: BpfLru, nodes: list) -> None:
    nr_elems = len(nodes)
    pcpu_entries = nr_elems // lru.nr_cpus
    if nr_elems and not pcpu_entries:
        # The kernel divides by zero here; hashtab rounds max_entries up to a
        # multiple of the CPU count so it cannot happen.
        raise ValueError("per-CPU LRU needs at least one node per CPU")
    # CPU c owns nodes c*P .. c*P+P-1 (any remainder is left unused, as in the kernel).
    i = 0
    for cpu in range(lru.nr_cpus):
        free = lru.percpu_lru[cpu].lists[BPF_LRU_LIST_T_FREE]
        while i < nr_elems:
            node = nodes[i]
            _journal_of(lru, node)
            node.cpu = cpu
            node.type = BPF_LRU_LIST_T_FREE
            node.ref = 0
            _list_add(node, free)
            i += 1
            if i % pcpu_entries == 0:
                break
        if i == nr_elems:
            break


def _journal_of(lru: BpfLru, node: BpfLruNode) -> None:
    """A node's undo journal is its LRU's (a subclass need not call __init__: its hash,
    which the journal saves, starts at 0 if it has none yet)."""
    node.undo = lru.undo
    if not hasattr(node, "hash"):
        node.hash = 0


def bpf_lru_populate(lru: BpfLru, nodes: list) -> None:
    """Put the map's preallocated nodes 0..N-1 on the free list(s) (docs: #lru-maps)."""
    if lru.percpu:
        bpf_percpu_lru_populate(lru, nodes)
    else:
        bpf_common_lru_populate(lru, nodes)


# --------------------------------------------------------------------------------------
# Introspection (tests, debugging of differential mismatches)
# --------------------------------------------------------------------------------------


def _dump_list(l: BpfLruList) -> dict:
    lists = l.lists
    nir = l.next_inactive_rotation
    return {
        "active": list(_list_iter(lists[BPF_LRU_LIST_T_ACTIVE])),
        "inactive": list(_list_iter(lists[BPF_LRU_LIST_T_INACTIVE])),
        "free": list(_list_iter(lists[BPF_LRU_LIST_T_FREE])),
        "counts": list(l.counts),
        "next_inactive_rotation": None if nir is lists[BPF_LRU_LIST_T_INACTIVE] else nir,
    }


def bpf_lru_dump(lru: BpfLru) -> dict:
    """Every list's nodes, head (newest) first.  O(n); for tests and debugging only.

    Common LRU: {"global": {...}, "local": [{"free": [...], "pending": [...],
    "next_steal": c}, ...]}.  Per-CPU LRU: {"percpu": [{...}, ...]}.
    ``next_inactive_rotation`` is the cursor node, or None for the sentinel.
    """
    if lru.percpu:
        return {"percpu": [_dump_list(l) for l in lru.percpu_lru]}
    return {
        "global": _dump_list(lru.common_lru),
        "local": [
            {
                "free": list(_list_iter(loc.lists[LOCAL_FREE_LIST_IDX])),
                "pending": list(_list_iter(loc.lists[LOCAL_PENDING_LIST_IDX])),
                "next_steal": loc.next_steal,
            }
            for loc in lru.local_list
        ],
    }
