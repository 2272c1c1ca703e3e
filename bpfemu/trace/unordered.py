"""Replaying walks of hash maps whose order cannot be reproduced.

A hash map created without ``BPF_F_ZERO_SEED`` hashes its keys with a seed the kernel draws at
random for each map (``htab_map_alloc``: ``get_random_u32()``), so the order in which
``BPF_MAP_GET_NEXT_KEY`` returns the keys differs from run to run, and a replay cannot know
which key a recorded step should return. Comparing those steps byte for byte would report
differences that are not there.

For such maps a replay compares what does not depend on the order, and checks what the
recording itself must satisfy against the map it has at that point:

- an error other than ENOENT (EBADF, EFAULT, EPERM, EINVAL, ...) is compared as usual;
- a key the recording returned is a key of the map at that point;
- a complete walk (from a NULL key, each step from the key returned last, with no change to
  any map in between) returned every key of the map once and ended with ENOENT.

Everything else of the step (which key came, whether the walk ended there) is not compared.
``BPF_MAP_LOOKUP_BATCH`` walks the buckets in the same order, so its batches are checked the
same way: each (key, value) pair the recording returned is the map's at that point, and a
complete batch walk (from a NULL in_batch, each call from the token the one before returned)
returned every key once; which keys came in which batch, the count, the token and ENOSPC
(which depends on how many keys share a bucket) are not compared. ``LOOKUP_AND_DELETE_BATCH``
is checked the same way against the map as it was before the call, and afterwards the
backend's map is made what the recording's was (the recorded batch deleted, the keys the
backend deleted instead put back with their values), so that the calls after it replay on
the same keys. The report says how many calls were relaxed this way, and why. The kernel's behaviour this relies on:
docs/walk-order-and-seed.md.
"""
import errno
import struct

from ..uapi.consts import BpfCmd as C
from ..uapi.consts import MapFlags
from .decode import HASH_TYPES

_ZERO_SEED = int(MapFlags.BPF_F_ZERO_SEED)
_ENOENT = -errno.ENOENT

# Commands after which no walk in progress can be checked for completeness any more (they may
# change some map's keys); lookups, walks and the object commands change none.
_KEEP_WALKS = frozenset({C.BPF_MAP_LOOKUP_ELEM, C.BPF_MAP_GET_NEXT_KEY, C.BPF_MAP_LOOKUP_BATCH,
                         C.BPF_OBJ_GET_INFO_BY_FD, C.BPF_MAP_GET_NEXT_ID,
                         C.BPF_MAP_GET_FD_BY_ID, C.BPF_OBJ_GET, C.BPF_OBJ_PIN,
                         C.BPF_MAP_FREEZE})

WHY = ("the kernel seeds the hash of a map created without BPF_F_ZERO_SEED at random, so the "
       "order in which a walk returns its keys cannot be reproduced")


def is_unordered(meta: dict | None) -> bool:
    """A recorded map (the record's "map") whose walk order depends on a random seed."""
    return (meta is not None and meta.get("type") in HASH_TYPES
            and not meta.get("map_flags", 0) & _ZERO_SEED)


class _Walk:
    __slots__ = ("keys", "seen", "last", "checkable")

    def __init__(self, keys: set):
        self.keys = keys            # the map's keys when the walk started
        self.seen: set = set()      # keys the recording returned in this walk
        self.last = None            # the key it returned last
        self.checkable = True       # from NULL, step by step, nothing changed in between


class UnorderedWalks:
    """The relaxed checks of GET_NEXT_KEY and LOOKUP_BATCH on maps whose order is random
    (see the module)."""

    def __init__(self, map_keys, map_items=None):
        self.map_keys = map_keys    # backend fd -> set of its keys now (bytes)
        self.map_items = map_items  # backend fd -> {key: value (the syscall's bytes)} now
        self.walks: dict[int, _Walk] = {}     # recorded fd -> its walk in progress
        self.batch_walks: dict[int, _Walk] = {}
        self.relaxed = 0            # steps checked this way
        self.walks_checked = 0      # complete walks checked for every key once
        self.batches_relaxed = 0
        self.batch_walks_checked = 0

    def other_call(self, cmd) -> None:
        """Any record but a relaxed walk step: a change to a map ends every walk's check."""
        if cmd not in _KEEP_WALKS:
            for w in list(self.walks.values()) + list(self.batch_walks.values()):
                w.checkable = False

    def walks_disturbed(self) -> None:
        """A LOOKUP_AND_DELETE_BATCH changed a map: GET_NEXT_KEY walks can no longer be
        checked for completeness (its own batch walk goes on)."""
        for w in self.walks.values():
            w.checkable = False

    def snapshot(self, backend_fd: int) -> dict:
        """The map's contents before a LOOKUP_AND_DELETE_BATCH call."""
        return self.map_items(backend_fd) if self.map_items is not None else {}

    def batch(self, rec: dict, fd: int, backend_fd: int, key_size: int, expected: int,
              ret: int, items: list, contents_before: dict | None = None,
              reconcile=None) -> list:
        """The differences of a LOOKUP_BATCH call (or, with the map's contents before it,
        ``contents_before``, and ``reconcile(deletes, updates)``, a LOOKUP_AND_DELETE_BATCH), relaxed like a
        walk step."""
        loose = (0, _ENOENT, -errno.ENOSPC)
        if expected not in loose or ret not in loose or self.map_items is None:
            return items
        self.batches_relaxed += 1
        out = [it for it in items if it[0] != "return value"
               and not it[0].startswith(("attr after", "out_batch", "keys", "values"))]
        before = bytes.fromhex(rec["attr"]["before"])
        after = bytes.fromhex(rec["attr"]["after"])
        in_batch = struct.unpack_from("<Q", before, 0)[0] if len(before) >= 8 else 0
        count = struct.unpack_from("<I", after, 32)[0] if len(after) >= 36 and expected in (
            0, _ENOENT) else 0
        contents = (contents_before if contents_before is not None
                    else self.map_items(backend_fd))
        keys = set(contents)
        w = self.batch_walks.get(fd)
        token_in = _field(rec, "read", "in_batch")
        if in_batch == 0:
            w = self.batch_walks[fd] = _Walk(keys)
        elif w is None or token_in != w.last:
            w = self.batch_walks[fd] = _Walk(keys)
            w.checkable = False
        if w.checkable and w.keys != keys:
            w.checkable = False
        rkeys = _field(rec, "written", "keys", "after") or b""
        rvalues = _field(rec, "written", "values", "after") or b""
        # The syscall's value size (per-CPU: a slot per CPU), as the backend's lookups give it.
        vsize = len(next(iter(contents.values()))) if contents else 0
        why = f"(order not compared: {WHY})"
        for i in range(count):
            k = rkeys[i * key_size:(i + 1) * key_size]
            v = rvalues[i * vsize:(i + 1) * vsize] if vsize else b""
            if k not in contents:
                out.append((f"keys[{i}] {why}", "a key of the map",
                            f"{k.hex(' ')}, which the map does not have"))
            elif v and contents[k][:len(v)] != v:
                out.append((f"values[{i}] {why}", contents[k][:len(v)].hex(' '), v.hex(' ')))
            elif k in w.seen and w.checkable:
                out.append((f"keys[{i}] {why}", "each key once in a batch walk",
                            f"{k.hex(' ')} a second time"))
            w.seen.add(k)
        if reconcile is not None:
            # The recording deleted the keys it returned; the backend deleted its own batch.
            deleted = {rkeys[i * key_size:(i + 1) * key_size] for i in range(count)}
            want = {k: v for k, v in contents.items() if k not in deleted}
            now = set(self.map_items(backend_fd))
            reconcile(now - set(want), {k: v for k, v in want.items() if k not in now})
            if w.checkable:
                w.keys = set(want)      # the walk goes on over what is left
                w.seen = set()
        if expected == 0:
            w.last = _field(rec, "written", "out_batch", "after")
        elif expected == _ENOENT:
            if w.checkable:
                self.batch_walks_checked += 1
                missing = w.keys - w.seen
                if missing:
                    out.append((f"end of the batch walk {why}",
                                f"every one of the map's {len(w.keys)} keys before ENOENT",
                                f"{len(missing)} never returned, e.g. {min(missing).hex(' ')}"))
            self.batch_walks.pop(fd, None)
        return out

    def step(self, rec: dict, fd: int, backend_fd: int, expected: int, ret: int,
             items: list) -> list:
        """The differences of a GET_NEXT_KEY step, relaxed: ``items`` as the exact
        comparison found them, returned without what depends on the order, plus what the
        relaxed checks find."""
        if expected not in (0, _ENOENT) or ret not in (0, _ENOENT):
            return items            # an error that does not depend on the order: exact
        self.relaxed += 1
        out = [it for it in items if it[0] != "return value" and not it[0].startswith("next_key")]
        key_in = _field(rec, "read", "key")
        key_ptr = struct.unpack_from("<Q", bytes.fromhex(rec["attr"]["before"]), 8)[0] \
            if len(rec["attr"]["before"]) >= 32 else 0
        keys = self.map_keys(backend_fd)
        w = self.walks.get(fd)
        if key_ptr == 0:
            w = self.walks[fd] = _Walk(keys)
        elif w is None or key_in != w.last:
            w = self.walks[fd] = _Walk(keys)
            w.checkable = False     # a step from elsewhere: not a walk from the start
        if w.checkable and w.keys != keys:
            w.checkable = False
        if expected == 0:
            got = _field(rec, "written", "next_key", "after")
            if got is not None and got not in keys:
                out.append(("next_key (order not compared: " + WHY + ")",
                            "a key of the map", f"{got.hex(' ')}, which the map does not have"))
            elif got in w.seen and w.checkable:
                out.append(("next_key (order not compared: " + WHY + ")",
                            "each key once in a walk", f"{got.hex(' ')} a second time"))
            w.seen.add(got)
            w.last = got
        else:
            if w.checkable:
                self.walks_checked += 1
                missing = w.keys - w.seen
                if missing:
                    out.append(("end of the walk (order not compared: " + WHY + ")",
                                f"every one of the map's {len(w.keys)} keys before ENOENT",
                                f"{len(missing)} never returned, e.g. "
                                f"{min(missing).hex(' ')}"))
            self.walks.pop(fd, None)
        return out

    def notes(self) -> list:
        out = []
        if self.relaxed:
            out.append(f"relaxed: {self.relaxed} GET_NEXT_KEY steps on hash maps without "
                       f"BPF_F_ZERO_SEED were not compared key for key, since {WHY}; checked "
                       f"instead: each key returned was in the map at that point, and each of "
                       f"{self.walks_checked} complete walks returned every key once and "
                       f"ended with ENOENT")
        if self.batches_relaxed:
            out.append(f"relaxed: {self.batches_relaxed} LOOKUP(_AND_DELETE)_BATCH calls on hash maps "
                       f"without BPF_F_ZERO_SEED were not compared byte for byte (keys, "
                       f"values, count, token, ENOSPC), since {WHY}; checked instead: each "
                       f"pair returned was the map's at that point, and each of "
                       f"{self.batch_walks_checked} complete batch walks returned every key "
                       f"once")
        return out


def _field(rec: dict, where: str, name: str, part: str = "bytes"):
    for b in rec.get(where, ()):
        if b["field"] == name:
            return bytes.fromhex(b[part])
    return None
