"""The hash-map scenarios of the kernel's tools/testing/selftests/bpf/test_maps.c, in our words.

test_maps.c runs each scenario twice, with map_flags 0 and with BPF_F_NO_PREALLOC; so do we,
on the emulator and on the live kernel (the ``client`` fixture), with the same body.
"""
import struct

import pytest

from tests.support import NCPU
from tests.differential.hash_support import (E2BIG, EEXIST, EINVAL, ENOENT, HASH, NO_PREALLOC,
                                             PERCPU_HASH, ZERO_SEED, Walker)

ANY, NOEXIST, EXIST = 0, 1, 2
U64_MAX = (1 << 64) - 1


def q(n: int) -> bytes:
    """A C `long long` as the selftest passes it."""
    return struct.pack("<q", n)


def unq(b: bytes) -> int:
    return struct.unpack("<q", b)[0]


@pytest.fixture(params=[0, NO_PREALLOC], ids=["prealloc", "no_prealloc"])
def map_flags(request):
    return request.param


def test_hashmap(client, map_flags):
    """A 2-entry HASH map of 8-byte keys and values: flag semantics, capacity, iteration."""
    fd = client.create(HASH, 8, 8, 2, map_flags)
    assert fd >= 0

    # Key 1 goes in; adding it again with NOEXIST is refused; flags -1 are invalid.
    assert client.update(fd, q(1), q(1234), ANY) == 0
    assert client.update(fd, q(1), q(0), NOEXIST) == -EEXIST
    assert client.update(fd, q(1), q(0), U64_MAX) == -EINVAL
    assert client.lookup(fd, q(1), 8) == (0, q(1234))

    # Key 2 goes in and comes out again through lookup_and_delete.
    assert client.update(fd, q(2), q(1234), ANY) == 0
    assert client.lookup_and_delete(fd, q(2), 8) == (0, q(1234))
    assert client.lookup(fd, q(2), 8) == (-ENOENT, None)
    # EXIST needs the key to be there; NOEXIST then adds it.
    assert client.update(fd, q(2), q(1234), EXIST) == -ENOENT
    assert client.update(fd, q(2), q(1234), NOEXIST) == 0

    # Two keys fill the map: a third is E2BIG, but existing keys can still be rewritten.
    assert client.update(fd, q(0), q(1234), NOEXIST) == -E2BIG
    assert client.update(fd, q(1), q(1234), EXIST) == 0
    assert client.update(fd, q(2), q(1234), ANY) == 0
    assert client.update(fd, q(3), q(1234), NOEXIST) == -E2BIG
    assert client.delete(fd, q(0)) == -ENOENT

    # Iteration: NULL gives the first key; a key that is not in the map (0) gives the first
    # key too; the first key leads to the other one, and that one to the end.
    ret, first = client.next_key(fd, None, 8)
    assert ret == 0 and unq(first) in (1, 2)
    assert client.next_key(fd, q(0), 8) == (0, first)
    ret, second = client.next_key(fd, first, 8)
    assert ret == 0 and unq(second) in (1, 2) and second != first
    assert client.next_key(fd, second, 8) == (-ENOENT, None)

    # Delete both; the map is empty, so walks from NULL or from any key find nothing.
    assert client.delete(fd, q(1)) == 0
    assert client.delete(fd, q(2)) == 0
    assert client.delete(fd, q(2)) == -ENOENT
    assert client.next_key(fd, None, 8) == (-ENOENT, None)
    assert client.next_key(fd, q(0), 8) == (-ENOENT, None)
    assert client.close(fd) == 0


def percpu_value(base: int) -> bytes:
    """BPF_DECLARE_PERCPU(long, value) with value[cpu] = base + cpu (8-byte slots)."""
    return b"".join(q(base + cpu) for cpu in range(NCPU))


def test_hashmap_percpu(client, map_flags):
    """The same for a 2-entry PERCPU_HASH map with one 8-byte slot per possible CPU."""
    fd = client.create(PERCPU_HASH, 8, 8, 2, map_flags)
    assert fd >= 0
    size = 8 * NCPU
    value = percpu_value(100)
    expected_keys = set()

    assert client.update(fd, q(1), value, ANY) == 0
    ret, out = client.lookup_and_delete(fd, q(1), size)
    assert ret == 0 and out == value          # every CPU's slot comes back, in CPU order
    assert client.update(fd, q(1), value, NOEXIST) == 0
    expected_keys.add(1)
    assert client.update(fd, q(1), value, NOEXIST) == -EEXIST
    assert client.update(fd, q(1), value, U64_MAX) == -EINVAL
    assert client.lookup(fd, q(1), size) == (0, value)

    assert client.lookup(fd, q(2), size) == (-ENOENT, None)
    assert client.update(fd, q(2), value, EXIST) == -ENOENT
    assert client.update(fd, q(2), value, NOEXIST) == 0
    expected_keys.add(2)
    assert client.update(fd, q(0), value, NOEXIST) == -E2BIG
    assert client.delete(fd, q(0)) == -ENOENT

    # Walk from a missing key (0): the first step gives the same key as a walk from NULL,
    # every key is seen once, and each carries every CPU's value.
    ret, first = client.next_key(fd, None, 8)
    assert ret == 0 and unq(first) in expected_keys
    key, seen = q(0), []
    while True:
        ret, nxt = client.next_key(fd, key, 8)
        if ret:
            assert ret == -ENOENT
            break
        if not seen:
            assert nxt == first
        seen.append(unq(nxt))
        assert client.lookup(fd, nxt, size) == (0, value)
        key = nxt
    assert sorted(seen) == sorted(expected_keys)

    assert client.update(fd, q(1), value, EXIST) == 0
    assert client.delete(fd, q(1)) == 0
    assert client.delete(fd, q(2)) == 0
    assert client.delete(fd, q(2)) == -ENOENT
    assert client.next_key(fd, None, 8) == (-ENOENT, None)
    assert client.next_key(fd, q(0), 8) == (-ENOENT, None)
    assert client.close(fd) == 0


VALUE_WORDS = 3          # the selftest's value is long long[3]


def fill_hashmap(client, max_entries, map_flags):
    """A HASH map with keys 0..max_entries-1, value[0] = key, inserted with NOEXIST."""
    fd = client.create(HASH, 8, 8 * VALUE_WORDS, max_entries, map_flags)
    assert fd >= 0
    w = Walker(client.b, 8, 8 * VALUE_WORDS)
    for i in range(max_entries):
        assert w.update(fd, q(i), q(i) + bytes(16), NOEXIST) == 0
    return fd, w


def test_hashmap_walk(client, map_flags):
    """Walk 10000 keys; walk again rewriting each key (EXIST) after fetching its successor,
    which visits every key exactly once even though HASH moves rewritten keys to their
    bucket heads; a third walk sees every value incremented once."""
    max_entries = 10000
    fd, w = fill_hashmap(client, max_entries, map_flags)

    count, key = 0, None
    while True:
        ret, nxt = w.next_key(fd, key)
        if ret:
            break
        key = nxt
        assert client.lookup(fd, key, 24)[0] == 0
        count += 1
    assert count == max_entries

    ret, key = w.next_key(fd, None)
    assert ret == 0
    count, more = 0, True
    while more:
        ret, nxt = w.next_key(fd, key)
        more = ret == 0
        ret, value = client.lookup(fd, key, 24)
        assert ret == 0
        bumped = q(unq(value[:8]) + 1) + value[8:]
        assert w.update(fd, key, bumped, EXIST) == 0
        key = nxt
        count += 1
    assert count == max_entries

    count, key = 0, None
    while True:
        ret, nxt = w.next_key(fd, key)
        if ret:
            break
        key = nxt
        ret, value = client.lookup(fd, key, 24)
        assert ret == 0 and unq(value[:8]) - 1 == unq(key)
        count += 1
    assert count == max_entries
    assert client.close(fd) == 0


def test_hashmap_zero_seed(client, map_flags):
    """Two ZERO_SEED maps filled the same way step through their keys in the same order."""
    first, w1 = fill_hashmap(client, 3, map_flags | ZERO_SEED)
    second, w2 = fill_hashmap(client, 3, map_flags | ZERO_SEED)
    key, steps = None, 0
    while True:
        ret1, next1 = w1.next_key(first, key)
        if ret1:
            break
        ret2, next2 = w2.next_key(second, key)
        assert ret2 == 0, "next_key for the second map must succeed"
        assert next1 == next2
        key = next1
        steps += 1
    assert steps == 3
    client.close(first)
    client.close(second)


def test_hashmap_sizes(client, map_flags):
    """Key sizes 1..512 and value sizes 1..256K (powers of two) are all creatable."""
    for key_size in (1 << i for i in range(10)):
        for value_size in (1 << j for j in range(19)):
            fd = client.create(HASH, key_size, value_size, 2, map_flags)
            assert fd >= 0, (key_size, value_size, fd)
            client.close(fd)
