"""Element calls that reuse one attr buffer (bpfemu/fastpath.py), emulator against the kernel.

A caller that passes the same attr bytes again gets a decoded call on the emulator: the
checks before the key copy are skipped. Everything here reuses its attr buffers, with the
emulator's key and value buffers pinned or not, and checks on each emulator call that the
decoded path really ran, so that a divergence of the fast path from the checked one shows
up as a difference from the kernel: changed attr bytes, sizes and commands, a closed fd and
its number reused, a frozen map, unpinned buffers, faulting pointers, threads.
"""
import ctypes
import mmap
import os
import random
import struct
import sys
import threading

import pytest

from bpfemu import Emulator
from bpfemu.maps.htab_columns import ColumnarStore
from bpfemu.maps.htab_store import MISS
from bpfemu.uapi import consts as c

from tests.differential.abi_support import sys_value_size
from tests.support import race, readonly_address, unmapped_address

HASH, PERCPU_HASH, ARRAY = c.BPF_MAP_TYPE_HASH, c.BPF_MAP_TYPE_PERCPU_HASH, c.BPF_MAP_TYPE_ARRAY
PERCPU_ARRAY = c.BPF_MAP_TYPE_PERCPU_ARRAY
LOOKUP, UPDATE, DELETE = c.BPF_MAP_LOOKUP_ELEM, c.BPF_MAP_UPDATE_ELEM, c.BPF_MAP_DELETE_ELEM
NEXT_KEY, FREEZE = c.BPF_MAP_GET_NEXT_KEY, c.BPF_MAP_FREEZE
EPERM, ENOENT, EBADF, EFAULT, EEXIST, EINVAL, E2BIG = 1, 2, 9, 14, 17, 22, 7

CONFIGS = [("hash", HASH, c.BPF_F_ZERO_SEED), ("hash_noprealloc", HASH,
           c.BPF_F_ZERO_SEED | c.BPF_F_NO_PREALLOC), ("percpu_hash", PERCPU_HASH,
           c.BPF_F_ZERO_SEED), ("array", ARRAY, 0), ("percpu_array", PERCPU_ARRAY, 0)]


def create(b, map_type, key_size, value_size, max_entries, flags=0) -> int:
    attr = ctypes.create_string_buffer(168)
    struct.pack_into("<IIIII", attr, 0, map_type, key_size, value_size, max_entries, flags)
    fd = b.bpf(c.BPF_MAP_CREATE, attr, 168)
    assert fd >= 0, fd
    return fd


def count_handlers(emu) -> list:
    """A counter, zeroed, of the command handlers emu runs: a decoded call runs none."""
    counter = getattr(emu, "_handler_counter", None)
    if counter is None:
        counter = emu._handler_counter = [0]

        def counted(handler):
            def run(*args):
                counter[0] += 1
                return handler(*args)
            return run
        emu.dispatch = {cmd: row._replace(handler=counted(row.handler))
                        for cmd, row in emu.dispatch.items()}
    counter[0] = 0
    return counter


class Caller:
    """One backend's reused buffers: an element attr, a DELETE attr, GET_NEXT_KEY attrs,
    and the key, value and next-key buffers they point at (with guard bytes after each)."""

    GUARD = 16

    def __init__(self, b, fd, key_size, value_size_sys, pin):
        self.b, self.fd, self.ks, self.vs = b, fd, key_size, value_size_sys
        self.made = {}                          # (cmd, size, attr) -> its bytes last time
        # Whether decoded calls are on (Emulator(decoded_calls=False) and pytest
        # --no-decoded-calls turn them off: then every call is checked, and the assertions
        # that a call was decoded are moot).
        self.caching = isinstance(b, Emulator) and b.decoded_calls is not None
        self.n_decoded = 0
        self.key = ctypes.create_string_buffer(key_size + self.GUARD)
        self.value = ctypes.create_string_buffer(value_size_sys + self.GUARD)
        self.next = ctypes.create_string_buffer(key_size + self.GUARD)
        for buf in (self.key, self.value, self.next):
            ctypes.memset(buf, 0xA5, len(buf))
        self.elem = ctypes.create_string_buffer(168)
        self.set_elem(flags=0)
        self.delete_attr = ctypes.create_string_buffer(168)
        struct.pack_into("<IIQ", self.delete_attr, 0, fd, 0, ctypes.addressof(self.key))
        self.next_attr = ctypes.create_string_buffer(168)
        struct.pack_into("<IIQQ", self.next_attr, 0, fd, 0, ctypes.addressof(self.key),
                         ctypes.addressof(self.next))
        self.first_attr = ctypes.create_string_buffer(168)
        struct.pack_into("<IIQQ", self.first_attr, 0, fd, 0, 0, ctypes.addressof(self.next))
        self.pinned = pin and isinstance(b, Emulator)
        if self.pinned:
            b.mem.pin(self.key, self.value, self.next)

    def set_elem(self, flags=0, key=None, value=None, fd=None):
        struct.pack_into("<IIQQQ", self.elem, 0, self.fd if fd is None else fd, 0,
                         ctypes.addressof(self.key) if key is None else key,
                         ctypes.addressof(self.value) if value is None else value, flags)

    def call(self, cmd, attr, size):
        if not isinstance(self.b, Emulator):
            return self.b.bpf(cmd, attr, size)
        # The call made last with this attr and command again, and that one passed the checks
        # (they fail with EINVAL, EBADF or EPERM): this one can be decoded.
        made = (cmd, size, id(attr))
        raw = attr.raw
        self.repeat = self.made.get(made) == raw
        checked = count_handlers(self.b)
        ret = self.b.bpf(cmd, attr, size)
        self.decoded = checked[0] == 0          # decoded: the command's handler did not run
        self.n_decoded += self.decoded
        self.made[made] = raw if ret not in (-EINVAL, -EBADF, -EPERM) else None
        return ret

    def lookup(self, key):
        ctypes.memmove(self.key, key, self.ks)
        return self.call(LOOKUP, self.elem, 32), self.value.raw

    def update(self, key, value):
        ctypes.memmove(self.key, key, self.ks)
        ctypes.memmove(self.value, value, self.vs)
        return self.call(UPDATE, self.elem, 32)

    def delete(self, key):
        ctypes.memmove(self.key, key, self.ks)
        return self.call(DELETE, self.delete_attr, 16)

    def lookup_and_delete(self, key):
        ctypes.memmove(self.key, key, self.ks)
        return self.call(c.BPF_MAP_LOOKUP_AND_DELETE_ELEM, self.elem, 32), self.value.raw

    def next_key(self, key):
        if key is None:
            return self.call(NEXT_KEY, self.first_attr, 24), self.next.raw
        ctypes.memmove(self.key, key, self.ks)
        return self.call(NEXT_KEY, self.next_attr, 24), self.next.raw


class Pair:
    """The same map and the same reused buffers on the emulator and the kernel."""

    def __init__(self, both, map_type, flags, key_size, value_size, max_entries, pin):
        self.backends = [cl.b for cl in both]
        self.vs = sys_value_size(map_type, value_size)
        self.fds = [create(b, map_type, key_size, value_size, max_entries, flags)
                    for b in self.backends]
        self.callers = [Caller(b, fd, key_size, self.vs, pin)
                        for b, fd in zip(self.backends, self.fds)]
        self.emu, self.host = self.callers

    def do(self, op, *args, decoded=True):
        """op on both; the results must be equal; the emulator's call must have been (or,
        decoded=False, need not have been) a decoded one. Returns the kernel's result."""
        res = [getattr(cl, op)(*args) for cl in self.callers]
        assert res[0] == res[1], (op, args, res)
        if decoded and self.emu.repeat and self.emu.caching:
            assert self.emu.decoded, (op, args, "the emulator did not decode this call")
        return res[1]

    def close(self):
        for b, fd in zip(self.backends, self.fds):
            b.close(fd)


@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "unpinned"])
@pytest.mark.parametrize("config", CONFIGS, ids=[cfg[0] for cfg in CONFIGS])
def test_reused_buffers_random_ops(both, config, pin):
    """Random lookups, updates (ANY, NOEXIST, EXIST), deletes and walks through one set of
    buffers: every return value and every byte written (guards included) as the kernel's."""
    _, map_type, flags = config
    is_array = map_type in (ARRAY, PERCPU_ARRAY)
    ks = 4
    p = Pair(both, map_type, flags, ks, 12, 16, pin)
    rng = random.Random(hash(config[0]) & 0xFFFF)
    keys = [struct.pack("<I", k) for k in range(20)]       # more keys than entries: E2BIG
    flag_choices = [0, c.BPF_NOEXIST, c.BPF_EXIST]
    for step in range(600):
        op = rng.choice(["lookup", "update", "update", "delete", "next", "walk"])
        key = rng.choice(keys)
        if op == "lookup":
            p.do("lookup", key)
        elif op == "update":
            uflags = rng.choice(flag_choices)
            if uflags != struct.unpack_from("<Q", p.emu.elem, 24)[0]:
                for cl in p.callers:
                    cl.set_elem(flags=uflags)
                p.do("update", key, rng.randbytes(p.vs), decoded=False)   # new attr bytes
            p.do("update", key, rng.randbytes(p.vs))
        elif op == "delete":
            p.do("delete", key, decoded=not is_array)   # ARRAY: EINVAL before the decode
        elif op == "next":
            p.do("next_key", key)
        else:
            ret, nxt = p.do("next_key", None)
            walked = 0
            while ret == 0 and walked < 40:
                ret, nxt = p.do("next_key", nxt[:ks])
                walked += 1
            assert ret == -ENOENT
    # Most calls repeat the one made before them on their attr: they must have been decoded.
    assert p.emu.n_decoded > 1000 or not p.emu.caching, p.emu.n_decoded
    p.close()


@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "unpinned"])
@pytest.mark.parametrize("config", CONFIGS[:3] + [("lru_hash", c.BPF_MAP_TYPE_LRU_HASH,
                                                   c.BPF_F_ZERO_SEED)],
                         ids=[cfg[0] for cfg in CONFIGS[:3]] + ["lru_hash"])
def test_lookup_and_delete_through_reused_buffers(both, config, pin):
    """LOOKUP_AND_DELETE_ELEM again and again on one attr, keys there and gone: decoded
    after the first call, with the kernel's results and bytes (guards included)."""
    _, map_type, flags = config
    p = Pair(both, map_type, flags, 4, 12, 16, pin)
    keys = [struct.pack("<I", k) for k in range(12)]
    for round_ in range(3):
        for i, key in enumerate(keys):
            p.do("update", key, bytes([round_ * 16 + i]) * p.vs)
        for key in keys + keys[:4]:                 # the last four are gone: ENOENT
            p.do("lookup_and_delete", key)
    assert p.emu.n_decoded >= 3 * 16 - 1 or not p.emu.caching, p.emu.n_decoded
    p.close()


@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "unpinned"])
@pytest.mark.parametrize("map_type", [ARRAY, PERCPU_ARRAY], ids=["array", "percpu_array"])
def test_lookup_and_delete_on_arrays_through_reused_buffers(both, map_type, pin):
    """LOOKUP_AND_DELETE_ELEM on an array (no such op: ENOTSUPP, 524) again and again on one
    attr: decoded after the first call, the key still copied first (an unmapped key is
    EFAULT, not 524, on every repeat), nothing written, as on the kernel."""
    p = Pair(both, map_type, 0, 4, 12, 16, pin)
    for i in range(3):
        for k in (0, 9, 15, 16, 1 << 31):
            first = i == 0 and k == 0               # decoded from the second call on
            ret, _ = p.do("lookup_and_delete", struct.pack("<I", k), decoded=not first)
            assert ret == -524
    if not pin:
        bad = unmapped_address()
        for cl in p.callers:
            cl.set_elem(key=bad)
        for _ in range(3):
            res = [cl.call(c.BPF_MAP_LOOKUP_AND_DELETE_ELEM, cl.elem, 32) for cl in p.callers]
            assert res == [-EFAULT, -EFAULT]
    assert p.emu.n_decoded >= 14 or not p.emu.caching, p.emu.n_decoded
    p.close()


@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "unpinned"])
@pytest.mark.parametrize("config", CONFIGS[:3], ids=[cfg[0] for cfg in CONFIGS[:3]])
def test_walk_deleting_the_keys_ahead(both, config, pin):
    """A walk whose caller deletes, between its steps, the keys the walk would give next:
    the element after the cursor, one a few steps on, and heads of the next buckets. Every
    step must skip exactly what the kernel's skips, from decoded steps and deletes alike."""
    _, map_type, flags = config
    p = Pair(both, map_type, flags, 4, 8, 256, pin)
    rng = random.Random(11)
    keys = [struct.pack("<I", rng.getrandbits(32)) for _ in range(200)]
    for k in keys:
        p.do("update", k, rng.randbytes(p.vs), decoded=False)
    ret, nxt = p.do("next_key", None, decoded=False)
    order = []
    while ret == 0:
        order.append(nxt[:4])
        ret, nxt = p.do("next_key", nxt[:4], decoded=False)
    assert sorted(order) == sorted(keys)
    gone = set()
    ret, nxt = p.do("next_key", None, decoded=False)
    seen = 0
    while ret == 0:
        cur = nxt[:4]
        assert cur not in gone
        seen += 1
        i = order.index(cur)
        for ahead in rng.sample([1, 1, 2, 3, 7], rng.randrange(3)):
            if i + ahead < len(order) and order[i + ahead] not in gone:
                gone.add(order[i + ahead])
                p.do("delete", order[i + ahead], decoded=False)
        ret, nxt = p.do("next_key", cur, decoded=False)
    assert ret == -ENOENT and seen + len(gone) == len(order)
    # Most steps and deletes repeated the call before them on their attr: decoded.
    assert p.emu.n_decoded > 150 or not p.emu.caching, p.emu.n_decoded
    p.close()


@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "unpinned"])
@pytest.mark.parametrize("config", CONFIGS[:3], ids=[cfg[0] for cfg in CONFIGS[:3]])
def test_map_emptied_by_deletes_then_refilled(both, config, pin):
    """Every element walked, then deleted (the emulator resets its lists whole), then new
    keys: inserted, replaced while not yet listed, deleted, walked. Walks and lookups as
    the kernel's."""
    _, map_type, flags = config
    p = Pair(both, map_type, flags, 4, 8, 64, pin)
    rng = random.Random(12)
    for rnd in range(3):
        keys = [struct.pack("<I", rng.getrandbits(32)) for _ in range(64)]
        for k in keys:
            p.do("update", k, rng.randbytes(p.vs), decoded=False)
        assert len(walk(p)) == 64
        for k in keys:
            p.do("delete", k, decoded=False)
        assert walk(p) == []
        new = keys[:10]
        for k in new + new[2:5] + new[:1]:              # inserts, then replaces
            p.do("update", k, rng.randbytes(p.vs), decoded=False)
        p.do("delete", new[3], decoded=False)
        assert len(walk(p)) == 9
        for k in new:
            p.do("lookup", k, decoded=False)
        for k in new:
            p.do("delete", k, decoded=False)
    p.close()


LONG_WALK_CONFIGS = CONFIGS[:3] + [("lru_hash", c.BPF_MAP_TYPE_LRU_HASH, c.BPF_F_ZERO_SEED)]


@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "unpinned"])
@pytest.mark.parametrize("config", LONG_WALK_CONFIGS, ids=[cfg[0] for cfg in LONG_WALK_CONFIGS])
def test_long_walks_with_changes_midway(both, config, pin):
    """Walks long enough for the emulator to take the whole walk order at once (after a
    fill, and after as many steps as an eighth of the map's elements), with the map changed
    between steps: new keys, replaced keys (a HASH element moves to its bucket's head), keys
    ahead of the walk deleted or looked up and deleted, the key the walk is on deleted, a
    walk restarted from a key it did not just return, two walks taking turns, and a round
    of inserts into a full map (E2BIG, or LRU evictions). The keys ahead are found on the
    kernel alone, so that the emulator's walk does not move. Every step as the kernel's."""
    _, map_type, flags = config
    # The LRU's evictions depend on the CPU each call runs on: the thread stays on CPU 0,
    # the emulator's CPU (a thread moved between calls evicted other keys in one run).
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    try:
        _long_walks_with_changes_midway(both, map_type, flags, pin)
    finally:
        os.sched_setaffinity(0, saved)


def _long_walks_with_changes_midway(both, map_type, flags, pin):
    p = Pair(both, map_type, flags, 4, 8, 512, pin)
    m = p.emu.b.map_of(p.emu.fd)
    rng = random.Random(13)
    universe = [struct.pack("<I", rng.getrandbits(32)) for _ in range(900)]
    present = set(universe[:420])               # LRU evictions make it a guess
    for k in universe[:420]:
        p.do("update", k, rng.randbytes(p.vs), decoded=False)
    # Steps the store answered from its walk order (walk_hint, htab_store.py): the
    # columnar store's cache must serve most of them, the simple store keeps none.
    ordered = 0
    hint = m.store.walk_hint

    def counting_hint(key):
        nonlocal ordered
        found = hint(key)
        ordered += found is not MISS
        return found
    m.store.walk_hint = counting_hint

    def step(key):
        ret, nxt = p.do("next_key", key, decoded=False)
        return ret, nxt[:4]

    def ahead(key, n):
        """The key n steps after key, on the kernel alone (None past the end)."""
        for _ in range(n):
            ret, nxt = p.host.next_key(key)
            if ret:
                return None
            key = nxt[:4]
        return key

    every_kind = ["insert", "replace", "delete_ahead", "take_ahead", "delete_current", "restart"]
    # (a change every ~n steps, the kinds of change, two walks taking turns)
    rounds = [(0, [], False), (40, every_kind, False), (9, every_kind, False),
              (150, every_kind, False), (25, every_kind, False), (0, [], True),
              (20, ["insert"], False), (20, ["replace"], False), (2, ["insert"], False)]
    for change_every, kinds, two_walks in rounds:
        ret, cur = step(None)
        walked = 0
        restarts = 3                            # they send the walk back to its start
        while ret == 0:
            walked += 1
            if change_every and rng.randrange(change_every) == 0:
                what = rng.choice([k for k in kinds if restarts > 0
                                   or k not in ("delete_current", "restart")])
                restarts -= what in ("delete_current", "restart")
                key = ahead(cur, rng.choice([1, 1, 2, 5, 30]))
                if what == "insert":
                    key = rng.choice([k for k in universe if k not in present])
                    p.do("update", key, rng.randbytes(p.vs), decoded=False)
                    present.add(key)
                elif what == "delete_current":
                    p.do("delete", cur, decoded=False)
                    present.discard(cur)
                elif what == "restart":
                    cur = rng.choice(universe)
                elif key is None:
                    pass
                elif what == "replace":
                    p.do("update", key, rng.randbytes(p.vs), decoded=False)
                elif what == "delete_ahead":
                    p.do("delete", key, decoded=False)
                    present.discard(key)
                else:
                    p.do("lookup_and_delete", key, decoded=False)
                    present.discard(key)
            if two_walks and walked % 2:
                # A second walk, one step behind, takes turns with this one.
                ret2, _ = step(cur)
            ret, cur = step(cur)
            assert walked < 5000
        assert ret == -ENOENT
    # The last round filled the map: a HASH map refused the rest, an LRU map evicted.
    held = sum(p.host.lookup(k)[0] == 0 for k in universe)
    assert len(present) > 512 + 20
    assert held == 512 if map_type != c.BPF_MAP_TYPE_LRU_HASH else held < len(present) - 20
    if isinstance(m.store, ColumnarStore):
        assert ordered > 1000, ordered
    else:
        assert ordered == 0
    p.close()


def walk(p) -> list:
    """The keys of a whole walk through p's reused buffers, compared step by step."""
    out = []
    ret, nxt = p.do("next_key", None, decoded=False)
    while ret == 0:
        out.append(nxt[:4])
        ret, nxt = p.do("next_key", nxt[:4], decoded=False)
    assert ret == -ENOENT
    return out


@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "unpinned"])
def test_closed_fd_and_its_number_reused(both, pin):
    """A decoded call outlives nothing: after close() the same attr is EBADF, and a new map
    given the same fd number (with another value size) is the one the attr now reaches."""
    p = Pair(both, HASH, 0, 4, 8, 4, pin)
    key = b"\1\0\0\0"
    assert p.do("update", key, b"A" * 8) == 0
    assert p.do("lookup", key)[0] == 0
    p.close()
    assert p.do("lookup", key, decoded=False)[0] == -EBADF
    assert p.do("update", key, b"B" * 8, decoded=False) == -EBADF
    # The lowest free number comes back, on both; the buffers still hold the old attr bytes.
    fds = [create(b, HASH, 4, 16, 4) for b in p.backends]
    assert fds == p.fds
    for cl in p.callers:
        cl.vs = 16                                 # the value buffers have room for it
    assert p.do("lookup", key, decoded=False)[0] == -ENOENT
    assert p.do("update", key, b"C" * 16) == 0
    ret, value = p.do("lookup", key)
    assert ret == 0 and value[:16] == b"C" * 16
    p.close()


def test_frozen_map_refuses_decoded_writes(both):
    p = Pair(both, HASH, 0, 4, 8, 4, True)
    key = b"\2\0\0\0"
    assert p.do("update", key, b"A" * 8) == 0
    assert p.do("delete", key) == 0
    assert p.do("update", key, b"A" * 8) == 0
    attrs = [ctypes.create_string_buffer(struct.pack("<I", fd), 168) for fd in p.fds]
    assert [b.bpf(FREEZE, a, 4) for b, a in zip(p.backends, attrs)] == [0, 0]
    assert p.do("update", key, b"B" * 8, decoded=False) == -EPERM
    assert p.do("delete", key, decoded=False) == -EPERM
    assert p.do("lookup", key) == (0, p.host.value.raw)
    assert p.host.value.raw[:8] == b"A" * 8
    p.close()


def test_changed_flags_size_and_command(both):
    """Only identical command, size and attr bytes reuse a decode."""
    p = Pair(both, HASH, 0, 4, 8, 4, True)
    key = b"\3\0\0\0"
    assert p.do("update", key, b"A" * 8) == 0
    assert p.do("lookup", key)[0] == 0
    for cl in p.callers:
        cl.set_elem(flags=4)                       # not a lookup flag
    assert p.do("lookup", key, decoded=False)[0] == -EINVAL
    # Size 24 leaves the flags out of the copied attr: the lookup is valid again.
    res = [cl.call(LOOKUP, cl.elem, 24) for cl in p.callers]
    assert res == [0, 0] and not p.emu.decoded           # a new size: checked
    res = [cl.call(LOOKUP, cl.elem, 24) for cl in p.callers]
    assert res == [0, 0] and (p.emu.decoded or not p.emu.caching)   # the same again: decoded
    res = [cl.call(LOOKUP, cl.elem, 32) for cl in p.callers]
    assert res == [-EINVAL, -EINVAL]
    # The same bytes under another command: DELETE's attr ends at its key (value is not 0).
    for cl in p.callers:
        cl.set_elem(flags=0)
    assert p.do("lookup", key)[0] == 0
    res = [cl.call(DELETE, cl.elem, 32) for cl in p.callers]
    assert res[0] == res[1]
    res = [cl.call(UPDATE, cl.elem, 32) for cl in p.callers]
    assert res == [0, 0]
    p.close()


def test_faulting_pointers_fault_every_time(both):
    """An unmapped key and a read-only value buffer: EFAULT on every repeat, and a decoded
    lookup that cannot write the value leaves the map as it was."""
    p = Pair(both, HASH, 0, 4, 8, 4, False)
    key = b"\4\0\0\0"
    assert p.do("update", key, b"A" * 8) == 0
    bad, ro = unmapped_address(), readonly_address()
    for cl in p.callers:
        cl.set_elem(key=bad)
    for _ in range(3):
        res = [cl.call(LOOKUP, cl.elem, 32) for cl in p.callers]
        assert res == [-EFAULT, -EFAULT]
        res = [cl.call(UPDATE, cl.elem, 32) for cl in p.callers]
        assert res == [-EFAULT, -EFAULT]
    for cl in p.callers:
        cl.set_elem(value=ro)
    for _ in range(3):
        assert p.do("lookup", key)[0] == -EFAULT
    for cl in p.callers:
        cl.set_elem()
    assert p.do("lookup", key, decoded=False) == (0, p.host.value.raw)
    p.close()


def test_unpin_drops_the_views(both):
    """After unpin the emulator keeps no view of the buffer: its memory can be unmapped, and
    the next lookup through the same attr faults, as on the kernel."""
    p = Pair(both, HASH, 0, 4, 8, 4, True)        # the key buffer is pinned, too
    key = b"\5\0\0\0"
    assert p.do("update", key, b"A" * 8) == 0
    maps = [mmap.mmap(-1, 4096) for _ in p.callers]
    bufs = [(ctypes.c_char * 8).from_buffer(m) for m in maps]
    for cl, buf in zip(p.callers, bufs):
        cl.set_elem(value=ctypes.addressof(buf))
    p.emu.b.mem.pin(bufs[0])
    for _ in range(2):
        assert p.do("lookup", key, decoded=False)[0] == 0
    assert p.emu.decoded or not p.emu.caching
    assert [bytes(b) for b in bufs] == [b"A" * 8] * 2
    p.emu.b.mem.unpin(bufs[0])
    del buf, bufs
    for m in maps:
        m.close()                                  # BufferError if a view were still held
    res = [cl.call(LOOKUP, cl.elem, 32) for cl in p.callers]
    assert res == [-EFAULT, -EFAULT]
    p.close()


@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "unpinned"])
def test_threads_racing_noexist_with_reused_buffers(client, pin):
    """Each thread reuses its own buffers round after round (decoded after the first):
    exactly one NOEXIST update of each key wins."""
    fd = create(client.b, HASH, 4, 8, 64)
    nthreads = 6
    callers = [Caller(client.b, fd, 4, 8, pin) for _ in range(nthreads)]
    for i, cl in enumerate(callers):
        cl.set_elem(flags=c.BPF_NOEXIST)
        ctypes.memmove(cl.value, bytes([i]) * 8, 8)
    for rnd in range(40):
        for cl in callers:
            ctypes.memmove(cl.key, struct.pack("<I", rnd), 4)
        results = race(nthreads, lambda i: callers[i].call(UPDATE, callers[i].elem, 32))
        assert sorted(results) == sorted([0] + [-EEXIST] * (nthreads - 1)), (rnd, results)
        if isinstance(client.b, Emulator) and rnd:
            assert all(cl.decoded or not cl.caching for cl in callers)
    client.b.close(fd)


@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "unpinned"])
def test_decoded_lookups_race_updates_and_deletes(pin):
    """Decoded lookups take no lock (as Linux's syscall lookup holds only rcu_read_lock()).
    Racing a writer that replaces and deletes the key, each one sees a whole value that was
    written, or ENOENT: never a mix, never an exception."""
    emu = Emulator(seed=3)
    fd = create(emu, HASH, 4, 8, 4)
    key = b"\7\0\0\0"
    writer = Caller(emu, fd, 4, 8, pin)
    readers = [Caller(emu, fd, 4, 8, pin) for _ in range(3)]
    for cl in readers:
        ctypes.memmove(cl.key, key, 4)
    stop = threading.Event()
    seen = [[] for _ in readers]

    def read(i):
        cl = readers[i]
        while not stop.is_set():
            ret = cl.call(LOOKUP, cl.elem, 32)
            seen[i].append((ret, cl.value.raw[:8]))

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(readers))]
    for t in threads:
        t.start()
    try:
        for n in range(1000):
            assert writer.update(key, bytes([n % 251 + 1]) * 8) == 0
            if n % 3 == 0:
                assert writer.delete(key) == 0
    finally:
        stop.set()
        for t in threads:
            t.join()
    for cl, results in zip(readers, seen):
        assert (cl.decoded or not cl.caching) and results
        for ret, value in results:
            assert ret in (0, -ENOENT)
            if ret == 0:
                assert len(set(value)) == 1 and value[0] != 0, value
    emu.close(fd)


@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "unpinned"])
def test_decoded_walks_race_updates_and_deletes(pin):
    """Decoded walk steps on a HASH map, on threads racing a writer that inserts, replaces
    and deletes: each gets 0 with a key that was in the map, or ENOENT; never an exception,
    never a key that was not there."""
    emu = Emulator(seed=4)
    fd = create(emu, HASH, 4, 8, 48)
    universe = [struct.pack("<I", i) for i in range(64)]
    writer = Caller(emu, fd, 4, 8, pin)
    walkers = [Caller(emu, fd, 4, 8, pin) for _ in range(3)]
    for k in universe[:40]:
        assert writer.update(k, b"\1" * 8) == 0
    stop = threading.Event()
    seen = [[] for _ in walkers]
    errors = []

    def keep_walking(i):
        cl = walkers[i]
        try:
            while not stop.is_set():
                ret, nxt = cl.next_key(None)
                steps = 0
                while ret == 0 and steps < 100:
                    seen[i].append((ret, nxt[:4], cl.decoded))
                    ret, nxt = cl.next_key(nxt[:4])
                    steps += 1
                if ret != 0:
                    seen[i].append((ret, None, cl.decoded))
        except Exception as e:                  # noqa: BLE001 - reported below
            errors.append(e)

    rng = random.Random(4)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)                 # switch threads as often as possible
    threads = [threading.Thread(target=keep_walking, args=(i,)) for i in range(len(walkers))]
    try:
        for t in threads:
            t.start()
        for _ in range(3000):
            k = rng.choice(universe)
            if rng.random() < 0.5:
                assert writer.update(k, b"\2" * 8) in (0, -E2BIG)
            else:
                assert writer.delete(k) in (0, -ENOENT)
    finally:
        stop.set()
        for t in threads:
            t.join()
        sys.setswitchinterval(old)
    assert not errors, errors
    for results in seen:
        assert sum(1 for _, _, decoded in results if decoded) > 100 or not walkers[0].caching
        for ret, key, _ in results:
            assert ret in (0, -ENOENT), ret
            if ret == 0:
                assert key in universe, key
    emu.close(fd)
