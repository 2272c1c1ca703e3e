"""GET_NEXT_KEY order of HASH and PERCPU_HASH maps, emulator against the live kernel.

With BPF_F_ZERO_SEED the kernel's bucket order is deterministic (jhash with seed 0, buckets
in index order, each bucket newest first), so the full walk must be identical, also after
updates (HASH re-links an updated key at its bucket head, PERCPU_HASH updates in place) and
deletes (docs/linux-6.18.md#hash-order-and-jhash). Without ZERO_SEED each map has a random
seed, so only the key sets are compared; an Emulator with a fixed seed repeats its order.
"""
import random
import struct

import pytest

from bpfemu import Emulator
from tests.support import NCPU, Client

from tests.differential.hash_support import (EEXIST, ENOENT, EXIST_FLAG, HASH, NO_PREALLOC,
                                             PERCPU_HASH, ZERO_SEED, Walker, sys_value_size,
                                             u64)

KEY_SIZES = [1, 2, 3, 4, 6, 8, 12, 13, 16, 24, 37]
MAX_ENTRIES = [1, 3, 8, 100, 1000]
TYPES = [("hash", HASH, 0), ("hash_noprealloc", HASH, NO_PREALLOC),
         ("percpu", PERCPU_HASH, 0)]
VALUE_SIZE = 8


def distinct_keys(rng, key_size, n, avoid=()):
    """n random keys, all different, none of them in avoid."""
    n = min(n, 256 ** key_size - len(set(avoid)))
    keys, seen = [], set(avoid)
    while len(keys) < n:
        k = rng.randbytes(key_size)
        if k not in seen:
            seen.add(k)
            keys.append(k)
    return keys


class Pair:
    """The same map on both backends, driven through fast walkers."""

    def __init__(self, both, map_type, map_flags, key_size, max_entries):
        self.cls = both
        self.vs = sys_value_size(map_type, VALUE_SIZE)
        self.ws = [Walker(cl.b, key_size, self.vs) for cl in both]
        self.fds = [cl.create(map_type, key_size, VALUE_SIZE, max_entries, map_flags)
                    for cl in both]
        assert all(fd >= 0 for fd in self.fds), self.fds

    def update(self, key, value, flags=0):
        rets = [w.update(fd, key, value, flags) for w, fd in zip(self.ws, self.fds)]
        assert rets[0] == rets[1], (key, rets)
        return rets[1]

    def delete(self, key):
        rets = [w.delete(fd, key) for w, fd in zip(self.ws, self.fds)]
        assert rets[0] == rets[1], (key, rets)
        return rets[1]

    def next_key(self, key):
        res = [w.next_key(fd, key) for w, fd in zip(self.ws, self.fds)]
        assert res[0] == res[1], (key, res)
        return res[1]

    def walks(self):
        return [w.keys(fd) for w, fd in zip(self.ws, self.fds)]


@pytest.mark.parametrize("max_entries", MAX_ENTRIES)
@pytest.mark.parametrize("key_size", KEY_SIZES)
@pytest.mark.parametrize("kind", TYPES, ids=[t[0] for t in TYPES])
def test_zero_seed_walk_matches_kernel(both, kind, key_size, max_entries):
    _, map_type, map_flags = kind
    rng = random.Random(key_size * 10007 + max_entries)
    p = Pair(both, map_type, map_flags | ZERO_SEED, key_size, max_entries)
    value = bytes(p.vs)

    # Fill with random distinct keys (fewer if the key space is smaller than the map).
    keys = distinct_keys(rng, key_size, max_entries + 8)
    inserted = [k for k in keys if p.update(k, value) == 0]
    assert len(inserted) == min(max_entries, len(keys))
    host_walk = p.walks()[1]
    emu_walk = p.walks()[0]
    assert sorted(host_walk) == sorted(inserted)
    assert emu_walk == host_walk

    # A missing key restarts the walk: its next key is the first key.
    absent = [k for k in keys if k not in set(inserted)]
    for k in absent[:5]:
        assert p.next_key(k) == (0, host_walk[0])
    assert p.next_key(None) == (0, host_walk[0])
    assert p.next_key(host_walk[-1])[0] == -ENOENT

    # Re-write a random third of the keys (ANY and EXIST): HASH moves each to its bucket
    # head, PERCPU_HASH leaves it where it is.
    for k in rng.sample(inserted, len(inserted) // 3 + 1):
        assert p.update(k, rng.randbytes(p.vs), rng.choice([0, EXIST_FLAG])) == 0
    walks = p.walks()
    assert walks[0] == walks[1]
    if map_type == PERCPU_HASH:
        assert walks[1] == host_walk
    # A failed NOEXIST on an existing key changes nothing.
    assert p.update(inserted[0], value, 1) == -EEXIST
    assert p.walks()[0] == walks[1]

    # Delete a random half, check, then insert new keys into the freed room.
    gone = rng.sample(inserted, len(inserted) // 2)
    for k in gone:
        assert p.delete(k) == 0
    walks = p.walks()
    assert walks[0] == walks[1]
    for k in gone[:3]:
        assert p.next_key(k) == ((0, walks[1][0]) if walks[1] else (-ENOENT, None))
    for k in absent[:len(gone)] + gone[: len(gone) // 2]:
        p.update(k, value)
    walks = p.walks()
    assert walks[0] == walks[1]
    # Every key's successor agrees, one step at a time.
    for k in walks[1][:50]:
        p.next_key(k)


def test_bucket_positions_from_reference(client):
    """docs: #hash-order-and-jhash: u32 keys 90, 274, 280, 292 share bucket 3 (seed 0, up to 64
    buckets). Inserted in that order they iterate newest first; re-writing 274 moves it to
    the head on HASH and leaves it in place on PERCPU_HASH."""
    keys = [90, 274, 280, 292]
    for map_type, after in ((HASH, [274, 292, 280, 90]), (PERCPU_HASH, [292, 280, 274, 90])):
        for flags in (0, NO_PREALLOC):
            fd = client.create(map_type, 4, 8, 64, flags | ZERO_SEED)
            vs = sys_value_size(map_type, 8)
            for k in keys:
                assert client.update(fd, struct.pack("<I", k), bytes(vs)) == 0
            walk = [struct.unpack("<I", k)[0] for k in client.keys(fd, 4)]
            assert walk == [292, 280, 274, 90]
            assert client.update(fd, struct.pack("<I", 274), b"\1" * vs) == 0
            walk = [struct.unpack("<I", k)[0] for k in client.keys(fd, 4)]
            assert walk == after
            # Delete unlinks without reordering; a re-insert goes to the head.
            assert client.delete(fd, struct.pack("<I", 280)) == 0
            assert client.update(fd, struct.pack("<I", 280), bytes(vs)) == 0
            walk = [struct.unpack("<I", k)[0] for k in client.keys(fd, 4)]
            assert walk == [280] + [k for k in after if k != 280]
            client.close(fd)


@pytest.mark.parametrize("kind", TYPES, ids=[t[0] for t in TYPES])
def test_random_seed_walk_is_same_set(both, kind):
    """Without ZERO_SEED the orders differ per map; the key sets must not."""
    _, map_type, map_flags = kind
    rng = random.Random(5)
    p = Pair(both, map_type, map_flags, 8, 200)
    keys = distinct_keys(rng, 8, 200)
    for k in keys:
        assert p.update(k, bytes(p.vs)) == 0
    for k in keys[::3]:
        assert p.delete(k) == 0
    emu_walk, host_walk = p.walks()
    assert len(emu_walk) == len(host_walk) == len(set(host_walk))
    assert set(emu_walk) == set(host_walk)
    # A missing key still restarts each backend's own walk.
    for w, fd, walk in zip(p.ws, p.fds, (emu_walk, host_walk)):
        assert w.next_key(fd, keys[0]) == (0, walk[0])


@pytest.mark.parametrize("kind", TYPES, ids=[t[0] for t in TYPES])
def test_emulator_seed_repeats_order(kind):
    """Emulator(seed=s) draws the same per-map seeds, so the same calls give the same order;
    a different seed (almost surely) gives another order, as two kernel maps would."""
    _, map_type, map_flags = kind
    keys = distinct_keys(random.Random(1), 8, 300)

    def walk(seed):
        cl = Client(Emulator(nr_cpus=NCPU, seed=seed))
        fd = cl.create(map_type, 8, VALUE_SIZE, 300, map_flags)
        w = Walker(cl.b, 8, sys_value_size(map_type, VALUE_SIZE))
        for k in keys:
            assert w.update(fd, k, bytes(w.v.raw)) == 0
        out = w.keys(fd)
        cl.close_all()
        return out

    assert walk(1234) == walk(1234)
    assert walk(1234) != walk(4321)
    assert sorted(walk(1234)) == sorted(keys)


def test_two_kernel_maps_without_zero_seed_differ(client):
    """The reason walks without ZERO_SEED are compared as sets: two identical maps iterate
    in different orders (different random seeds), on the kernel and on the emulator."""
    keys = distinct_keys(random.Random(2), 8, 100)
    walks = []
    for _ in range(2):
        fd = client.create(HASH, 8, 8, 128)
        for k in keys:
            assert client.update(fd, k, bytes(8)) == 0
        walks.append(client.keys(fd, 8))
    assert sorted(walks[0]) == sorted(walks[1]) == sorted(keys)
    assert walks[0] != walks[1]


def test_zero_seed_maps_iterate_identically(client):
    """Two ZERO_SEED maps with equal contents iterate in the same order."""
    walks = []
    for _ in range(2):
        fd = client.create(HASH, 8, 8, 128, ZERO_SEED)
        for i in range(100):
            assert client.update(fd, u64(i * 31), bytes(8)) == 0
        walks.append(client.keys(fd, 8))
    assert walks[0] == walks[1]


@pytest.mark.parametrize("prealloc", [True, False], ids=["prealloc", "no_prealloc"])
def test_walk_orders_above_2_to_the_20_buckets(both, prealloc):
    """A map of more than 2^20 buckets (the columnar store keeps only its non-empty buckets)
    walks in the kernel's order, and its long walks get their order at once, as smaller
    maps' do: right after a fill (from the pending keys' hashes), and after deletes (from
    the lists)."""
    from bpfemu.maps.htab_columns import NO_WALK
    rng = random.Random(21)
    flags = ZERO_SEED | (0 if prealloc else NO_PREALLOC)
    p = Pair(both, HASH, flags, 4, (1 << 20) + 1)
    value = bytes(p.vs)
    keys = distinct_keys(rng, 4, 600)
    for k in keys:
        assert p.update(k, value) == 0
    emu = both[0].b
    store = emu.map_of(p.fds[0]).store if isinstance(emu, Emulator) else None
    columnar = store is not None and hasattr(store, "sparse")
    walks = p.walks()
    assert walks[0] == walks[1] and sorted(walks[1]) == sorted(keys)
    for k in rng.sample(keys, 300):
        assert p.delete(k) == 0
    ret, key = p.next_key(None)
    for _ in range(100):                        # past the steps that earn a walk its order
        ret, key = p.next_key(key)
        assert ret == 0
    if columnar:
        assert store.sparse and store.walk_order is not NO_WALK
    walks = p.walks()
    assert walks[0] == walks[1] and len(walks[1]) == 300
