"""Bob Jenkins' lookup3 hash as the Linux kernel uses it for BPF hash maps.

The kernel picks a hash map's bucket with ``htab_map_hash`` (kernel/bpf/hashtab.c),
which calls ``jhash2`` (include/linux/jhash.h) on the key's u32 words when the key
size is a multiple of 4 and ``jhash`` on its bytes otherwise.  Bucket order is
visible to user space through BPF_MAP_GET_NEXT_KEY, so the emulator must produce
the very same 32-bit values.

We model a little-endian (x86) kernel: ``jhash2``'s native-endian words are read
little-endian whatever the host, so results never depend on where we run.  On
little-endian ``jhash(key) == jhash2(words(key))`` for every 4-multiple length.

Layout of this module:

* ``_jhash_generic`` / ``_jhash2_generic``: a plain transcription of the kernel
  functions with ``_mix``/``_final`` helpers.  Slow; it is the reference the tests
  compare everything else against.
* ``jhash`` / ``jhash2``: the same algorithm with ``__jhash_mix`` and
  ``__jhash_final`` inlined, for any length.
* ``_hash4`` .. ``_hash16``: straight-line code for the common key sizes, for the few
  keys hashed one by one (htab_columns.ColumnarStore.sync with fewer than 8 waiting).
* ``htab_map_hash`` and ``htab_hash_func``: the kernel's choice between the two.
* ``htab_map_hash_many``: the same for a list of keys at once, on big ints (see there).

Masking: Python ints never overflow, so every value is only *congruent* to the
kernel's u32 mod 2**32.  That is harmless for +, - and ^, whose low 32 bits depend
only on the operands' low 32 bits.  A rotation's right shift is the one place
where high bits leak into low ones, so a value is masked just before it is rotated
(and once more on return).  Python's ``&`` on negative ints is two's complement,
so ``(x - y) & 0xffffffff`` is the kernel's u32 subtraction.
"""
import struct
import sys
from array import array
from collections.abc import Callable, Sequence

__all__ = ["JHASH_INITVAL", "jhash", "jhash2", "htab_map_hash", "htab_hash_func", "htab_map_hash_many"]

# "An arbitrary initial parameter" in include/linux/jhash.h.
JHASH_INITVAL = 0xDEADBEEF

_M = 0xFFFFFFFF


# ----------------------------------------------------------------------------------
# Reference implementation: obviously correct, every step masked, not fast.
# ----------------------------------------------------------------------------------

def _rol32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    """__jhash_mix: mix three u32 values reversibly."""
    a = (a - c) & _M; a ^= _rol32(c, 4);  c = (c + b) & _M
    b = (b - a) & _M; b ^= _rol32(a, 6);  a = (a + c) & _M
    c = (c - b) & _M; c ^= _rol32(b, 8);  b = (b + a) & _M
    a = (a - c) & _M; a ^= _rol32(c, 16); c = (c + b) & _M
    b = (b - a) & _M; b ^= _rol32(a, 19); a = (a + c) & _M
    c = (c - b) & _M; c ^= _rol32(b, 4);  b = (b + a) & _M
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    """__jhash_final: fold a, b and c into c, which is the hash."""
    c ^= b; c = (c - _rol32(b, 14)) & _M
    a ^= c; a = (a - _rol32(c, 11)) & _M
    b ^= a; b = (b - _rol32(a, 25)) & _M
    c ^= b; c = (c - _rol32(b, 16)) & _M
    a ^= c; a = (a - _rol32(c, 4)) & _M
    b ^= a; b = (b - _rol32(a, 14)) & _M
    c ^= b; c = (c - _rol32(b, 24)) & _M
    return c


def _jhash_generic(data: bytes, initval: int) -> int:
    """jhash, byte by byte as the kernel does it."""
    length = len(data)
    a = b = c = (JHASH_INITVAL + length + initval) & _M
    k = 0
    # Strictly more than 12: the last block, even a full one, goes to the tail.
    while length > 12:
        a = (a + int.from_bytes(data[k:k + 4], "little")) & _M
        b = (b + int.from_bytes(data[k + 4:k + 8], "little")) & _M
        c = (c + int.from_bytes(data[k + 8:k + 12], "little")) & _M
        a, b, c = _mix(a, b, c)
        length -= 12
        k += 12
    if length == 0:
        # Only for an empty key: the kernel returns c without __jhash_final.
        return c
    # The kernel's fall-through switch: byte i of the tail lands in a, b or c
    # (i // 4) at bit position 8 * (i % 4).
    acc = [a, b, c]
    for i in range(length):
        acc[i // 4] += data[k + i] << (8 * (i % 4))
    return _final(acc[0] & _M, acc[1] & _M, acc[2] & _M)


def _jhash2_generic(words: Sequence[int], initval: int) -> int:
    """jhash2 over u32 words, as the kernel does it."""
    length = len(words)
    a = b = c = (JHASH_INITVAL + (length << 2) + initval) & _M
    k = 0
    while length > 3:
        a = (a + words[k]) & _M
        b = (b + words[k + 1]) & _M
        c = (c + words[k + 2]) & _M
        a, b, c = _mix(a, b, c)
        length -= 3
        k += 3
    if length == 0:
        return c
    if length == 3:
        c = (c + words[k + 2]) & _M
    if length >= 2:
        b = (b + words[k + 1]) & _M
    a = (a + words[k]) & _M
    return _final(a, b, c)


# ----------------------------------------------------------------------------------
# Fast general versions: mix and final inlined, masking only before rotations.
# ----------------------------------------------------------------------------------

_struct_cache: dict[int, Callable[[bytes], tuple[int, ...]]] = {}


def _unpack_words(nwords: int) -> Callable[[bytes], tuple[int, ...]]:
    """Precompiled little-endian u32 unpacker for nwords words (cached)."""
    fn = _struct_cache.get(nwords)
    if fn is None:
        fn = _struct_cache[nwords] = struct.Struct("<%dI" % nwords).unpack
    return fn


def _jhash_words(w: Sequence[int], nwords: int, c: int) -> int:
    """Core of jhash2 with a = b = c already set up and nwords >= 1.

    Shared by jhash (whose zero-padded tail is exactly three more words) and
    jhash2.  Comments give the variable each line must leave masked.
    """
    a = b = c
    i = 0
    end = nwords - 3          # words before the last 1..3 go through __jhash_mix
    while i < end:
        a += w[i]; b += w[i + 1]; c = (c + w[i + 2]) & _M      # c is rotated next
        # __jhash_mix
        a = ((a - c) ^ ((c << 4) | (c >> 28))) & _M; c += b
        b = ((b - a) ^ ((a << 6) | (a >> 26))) & _M; a += c
        c = ((c - b) ^ ((b << 8) | (b >> 24))) & _M; b += a
        a = ((a - c) ^ ((c << 16) | (c >> 16))) & _M; c += b
        b = ((b - a) ^ ((a << 19) | (a >> 13))) & _M; a += c
        c = ((c - b) ^ ((b << 4) | (b >> 28))) & _M; b += a
        i += 3
    r = nwords - i
    if r == 3:
        c += w[i + 2]
    if r >= 2:
        b += w[i + 1]
    a += w[i]
    b &= _M                   # __jhash_final rotates b first
    # __jhash_final
    c = ((c ^ b) - ((b << 14) | (b >> 18))) & _M
    a = ((a ^ c) - ((c << 11) | (c >> 21))) & _M
    b = ((b ^ a) - ((a << 25) | (a >> 7))) & _M
    c = ((c ^ b) - ((b << 16) | (b >> 16))) & _M
    a = ((a ^ c) - ((c << 4) | (c >> 28))) & _M
    b = ((b ^ a) - ((a << 14) | (a >> 18))) & _M
    return ((c ^ b) - ((b << 24) | (b >> 8))) & _M


def jhash(data: bytes, initval: int) -> int:
    """The kernel's jhash(key, length, initval) on a little-endian host; returns a u32."""
    n = len(data)
    c = (JHASH_INITVAL + n + initval) & _M
    if n == 0:
        return c                                   # no __jhash_final for an empty key
    # The kernel's byte-wise tail equals reading the tail zero-padded to 12 bytes
    # as three little-endian words, so pad and treat everything as words.
    nwords = (n + 11) // 12 * 3
    pad = nwords * 4 - n
    return _jhash_words(_unpack_words(nwords)(data + bytes(pad) if pad else data),
                        nwords, c)


def jhash2(words: Sequence[int], initval: int) -> int:
    """The kernel's jhash2(k, length, initval) over a sequence of u32; returns a u32."""
    n = len(words)
    c = (JHASH_INITVAL + (n << 2) + initval) & _M
    if n == 0:
        return c
    return _jhash_words(words, n, c)


# ----------------------------------------------------------------------------------
# Straight-line versions of htab_map_hash for 4, 8, 12 and 16-byte keys.
# Constants fold JHASH_INITVAL + key_size; word loads use the faster primitive
# for each size (measured: from_bytes for one word, Struct.unpack for more).
# ----------------------------------------------------------------------------------

_from_bytes = int.from_bytes
_unpack2 = struct.Struct("<2I").unpack
_unpack3 = struct.Struct("<3I").unpack
_unpack4 = struct.Struct("<4I").unpack


def _hash4(key: bytes, hashrnd: int) -> int:
    """jhash2 of one word: a += w0, then __jhash_final."""
    b = c = (0xDEADBEF3 + hashrnd) & _M            # JHASH_INITVAL + 4
    a = c + _from_bytes(key, "little")
    c = ((c ^ b) - ((b << 14) | (b >> 18))) & _M
    a = ((a ^ c) - ((c << 11) | (c >> 21))) & _M
    b = ((b ^ a) - ((a << 25) | (a >> 7))) & _M
    c = ((c ^ b) - ((b << 16) | (b >> 16))) & _M
    a = ((a ^ c) - ((c << 4) | (c >> 28))) & _M
    b = ((b ^ a) - ((a << 14) | (a >> 18))) & _M
    return ((c ^ b) - ((b << 24) | (b >> 8))) & _M


def _hash8(key: bytes, hashrnd: int) -> int:
    """jhash2 of two words: no __jhash_mix, straight to __jhash_final."""
    w0, w1 = _unpack2(key)
    c = (0xDEADBEF7 + hashrnd) & _M                # JHASH_INITVAL + 8
    a = c + w0
    b = (c + w1) & _M
    c = ((c ^ b) - ((b << 14) | (b >> 18))) & _M
    a = ((a ^ c) - ((c << 11) | (c >> 21))) & _M
    b = ((b ^ a) - ((a << 25) | (a >> 7))) & _M
    c = ((c ^ b) - ((b << 16) | (b >> 16))) & _M
    a = ((a ^ c) - ((c << 4) | (c >> 28))) & _M
    b = ((b ^ a) - ((a << 14) | (a >> 18))) & _M
    return ((c ^ b) - ((b << 24) | (b >> 8))) & _M


def _hash12(key: bytes, hashrnd: int) -> int:
    """jhash2 of three words: still no __jhash_mix (the loop needs more than 3)."""
    w0, w1, w2 = _unpack3(key)
    c = (0xDEADBEFB + hashrnd) & _M                # JHASH_INITVAL + 12
    a = c + w0
    b = (c + w1) & _M
    c += w2
    c = ((c ^ b) - ((b << 14) | (b >> 18))) & _M
    a = ((a ^ c) - ((c << 11) | (c >> 21))) & _M
    b = ((b ^ a) - ((a << 25) | (a >> 7))) & _M
    c = ((c ^ b) - ((b << 16) | (b >> 16))) & _M
    a = ((a ^ c) - ((c << 4) | (c >> 28))) & _M
    b = ((b ^ a) - ((a << 14) | (a >> 18))) & _M
    return ((c ^ b) - ((b << 24) | (b >> 8))) & _M


def _hash16(key: bytes, hashrnd: int) -> int:
    """jhash2 of four words: one __jhash_mix on w0..w2, then w3 into a and final."""
    w0, w1, w2, w3 = _unpack4(key)
    c = (0xDEADBEFF + hashrnd) & _M                # JHASH_INITVAL + 16
    a = c + w0
    b = c + w1
    c = (c + w2) & _M
    a = ((a - c) ^ ((c << 4) | (c >> 28))) & _M; c += b
    b = ((b - a) ^ ((a << 6) | (a >> 26))) & _M; a += c
    c = ((c - b) ^ ((b << 8) | (b >> 24))) & _M; b += a
    a = ((a - c) ^ ((c << 16) | (c >> 16))) & _M; c += b
    b = ((b - a) ^ ((a << 19) | (a >> 13))) & _M; a += c
    c = ((c - b) ^ ((b << 4) | (b >> 28))) & _M
    b = (b + a) & _M
    a += w3
    c = ((c ^ b) - ((b << 14) | (b >> 18))) & _M
    a = ((a ^ c) - ((c << 11) | (c >> 21))) & _M
    b = ((b ^ a) - ((a << 25) | (a >> 7))) & _M
    c = ((c ^ b) - ((b << 16) | (b >> 16))) & _M
    a = ((a ^ c) - ((c << 4) | (c >> 28))) & _M
    b = ((b ^ a) - ((a << 14) | (a >> 18))) & _M
    return ((c ^ b) - ((b << 24) | (b >> 8))) & _M


_SPECIALISED = {4: _hash4, 8: _hash8, 12: _hash12, 16: _hash16}


def _hash_words(key: bytes, hashrnd: int) -> int:
    """htab_map_hash for other 4-multiple sizes: jhash2 over little-endian words."""
    n = len(key) >> 2
    return jhash2(_unpack_words(n)(key), hashrnd)


def htab_hash_func(key_size: int) -> Callable[[bytes, int], int]:
    """The function ``htab_map_hash`` would use for keys of key_size bytes.

    A map's key size is fixed at creation, so a map can look this up once and
    call the result directly, skipping the per-call dispatch.
    """
    fn = _SPECIALISED.get(key_size)
    if fn is not None:
        return fn
    return _hash_words if key_size % 4 == 0 else jhash


def htab_map_hash(key: bytes, hashrnd: int) -> int:
    """htab_map_hash: jhash2 on u32 words if len(key) % 4 == 0, else jhash; a u32."""
    fn = _SPECIALISED.get(len(key))
    if fn is not None:
        return fn(key, hashrnd)
    if len(key) & 3:
        return jhash(key, hashrnd)
    return _hash_words(key, hashrnd)


# ----------------------------------------------------------------------------------
# Many keys at once: the hash of every element inserted since the last walk.
# ----------------------------------------------------------------------------------
#
# One Python int holds one u32 per 40-bit lane, for every key of a batch, and each step of
# the algorithm is a handful of big-int operations on all lanes at once (SIMD within a
# register). The top 8 bits of each lane take the carries: every value is masked to its low
# 32 bits (``m``) before it is shifted or added again, and a subtraction first adds 2^32 to
# every lane (``bias``) so that no lane borrows from the next. A rotation masks each half
# within its lane before shifting it (``rol``): a right shift moves the low bits of the lane
# above into this one, from bit 8 up, and the mask keeps fewer bits than that. Lanes are
# whole bytes, so keys go in and hashes come out by strided byte copies.

_BATCH_LANES = 4096        # keeps each big int in cache (20 KiB)
_LANE = 5                  # bytes a lane


def htab_map_hash_many(keys: Sequence[bytes], key_size: int, hashrnd: int) -> array:
    """``htab_map_hash(key, key_size, hashrnd)`` for every key (each key_size bytes long),
    as an array('I') in the same order."""
    out = array("I")
    for start in range(0, len(keys), _BATCH_LANES):
        out.extend(_hash_lanes(keys[start:start + _BATCH_LANES], key_size, hashrnd))
    return out


_lane_constants_cache: dict = {}


def _lane_constants(n: int) -> dict:
    """For n lanes: "m", 2^32 - 1 in each (the mask); "bias", 2^32 in each; "ones", 1 in
    each; and for a rotation by r, ("lo", r) and ("hi", r): the low 32 - r and the low r
    bits of each lane. Full batches reuse them."""
    cached = _lane_constants_cache.get(n)
    if cached is not None:
        return cached
    ones = int.from_bytes(b"\1\0\0\0\0" * n, "little")
    out = {"ones": ones, "m": ones * _M, "bias": ones << 32}
    for r in _ROTATIONS:
        out["lo", r] = ones * ((1 << (32 - r)) - 1)
        out["hi", r] = ones * ((1 << r) - 1)
    if n == _BATCH_LANES:
        _lane_constants_cache[n] = out
    return out


_ROTATIONS = (4, 6, 8, 16, 19, 14, 11, 25, 24)

_seed_constants_cache: dict = {}
_SEED_CACHE_MAX = 16       # maps whose full batches' constants are kept (60 KiB each)


def _seed_constants(n: int, init: int, ones: int) -> dict:
    """For n lanes and a map's initial value: "init" in each lane and, for 1-word keys,
    "c1" (c after __jhash_final's first step) and "k1" (2^32 minus the rol32(c1, 11) that
    its second step subtracts) in each. They are products of big ints, which cost a
    fifth of a batch: full batches of the last few maps reuse them."""
    key = (n, init)
    cached = _seed_constants_cache.get(key)
    if cached is not None:
        return cached
    c1 = -_rol32(init, 14) & _M
    out = {"init": init * ones, "c1": c1 * ones, "k1": ones * (2**32 - _rol32(c1, 11))}
    if n == _BATCH_LANES:
        if len(_seed_constants_cache) >= _SEED_CACHE_MAX:
            _seed_constants_cache.clear()
        _seed_constants_cache[key] = out
    return out


def _hash_lanes(keys: Sequence[bytes], key_size: int, hashrnd: int) -> array:
    """One batch. jhash and jhash2 are the same computation on zero-padded little-endian
    words (initval + key_size either way; the words past the key add zero): a __jhash_mix
    for each 3 words while more than 3 remain, the rest added to a, b, c, __jhash_final."""
    n = len(keys)
    if n == 0:
        return array("I")
    nwords = (key_size + 3) >> 2
    pad = b"\0" * ((-key_size) & 3)
    words = array("I", pad.join(keys) + pad)
    if sys.byteorder != "little":
        words.byteswap()
    lane_bytes = bytearray(_LANE * n)

    def word(i: int) -> int:            # word i of every key, one per lane
        raw = words[i::nwords].tobytes()
        for k in range(4):
            lane_bytes[k::_LANE] = raw[k::4]
        return int.from_bytes(lane_bytes, "little")

    k_ = _lane_constants(n)
    m, bias = k_["m"], k_["bias"]
    init = (JHASH_INITVAL + key_size + hashrnd) & _M
    seeded = _seed_constants(n, init, k_["ones"])

    def rol(x: int, r: int) -> int:
        return ((x & k_["lo", r]) << r) | ((x >> (32 - r)) & k_["hi", r])

    if nwords == 1:
        # One word, added to a only: b and c are still init, so __jhash_final's first step
        # (c ^= b; c -= rol32(b, 14)) gives a constant, and its second xors a with that
        # constant and subtracts another.
        b, c, k1 = seeded["init"], seeded["c1"], seeded["k1"]
        a = ((((b + word(0)) & m) ^ c) + k1) & m
    else:
        a, b, c = _mix_lanes(nwords, seeded["init"], word, rol, m, bias)
    b ^= a; b = (b + bias - rol(a, 25)) & m
    c ^= b; c = (c + bias - rol(b, 16)) & m
    a ^= c; a = (a + bias - rol(c, 4)) & m
    b ^= a; b = (b + bias - rol(a, 14)) & m
    c ^= b; c = (c + bias - rol(b, 24)) & m
    lanes = c.to_bytes(_LANE * n, "little")
    out = bytearray(4 * n)
    for k in range(4):
        out[k::4] = lanes[k::_LANE]
    hashes = array("I", out)
    if sys.byteorder != "little":
        hashes.byteswap()
    return hashes


def _mix_lanes(nwords: int, init: int, word, rol, m: int, bias: int) -> tuple:
    """jhash on lanes of two words or more, up to the first two steps of __jhash_final:
    a, b and c after them."""
    a = b = c = init
    k = 0
    left = nwords
    while left > 3:
        a = (a + word(k)) & m
        b = (b + word(k + 1)) & m
        c = (c + word(k + 2)) & m
        a = ((a + bias - c) & m) ^ rol(c, 4); c = (c + b) & m
        b = ((b + bias - a) & m) ^ rol(a, 6); a = (a + c) & m
        c = ((c + bias - b) & m) ^ rol(b, 8); b = (b + a) & m
        a = ((a + bias - c) & m) ^ rol(c, 16); c = (c + b) & m
        b = ((b + bias - a) & m) ^ rol(a, 19); a = (a + c) & m
        c = ((c + bias - b) & m) ^ rol(b, 4); b = (b + a) & m
        k += 3
        left -= 3
    if left == 3:
        c = (c + word(k + 2)) & m
    if left >= 2:
        b = (b + word(k + 1)) & m
    a = (a + word(k)) & m
    c ^= b; c = (c + bias - rol(b, 14)) & m
    a ^= c; a = (a + bias - rol(c, 11)) & m
    return a, b, c
