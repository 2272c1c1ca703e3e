"""Random command sequences over arrays, batches, freeze, info and fd modes, on the emulator
and the live kernel side by side (the fakeredis pattern, like test_state_machine.py).

Up to three maps live at once on both backends: ARRAY and PERCPU_ARRAY, and the four hash
types with BPF_F_ZERO_SEED so that bucket order (and thus every batch token) is the same on
both. Each map has a read-write fd kept for inspection and may get more fds, read-only or
write-only, through MAP_GET_FD_BY_ID. Every rule sends the same bytes to both backends and
compares the result and every byte written (guards included): element commands, the four
batch commands with random counts, tokens, flags and now and then a faulting pointer,
FREEZE, OBJ_GET_INFO_BY_FD (all but the id) and closing fds. After every step the full
contents of every map (walk order and values) must be equal. The process runs on CPU 0, so
LRU eviction is deterministic.
"""
import os
import struct

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bpfemu import Emulator, HostKernel
from bpfemu.uapi import consts as c
from tests.support import NCPU, Buf, Client, elem_attr, host_unavailable_reason

from tests.differential.abi_support import (ALL_TYPES, ARRAY_TYPES, BATCH_CMDS, HASH_TYPES,
                                            batch, freeze, get_fd_by_id, get_info, map_id,
                                            sys_value_size, u32)
from tests.differential.hash_support import NONE_PAGE

pytestmark = pytest.mark.skipif(host_unavailable_reason() is not None,
                                reason=f"live kernel bpf() not permitted here: "
                                       f"{host_unavailable_reason()}")

MAX_MAPS = 3
MAX_ENTRIES = 12
KEYS = st.integers(0, 15) | st.sampled_from([0xFFFFFFFF])
MAP = st.integers(0, MAX_MAPS - 1)
FDSEL = st.integers(0, 3)
PTR = st.sampled_from(["ok"] * 14 + ["null", "prot_none"])
ELEM_FLAGS = st.sampled_from([0] * 12 + [1, 2, 4, 8])
BATCH_FLAGS = st.sampled_from([0] * 12 + [1])
COUNT = st.integers(0, MAX_ENTRIES + 2)


class Pair:
    """One map on both backends: fds[i] = [(fd on emu, fd on host, mode)...]; fds[0] is RDWR."""

    def __init__(self, map_type, value_size, max_entries, main):
        self.map_type = map_type
        self.value_size = value_size
        self.vs = sys_value_size(map_type, value_size)
        self.max_entries = max_entries
        self.fds = [main]
        self.ids = None
        self.token = [b"\0\0\0\0", b"\0\0\0\0"]      # the last out_batch, per backend


class ArrayBatchMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.backends = [Emulator(nr_cpus=NCPU, seed=1), HostKernel()]
        self.clients = [Client(b) for b in self.backends]
        self.maps: list[Pair] = []
        self.affinity = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {0})

    def teardown(self):
        for cl in self.clients:
            cl.close_all()
        os.sched_setaffinity(0, self.affinity)

    # --- helpers ---------------------------------------------------------------------------

    def pick(self, i):
        return self.maps[i % len(self.maps)]

    def same(self, results):
        assert results[0] == results[1], results
        return results[0]

    def key(self, p, k):
        return u32(k)

    def ptr(self, kind, buf):
        return {"ok": buf.addr, "null": 0, "prot_none": NONE_PAGE}[kind]

    # --- maps and fds -------------------------------------------------------------------------

    @precondition(lambda self: len(self.maps) < MAX_MAPS)
    @rule(map_type=st.sampled_from(ALL_TYPES + ARRAY_TYPES * 2),
          value_size=st.sampled_from([1, 4, 8, 12]),
          max_entries=st.integers(1, MAX_ENTRIES))
    def create(self, map_type, value_size, max_entries):
        flags = c.BPF_F_ZERO_SEED if map_type in HASH_TYPES else 0
        fds = [cl.create(map_type, 4, value_size, max_entries, flags) for cl in self.clients]
        assert all(fd >= 0 for fd in fds), fds
        p = Pair(map_type, value_size, max_entries, (fds[0], fds[1], 0))
        p.ids = [map_id(b, fd) for b, fd in zip(self.backends, fds)]
        self.maps.append(p)

    @precondition(lambda self: self.maps)
    @rule(m=MAP, mode=st.sampled_from([0, c.BPF_F_RDONLY, c.BPF_F_WRONLY, 0x18, 0x20]))
    def open_by_id(self, m, mode):
        p = self.pick(m)
        fds = [get_fd_by_id(b, mid, mode) for b, mid in zip(self.backends, p.ids)]
        self.same([fd >= 0 or fd for fd in fds])
        if fds[0] >= 0:
            for cl, fd in zip(self.clients, fds):
                cl.fds.append(fd)
            p.fds.append((fds[0], fds[1], mode))

    @precondition(lambda self: any(len(p.fds) > 1 for p in self.maps))
    @rule(m=MAP, f=FDSEL)
    def close_extra_fd(self, m, f):
        p = self.pick(m)
        if len(p.fds) < 2:
            return
        i = 1 + f % (len(p.fds) - 1)
        fds = p.fds.pop(i)
        self.same([cl.close(fd) for cl, fd in zip(self.clients, fds[:2])])

    @precondition(lambda self: self.maps)
    @rule(m=MAP)
    def close_map(self, m):
        p = self.maps.pop(m % len(self.maps))
        for fds in p.fds:
            for cl, fd in zip(self.clients, fds[:2]):
                assert cl.close(fd) == 0
        self.same([get_fd_by_id(b, mid) for b, mid in zip(self.backends, p.ids)])

    @precondition(lambda self: self.maps)
    @rule(m=MAP, f=FDSEL)
    def do_freeze(self, m, f):
        p = self.pick(m)
        fds = p.fds[f % len(p.fds)]
        self.same([freeze(b, fd) for b, fd in zip(self.backends, fds[:2])])

    @precondition(lambda self: self.maps)
    @rule(m=MAP, f=FDSEL, info_len=st.sampled_from([0, 8, 40, 88, 104, 120]),
          junk=st.booleans())
    def info(self, m, f, info_len, junk):
        p = self.pick(m)
        fds = p.fds[f % len(p.fds)]
        init = bytes(range(1, 89)) if junk else b""
        res = []
        for b, fd in zip(self.backends, fds[:2]):
            ret, out_len, data, guards = get_info(b, fd, info_len, init, size=max(info_len, 104))
            res.append((ret, out_len, data[:4] + data[8:], guards))
        self.same(res)

    # --- element commands ----------------------------------------------------------------------

    @precondition(lambda self: self.maps)
    @rule(m=MAP, f=FDSEL, k=KEYS, flags=st.sampled_from([0, 0, 0, 1, 2, 3, 4]), seed=st.integers(0, 255))
    def update(self, m, f, k, flags, seed):
        p = self.pick(m)
        fds = p.fds[f % len(p.fds)]
        value = bytes((seed + i) & 0xFF for i in range(p.vs))
        self.same([cl.update(fd, self.key(p, k), value, flags)
                   for cl, fd in zip(self.clients, fds[:2])])

    @precondition(lambda self: self.maps)
    @rule(m=MAP, f=FDSEL, k=KEYS, op=st.sampled_from(["lookup", "delete", "next",
                                                      "lookup_and_delete"]))
    def element(self, m, f, k, op):
        p = self.pick(m)
        fds = p.fds[f % len(p.fds)]
        key = self.key(p, k)
        res = []
        for cl, fd in zip(self.clients, fds[:2]):
            if op == "lookup":
                res.append(cl.lookup(fd, key, p.vs))
            elif op == "delete":
                res.append(cl.delete(fd, key))
            elif op == "next":
                res.append(cl.next_key(fd, key if k != 15 else None, 4))
            else:
                res.append(cl.lookup_and_delete(fd, key, p.vs))
        self.same(res)

    # --- batch commands ------------------------------------------------------------------------

    @precondition(lambda self: self.maps)
    @rule(m=MAP, f=FDSEL, cmd=st.sampled_from([c.BPF_MAP_LOOKUP_BATCH] * 3
                                             + [c.BPF_MAP_LOOKUP_AND_DELETE_BATCH]),
          count=COUNT, token=st.sampled_from(["null", "last", "last", "random"]),
          rnd=st.integers(0, 20), elem_flags=ELEM_FLAGS, flags=BATCH_FLAGS,
          pk=PTR, pv=PTR, pin=PTR, pout=PTR)
    def lookup_batch(self, m, f, cmd, count, token, rnd, elem_flags, flags, pk, pv, pin, pout):
        p = self.pick(m)
        fds = p.fds[f % len(p.fds)]
        res = []
        for side, (b, fd) in enumerate(zip(self.backends, fds[:2])):
            keys, vals = Buf(size=max(count, 1) * 4), Buf(size=max(count, 1) * p.vs)
            tok = {"null": None, "last": p.token[side], "random": u32(rnd)}[token]
            inb, outb = Buf(tok or b"", size=8), Buf(size=8)
            ret, cnt = batch(b, cmd, fd, in_batch=0 if tok is None else self.ptr(pin, inb),
                             out_batch=self.ptr(pout, outb), keys=self.ptr(pk, keys),
                             values=self.ptr(pv, vals), count=count, elem_flags=elem_flags,
                             flags=flags)
            if ret in (0, -2, -28):
                p.token[side] = outb.data[:4]
            res.append((ret, cnt, keys.data, vals.data, outb.data, keys.guards_intact(),
                        vals.guards_intact(), outb.guards_intact()))
        self.same(res)

    @precondition(lambda self: self.maps)
    @rule(m=MAP, f=FDSEL, cmd=st.sampled_from([c.BPF_MAP_UPDATE_BATCH, c.BPF_MAP_DELETE_BATCH]),
          ks=st.lists(KEYS, max_size=8), seed=st.integers(0, 255), elem_flags=ELEM_FLAGS,
          flags=BATCH_FLAGS, pk=PTR, pv=PTR, extra=st.integers(0, 2))
    def write_batch(self, m, f, cmd, ks, seed, elem_flags, flags, pk, pv, extra):
        p = self.pick(m)
        fds = p.fds[f % len(p.fds)]
        keys = Buf(b"".join(self.key(p, k) for k in ks), size=max(len(ks), 1) * 4)
        vals = Buf(bytes((seed + i) & 0xFF for i in range(len(ks) * p.vs)),
                   size=max(len(ks), 1) * p.vs)
        # count may claim more elements than the buffers hold only if they then fault.
        count = len(ks) + (extra if pk != "ok" or pv != "ok" else 0)
        res = []
        for b, fd in zip(self.backends, fds[:2]):
            res.append(batch(b, cmd, fd, keys=self.ptr(pk, keys), values=self.ptr(pv, vals),
                             count=count, elem_flags=elem_flags, flags=flags))
        self.same(res)

    # --- the invariant ---------------------------------------------------------------------------

    @invariant()
    def contents_agree(self):
        for p in self.maps:
            res = []
            for cl, fd in zip(self.clients, p.fds[0][:2]):
                walk = cl.keys(fd, 4)
                res.append([(k, cl.lookup(fd, k, p.vs)) for k in walk])
            self.same(res)


ArrayBatchMachine.TestCase.settings = settings(stateful_step_count=50)
TestArrayBatchMachine = ArrayBatchMachine.TestCase
