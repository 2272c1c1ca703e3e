"""Random element-command sequences on the emulator and the live kernel, side by side.

A Hypothesis state machine (the fakeredis pattern) keeps up to three HASH / PERCPU_HASH maps
open on both backends (with and without BPF_F_ZERO_SEED and BPF_F_NO_PREALLOC, sometimes
through a read-only or write-only fd, max_entries small enough that E2BIG happens) and sends
each random command to both: update with any flags (invalid ones included), lookup, delete,
lookup_and_delete, get_next_key from present, absent and NULL keys, full walks, close; now
and then with a bad fd (closed, -1, a pipe, the other backend's map) or a bad pointer (NULL,
a PROT_NONE page, a kernel address, a read-only page, or a buffer cut short by an
inaccessible page). After every step the return values and every byte written (guard bytes
included) must be equal, and every map must hold the same keys and values on both sides.
Walks are compared exactly for ZERO_SEED maps and as sets otherwise; there, single next_key
steps are checked against each backend's own walk instead.
"""
import os
import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

from bpfemu import Emulator, HostKernel
from bpfemu.uapi import consts as c
from tests.support import GUARD, NCPU, Buf, Client, host_unavailable_reason, readonly_address

from tests.differential.hash_support import (CLOSED_FD, DELETE, EFAULT, ENOENT, HASH,
                                             KERNEL_ADDR, LOOKUP, LOOKUP_AND_DELETE,
                                             MINUS_ONE_FD, NEXT_KEY, NO_PREALLOC, NONE_PAGE,
                                             PERCPU_HASH, UPDATE, ZERO_SEED, Cliff, call,
                                             sys_value_size)

pytestmark = pytest.mark.skipif(host_unavailable_reason() is not None,
                                reason=f"live kernel bpf() not permitted here: "
                                       f"{host_unavailable_reason()}")

MAX_MAPS = 3
KEY_POOL = 12                     # keys are drawn from a small pool so they collide often
READONLY = readonly_address()
_PIPE_R, _PIPE_W = os.pipe()      # an open fd that is not a map
BAD_FDS = {"closed": CLOSED_FD, "minus_one": MINUS_ONE_FD, "pipe": _PIPE_R}
# Per backend: one cut-short buffer for the key and one for the value / next_key.
CLIFFS = [(Cliff(), Cliff()) for _ in range(2)]


def mostly(common, rare, weight=6):
    """common values, each drawn `weight` times as often as each rare one."""
    return st.sampled_from(list(common) * weight + list(rare))


# Faults are rare enough that most calls succeed and the maps fill up.
FLAGS = mostly([0, 1, 2], [3, 4, 5, 6, 8, 16, 1 << 32, 1 << 63], weight=8)
LOOKUP_FLAGS = mostly([0], [1, 2, 4, 8, 1 << 63], weight=40)
POINTER = mostly(["ok"], ["null", "prot_none", "kernel", "readonly", "short"], weight=60)
FD = mostly(["ok"], ["closed", "minus_one", "pipe", "other"], weight=80)
KEY = st.integers(0, KEY_POOL - 1)
MAP = st.integers(0, MAX_MAPS - 1)


def pool_key(i: int, key_size: int) -> bytes:
    """Key number i of the pool: distinct for distinct i at every key size."""
    return bytes((i * 37 + j * 11) & 0xFF for j in range(key_size))


class Pair:
    """One map, created identically on both backends."""

    def __init__(self, fds, map_type, map_flags, key_size, value_size, max_entries):
        self.fds = fds
        self.map_type = map_type
        self.map_flags = map_flags
        self.key_size = key_size
        self.vs = sys_value_size(map_type, value_size)
        self.max_entries = max_entries
        self.exact = bool(map_flags & ZERO_SEED)
        self.readable = not map_flags & c.BPF_F_WRONLY

    def __repr__(self):
        return (f"Pair(type={self.map_type}, flags={self.map_flags:#x}, ks={self.key_size}, "
                f"vs={self.vs}, max={self.max_entries})")


class Ptr:
    """A pointer for one backend, and afterwards the bytes around it that a call may write."""

    def __init__(self, kind: str, side: int, which: int, data: bytes, size: int):
        self.kind = kind
        self.buf = self.cliff = None
        if kind == "ok":
            self.buf = Buf(data.ljust(size, b"\xee")[:size] if data else b"\xee" * size, size)
            self.addr = self.buf.addr
        elif kind == "short":
            self.cliff = CLIFFS[side][which]
            self.cliff.fill()
            self.room = size // 2
            self.addr = self.cliff.put(self.room, data) if data else self.cliff.at(self.room)
        else:
            self.addr = {"null": 0, "prot_none": NONE_PAGE, "kernel": KERNEL_ADDR,
                         "readonly": READONLY}[kind]

    def written(self):
        if self.buf is not None:
            return self.buf.raw.raw               # payload and both guards
        if self.cliff is not None:
            return self.cliff.tail(self.room + GUARD)
        return None


class HashMapMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.clients = (Client(Emulator(nr_cpus=NCPU, seed=7)), Client(HostKernel()))
        self.maps: list[Pair] = []

    def teardown(self):
        for cl in self.clients:
            cl.close_all()

    # --- helpers ------------------------------------------------------------------

    def pick(self, i: int) -> Pair:
        return self.maps[i % len(self.maps)]

    def run(self, cmd, pair, fd_kind, key, key_ptr, out_kind, value, flags, out_size):
        """The same call on both backends; returns [(ret, key bytes seen, out bytes seen)]."""
        results = []
        for side, cl in enumerate(self.clients):
            if fd_kind == "ok":
                fd = pair.fds[side]
            elif fd_kind == "other":                # the other backend's map: not a map here
                fd = pair.fds[1 - side]
            else:
                fd = BAD_FDS[fd_kind]
            k = Ptr(key_ptr, side, 0, key, pair.key_size) if key is not None else None
            v = Ptr(out_kind, side, 1, value, out_size) if out_kind else None
            ret = call(cl, cmd, fd, k.addr if k else 0, v.addr if v else 0, flags)
            results.append((ret, k.written() if k else None, v.written() if v else None))
        assert results[0] == results[1], (cmd, pair, results)
        return results

    def walk(self, side: int, pair: Pair) -> list:
        return self.clients[side].keys(pair.fds[side], pair.key_size)

    # --- rules --------------------------------------------------------------------

    MAP_SPEC = dict(map_type=st.sampled_from([HASH, PERCPU_HASH]),
                    prealloc=st.booleans(), zero_seed=st.booleans(),
                    mode=mostly([0], [c.BPF_F_RDONLY, c.BPF_F_WRONLY], weight=16),
                    key_size=st.sampled_from([1, 3, 4, 8, 13]),
                    value_size=st.sampled_from([1, 4, 8, 13]),
                    max_entries=st.sampled_from([1, 2, 3, 4, 8]))

    @initialize(**MAP_SPEC)
    def first_map(self, **spec):
        self.create(**spec)

    @precondition(lambda self: len(self.maps) < MAX_MAPS)
    @rule(**MAP_SPEC)
    def create(self, map_type, prealloc, zero_seed, mode, key_size, value_size, max_entries):
        flags = (0 if prealloc else NO_PREALLOC) | (ZERO_SEED if zero_seed else 0) | mode
        fds = [cl.create(map_type, key_size, value_size, max_entries, flags)
               for cl in self.clients]
        assert all(fd >= 0 for fd in fds), fds
        self.maps.append(Pair(fds, map_type, flags, key_size, value_size, max_entries))

    @precondition(lambda self: self.maps)
    @rule(m=MAP, key=KEY, seed=st.integers(0, 255), flags=FLAGS, fd=FD,
          key_ptr=POINTER, value_ptr=POINTER)
    def update(self, m, key, seed, flags, fd, key_ptr, value_ptr):
        pair = self.pick(m)
        value = random.Random(seed).randbytes(pair.vs)
        self.run(UPDATE, pair, fd, pool_key(key, pair.key_size), key_ptr,
                 value_ptr, value, flags, pair.vs)

    # Plain updates, so that maps fill up (to E2BIG) and keys are rewritten in place or
    # moved to their bucket heads; two rules for twice the weight.
    @precondition(lambda self: self.maps)
    @rule(m=MAP, key=KEY, seed=st.integers(0, 255), flags=st.sampled_from([0, 1, 2]))
    def insert(self, m, key, seed, flags):
        self.update(m, key, seed, flags, "ok", "ok", "ok")

    @precondition(lambda self: self.maps)
    @rule(m=MAP, key=KEY, seed=st.integers(0, 255), flags=st.sampled_from([0, 1, 2]))
    def insert_again(self, m, key, seed, flags):
        self.update(m, key, seed, flags, "ok", "ok", "ok")

    @precondition(lambda self: self.maps)
    @rule(m=MAP, key=KEY, flags=LOOKUP_FLAGS, fd=FD, key_ptr=POINTER, value_ptr=POINTER)
    def lookup(self, m, key, flags, fd, key_ptr, value_ptr):
        pair = self.pick(m)
        self.run(LOOKUP, pair, fd, pool_key(key, pair.key_size), key_ptr,
                 value_ptr, b"", flags, pair.vs)

    @precondition(lambda self: self.maps)
    @rule(m=MAP, key=KEY, fd=FD, key_ptr=POINTER,
          flags=mostly([0], [1, 4, 1 << 63], weight=40))
    def delete(self, m, key, fd, key_ptr, flags):
        pair = self.pick(m)
        self.run(DELETE, pair, fd, pool_key(key, pair.key_size), key_ptr, None, b"", flags, 0)

    @precondition(lambda self: self.maps)
    @rule(m=MAP, key=KEY, flags=LOOKUP_FLAGS, fd=FD, key_ptr=POINTER, value_ptr=POINTER)
    def lookup_and_delete(self, m, key, flags, fd, key_ptr, value_ptr):
        pair = self.pick(m)
        self.run(LOOKUP_AND_DELETE, pair, fd, pool_key(key, pair.key_size), key_ptr,
                 value_ptr, b"", flags, pair.vs)

    @precondition(lambda self: self.maps)
    @rule(m=MAP, key=st.one_of(st.none(), KEY), fd=FD, key_ptr=POINTER, next_ptr=POINTER,
          flags=mostly([0], [1, 1 << 63], weight=40))
    def get_next_key(self, m, key, fd, key_ptr, next_ptr, flags):
        pair = self.pick(m)
        ks = pair.key_size
        kbytes = pool_key(key, ks) if key is not None else None
        if (pair.exact or fd != "ok" or flags or not pair.readable
                or (key is not None and key_ptr in ("prot_none", "kernel", "short"))):
            # Same answer expected on both sides (bucket order is the same, or the call
            # fails before the order matters).
            self.run(NEXT_KEY, pair, fd, kbytes, key_ptr, next_ptr, b"", flags, ks)
            return
        # Random seeds: each backend must agree with its own walk; the status agrees
        # whenever it does not depend on the order. The key the kernel sees: none for a
        # NULL pointer, zeros from the read-only page.
        seen = None if key is None else {"null": None, "readonly": bytes(ks)}.get(key_ptr, kbytes)
        outs = []
        for side, cl in enumerate(self.clients):
            order = self.walk(side, pair)
            if seen is None or seen not in order:
                expect = order[0] if order else None
            else:
                i = order.index(seen)
                expect = order[i + 1] if i + 1 < len(order) else None
            k = Ptr(key_ptr, side, 0, kbytes, ks) if kbytes is not None else None
            n = Ptr(next_ptr, side, 1, b"", ks)
            ret = call(cl, NEXT_KEY, pair.fds[side], k.addr if k else 0, n.addr)
            if expect is None:
                assert ret == -ENOENT, (side, ret)
            elif next_ptr == "ok":
                assert ret == 0 and n.buf.data == expect, (side, ret)
                assert n.buf.guards_intact()
            elif next_ptr == "short":
                assert ret == -EFAULT and n.cliff.tail(n.room) == expect[:n.room]
            else:
                assert ret == -EFAULT
            outs.append((ret, order))
        if seen is None or seen not in outs[1][1]:
            assert outs[0][0] == outs[1][0]

    @precondition(lambda self: self.maps)
    @rule(m=MAP)
    def full_walk(self, m):
        pair = self.pick(m)
        if not pair.readable:
            return
        emu, host = self.walk(0, pair), self.walk(1, pair)
        if pair.exact:
            assert emu == host, pair
        else:
            assert sorted(emu) == sorted(host), pair

    @precondition(lambda self: self.maps)
    @rule(m=MAP, really=st.integers(0, 3))
    def close(self, m, really):
        if really:                                  # close a map in one step of four
            return
        pair = self.pick(m)
        self.maps.remove(pair)
        assert [cl.close(fd) for cl, fd in zip(self.clients, pair.fds)] == [0, 0]

    @invariant()
    def same_contents(self):
        """Every readable map holds the same keys and values on both backends."""
        for pair in self.maps:
            if not pair.readable:
                continue
            walks = [self.walk(side, pair) for side in (0, 1)]
            if pair.exact:
                assert walks[0] == walks[1], pair
            else:
                assert sorted(walks[0]) == sorted(walks[1]), pair
            assert len(walks[1]) <= pair.max_entries
            for k in walks[1]:
                vals = [cl.lookup(fd, k, pair.vs) for cl, fd in zip(self.clients, pair.fds)]
                assert vals[0] == vals[1], (pair, k, vals)


HashMapMachine.TestCase.settings = settings(stateful_step_count=50)
TestHashMapMachine = HashMapMachine.TestCase
