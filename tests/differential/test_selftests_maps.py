"""The kernel's own statement of map behaviour, ported in our words and run on both backends:

* tools/testing/selftests/bpf/map_tests/htab_map_batch_ops.c (HASH, PERCPU_HASH),
* tools/testing/selftests/bpf/map_tests/array_map_batch_ops.c (ARRAY, PERCPU_ARRAY),
* test_arraymap, test_arraymap_percpu, test_arraymap_percpu_many_keys, test_map_rdonly and
  test_map_wronly from tools/testing/selftests/bpf/test_maps.c (test_maps runs its tests
  once with map_flags 0 and once with BPF_F_NO_PREALLOC; so do we, where it applies).

Each scenario asserts what the selftest asserts, on the emulator and on the live kernel. The
batch scenarios are also replayed on BPF_F_ZERO_SEED maps, where the emulator's sequence of
(result, count, keys, values, token) must equal the live kernel's call for call.
"""
import ctypes
import struct

import pytest

from bpfemu.uapi import consts as c
from tests.support import NCPU, Buf

from tests.differential.abi_support import (ARRAY, E2BIG, EEXIST, EINVAL, ENOENT, ENOSPC, EPERM,
                                            HASH, LOOKUP_AND_DELETE_BATCH, LOOKUP_BATCH,
                                            PERCPU_ARRAY, PERCPU_HASH, DELETE_BATCH, UPDATE_BATCH,
                                            batch)

BPF_F_CPU = 8                      # 6.19's per-CPU batch flag; absent from 6.18


class BatchIO:
    """keys / values / token buffers sized for max_entries elements, with the selftests'
    pointer arithmetic (keys + total, values + total * value_size)."""

    def __init__(self, n, key_size, value_size):
        self.n, self.ks, self.vs = n, key_size, value_size
        self.keys = ctypes.create_string_buffer(n * key_size)
        self.values = ctypes.create_string_buffer(n * value_size)
        self.token = ctypes.create_string_buffer(8)
        self.k0, self.v0 = ctypes.addressof(self.keys), ctypes.addressof(self.values)
        self.t0 = ctypes.addressof(self.token)

    def clear(self):
        ctypes.memset(self.k0, 0, self.n * self.ks)
        ctypes.memset(self.v0, 0, self.n * self.vs)

    def key(self, i):
        return struct.unpack_from("<i", self.keys, i * self.ks)[0]

    def value_words(self, i, word="<i", width=4):
        """The 8-byte-slot words of element i (per-CPU: one per CPU)."""
        base = i * self.vs
        return [struct.unpack_from(word, self.values, base + off)[0]
                for off in range(0, self.vs, width)]

    def call(self, b, cmd, fd, count, from_token, total, trace=None):
        ret, cnt = batch(b, cmd, fd, in_batch=self.t0 if from_token else 0, out_batch=self.t0,
                         keys=self.k0 + total * self.ks, values=self.v0 + total * self.vs,
                         count=count)
        if trace is not None:
            trace.append((ret, cnt, self.keys.raw, self.values.raw, self.token.raw[:4]))
        return ret, cnt


# --- htab_map_batch_ops.c ------------------------------------------------------------------------

def htab_batch_update(b, fd, n, io, is_pcpu):
    """map_batch_update(): keys i+1, values i+2 (per-CPU: i+2+cpu in each CPU's slot)."""
    for i in range(n):
        struct.pack_into("<i", io.keys, i * 4, i + 1)
        if is_pcpu:
            for cpu in range(NCPU):
                struct.pack_into("<q", io.values, i * io.vs + cpu * 8, i + 2 + cpu)
        else:
            struct.pack_into("<i", io.values, i * 4, i + 2)
    ret, cnt = batch(b, UPDATE_BATCH, fd, keys=io.k0, values=io.v0, count=n)
    assert (ret, cnt) == (0, n), "bpf_map_update_batch()"


def htab_batch_verify(n, io, is_pcpu):
    """map_batch_verify(): every key 1..n once, each with its value(s)."""
    seen = set()
    for i in range(n):
        key = io.key(i)
        if is_pcpu:
            words = io.value_words(i, "<q", 8)
            assert words == [key + 1 + cpu for cpu in range(NCPU)], "key/value checking"
        else:
            assert io.value_words(i)[0] == key + 1, "key/value checking"
        seen.add(key)
    assert seen == set(range(1, n + 1)), "visited checking"


def htab_lookup_and_delete_batch_scenario(cl, is_pcpu, flags=0, trace=None):
    b = cl.b
    max_entries = 10
    map_type = PERCPU_HASH if is_pcpu else HASH
    fd = cl.create(map_type, 4, 4, max_entries, flags, name=b"hash_map")
    assert fd >= 0
    vs = 8 * NCPU if is_pcpu else 4
    io = BatchIO(max_entries, 4, vs)

    # test 1: lookup/delete on an empty table is ENOENT
    ret, _ = io.call(b, LOOKUP_AND_DELETE_BATCH, fd, max_entries, False, 0, trace)
    assert ret in (0, -ENOENT), "empty map"

    htab_batch_update(b, fd, max_entries, io, is_pcpu)

    # test 2: count 0 succeeds
    ret, _ = io.call(b, LOOKUP_AND_DELETE_BATCH, fd, 0, False, 0, trace)
    assert ret == 0, "count = 0"

    # test 3: count = max_entries takes everything
    io.clear()
    ret, cnt = io.call(b, LOOKUP_AND_DELETE_BATCH, fd, max_entries, False, 0, trace)
    assert ret in (0, -ENOENT), "count = max_entries"
    assert cnt == max_entries, "count = max_entries"
    htab_batch_verify(max_entries, io, is_pcpu)
    assert cl.next_key(fd, None, 4)[0] == -ENOENT, "the map is empty"

    # test 4: in steps
    total_success = 0
    for step in range(1, max_entries):
        htab_batch_update(b, fd, max_entries, io, is_pcpu)
        io.clear()
        total, nospace = 0, False
        while True:
            ret, cnt = io.call(b, LOOKUP_BATCH, fd, step, total > 0, total, trace)
            if ret == -ENOSPC:              # a bucket larger than the step: use larger steps
                nospace = True
                break
            assert ret in (0, -ENOENT), "lookup with steps"
            total += cnt
            if ret:
                break
        if nospace:
            continue
        assert total == max_entries, "lookup with steps"
        htab_batch_verify(max_entries, io, is_pcpu)

        total = 0
        count = step
        while total < max_entries:
            count = min(step, max_entries - total)
            ret, cnt = batch(b, DELETE_BATCH, fd, keys=io.k0 + total * 4, count=count)
            if trace is not None:
                trace.append((ret, cnt))
            assert ret in (0, -ENOENT), "delete batch"
            total += cnt
            if ret:
                break
        assert total == max_entries, "delete with steps"
        assert cl.next_key(fd, None, 4)[0] == -ENOENT

        htab_batch_update(b, fd, max_entries, io, is_pcpu)
        io.clear()
        total, nospace = 0, False
        while True:
            ret, cnt = io.call(b, LOOKUP_AND_DELETE_BATCH, fd, step, total > 0, total, trace)
            if ret == -ENOSPC:
                nospace = True
                break
            assert ret in (0, -ENOENT), "lookup/delete with steps"
            total += cnt
            if ret:
                break
        if nospace:
            continue
        assert total == max_entries, "lookup/delete with steps"
        htab_batch_verify(max_entries, io, is_pcpu)
        assert cl.next_key(fd, None, 4)[0] == -ENOENT
        total_success += 1
    assert total_success > 0, "check total_success"
    cl.close(fd)


@pytest.mark.parametrize("is_pcpu", [False, True], ids=["htab", "htab_percpu"])
def test_htab_map_batch_ops(client, is_pcpu):
    htab_lookup_and_delete_batch_scenario(client, is_pcpu)


@pytest.mark.parametrize("is_pcpu", [False, True], ids=["htab", "htab_percpu"])
@pytest.mark.parametrize("flags", [0, c.BPF_F_NO_PREALLOC], ids=["prealloc", "no_prealloc"])
def test_htab_map_batch_ops_zero_seed_trace(both, is_pcpu, flags):
    traces = []
    for cl in both:
        trace = []
        htab_lookup_and_delete_batch_scenario(cl, is_pcpu, flags | c.BPF_F_ZERO_SEED, trace)
        traces.append(trace)
    assert traces[0] == traces[1]


# --- array_map_batch_ops.c ---------------------------------------------------------------------------

def array_batch_update(b, fd, n, io, is_pcpu):
    """map_batch_update(): keys i, values i+1 (per-CPU: i+1+cpu)."""
    for i in range(n):
        struct.pack_into("<i", io.keys, i * 4, i)
        if is_pcpu:
            for cpu in range(NCPU):
                struct.pack_into("<q", io.values, i * io.vs + cpu * 8, i + 1 + cpu)
        else:
            struct.pack_into("<q", io.values, i * 8, i + 1)
    ret, cnt = batch(b, UPDATE_BATCH, fd, keys=io.k0, values=io.v0, count=n)
    assert (ret, cnt) == (0, n), "bpf_map_update_batch()"


def array_batch_verify(n, io, is_pcpu):
    seen = set()
    for i in range(n):
        key = io.key(i)
        words = io.value_words(i, "<q", 8)
        want = [key + 1 + cpu for cpu in range(NCPU)] if is_pcpu else [key + 1]
        assert words == want, "key/value checking"
        seen.add(key)
    assert seen == set(range(n)), "visited checking"


def array_lookup_and_update_batch_scenario(cl, is_pcpu, trace=None):
    b = cl.b
    max_entries = 10
    fd = cl.create(PERCPU_ARRAY if is_pcpu else ARRAY, 4, 8, max_entries, name=b"array_map")
    assert fd >= 0
    vs = 8 * NCPU if is_pcpu else 8
    io = BatchIO(max_entries, 4, vs)
    total_success = 0
    for step in range(1, max_entries):
        array_batch_update(b, fd, max_entries, io, is_pcpu)
        array_batch_verify(max_entries, io, is_pcpu)
        io.clear()
        ctypes.memset(io.t0, 0, 8)
        total = 0
        while True:
            ret, cnt = io.call(b, LOOKUP_BATCH, fd, step, total > 0, total, trace)
            assert ret in (0, -ENOENT), "lookup with steps"
            total += cnt
            if ret:
                break
        assert total == max_entries, "lookup with steps"
        array_batch_verify(max_entries, io, is_pcpu)
        total_success += 1
    assert total_success > 0
    cl.close(fd)


@pytest.mark.parametrize("is_pcpu", [False, True], ids=["array", "array_percpu"])
def test_array_map_batch_ops(client, is_pcpu):
    array_lookup_and_update_batch_scenario(client, is_pcpu)


@pytest.mark.parametrize("is_pcpu", [False, True], ids=["array", "array_percpu"])
def test_array_map_batch_ops_trace(both, is_pcpu):
    traces = []
    for cl in both:
        trace = []
        array_lookup_and_update_batch_scenario(cl, is_pcpu, trace)
        traces.append(trace)
    assert traces[0] == traces[1]


def test_array_percpu_map_batch_cpu_is_not_in_6_18(client):
    """array_percpu_map_batch_cpu needs BPF_F_CPU (Linux 6.19). On 6.18 any elem_flags other
    than 0 (or F_LOCK with a spin lock) are EINVAL, with count left alone."""
    fd = client.create(PERCPU_ARRAY, 4, 8, 1, name=b"percpu_array_ma")  # libbpf keeps 15 chars
    assert fd >= 0
    io = BatchIO(1, 4, 8 * NCPU)
    for cpu_flag in (NCPU, 0xFFFFFFFF, 0):
        elem_flags = (cpu_flag << 32) | BPF_F_CPU
        assert batch(client.b, UPDATE_BATCH, fd, keys=io.k0, values=io.v0, count=1,
                     elem_flags=elem_flags) == (-EINVAL, 1)
        assert batch(client.b, LOOKUP_BATCH, fd, out_batch=io.t0, keys=io.k0, values=io.v0,
                     count=1, elem_flags=elem_flags) == (-EINVAL, 1)


# --- test_maps.c: test_arraymap, test_arraymap_percpu -------------------------------------------------

def test_arraymap(client):
    cl = client
    fd = cl.create(ARRAY, 4, 8, 2)
    assert fd >= 0
    k = lambda i: struct.pack("<i", i)          # noqa: E731
    v = lambda x: struct.pack("<q", x)          # noqa: E731
    assert cl.update(fd, k(1), v(1234), c.BPF_ANY) == 0          # insert key=1
    assert cl.update(fd, k(1), v(0), c.BPF_NOEXIST) == -EEXIST
    assert cl.lookup(fd, k(1), 8) == (0, v(1234))                # key=1 found
    assert cl.lookup(fd, k(0), 8) == (0, v(0))                   # key=0 zero-initialised
    assert cl.update(fd, k(2), v(0), c.BPF_EXIST) == -E2BIG      # past max_entries
    assert cl.lookup(fd, k(2), 8) == (-ENOENT, None)
    assert cl.next_key(fd, None, 4) == (0, k(0))                 # iterate over two elements
    assert cl.next_key(fd, k(2), 4) == (0, k(0))
    assert cl.next_key(fd, k(0), 4) == (0, k(1))
    assert cl.next_key(fd, k(1), 4) == (-ENOENT, None)
    assert cl.delete(fd, k(1)) == -EINVAL                        # delete can't succeed


def test_arraymap_percpu(client):
    cl = client
    vs = 8 * NCPU
    fd = cl.create(PERCPU_ARRAY, 4, 8, 2)
    assert fd >= 0
    k = lambda i: struct.pack("<i", i)          # noqa: E731
    values = [100 + cpu for cpu in range(NCPU)]
    pack = lambda ws: struct.pack(f"<{len(ws)}q", *ws)           # noqa: E731
    assert cl.update(fd, k(1), pack(values), c.BPF_ANY) == 0
    assert cl.update(fd, k(1), pack([0] + values[1:]), c.BPF_NOEXIST) == -EEXIST
    ret, got = cl.lookup(fd, k(1), vs)
    assert ret == 0 and struct.unpack_from("<q", got, 0)[0] == 100
    ret, got = cl.lookup(fd, k(0), vs)
    assert ret == 0 and got == bytes(vs)                         # zero on every CPU
    assert cl.update(fd, k(2), pack(values), c.BPF_EXIST) == -E2BIG
    assert cl.lookup(fd, k(2), vs) == (-ENOENT, None)
    assert cl.next_key(fd, None, 4) == (0, k(0))
    assert cl.next_key(fd, k(2), 4) == (0, k(0))
    assert cl.next_key(fd, k(0), 4) == (0, k(1))
    assert cl.next_key(fd, k(1), 4) == (-ENOENT, None)
    assert cl.delete(fd, k(1)) == -EINVAL


def test_arraymap_percpu_many_keys(client):
    cl = client
    nr_keys = 2000
    vs = 8 * NCPU
    fd = cl.create(PERCPU_ARRAY, 4, 8, nr_keys)
    assert fd >= 0
    value = struct.pack(f"<{NCPU}q", *[cpu + 10 for cpu in range(NCPU)])
    for key in range(nr_keys):
        assert cl.update(fd, struct.pack("<i", key), value) == 0
    for key in range(nr_keys):
        assert cl.lookup(fd, struct.pack("<i", key), vs) == (0, value)


# --- test_maps.c: test_map_rdonly, test_map_wronly --------------------------------------------------

@pytest.mark.parametrize("map_flags", [0, c.BPF_F_NO_PREALLOC], ids=["prealloc", "no_prealloc"])
def test_map_rdonly(client, map_flags):
    cl = client
    fd = cl.create(HASH, 4, 4, 100, map_flags | c.BPF_F_RDONLY)
    assert fd >= 0
    key, value = struct.pack("<i", 1), struct.pack("<i", 1234)
    assert cl.update(fd, key, value, c.BPF_ANY) == -EPERM       # try to insert key=1
    assert cl.lookup(fd, key, 4) == (-ENOENT, None)              # key=1 is not found
    assert cl.next_key(fd, key, 4) == (-ENOENT, None)


@pytest.mark.parametrize("map_flags", [0, c.BPF_F_NO_PREALLOC], ids=["prealloc", "no_prealloc"])
def test_map_wronly_hash(client, map_flags):
    cl = client
    fd = cl.create(HASH, 4, 4, 100, map_flags | c.BPF_F_WRONLY)
    assert fd >= 0
    key, value = struct.pack("<i", 1), struct.pack("<i", 1234)
    assert cl.update(fd, key, value, c.BPF_ANY) == 0            # insert key=1
    assert cl.lookup(fd, key, 4) == (-EPERM, None)               # reading is not allowed
    assert cl.next_key(fd, key, 4) == (-EPERM, None)


def test_map_wronly_stack_or_queue_not_emulated(backend):
    """test_map_wronly's STACK and QUEUE halves need map types the emulator does not have:
    it refuses them at creation (DEVIATION(map-types)); the live kernel runs the selftest."""
    from tests.support import Client
    from bpfemu import Emulator
    cl = Client(backend)
    for map_type in (c.BPF_MAP_TYPE_STACK, c.BPF_MAP_TYPE_QUEUE):
        fd = cl.create(map_type, 0, 4, 100, c.BPF_F_WRONLY)
        if isinstance(backend, Emulator):
            assert fd == -EINVAL
            continue
        assert fd >= 0
        value = Buf(struct.pack("<i", 1234))
        from tests.support import elem_attr
        assert cl.bpf(c.BPF_MAP_UPDATE_ELEM, elem_attr(fd, 0, value.addr), 32) == 0
        assert cl.bpf(c.BPF_MAP_LOOKUP_ELEM, elem_attr(fd, 0, value.addr), 32) == -EPERM
        assert cl.bpf(c.BPF_MAP_LOOKUP_AND_DELETE_ELEM, elem_attr(fd, 0, value.addr),
                      32) == -EPERM
    cl.close_all()
