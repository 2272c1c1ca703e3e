"""Tests for bpfemu.maps.jhash against docs/linux-6.18.md#hash-order-and-jhash and its reference."""
import random
import struct
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bpfemu.maps import jhash as J
from bpfemu.maps.jhash import JHASH_INITVAL, htab_hash_func, htab_map_hash, jhash, jhash2

M = 0xFFFFFFFF
u32 = st.integers(min_value=0, max_value=M)


def le_words(key: bytes) -> tuple[int, ...]:
    return struct.unpack("<%dI" % (len(key) // 4), key)


def reference_htab_map_hash(key: bytes, seed: int) -> int:
    """htab_map_hash built only from the slow reference functions."""
    if len(key) % 4 == 0:
        return J._jhash2_generic(le_words(key), seed)
    return J._jhash_generic(key, seed)


# docs: #hash-order-and-jhash: key, function the kernel uses, hash with seed 0, with 0x12345678.
VECTORS = [
    ("01000000", "jhash2", 0x72A82A9B, 0x22417FF4),
    ("0100000000000000", "jhash2", 0x5543253F, 0x493365B7),
    (bytes(range(6)).hex(), "jhash", 0x5229EE9E, 0x1F084625),
    (bytes(range(12)).hex(), "jhash2", 0x5E4AA593, 0x1011BBF2),
    (bytes(range(13)).hex(), "jhash", 0xBC9D6816, 0x7866D225),
    (bytes(range(16)).hex(), "jhash2", 0x5E84EAFC, 0x6D034488),
    (bytes(range(24)).hex(), "jhash2", 0x9C0ADD53, 0x938E41AB),
    ("61", "jhash", 0x58D68708, 0x314B81AF),
]


@pytest.mark.parametrize("key_hex,func,h0,h1", VECTORS)
@pytest.mark.parametrize("which_seed", [0, 1])
def test_reference_vectors(key_hex, func, h0, h1, which_seed):
    key = bytes.fromhex(key_hex)
    seed, want = ((0, h0), (0x12345678, h1))[which_seed]
    assert (func == "jhash2") == (len(key) % 4 == 0)   # the table agrees with the docs
    assert htab_map_hash(key, seed) == want
    assert htab_hash_func(len(key))(key, seed) == want
    assert reference_htab_map_hash(key, seed) == want
    if func == "jhash2":
        assert jhash2(le_words(key), seed) == want
        assert J._jhash2_generic(list(le_words(key)), seed) == want
    else:
        assert jhash(key, seed) == want
        assert J._jhash_generic(key, seed) == want


# -- jhash == jhash2 on little-endian for 4-multiple lengths (docs: #hash-order-and-jhash) ---

@settings(max_examples=300)
@given(nwords=st.integers(min_value=0, max_value=20), data=st.data(), seed=u32)
def test_jhash_equals_jhash2_on_little_endian(nwords, data, seed):
    key = data.draw(st.binary(min_size=4 * nwords, max_size=4 * nwords))
    words = le_words(key)
    want = J._jhash2_generic(words, seed)
    assert jhash(key, seed) == want
    assert J._jhash_generic(key, seed) == want
    assert jhash2(words, seed) == want


# -- every fast path equals the reference, lengths 1..64 ------------------------------

_SEEDS = [0, 1, 0x12345678, 0xFFFFFFFF]


@pytest.mark.parametrize("length", range(1, 65))
def test_fast_paths_match_reference(length):
    rng = random.Random(length)
    hashfn = htab_hash_func(length)
    for i in range(60):
        key = rng.randbytes(length)
        seed = _SEEDS[i] if i < len(_SEEDS) else rng.getrandbits(32)
        want = reference_htab_map_hash(key, seed)
        assert htab_map_hash(key, seed) == want
        assert hashfn(key, seed) == want
        assert jhash(key, seed) == J._jhash_generic(key, seed)
        if length % 4 == 0:
            words = le_words(key)
            assert jhash2(words, seed) == J._jhash2_generic(words, seed)
    # All-ones and all-zero keys stress carries and the masking of intermediate values.
    for key in (b"\xff" * length, bytes(length)):
        for seed in _SEEDS:
            assert htab_map_hash(key, seed) == reference_htab_map_hash(key, seed)
            assert jhash(key, seed) == J._jhash_generic(key, seed)


@pytest.mark.parametrize("length", sorted(J._SPECIALISED))
def test_specialised_sizes_are_used(length):
    # Guards the dispatch itself: these sizes must not fall back to the loop.
    assert htab_hash_func(length) is J._SPECIALISED[length]


@settings(max_examples=300)
@given(key=st.binary(min_size=1, max_size=100), seed=u32)
def test_htab_map_hash_matches_reference(key, seed):
    h = htab_map_hash(key, seed)
    assert h == reference_htab_map_hash(key, seed)
    assert 0 <= h <= M


@settings(max_examples=200)
@given(words=st.lists(u32, max_size=20), seed=u32)
def test_jhash2_matches_reference(words, seed):
    assert jhash2(words, seed) == J._jhash2_generic(words, seed)
    assert jhash2(tuple(words), seed) == J._jhash2_generic(words, seed)


# -- edge cases ------------------------------------------------------------------------

@pytest.mark.parametrize("seed", _SEEDS)
def test_empty_input_returns_initial_c_without_final(seed):
    # Length 0: a = b = c = JHASH_INITVAL + 0 + initval, returned unmixed (u32).
    want = (JHASH_INITVAL + seed) & M
    assert jhash(b"", seed) == want
    assert J._jhash_generic(b"", seed) == want
    assert jhash2([], seed) == want
    assert J._jhash2_generic([], seed) == want
    assert htab_map_hash(b"", seed) == want


@pytest.mark.parametrize("seed", _SEEDS)
def test_exactly_12_bytes_skips_mix(seed):
    # "while (length > 12)": a full single block is the tail, so only __jhash_final runs.
    key = random.Random(seed).randbytes(12)
    w0, w1, w2 = le_words(key)
    init = (JHASH_INITVAL + 12 + seed) & M
    want = J._final((init + w0) & M, (init + w1) & M, (init + w2) & M)
    assert jhash(key, seed) == want
    assert jhash2([w0, w1, w2], seed) == want
    assert htab_map_hash(key, seed) == want


@pytest.mark.parametrize("seed", _SEEDS)
def test_exactly_24_bytes_one_mix_then_tail(seed):
    # One __jhash_mix on the first 12 bytes; the last 12 are the tail for __jhash_final.
    key = random.Random(seed + 1).randbytes(24)
    w = le_words(key)
    init = (JHASH_INITVAL + 24 + seed) & M
    a, b, c = J._mix((init + w[0]) & M, (init + w[1]) & M, (init + w[2]) & M)
    want = J._final((a + w[3]) & M, (b + w[4]) & M, (c + w[5]) & M)
    assert jhash(key, seed) == want
    assert jhash2(w, seed) == want
    assert htab_map_hash(key, seed) == want


def test_tail_bytes_are_zero_padded_little_endian():
    # A 13-byte key: one mix, then a 1-byte tail added into the low byte of a.
    key = bytes(range(1, 14))
    seed = 7
    w = le_words(key[:12])
    init = (JHASH_INITVAL + 13 + seed) & M
    a, b, c = J._mix((init + w[0]) & M, (init + w[1]) & M, (init + w[2]) & M)
    want = J._final((a + key[12]) & M, b, c)
    assert jhash(key, seed) == want
    assert htab_map_hash(key, seed) == want


# -- htab_map_hash_many: many keys at once, on big-int lanes -----------------------------
#
# Lanes are processed in batches of J._BATCH_LANES (4096): the counts cover empty input,
# the scalar-sized batches, and both sides of one and two batch boundaries.

_MANY_SIZES = list(range(1, 41)) + [64, 100]
_MANY_COUNTS = [0, 1, 2, 7, 8, 9, 4095, 4096, 4097, 9000]
_MANY_SEEDS = [0, 0xFFFFFFFF, 1, 0x12345678]


def _check_many(keys, key_size, seed):
    got = J.htab_map_hash_many(keys, key_size, seed)
    assert isinstance(got, array) and got.typecode == "I"
    assert len(got) == len(keys)
    cache = {}
    want = [cache[k] if k in cache else cache.setdefault(k, htab_map_hash(k, seed))
            for k in keys]
    if got.tolist() != want:
        bad = next(i for i, (g, w) in enumerate(zip(got, want)) if g != w)
        raise AssertionError(f"key_size {key_size} seed {seed:#x} count {len(keys)}: "
                             f"lane {bad} key {keys[bad].hex()} got {got[bad]:#x} "
                             f"want {want[bad]:#x}")


def test_many_batch_size_is_4096():
    # The counts below straddle the batch boundary only if it is where they assume.
    assert J._BATCH_LANES == 4096


@pytest.mark.parametrize("key_size", _MANY_SIZES)
def test_hash_many_matches_scalar(key_size):
    rng = random.Random(0x5EED + key_size)
    pool = [rng.randbytes(key_size) for _ in range(max(_MANY_COUNTS) + 64)]
    for i, count in enumerate(_MANY_COUNTS):
        # The fixed seeds (0 and 0xFFFFFFFF first) in turn, then random ones; a different
        # slice of the pool each time so that each batch sees other keys.
        seed = _MANY_SEEDS[i] if i < len(_MANY_SEEDS) else rng.getrandbits(32)
        start = rng.randrange(64)
        _check_many(pool[start:start + count], key_size, seed)


@pytest.mark.parametrize("key_size", _MANY_SIZES)
@pytest.mark.parametrize("seed", [0, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF])
def test_hash_many_extreme_keys(key_size, seed):
    # All-zero and all-0xff keys side by side: lanes full of ones next to lanes of zeros,
    # where a carry or a borrow leaking from one lane into the next would show. Also alone,
    # and mixed with random keys across the batch boundary.
    zero, ones = bytes(key_size), b"\xff" * key_size
    rng = random.Random(key_size * 31 + seed)
    for keys in ([zero], [ones], [zero, ones], [ones, zero], [ones] * 9, [zero] * 9,
                 [zero, ones] * 5 + [ones, ones, zero]):
        _check_many(keys, key_size, seed)
    mixed = [rng.choice((zero, ones, rng.randbytes(key_size))) for _ in range(4101)]
    mixed[4094:4099] = [ones, zero, ones, zero, ones]          # around lane 4096
    _check_many(mixed, key_size, seed)


def test_hash_many_keeps_order_and_accepts_tuples():
    keys = [struct.pack("<I", i) for i in range(5000)]
    got = J.htab_map_hash_many(tuple(keys), 4, 0)
    assert got.tolist() == [htab_map_hash(k, 0) for k in keys]
    # Reversed input gives the reversed output: lane i is key i, in and across batches.
    assert J.htab_map_hash_many(keys[::-1], 4, 0).tolist() == got.tolist()[::-1]
