"""The columnar store's deferred linking (maps/htab_columns.py) against the simple store.

ColumnarStore links a new element into its bucket only when something next reads the
buckets (GET_NEXT_KEY, LOOKUP_BATCH, LOOKUP_AND_DELETE_BATCH): until then it waits, and the
walk hashes every waiting key at once (jhash on big-int lanes from 8 keys up, the scalar
hash below). A GET_NEXT_KEY walk that starts when every element waits (more than 64) sorts
them by their hashes into its order instead, and they keep waiting until a later walk.
Replacing or deleting a waiting element, replacing a linked one while others wait, and long
insert/delete churn without a walk all have their own code paths. None of this may show:
each test runs the same calls on an emulator with the columnar store and on one with the
simple store (htab_store.py, eager: the definition, which tests/differential checks against
the kernel with ``--htab-store=simple``), on BPF_F_ZERO_SEED maps, and every walk must
return exactly the same sequence, with the same errnos. ``ColumnarStore.waiting()`` tells
that a test reaches the path it is about.
"""
import random
import struct

import pytest

from tests.differential.abi_support import ENOSPC, LOOKUP_AND_DELETE_BATCH, LOOKUP_BATCH
from tests.differential.hash_support import (E2BIG, EEXIST, ENOENT, EXIST_FLAG, HASH,
                                             NO_PREALLOC, PERCPU_HASH, ZERO_SEED)
from tests.differential.test_batch import Bufs, lookup_call
from tests.differential.test_hash_order import Pair, distinct_keys
from tests.support import NCPU, Client

from bpfemu import Emulator

KINDS = [("hash", HASH, 0), ("hash_noprealloc", HASH, NO_PREALLOC),
         ("percpu", PERCPU_HASH, 0)]
KEY_SIZES = [4, 5, 16]
NOEXIST_FLAG = 1

pytestmark = [pytest.mark.parametrize("key_size", KEY_SIZES),
              pytest.mark.parametrize("kind", KINDS, ids=[k[0] for k in KINDS])]


def first_difference(a, b):
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return (f"lengths {len(a)} (columnar) / {len(b)} (simple); first difference at {n}: "
            f"{a[n:n + 3]!r} / {b[n:n + 3]!r}")


def assert_same(columnar, simple):
    assert columnar == simple, first_difference(columnar, simple)


@pytest.fixture
def both():
    """(columnar, simple): the same calls on the two stores."""
    pair = [Client(Emulator(nr_cpus=NCPU, seed=1, store=store)) for store in ("columnar", "simple")]
    yield pair
    for cl in pair:
        cl.close_all()


class PendingPair(Pair):
    """A ZERO_SEED map on both stores, plus the columnar map's store and a model of the
    keys it should hold (to check the test itself as well)."""

    def __init__(self, both, kind, key_size, max_entries):
        _, map_type, map_flags = kind
        super().__init__(both, map_type, map_flags | ZERO_SEED, key_size, max_entries)
        self.ks = key_size
        self.store = both[0].b.map_of(self.fds[0]).store
        self.model = {}
        self.serial = 0

    def live_pending(self):
        """Elements the columnar store has not linked into a bucket yet."""
        return len(self.store.waiting())

    def value(self):
        """A value never used before in this map, so a lost update shows."""
        self.serial += 1
        return struct.pack("<Q", self.serial * 0x9E3779B97F4A7C15 & (2**64 - 1)) * (self.vs // 8)

    def put(self, key, flags=0, want=0):
        v = self.value()
        assert self.update(key, v, flags) == want, (key, flags)
        if want == 0:
            self.model[key] = v

    def remove(self, key, want=0):
        assert self.delete(key) == want, key
        self.model.pop(key, None)

    def walk(self):
        """The full GET_NEXT_KEY walk, identical on both, and the model's keys."""
        columnar, simple = self.walks()
        assert_same(columnar, simple)
        assert sorted(simple) == sorted(self.model)
        return simple

    def walk_linked(self):
        """The full walk, twice: the first walk of a map whose elements are all pending
        orders them by their hashes without linking them (htab_pending_walk_order); the
        second links them. Both identical on both backends."""
        first = self.walk()
        assert self.walk() == first
        assert self.live_pending() == 0
        return first

    def check_values(self, keys):
        for k in keys:
            res = [cl.lookup(fd, k, self.vs) for cl, fd in zip(self.cls, self.fds)]
            assert res[0] == res[1] == (0, self.model[k]), k


def key_of(i, key_size):
    """Distinct keys for distinct i < 2^32, spread over every byte of the key."""
    return (struct.pack("<I", i) + struct.pack("<I", i * 2654435761 & 0xFFFFFFFF) * 4)[:key_size]


# --- a: many pending inserts, hashed in one batch ------------------------------------------

def test_many_inserts_then_walk(both, kind, key_size):
    rng = random.Random(key_size)
    p = PendingPair(both, kind, key_size, 3000)          # 4096 buckets, many shared
    keys = distinct_keys(rng, key_size, 3000)
    for k in keys[:2000]:
        p.put(k)
    assert p.live_pending() == 2000
    first = p.walk()
    assert p.live_pending() == 2000                      # ordered by their hashes, unlinked
    assert p.walk() == first                             # linked now: the same again
    assert p.live_pending() == 0
    # 1000 more, pending on top of the linked buckets; then one too many.
    for k in keys[2000:]:
        p.put(k)
    p.put(distinct_keys(rng, key_size, 1, avoid=keys)[0], want=-E2BIG)       # full
    assert p.live_pending() == 1000
    walk = p.walk()
    assert len(walk) == 3000
    p.check_values(walk[::7])


def test_big_batches(both, kind, key_size):
    """More than 4096 pending elements, a good part of the map: the walk links them through
    lists (and sets the hashes of consecutive never-used slots in one go). Then deletes
    that must find each element's bucket from its stored hash, and a second big batch in
    reused slots, which are not consecutive."""
    rng = random.Random(50 + key_size)
    p = PendingPair(both, kind, key_size, 12000)
    keys = [key_of(i, key_size) for i in range(24000)]
    for k in keys[:10000]:
        p.put(k)
    assert p.live_pending() == 10000
    first = p.walk_linked()
    assert len(first) == 10000
    p.check_values(first[::97])
    # Deletes all over the buckets (heads, middles and tails of their lists), walked after.
    for k in first[::3]:
        p.remove(k)
    p.check_values(p.walk()[::89])
    # A second batch, into the slots freed just now (a LIFO: not in slot order) and new ones.
    gone = first[::3]
    for k in rng.sample(gone, len(gone)) + keys[10000:12000]:
        p.put(k)
    p.put(keys[12000], want=-E2BIG)                        # exactly full
    assert p.live_pending() > 4096
    walk = p.walk()
    assert len(walk) == 12000
    p.check_values(walk[::61])
    for k in walk[1::2]:
        p.remove(k)
    assert len(p.walk()) == 6000


def test_big_batch_in_shuffled_slots(both, kind, key_size):
    """A big batch whose slots are a shuffled run with its ends in place (freed in an order
    that the freelist hands back as 0, shuffled 1..6998, 6999): its hashes must still go to
    the right slots."""
    rng = random.Random(60 + key_size)
    p = PendingPair(both, kind, key_size, 9000)
    keys = [key_of(i, key_size) for i in range(16000)]
    for k in keys[:9000]:
        p.put(k)                                           # key i in slot i
    p.walk_linked()
    middle = keys[1:6999]
    for k in [keys[6999]] + rng.sample(middle, len(middle)) + [keys[0]]:
        p.remove(k)
    for k in keys[9000:16000]:
        p.put(k)
    pending = p.store.waiting()
    assert (pending[0], pending[-1], len(pending)) == (0, 6999, 7000)    # the scenario
    assert pending != sorted(pending)
    walk = p.walk()
    assert len(walk) == 9000
    p.check_values(walk[::37])


def test_refilled_map_walked_unlinked(both, kind, key_size):
    """A map filled, emptied by deletes and filled again: the new elements take the freed
    slots (LIFO, so in no run) and are all pending. The first walk orders them by their
    hashes without linking them; the second links them. Both as the simple store's."""
    p = PendingPair(both, kind, key_size, 3000)
    keys = [key_of(i, key_size) for i in range(5000)]
    for k in keys[:2500]:
        p.put(k)
    for k in p.walk_linked():
        p.remove(k)
    for k in keys[2500:]:
        p.put(k)
    waiting = p.store.waiting()
    assert len(waiting) == 2500 and waiting != sorted(waiting)
    walk = p.walk()
    assert p.live_pending() == 2500                             # ordered, not linked
    p.check_values(walk[::53])
    assert p.walk_linked() == walk


# --- b: updates and deletes of pending and linked elements ---------------------------------

def test_updates_and_deletes_while_pending(both, kind, key_size):
    rng = random.Random(100 + key_size)
    p = PendingPair(both, kind, key_size, 400)
    keys = distinct_keys(rng, key_size, 400)
    for k in keys[:100]:
        p.put(k)
    # Pending elements re-written while others are pending (HASH: a new element, newest of
    # all; PERCPU_HASH: in place), with ANY and EXIST; NOEXIST fails.
    for i in range(10, 30):
        p.put(keys[i], rng.choice([0, EXIST_FLAG]))
    p.put(keys[5], NOEXIST_FLAG, want=-EEXIST)
    p.put(keys[11], 0)                                   # replaced twice
    # Pending elements deleted: some never touched, some replaced; a missing key.
    for i in list(range(40, 50)) + [10, 12, 29]:
        p.remove(keys[i])
    p.remove(keys[40], want=-ENOENT)
    # More inserts, reusing the freed elements, and a deleted key back again.
    for k in keys[100:150] + [keys[45], keys[10]]:
        p.put(k)
    assert p.live_pending() > 8
    walk = p.walk()
    p.check_values(walk)

    # Now linked: re-write linked elements while new ones are pending, then the same mix.
    for k in keys[150:180]:
        p.put(k)
    for k in walk[::5]:
        p.put(k, rng.choice([0, EXIST_FLAG]))           # linked, others pending
    for k in keys[150:160:2]:
        p.put(k)                                         # pending, replaced
    for k in walk[1::9]:
        p.remove(k)                                      # linked, deleted
    for k in keys[160:170:3]:
        p.remove(k)                                      # pending, deleted
    for k in keys[180:200]:
        p.put(k)
    walk = p.walk()
    p.check_values(walk)

    # A single linked element re-written with nothing else pending, then one more pending.
    p.put(walk[len(walk) // 2])
    p.put(keys[200])
    p.put(walk[3])
    p.check_values(p.walk())


# --- c: fewer than 8 pending elements (the scalar hash) ------------------------------------

def test_few_pending_on_linked_map(both, kind, key_size):
    rng = random.Random(200 + key_size)
    p = PendingPair(both, kind, key_size, 512)          # 512 buckets: collisions
    keys = distinct_keys(rng, key_size, 400)
    for k in keys[:300]:
        p.put(k)
    walk = p.walk_linked()
    nxt = 300
    for n in range(1, 10):                               # 1..7 scalar, 8 and 9 batched
        for k in keys[nxt:nxt + n]:
            p.put(k)
        nxt += n
        assert p.live_pending() == n
        walk = p.walk()
    # A few pending with stale entries among them: replaced and deleted ones.
    for k in keys[nxt:nxt + 6]:
        p.put(k)
    p.put(keys[nxt + 1])
    p.remove(keys[nxt + 2])
    p.put(walk[0])                                       # a linked one re-written
    assert 0 < p.live_pending() < 8
    p.check_values(p.walk())


# --- d: insert/delete churn without a walk -------------------------------------------------

def test_churn_without_walk(both, kind, key_size):
    p = PendingPair(both, kind, key_size, 64)
    # Residents: pending through the whole churn (so through every compaction of the
    # pending list), some re-written now and then; 20 keys in 64 buckets share some.
    residents = [key_of(1_000_000 + j, key_size) for j in range(20)]
    for k in residents:
        p.put(k)
    for i in range(20000):
        p.put(key_of(i, key_size))
        if i >= 5:
            p.remove(key_of(i - 5, key_size))
        if i % 7 == 0 and i >= 2:
            p.put(key_of(i - 2, key_size), EXIST_FLAG)  # a pending one re-written
        if i % 1500 == 0:
            p.put(residents[i // 1500])
    walk = p.walk()
    assert len(walk) == 25
    p.check_values(walk)
    assert p.live_pending() == 0
    # Churn on linked elements with new ones pending, then the walk again.
    for i in range(20000, 20300):
        p.put(key_of(i, key_size))
        p.remove(key_of(i - 5, key_size))
    p.check_values(p.walk())


# --- e: GET_NEXT_KEY from a key the caller chose, with elements pending ---------------------

def test_next_key_from_any_key_while_pending(both, kind, key_size):
    rng = random.Random(300 + key_size)
    p = PendingPair(both, kind, key_size, 1000)
    keys = distinct_keys(rng, key_size, 1100)
    absent = keys[1000:]
    for k in keys[:200]:
        p.put(k)
    nxt = 200
    for round_ in range(60):
        n = (1, 3, 7, 8, 12, 30)[round_ % 6]
        for k in keys[nxt:nxt + n]:
            p.put(k)
        nxt += n
        if round_ % 4 == 1:
            p.put(rng.choice(list(p.model)))             # a re-write among the pending
        assert p.live_pending() >= n
        if round_ % 5 == 2:
            p.remove(rng.choice(list(p.model)))
        # From an arbitrary existing key (linked or just inserted), or from a missing one.
        if round_ % 3 == 2:
            start = rng.choice(absent)
        elif round_ % 3 == 1:
            start = keys[nxt - 1]                        # the newest, pending until now
        else:
            start = rng.choice(list(p.model))
        ret, got = p.next_key(start)
        assert ret == 0 and got in p.model
        # A few steps on from there, then back to a key the walk did not just return.
        for _ in range(3):
            ret, got = p.next_key(got)
            if ret:
                break
    p.walk()


def test_next_key_after_the_returned_key_changed(both, kind, key_size):
    """A walk step from the key returned last; these change that element
    between two calls: re-written, deleted, deleted and its memory reused by another key,
    deleted and inserted again, each with other elements pending."""
    rng = random.Random(400 + key_size)
    p = PendingPair(both, kind, key_size, 300)
    keys = distinct_keys(rng, key_size, 400)
    for k in keys[:200]:
        p.put(k)
    nxt = 200
    walk = p.walk()
    for step in range(40):
        start = walk[rng.randrange(len(walk) - 1)] if step % 2 else None
        ret, k = p.next_key(start)
        assert ret == 0
        what = step % 4
        if what == 0:
            p.put(k)                                     # re-written
        elif what == 1:
            p.remove(k)                                  # deleted
        elif what == 2:
            p.remove(k)                                  # deleted, memory reused
            p.put(keys[nxt])
            nxt += 1
        else:
            p.remove(k)                                  # deleted and inserted again
            p.put(k)
        for kk in keys[nxt:nxt + 2]:
            p.put(kk)
        nxt += 2
        p.next_key(k)
        walk = p.walk()


# --- f: batch lookups right after pending inserts ------------------------------------------

def batch_walks(p, cmd, count, between=None):
    """A full batch walk on both stores in lockstep: every call's (ret, count, keys,
    values, out_batch) for each side, keys and values cut to the count returned.
    ``between(i)`` runs (on both) after call i, before the next one."""
    bufs = [Bufs(count, p.ks, p.vs) for _ in p.cls]
    out = ([], [])
    for i in range(100000):
        done = False
        for side, (cl, fd) in enumerate(zip(p.cls, p.fds)):
            r = lookup_call(cl.b, cmd, fd, bufs[side], count, in_batch=i > 0)
            n = r[1]
            out[side].append((r[0], n, r[2][:n * p.ks], r[3][:n * p.vs], r[4][:4]))
            bufs[side].inb.set(r[4][:4])
            done = done or r[0] != 0
        if done:
            assert_same(*out)
            return out[1]
        if between is not None:
            between(i)
    raise AssertionError("batch walk did not end")


def keys_in(p, result):
    blob = b"".join(r[2] for r in result)
    return sorted(blob[i:i + p.ks] for i in range(0, len(blob), p.ks))


def test_lookup_batch_after_pending_inserts(both, kind, key_size):
    rng = random.Random(500 + key_size)
    p = PendingPair(both, kind, key_size, 1000)          # 1024 buckets
    keys = distinct_keys(rng, key_size, 1000)
    nxt = 0
    for count in (1, 2, 5, 64, 1000):
        # New elements pending (and some stale entries) right before each walk.
        for k in keys[nxt:nxt + 150]:
            p.put(k)
        nxt += 150
        for k in keys[nxt - 20:nxt - 10]:
            p.put(k)
        for k in keys[nxt - 10:nxt - 5]:
            p.remove(k)
        assert p.live_pending() >= 8
        simple = batch_walks(p, LOOKUP_BATCH, count)
        if count >= 5:                                   # no bucket holds more
            assert simple[-1][0] == -ENOENT
            assert keys_in(p, simple) == sorted(p.model)
        else:
            assert simple[-1][0] in (-ENOENT, -ENOSPC)
    # Few pending (the scalar hash) before a walk, too.
    for k in keys[nxt:nxt + 3]:
        p.put(k)
    assert 0 < p.live_pending() < 8
    simple = batch_walks(p, LOOKUP_BATCH, 7)
    assert keys_in(p, simple) == sorted(p.model)
    p.walk()


@pytest.mark.parametrize("count", [1, 3, 64, 256, 1001])
def test_lookup_batch_of_a_filled_map_keeps_it_pending(both, kind, key_size, count):
    """A LOOKUP_BATCH walk of a map whose elements all wait (filled, not walked since)
    takes its buckets from their order (the hashes, sorted), made once for the whole walk,
    and links nothing, as a GET_NEXT_KEY walk; a second walk gives the same."""
    rng = random.Random(700 + key_size + count)
    p = PendingPair(both, kind, key_size, 1000)          # 1024 buckets
    for k in distinct_keys(rng, key_size, 900):
        p.put(k)
    assert p.live_pending() == 900
    first = batch_walks(p, LOOKUP_BATCH, count)
    assert p.live_pending() == 900                        # nothing linked
    assert batch_walks(p, LOOKUP_BATCH, count) == first
    if count >= 64:
        assert keys_in(p, first) == sorted(p.model)
    # Emptied and filled again with other keys: all waiting again, a new order.
    p.walk_linked()
    for k in list(p.model):
        p.remove(k)
    refill = distinct_keys(rng, key_size, 700)
    for k in refill:
        p.put(k)
    # Stale entries in pending (as an LRU map's evictions leave): some of them deleted,
    # some replaced; every element still waits.
    for k in refill[:20]:
        p.remove(k)
    for k in refill[100:110]:
        p.put(k)
    assert p.live_pending() == 680
    again = batch_walks(p, LOOKUP_BATCH, count)
    assert p.live_pending() == 680                        # nothing linked
    if count >= 64:
        assert keys_in(p, again) == sorted(p.model)
    p.walk()


@pytest.mark.parametrize("count", [1, 3, 64, 256])
def test_lookup_and_delete_batch_of_a_filled_map_keeps_the_rest_pending(both, kind, key_size,
                                                                        count):
    """LOOKUP_AND_DELETE_BATCH on a map whose elements all wait takes them from their batch
    order too: the elements it deletes leave the order, the rest keep waiting."""
    rng = random.Random(900 + key_size + count)
    p = PendingPair(both, kind, key_size, 1000)
    for k in distinct_keys(rng, key_size, 900):
        p.put(k)
    calls = []

    def between(i):
        calls.append(p.live_pending())
        if i == 2:                              # and a LOOKUP_BATCH in the middle
            batch_once(p, LOOKUP_BATCH, 50, 0)

    simple = batch_walks(p, LOOKUP_AND_DELETE_BATCH, count, between)
    for k in keys_in(p, simple):
        del p.model[k]
    taken = [r[1] for r in simple]
    assert calls == [900 - sum(taken[:i + 1]) for i in range(len(calls))]  # nothing linked
    if count >= 64:
        assert simple[-1][0] == -ENOENT and not p.model
    p.check_values(p.walk())


@pytest.mark.parametrize("change", ["insert", "replace", "delete", "next_key", "walk",
                                    "lookup_and_delete"])
def test_filled_map_changed_in_the_middle_of_a_lookup_batch_walk(both, kind, key_size, change):
    """Between two calls of a LOOKUP_BATCH walk served from the waiting elements' order,
    the map changes (or another walk runs): the rest of the walk is the lists' as they are
    now, the same on both stores."""
    rng = random.Random(800 + key_size)
    p = PendingPair(both, kind, key_size, 1000)
    keys = distinct_keys(rng, key_size, 1000)
    for k in keys[:800]:
        p.put(k)
    more = iter(keys[800:])

    def between(i):
        if i % 2:
            return
        if change == "insert":
            p.put(next(more))
        elif change == "replace":
            p.put(keys[(37 * i) % 800])
        elif change == "delete":
            k = keys[(53 * i) % 800]
            p.remove(k, want=0 if k in p.model else -ENOENT)
        elif change == "next_key":
            assert p.next_key(None)[0] == 0
        elif change == "walk":
            p.walk()
        else:
            side = batch_once(p, LOOKUP_AND_DELETE_BATCH, 3, i)
            for k in side:
                del p.model[k]

    batch_walks(p, LOOKUP_BATCH, 50, between)
    p.check_values(p.walk())


def batch_once(p, cmd, count, i):
    """One batch call from bucket i on both stores, the same on both: the keys taken."""
    out = []
    for cl, fd in zip(p.cls, p.fds):
        bufs = Bufs(count, p.ks, p.vs, token=struct.pack("<I", i))
        r = lookup_call(cl.b, cmd, fd, bufs, count, in_batch=True)
        out.append((r[0], r[1], r[2][:r[1] * p.ks], r[3][:r[1] * p.vs], r[4][:4]))
    assert_same(out[0], out[1])
    blob = out[0][2]
    return [blob[j:j + p.ks] for j in range(0, len(blob), p.ks)]


@pytest.mark.parametrize("count", [3, 40, 1000])
def test_lookup_and_delete_batch_after_pending_inserts(both, kind, key_size, count):
    rng = random.Random(600 + key_size + count)
    n = 1000
    keys = distinct_keys(rng, key_size, n + 200)
    p = PendingPair(both, kind, key_size, n)
    for k in keys[:n // 2]:
        p.put(k)
    p.walk()
    for k in keys[n // 2:n - 50]:                        # pending on top of linked
        p.put(k)
    for k in keys[:40]:
        p.put(k)                                         # linked ones re-written
    for k in keys[n - 120:n - 100]:
        p.remove(k)                                      # pending ones deleted
    more = iter(keys[n:])

    def between(i):
        # Inserts between two calls: pending again, in buckets before and after the token
        # (those before it are not seen by this walk).
        if i % 3 == 0:
            for _ in range(5):
                k = next(more, None)
                if k is not None:
                    p.put(k)

    simple = batch_walks(p, LOOKUP_AND_DELETE_BATCH, count, between)
    for k in keys_in(p, simple):
        del p.model[k]
    if count >= 40:
        assert simple[-1][0] == -ENOENT
    p.check_values(p.walk())


# --- g: a walk that deletes as it goes, with inserts pending in the middle ------------------

@pytest.mark.parametrize("order", ["next_then_delete", "delete_then_next"])
def test_delete_as_you_go_with_pending_inserts(both, kind, key_size, order):
    rng = random.Random(700 + key_size + len(order))
    p = PendingPair(both, kind, key_size, 400)
    keys = distinct_keys(rng, key_size, 600)
    for k in keys[:250]:
        p.put(k)
    if order == "next_then_delete":
        p.walk()                                         # start from linked elements
    more = iter(keys[250:])
    ret, cur = p.next_key(None)
    step = 0
    while ret == 0 and step < 2000:
        step += 1
        if order == "next_then_delete":
            ret, nxt = p.next_key(cur)
            p.remove(cur)
        else:
            p.remove(cur)
            ret, nxt = p.next_key(cur)                  # deleted: back to the first
        if step % 17 == 0:
            for _ in range(step % 9 + 1):                # 1..9 new, pending
                k = next(more, None)
                if k is not None:
                    p.put(k)
        if step % 23 == 0 and ret == 0:
            p.put(cur)                                   # the deleted key, back again
        cur = nxt
    assert ret == -ENOENT
    left = p.walk()
    if order == "delete_then_next":
        assert left == []                                # it drained the map
