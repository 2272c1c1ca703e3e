"""The built-in conformance scenarios: the golden corpus and ``bpfemu conform`` run these.

A scenario is a function taking a backend (anything with ``bpf()`` and ``close()``: the live
kernel, an Emulator, a Recorder around either). It makes genuine bpf() calls with real
buffers (caller.Caller) and closes every map it made. It may look at results to decide what
to do next, but it never asserts what they should be: the kernel is the oracle, and replaying
the kernel's recording onto the emulator is the comparison.

Rules that keep a recording replayable:
- hash maps whose order is observed (GET_NEXT_KEY walks, batch lookups) use BPF_F_ZERO_SEED;
  without it the kernel seeds each map at random;
- CPU-dependent behaviour (LRU) runs on an explicit CPU (``Caller.set_cpu``: pins the process
  on the kernel, sets ``emu.cpu`` on the emulator); the recorder records the CPU of each call;
- only commands and map types the emulator has are used: the map commands and types
  (docs/linux-6.18.md#numbers), and in ``objects`` BTF_LOAD, PROG_LOAD and the fd maps; their fds
  inside instructions and map values are recorded so that replay can translate them;
- nothing depends on memory pressure (ENOMEM) or on maps of other processes; the one scenario
  that can see other processes' maps (ids) raises ``Interference`` so the recorder retries.

Each scenario declares the commands it needs; ``pending_commands()`` tells which of them the
emulator does not implement yet.
"""
import os
import random
import struct
from dataclasses import dataclass, field

from ..syscall import LINUX_6_18_LAST_FIELD_END
from ..uapi.consts import BpfCmd as C
from ..uapi.consts import BpfMapType as T
from . import caller as _caller
from .caller import Caller, Out, edge_buffer, readonly_page, u32, no_access_page

H, PH, LH, LPH = (T.BPF_MAP_TYPE_HASH, T.BPF_MAP_TYPE_PERCPU_HASH, T.BPF_MAP_TYPE_LRU_HASH,
                  T.BPF_MAP_TYPE_LRU_PERCPU_HASH)
A, PA = T.BPF_MAP_TYPE_ARRAY, T.BPF_MAP_TYPE_PERCPU_ARRAY
HASHES = (H, PH, LH, LPH)
ARRAYS = (A, PA)
ALL_TYPES = HASHES + ARRAYS
LRUS = (LH, LPH)
PERCPU = (PH, LPH, PA)

NO_PREALLOC, NO_COMMON_LRU, NUMA_NODE = 0x1, 0x2, 0x4
RDONLY, WRONLY, ZERO_SEED = 0x8, 0x10, 0x40
RDONLY_PROG, WRONLY_PROG, MMAPABLE, INNER_MAP = 0x80, 0x100, 0x400, 0x1000
PATH_FD, TOKEN_FD = 0x4000, 0x10000
ANY, NOEXIST, EXIST, F_LOCK = 0, 1, 2, 4
ENOENT = -2


class Interference(Exception):
    """The live system interfered (another process's map showed up); record again."""


@dataclass
class Scenario:
    name: str
    func: object
    doc: str
    commands: frozenset = field(default_factory=frozenset)
    needs_bpffs: bool = False
    cpus: int = 1                      # CPUs it runs on (2: needs two possible CPUs)

    def __call__(self, backend):
        return self.func(backend)


SCENARIOS: dict[str, Scenario] = {}

ELEM = (C.BPF_MAP_CREATE, C.BPF_MAP_LOOKUP_ELEM, C.BPF_MAP_UPDATE_ELEM, C.BPF_MAP_DELETE_ELEM,
        C.BPF_MAP_GET_NEXT_KEY, C.BPF_MAP_LOOKUP_AND_DELETE_ELEM)
BATCH = (C.BPF_MAP_LOOKUP_BATCH, C.BPF_MAP_LOOKUP_AND_DELETE_BATCH, C.BPF_MAP_UPDATE_BATCH,
         C.BPF_MAP_DELETE_BATCH)


def _first_sentence(doc: str) -> str:
    para = " ".join(doc.strip().split("\n\n")[0].split())
    i = para.find(". ")
    para = para[:i + 1] if i > 0 else para
    if len(para) > 100:
        para = para[:para.rfind(" ", 0, 97)] + " ..."
    return para


def scenario(*commands, needs_bpffs=False, cpus=1):
    def deco(fn):
        name = fn.__name__
        SCENARIOS[name] = Scenario(name, fn, _first_sentence(fn.__doc__ or ""),
                                   frozenset(int(c) for c in commands), needs_bpffs, cpus)
        return fn
    return deco


def pending_commands(names=None) -> dict:
    """{scenario: [command names the emulator does not implement yet]} (only non-empty)."""
    from ..syscall import COMMANDS
    out = {}
    for name, sc in SCENARIOS.items():
        if names is not None and name not in names:
            continue
        missing = sorted(C(c).name for c in sc.commands if c not in COMMANDS)
        if missing:
            out[name] = missing
    return out


# --- data -------------------------------------------------------------------------------------

def key(i: int, ks: int) -> bytes:
    return (i % (1 << (8 * min(ks, 8)))).to_bytes(min(ks, 8), "little").ljust(ks, b"\x5a")


def val(i: int, n: int) -> bytes:
    return bytes(((i * 7 + j * 13 + 1) & 0xFF) for j in range(n))


def pcpu_val(i: int, vs: int, ncpu: int) -> bytes:
    """A per-CPU value buffer: distinct bytes per CPU, padding bytes included."""
    slot = (vs + 7) // 8 * 8
    return b"".join(val(i * 31 + c, slot) for c in range(ncpu))


def value_for(k: Caller, t, i, vs) -> bytes:
    return pcpu_val(i, vs, k.ncpu) if t in PERCPU else val(i, vs)


def _finish(k: Caller):
    k.close_all()


# --- the bpf() entry ----------------------------------------------------------------------------

# Every command's last field, from the emulator's command table: the scenario probes the
# bytes at and after it on whichever backend it runs, so a wrong end in the table shows as a
# difference from the kernel's trace.
LAST_END = LINUX_6_18_LAST_FIELD_END


@scenario(*ELEM)
def entry(b):
    """bpf() entry: size limits, the tail past the union, copy faults, unknown commands, and
    every map command's unused-fields-must-be-zero check (docs/linux-6.18.md#the-entry)."""
    k = Caller(b)
    good = _caller.create_attr(H, 4, 8, 4)
    for size in (4097, 8192, 65536, 0xFFFFFFFF):
        k.call(C.BPF_MAP_CREATE, good, size, buf_len=168)
    b.bpf(C.BPF_MAP_CREATE, 0, 5000)
    b.bpf(C.BPF_MAP_CREATE, 0, 168)
    b.bpf(C.BPF_MAP_CREATE, 0, 0)
    b.bpf(100, 0, 168)
    b.bpf(C.BPF_MAP_LOOKUP_ELEM, no_access_page(), 32)
    b.bpf(C.BPF_MAP_CREATE, edge_buffer(good[:40]), 168)     # runs into an unmapped page
    b.bpf(C.BPF_MAP_CREATE, edge_buffer(good[:40]), 40)      # exactly fits
    for size in (169, 176, 200, 1024, 4096):
        fd = k.call(C.BPF_MAP_CREATE, good, size)
        if fd >= 0:
            k.close(fd)
        for dirty in sorted({168, size - 1}):
            attr = bytearray(good.ljust(size, b"\0"))
            attr[dirty] = 1
            k.call(C.BPF_MAP_CREATE, bytes(attr), size)
    for size in (0, 4, 12, 16, 20, 28, 44, 72, 88, 92, 96, 160, 167):
        fd = k.call(C.BPF_MAP_CREATE, good, size)
        if fd >= 0:
            k.close(fd)
    for cmd in (38, 39, 64, 100, 1000, 0x7FFFFFFF, -1, -100):
        k.call(cmd, bytes(168), 168)
        k.call(cmd, bytes(168) + b"\1", 169)
        k.call(cmd, bytes(8), 8)
    fd = k.create(H, 4, 8, 4, ZERO_SEED)
    k.update(fd, key(1, 4), val(1, 8))
    for cmd, end in LAST_END.items():
        base = bytearray(168)
        if cmd in (C.BPF_MAP_LOOKUP_ELEM, C.BPF_MAP_UPDATE_ELEM, C.BPF_MAP_DELETE_ELEM,
                   C.BPF_MAP_GET_NEXT_KEY, C.BPF_MAP_LOOKUP_AND_DELETE_ELEM, C.BPF_MAP_FREEZE,
                   C.BPF_OBJ_GET_INFO_BY_FD):
            base[0:4] = u32(fd)
        elif cmd in (C.BPF_MAP_LOOKUP_BATCH, C.BPF_MAP_LOOKUP_AND_DELETE_BATCH,
                     C.BPF_MAP_UPDATE_BATCH, C.BPF_MAP_DELETE_BATCH):
            base[36:40] = u32(fd)
        elif cmd == C.BPF_MAP_CREATE:
            base[:len(good)] = good
        for off in sorted({end, end + 1, (end + 167) // 2, 160, 167}):
            if off >= 168:
                continue
            attr = bytearray(base)
            attr[off] = 0x80
            k.call(cmd, bytes(attr), 168)
            k.call(cmd, bytes(attr), off + 1)
        # with a closed fd too: CHECK_ATTR comes before the fd
        attr = bytearray(168)
        attr[0:4] = u32(999)
        attr[36:40] = u32(999)
        attr[167] = 1
        k.call(cmd, bytes(attr), 168)
    # the element commands' padding at 4..7 is never checked; FREEZE checks it
    for pad in (1, 0xDEADBEEF):
        k.lookup(fd, key(1, 4), 8, pad=pad)
        k.update(fd, key(2, 4), val(2, 8), pad=pad)
        k.next_key(fd, None, 4)
        k.freeze(fd, pad=pad)
    # short sizes: the rest of the union is zero
    k.lookup(fd, key(1, 4), 8, size=24)        # flags cut off
    k.lookup(fd, key(1, 4), 8, size=16)        # value NULL for an existing key: EFAULT
    k.lookup(fd, key(9, 4), 8, size=16)        # missing: ENOENT
    k.update(fd, key(3, 4), val(3, 8), size=8)  # key NULL
    k.next_key(fd, None, 4, size=8)
    k.next_key(fd, None, 4, size=4)
    _finish(k)


# --- MAP_CREATE -----------------------------------------------------------------------------------

@scenario(C.BPF_MAP_CREATE)
def map_create(b):
    """BPF_MAP_CREATE for the six emulated map types: sizes, limits, every flag bit, NUMA,
    tokens, BTF fields, offload, names, exclusive-map hashes (docs/linux-6.18.md#map-creation)."""
    k = Caller(b)

    def try_create(*a, **kw):
        fd = k.create(*a, **kw)
        if fd >= 0:
            k.close(fd)
        return fd

    devnull = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for t in ALL_TYPES:
            try_create(t, 4, 8, 4)
            for ks, vs, n in ((0, 8, 4), (4, 0, 4), (4, 8, 0), (1, 8, 4), (3, 8, 4), (8, 8, 4),
                              (512, 8, 4), (4096, 8, 2), (65536, 8, 1), (4, 1, 4), (4, 3, 4),
                              (4, 4194251, 1), (4, 4194252, 1), (4194247, 8, 1), (4194248, 8, 1),
                              (4, 32768, 1), (4, 32769, 1), (4, 0x7FFFFFFF, 1),
                              (4, 0x80000000, 1), (4, 0xFFFFFFFF, 1), (2, 8, 4), (5, 8, 4)):
                if t in ARRAYS and vs >= 0x7FFFFFFF and vs != 0x80000000 and vs != 0xFFFFFFFF:
                    continue                                # allocates 2 GiB on Linux
                if t in ARRAYS and vs > 1 << 20 and t == A:
                    continue
                try_create(t, ks, vs, n)
            if t in HASHES:
                for n in ((1 << 27) + 1, 1 << 28, 0x80000000, 0xFFFFFFFF):
                    try_create(t, 4, 8, n)
                    try_create(t, 4, 8, n, NO_PREALLOC)
            for bit in range(32):
                flags = 1 << bit
                if flags == NO_PREALLOC and t in HASHES:
                    try_create(t, 4, 8, 64, flags)
                    continue
                try_create(t, 4, 8, 4, flags)
            for flags in (0x3, 0x18, 0x180, 0x41, 0x42, 0xC0, 0x140, NO_COMMON_LRU | NUMA_NODE,
                          RDONLY | RDONLY_PROG, WRONLY | WRONLY_PROG, MMAPABLE | RDONLY_PROG,
                          NO_PREALLOC | NO_COMMON_LRU):
                try_create(t, 4, 8, 4, flags)
            try_create(t, 4, 8, 0, NO_PREALLOC)        # LRU: ENOTSUPP before the size check
            for numa in (0, 1, 2, 0xFFFFFFFF, 0xFFFFFFFE, 77):
                try_create(t, 4, 8, 4, NUMA_NODE, numa_node=numa)
                try_create(t, 4, 8, 4, NUMA_NODE | NO_COMMON_LRU, numa_node=numa)
            try_create(t, 4, 8, 4, numa_node=77)
            try_create(t, 4, 8, 4, TOKEN_FD, map_token_fd=999)
            try_create(t, 4, 8, 4, TOKEN_FD, map_token_fd=devnull)
            try_create(t, 4, 8, 4, TOKEN_FD, map_token_fd=-1)
            try_create(t, 4, 8, 4, map_token_fd=999)
            try_create(t, 0, 8, 4, TOKEN_FD, map_token_fd=999)
            try_create(t, 4, 8, 4, inner_map_fd=999)
            try_create(t, 4, 8, 4, value_type_btf_obj_fd=999)
            try_create(t, 4, 8, 4, btf_fd=999)
            try_create(t, 4, 8, 4, btf_key_type_id=1)
            try_create(t, 4, 8, 4, btf_value_type_id=1, btf_fd=devnull)
            try_create(t, 4, 8, 4, btf_value_type_id=1, btf_fd=999)
            try_create(t, 4, 8, 4, btf_key_type_id=1, btf_value_type_id=2, btf_fd=999)
            try_create(t, 4, 8, 4, btf_vmlinux_value_type_id=1)
            try_create(t, 4, 8, 4, map_extra=1)
            try_create(t, 4, 8, 4, map_extra=1 << 40)
            try_create(t, 4, 8, 4, map_ifindex=1)
            try_create(t, 4, 8, 4, map_ifindex=9999)
            try_create(t, 0, 8, 4, map_ifindex=1)
            good_hash = k.ptr(bytes(range(32)))
            try_create(t, 4, 8, 4, excl_prog_hash=0, excl_prog_hash_size=32)
            try_create(t, 4, 8, 4, excl_prog_hash=good_hash, excl_prog_hash_size=32)
            good_hash = k.ptr(bytes(range(32)))
            try_create(t, 4, 8, 4, excl_prog_hash=good_hash, excl_prog_hash_size=31)
            try_create(t, 4, 8, 4, excl_prog_hash=no_access_page(), excl_prog_hash_size=32)
            try_create(t, 4, 8, 4, excl_prog_hash=edge_buffer(bytes(16)), excl_prog_hash_size=32)
            try_create(t, 4, 8, 4, name=b"bad-name")
            try_create(t, 4, 8, 4, name=b"A" * 16)
            try_create(t, 4, 8, 4, name=b"ok_name.1")
            try_create(t, 4, 8, 4, name=b"A" * 15)
            try_create(t, 4, 8, 4, name=b"ab\0cd-!")
            if t in HASHES:     # (an ARRAY of 2^31 entries would really be allocated)
                try_create(t, 4, 8, 1 << 31, name=b"bad-name")  # size errors win: E2BIG
            for size in (16, 12, 20, 44, 72, 92):
                try_create(t, 4, 8, 4, size=size)
        for c in range(1, 256):
            try_create(H, 4, 8, 4, name=bytes([c]))
        for t in (0, 34, 35, 64, 100, 0x7FFFFFFF, 0xFFFFFFFF):
            try_create(t, 4, 8, 4)
        # the order of the early checks, with several errors at once
        try_create(H, 0, 8, 4, 0x18)
        try_create(H, 4, 8, 4, 0x18, map_extra=1)
        try_create(H, 4, 8, 4, 0x18, numa_node=5)
        try_create(0, 4, 8, 4, NUMA_NODE, numa_node=5)
        try_create(100, 4, 8, 4, map_extra=1)
        try_create(H, 4, 8, 4, btf_vmlinux_value_type_id=1, map_extra=1)
        try_create(LH, 4, 8, 0, NO_PREALLOC | 0x20)
        try_create(H, 0, 8, 4, ZERO_SEED | 0x20)
    finally:
        os.close(devnull)
    _finish(k)


# --- element commands on the hash family --------------------------------------------------------------

def _hash_configs(t):
    cfgs = [(4, 8, 8, ZERO_SEED), (1, 1, 16, ZERO_SEED), (3, 5, 33, ZERO_SEED),
            (8, 16, 100, ZERO_SEED), (13, 13, 20, ZERO_SEED), (64, 3, 5, ZERO_SEED),
            (4, 4, 10, 0), (16, 64, 64, ZERO_SEED | (NO_COMMON_LRU if t in LRUS else NO_PREALLOC))]
    if t not in LRUS:
        cfgs.append((2, 40, 12, ZERO_SEED | NO_PREALLOC))
    else:
        cfgs.append((4, 12, 7, ZERO_SEED | NO_COMMON_LRU))
    return cfgs


def _hash_elem(b, t):
    k = Caller(b)
    k.set_cpu(0)
    for ks, vs, n, flags in _hash_configs(t):
        vsys = k.value_size_sys(t, vs)
        ordered = bool(flags & ZERO_SEED)
        fd = k.create(t, ks, vs, n, flags)
        if fd < 0:
            continue
        nkeys = min(n, 1 << (8 * ks)) if ks < 4 else n
        k.next_key(fd, None, ks)
        k.next_key(fd, key(12345, ks), ks)
        k.lookup(fd, key(0, ks), vsys)
        k.delete(fd, key(0, ks))
        k.lookup_and_delete(fd, key(0, ks), vsys)
        k.update(fd, key(0, ks), value_for(k, t, 0, vs), EXIST)
        for i in range(nkeys):
            k.update(fd, key(i, ks), value_for(k, t, i, vs), NOEXIST if i % 2 else ANY)
        extra = key(nkeys + 1000, ks) if ks >= 2 else None
        if extra is not None:
            k.update(fd, extra, value_for(k, t, 999, vs), ANY)
            k.update(fd, extra, value_for(k, t, 999, vs), NOEXIST)
            k.update(fd, extra, value_for(k, t, 999, vs), EXIST)
        for i in range(0, nkeys, 3):
            k.update(fd, key(i, ks), value_for(k, t, i + 500, vs), EXIST)
            k.update(fd, key(i, ks), value_for(k, t, i + 600, vs), NOEXIST)
            k.update(fd, key(i, ks), value_for(k, t, i + 700, vs), ANY)
        for fl in (3, 4, 5, 8, 16, 1 << 32, 1 << 63, NOEXIST | F_LOCK):
            k.update(fd, key(1, ks), value_for(k, t, 1, vs), fl)
        for i in range(nkeys + 2):
            k.lookup(fd, key(i, ks), vsys)
        if extra is not None:
            k.lookup(fd, extra, vsys)
        if ordered or n == 1:
            walked = k.walk(fd, ks)
            k.next_key(fd, key(54321, ks), ks)          # missing key: restarts
            for kk in walked[: min(len(walked), 12)]:
                k.next_key(fd, kk, ks)
            # test_hashmap_walk: fetch next, then rewrite the visited key with EXIST
            cur = None
            for _ in range(len(walked) + 1):
                ret, nxt = k.next_key(fd, cur, ks)
                if cur is not None:
                    k.update(fd, cur, value_for(k, t, 77, vs), EXIST)
                if ret != 0:
                    break
                cur = nxt
        for i in range(0, nkeys, 2):
            k.delete(fd, key(i, ks))
            k.delete(fd, key(i, ks))
        if ordered:
            k.walk(fd, ks)
        for i in range(1, nkeys, 4):
            k.lookup_and_delete(fd, key(i, ks), vsys)
            k.lookup_and_delete(fd, key(i, ks), vsys)
        for fl in (1, 2, 3, 4, 8, 1 << 40):
            k.lookup_and_delete(fd, key(3, ks), vsys, fl)
            k.lookup(fd, key(3, ks), vsys, fl)
        if ordered:
            k.walk(fd, ks)
        for i in range(0, nkeys, 2):
            k.update(fd, key(i, ks), value_for(k, t, i + 900, vs), NOEXIST)
        if ordered:
            k.walk(fd, ks)
        for i in range(nkeys + 1):
            k.lookup(fd, key(i, ks), vsys)
        k.close(fd)
    # capacity: a full map refuses new keys (LRU evicts instead), existing ones still update
    for n in (1, 2, 5):
        fd = k.create(t, 4, 8, n, ZERO_SEED)
        vsys = k.value_size_sys(t, 8)
        for i in range(n + 3):
            for fl in (ANY, NOEXIST, EXIST):
                k.update(fd, key(i, 4), value_for(k, t, i, 8), fl)
        for i in range(n + 3):
            k.update(fd, key(i, 4), value_for(k, t, i + 1, 8), ANY)
            k.lookup(fd, key(i, 4), vsys)
        k.walk(fd, 4)
        k.close(fd)
    # per-CPU buffers: the padding of each slot is stored and returned
    if t in PERCPU:
        for vs in (1, 4, 5, 8, 12, 16, 100):
            fd = k.create(t, 4, vs, 4, ZERO_SEED)
            vsys = k.value_size_sys(t, vs)
            for i in range(4):
                k.update(fd, key(i, 4), bytes([0xF0 + i]) * vsys)
                k.lookup(fd, key(i, 4), vsys)
            k.update(fd, key(0, 4), pcpu_val(3, vs, k.ncpu), EXIST)
            k.lookup(fd, key(0, 4), vsys)
            k.lookup_and_delete(fd, key(1, 4), vsys)
            k.close(fd)
    # the same key sizes with values at the end of a page
    fd = k.create(t, 8, 16, 4, ZERO_SEED)
    vsys = k.value_size_sys(t, 16)
    k.update(fd, key(1, 8), value_for(k, t, 1, 16))
    k.update(fd, edge_buffer(key(2, 8)), edge_buffer(value_for(k, t, 2, 16)))
    k.lookup(fd, edge_buffer(key(2, 8)), 0, value=edge_buffer(bytes(vsys)))
    k.lookup(fd, edge_buffer(key(2, 8)), 0, value=edge_buffer(bytes(max(vsys - 3, 1))))
    k.update(fd, key(3, 8), edge_buffer(value_for(k, t, 3, 16)[:-1]))
    k.walk(fd, 8)
    k.close(fd)
    _finish(k)


@scenario(*ELEM)
def hash_elem(b):
    """HASH: lookup, update (ANY/NOEXIST/EXIST, bad flags), delete, GET_NEXT_KEY walks
    (ZERO_SEED order, restart on a missing key), lookup-and-delete, capacity (E2BIG)."""
    _hash_elem(b, H)


@scenario(*ELEM)
def percpu_hash_elem(b):
    """PERCPU_HASH: the element commands with per-CPU value buffers and their padding."""
    _hash_elem(b, PH)


@scenario(*ELEM)
def lru_hash_elem(b):
    """LRU_HASH: the element commands (CPU 0), eviction instead of E2BIG."""
    _hash_elem(b, LH)


@scenario(*ELEM)
def lru_percpu_hash_elem(b):
    """LRU_PERCPU_HASH: the element commands (CPU 0) with per-CPU value buffers."""
    _hash_elem(b, LPH)


# --- errno paths of the element commands ------------------------------------------------------------

@scenario(*ELEM)
def elem_errors(b):
    """Every errno path of the element commands (docs: #element-commands), in check order:
    tails, flags before or after the fd, EBADF/EINVAL fds, access modes (EPERM), EFAULT on each
    pointer (NULL, unmapped, read-only, cut by a page end), ENOENT, ENOTSUPP, F_LOCK."""
    k = Caller(b)
    k.set_cpu(0)
    devnull = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    bad_fds = (999, 0xFFFFFFFF, 0x7FFFFFFF, devnull)
    try:
        for t in ALL_TYPES:
            ks, vs = 4, 8
            vsys = k.value_size_sys(t, vs)
            fd = k.create(t, ks, vs, 4, ZERO_SEED if t in HASHES else 0)
            ro = k.create(t, ks, vs, 4, RDONLY | (ZERO_SEED if t in HASHES else 0))
            wo = k.create(t, ks, vs, 4, WRONLY | (ZERO_SEED if t in HASHES else 0))
            k.update(fd, key(1, ks), value_for(k, t, 1, vs))
            k.update(wo, key(1, ks), value_for(k, t, 1, vs))
            v = value_for(k, t, 5, vs)
            # LOOKUP
            for fl in (1, 2, 3, 4, 8, 16, 1 << 32, 1 << 63):
                k.lookup(fd, key(1, ks), vsys, fl)
                k.lookup(999, key(1, ks), vsys, fl)
            for bad in bad_fds:
                k.lookup(bad, key(1, ks), vsys)
                k.lookup(bad, None, vsys, 4)
            k.lookup(wo, key(1, ks), vsys)
            k.lookup(ro, key(1, ks), vsys)
            k.lookup(fd, None, vsys)
            k.lookup(fd, no_access_page(), vsys)
            k.lookup(fd, edge_buffer(key(1, ks)[:2]), vsys)
            k.lookup(fd, key(1, ks), 0, value=0)
            k.lookup(fd, key(3, ks), 0, value=0)
            k.lookup(fd, key(1, ks), 0, value=readonly_page())
            k.lookup(fd, key(1, ks), 0, value=no_access_page())
            k.lookup(fd, key(1, ks), 0, value=edge_buffer(bytes(vsys - 1)))
            k.lookup(fd, None, 0, flags=F_LOCK, value=0)
            k.lookup(fd, key(7, ks), vsys)
            k.lookup(fd, key(0xFFFFFFFF, ks), vsys)
            # UPDATE
            for bad in bad_fds:
                k.update(bad, key(1, ks), v, 3)
                k.update(bad, key(1, ks), v)
            k.update(ro, key(1, ks), v)
            k.update(ro, key(1, ks), v, F_LOCK)
            k.update(ro, None, None, 3)
            k.update(wo, key(2, ks), v)
            k.update(fd, key(1, ks), v, F_LOCK)
            k.update(fd, None, v, F_LOCK)
            k.update(fd, None, v, 3)
            k.update(fd, no_access_page(), v, 8)
            k.update(fd, key(1, ks), None, 3)
            k.update(fd, key(1, ks), no_access_page(), 8)
            k.update(fd, key(1, ks), edge_buffer(v[:-1]))
            k.update(fd, key(1, ks), readonly_page())     # reading a read-only page is fine
            k.lookup(fd, key(1, ks), vsys)
            for fl in (3, 5, 8, 16, 1 << 32, 1 << 63, 0xFFFFFFFFFFFFFFFF):
                k.update(fd, key(1, ks), v, fl)
                k.update(fd, key(9, ks), v, fl)
            k.update(fd, key(4, ks), v, NOEXIST)
            k.update(fd, key(4, ks), v, EXIST)
            k.update(fd, key(4, ks), v, NOEXIST)
            k.update(fd, key(100, ks), v, EXIST)
            k.update(fd, key(100, ks), v, NOEXIST)
            k.update(fd, key(4, ks), v, NOEXIST | F_LOCK)
            # DELETE
            for bad in bad_fds:
                k.delete(bad, key(1, ks))
            k.delete(fd, key(1, ks), value=1)
            k.delete(fd, key(1, ks), flags=1)
            k.delete(fd, key(1, ks), size=32, flags=4)
            k.delete(ro, key(1, ks))
            k.delete(wo, key(2, ks))
            k.delete(fd, None)
            k.delete(fd, no_access_page())
            k.delete(fd, key(77, ks))
            k.delete(fd, key(0xFFFFFFFF, ks))
            # GET_NEXT_KEY
            for bad in bad_fds:
                k.next_key(bad, None, ks)
            k.next_key(fd, None, ks, flags=1, size=32)
            k.next_key(wo, None, ks)
            k.next_key(ro, None, ks)
            k.next_key(fd, no_access_page(), ks)
            k.next_key(fd, None, ks, next_key=0)
            k.next_key(fd, None, ks, next_key=readonly_page())
            k.next_key(fd, None, ks, next_key=edge_buffer(bytes(ks - 1)))
            k.next_key(fd, key(3, ks), ks)
            k.next_key(fd, key(0xFFFFFFFF, ks), ks)
            for i in range(6):
                k.next_key(fd, key(i, ks), ks)
                k.next_key(fd, key(i, ks), ks, next_key=0)
            # LOOKUP_AND_DELETE
            for fl in (1, 2, 3, 4, 8, 1 << 32):
                k.lookup_and_delete(fd, key(1, ks), vsys, fl)
                k.lookup_and_delete(999, key(1, ks), vsys, fl)
            for bad in bad_fds:
                k.lookup_and_delete(bad, key(1, ks), vsys)
            k.lookup_and_delete(ro, key(1, ks), vsys)
            k.lookup_and_delete(wo, key(1, ks), vsys)
            k.lookup_and_delete(fd, None, vsys)
            k.lookup_and_delete(fd, no_access_page(), vsys)
            k.lookup_and_delete(fd, key(55, ks), vsys)
            k.update(fd, key(6, ks), v)
            k.lookup_and_delete(fd, key(6, ks), 0, value=0)        # element lost
            k.lookup(fd, key(6, ks), vsys)
            k.update(fd, key(6, ks), v)
            k.lookup_and_delete(fd, key(6, ks), 0, value=readonly_page())
            k.lookup(fd, key(6, ks), vsys)
            k.lookup_and_delete(fd, key(1, ks), vsys)
            k.lookup_and_delete(fd, key(1, ks), vsys)
            for m in (fd, ro, wo):
                k.close(m)
    finally:
        os.close(devnull)
    _finish(k)


# --- LRU eviction ---------------------------------------------------------------------------------------

LRU_SIZES = (1, 2, 3, 5, 8, 16, 100, 255)


def _lru_run(k: Caller, t, n, flags, cpu_of):
    """Insert 1..2n+8 (walking the map as it goes), then updates of existing keys, failing
    updates, deletes and re-inserts; ``cpu_of(i)`` is the CPU of the i-th operation."""
    vs = 8
    vsys = k.value_size_sys(t, vs)
    fd = k.create(t, 4, vs, n, flags | ZERO_SEED)
    if fd < 0:
        return
    every = 1 if n <= 16 else max(n // 3, 1)
    op = 0
    total = 2 * n + 8
    for i in range(1, total + 1):
        k.set_cpu(cpu_of(op))
        op += 1
        k.update(fd, key(i, 4), value_for(k, t, i, vs), ANY)
        if i % every == 0 or i == total:
            k.walk(fd, 4)
    for i in range(total - 4, total + 1):
        k.set_cpu(cpu_of(op))
        op += 1
        k.lookup(fd, key(i, 4), vsys)                      # syscall lookups set no ref bit
    for i, fl in ((total, ANY), (total - 1, NOEXIST), (total + 50, EXIST), (total - 2, EXIST),
                  (total + 51, NOEXIST), (1, EXIST), (2, NOEXIST), (total, 3)):
        k.set_cpu(cpu_of(op))
        op += 1
        k.update(fd, key(i, 4), value_for(k, t, i + 1, vs), fl)
    k.walk(fd, 4)
    for i in range(total, total - min(n, 6), -1):
        k.set_cpu(cpu_of(op))
        op += 1
        k.delete(fd, key(i, 4))
    for i in range(total + 100, total + 100 + min(n, 6) + 3):
        k.set_cpu(cpu_of(op))
        op += 1
        k.update(fd, key(i, 4), value_for(k, t, i, vs), NOEXIST)
        k.lookup_and_delete(fd, key(i - 2, 4), vsys)
    k.walk(fd, 4)
    k.close(fd)


@scenario(*ELEM)
def lru_one_cpu(b):
    """LRU eviction pinned to CPU 0: LRU_HASH and LRU_PERCPU_HASH, common and per-CPU lists,
    sizes 1..255 (target_free batches, evictions by updates of existing keys and by failing
    updates, deletes feeding the free lists)."""
    k = Caller(b)
    for t in LRUS:
        for flags in (0, NO_COMMON_LRU):
            for n in LRU_SIZES:
                _lru_run(k, t, n, flags, lambda i: 0)
    k.set_cpu(0)
    _finish(k)


@scenario(*ELEM, cpus=2)
def lru_two_cpus(b):
    """LRU eviction on two CPUs (alternating, in blocks, at random): per-CPU local free and
    pending lists, stealing (a 1-entry map used from both CPUs), per-CPU LRU capacity."""
    k = Caller(b)
    if k.ncpu < 2:
        return
    rnd = random.Random(6)
    seq = [rnd.randrange(2) for _ in range(4096)]
    patterns = (lambda i: i % 2, lambda i: (i // 5) % 2, lambda i: seq[i % len(seq)])
    for t in LRUS:
        for flags in (0, NO_COMMON_LRU):
            for n in (1, 3, 8, 16, 100):
                for p in (patterns if n < 100 else patterns[2:]):
                    _lru_run(k, t, n, flags, p)
    # sanity5: one entry, a new key from each CPU in turn
    for t in LRUS:
        fd = k.create(t, 4, 8, 1, ZERO_SEED)
        vsys = k.value_size_sys(t, 8)
        for i in range(1, 12):
            k.set_cpu(i % 2)
            k.lookup(fd, key(i - 1, 4), vsys)
            k.update(fd, key(i, 4), value_for(k, t, i, 8), NOEXIST)
            k.lookup(fd, key(i, 4), vsys)
            k.walk(fd, 4)
        k.close(fd)
    k.set_cpu(0)
    _finish(k)


# --- arrays ------------------------------------------------------------------------------------------

@scenario(*ELEM)
def array_elem(b):
    """ARRAY and PERCPU_ARRAY: zero-filled elements, updates (E2BIG out of range, NOEXIST is
    always EEXIST), DELETE is EINVAL, LOOKUP_AND_DELETE is ENOTSUPP, index walks."""
    k = Caller(b)
    k.set_cpu(0)
    for t in ARRAYS:
        for vs, n in ((1, 1), (4, 3), (8, 5), (13, 7), (64, 100), (3, 2)):
            vsys = k.value_size_sys(t, vs)
            fd = k.create(t, 4, vs, n, 0)
            for i in range(n + 2):
                k.lookup(fd, key(i, 4), vsys)
            for i in range(n + 2):
                k.update(fd, key(i, 4), value_for(k, t, i, vs), ANY)
                k.update(fd, key(i, 4), value_for(k, t, i + 1, vs), NOEXIST)
                k.update(fd, key(i, 4), value_for(k, t, i + 2, vs), EXIST)
                k.update(fd, key(i, 4), value_for(k, t, i + 3, vs), 3)
            for fl in (F_LOCK, 5, 8, 16, 1 << 32):
                k.update(fd, key(0, 4), value_for(k, t, 9, vs), fl)
            k.update(fd, key(0xFFFFFFFF, 4), value_for(k, t, 9, vs), NOEXIST)
            for i in range(n + 2):
                k.lookup(fd, key(i, 4), vsys)
            k.lookup(fd, key(0xFFFFFFFF, 4), vsys)
            k.delete(fd, key(0, 4))
            k.delete(fd, key(n + 5, 4))
            k.lookup_and_delete(fd, key(0, 4), vsys)
            k.lookup_and_delete(fd, None, vsys)
            k.walk(fd, 4)
            k.next_key(fd, key(n, 4), 4)
            k.next_key(fd, key(n + 100, 4), 4)
            k.next_key(fd, key(n - 1, 4), 4)
            k.next_key(fd, key(0xFFFFFFFF, 4), 4)
            k.close(fd)
    for flags in (MMAPABLE, INNER_MAP, RDONLY_PROG, WRONLY_PROG, NUMA_NODE):
        fd = k.create(A, 4, 8, 4, flags)
        if fd >= 0:
            k.update(fd, key(1, 4), val(1, 8))
            k.lookup(fd, key(1, 4), 8)
            k.close(fd)
    _finish(k)


# --- batch commands --------------------------------------------------------------------------------

def _batch_walk(k, fd, ks, vsys, count, *, delete=False, limit=200):
    token = None
    for _ in range(limit):
        ret, n, keys, values, out = k.lookup_batch(fd, ks, vsys, count, token=token, delete=delete)
        if ret != 0:
            return ret
        token = out


@scenario(*ELEM, *BATCH)
def batch_hash(b):
    """The four batch commands on the hash family: bucket-granular walks with every count,
    ENOSPC when a bucket does not fit, ENOENT at the end, lookup-and-delete walks, update
    batches stopping at E2BIG, delete batches stopping at a missing key (docs: #batch-commands)."""
    k = Caller(b)
    k.set_cpu(0)
    for t in HASHES:
        for ks, vs, n, nkeys in ((4, 8, 8, 8), (4, 8, 33, 30), (8, 12, 100, 100), (3, 5, 16, 16)):
            vsys = k.value_size_sys(t, vs)
            fd = k.create(t, ks, vs, n, ZERO_SEED)
            _batch_walk(k, fd, ks, vsys, 4)                 # empty map: ENOENT at once
            for i in range(nkeys):
                k.update(fd, key(i, ks), value_for(k, t, i, vs))
            for count in (1, 2, 3, 5, 8, 13, n, n + 5):
                _batch_walk(k, fd, ks, vsys, count)
            for tok in (0, 1, n - 1, 1 << 20, 0xFFFFFFFF):
                k.lookup_batch(fd, ks, vsys, 4, token=u32(tok))
            # update batches: all at once, then past capacity
            keys = b"".join(key(i + 1000, ks) for i in range(12))
            values = b"".join(value_for(k, t, i + 1000, vs) for i in range(12))
            k.batch(C.BPF_MAP_UPDATE_BATCH, fd, keys=keys, values=values, count=12)
            k.batch(C.BPF_MAP_UPDATE_BATCH, fd, keys=keys, values=values, count=12)
            _batch_walk(k, fd, ks, vsys, 7)
            # delete batches: stop at the first missing key
            dkeys = b"".join(key(i, ks) for i in (0, 1, 500, 2, 3))
            k.batch(C.BPF_MAP_DELETE_BATCH, fd, keys=dkeys, count=5)
            k.batch(C.BPF_MAP_DELETE_BATCH, fd, keys=dkeys, count=2)
            k.batch(C.BPF_MAP_DELETE_BATCH, fd, keys=dkeys, count=0)
            _batch_walk(k, fd, ks, vsys, 5)
            for count in (1, 3, n):
                _batch_walk(k, fd, ks, vsys, count, delete=True, limit=3)
                k.walk(fd, ks)
            _batch_walk(k, fd, ks, vsys, 2, delete=True)
            k.walk(fd, ks)
            k.close(fd)
        # buckets that do not fit: keys forced into few buckets by a 2-entry map
        for n in (2, 4):
            vsys = k.value_size_sys(t, 8)
            fd = k.create(t, 4, 8, n, ZERO_SEED)
            for i in range(n):
                k.update(fd, key(i * 7 + 1, 4), value_for(k, t, i, 8))
            for count in (1, 2, 3):
                for tok in (None, u32(0), u32(1)):
                    k.lookup_batch(fd, 4, vsys, count, token=tok)
                    k.lookup_batch(fd, 4, vsys, count, token=tok, delete=True)
                    for i in range(n):
                        k.update(fd, key(i * 7 + 1, 4), value_for(k, t, i, 8))
            k.close(fd)
    _finish(k)


@scenario(*ELEM, *BATCH)
def batch_errors(b):
    """Batch errno paths: tails, fds, access modes, flags, count 0, faults on every pointer
    (count written or not), ENOTSUPP for arrays, E2BIG part-way through an update batch."""
    k = Caller(b)
    k.set_cpu(0)
    devnull = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for t in ALL_TYPES:
            ks, vs = 4, 8
            vsys = k.value_size_sys(t, vs)
            zs = ZERO_SEED if t in HASHES else 0
            fd = k.create(t, ks, vs, 5, zs)
            ro = k.create(t, ks, vs, 5, zs | RDONLY)
            wo = k.create(t, ks, vs, 5, zs | WRONLY)
            for i in range(3):
                k.update(fd, key(i, ks), value_for(k, t, i, vs))
            keys = b"".join(key(i, ks) for i in range(10))
            values = b"".join(value_for(k, t, i, vs) for i in range(10))
            for cmd in BATCH:
                out = dict(keys=Out(5 * ks), values=Out(5 * vsys), out_batch=Out(4))
                inp = dict(keys=keys, values=values)
                args = out if cmd in (C.BPF_MAP_LOOKUP_BATCH, C.BPF_MAP_LOOKUP_AND_DELETE_BATCH) else inp
                for bad in (999, 0xFFFFFFFF, devnull):
                    k.batch(cmd, bad, count=5, **args)
                for m in (ro, wo):
                    k.batch(cmd, m, count=5, **args)
                for ef in (1, 2, 4, 8, 1 << 40):
                    k.batch(cmd, fd, count=5, elem_flags=ef, **args)
                for fl in (1, 1 << 63):
                    k.batch(cmd, fd, count=5, flags=fl, **args)
                k.batch(cmd, fd, count=0, keys=no_access_page(), values=no_access_page(),
                        in_batch=no_access_page(), out_batch=no_access_page())
                k.batch(cmd, fd, count=0, flags=1)
                k.batch(cmd, fd, count=5, keys=None, values=None, out_batch=None)
                k.batch(cmd, fd, count=5, keys=no_access_page(), values=Out(5 * vsys),
                        out_batch=Out(4))
                k.batch(cmd, fd, count=5, keys=Out(5 * ks), values=readonly_page(),
                        out_batch=Out(4))
                k.batch(cmd, fd, count=5, in_batch=no_access_page(), **args)
                attr_tail = dict(args)
                k.batch(cmd, fd, count=5, size=57, **attr_tail)
                for i in range(3):
                    k.update(fd, key(i, ks), value_for(k, t, i, vs))
            # lookups: out_batch faults, count written or not
            for cmd in (C.BPF_MAP_LOOKUP_BATCH, C.BPF_MAP_LOOKUP_AND_DELETE_BATCH):
                k.batch(cmd, fd, count=5, keys=Out(5 * ks), values=Out(5 * vsys), out_batch=0)
                k.batch(cmd, fd, count=5, keys=Out(5 * ks), values=Out(5 * vsys),
                        out_batch=readonly_page())
                k.batch(cmd, fd, count=5, keys=edge_buffer(bytes(ks)),
                        values=Out(5 * vsys), out_batch=Out(4))
                for i in range(3):
                    k.update(fd, key(i, ks), value_for(k, t, i, vs))
            # updates: past capacity, faults part-way
            k.batch(C.BPF_MAP_UPDATE_BATCH, fd, keys=keys, values=values, count=10)
            # a count far beyond the buffers: the copies run into an unmapped page (an LRU
            # map never fills up, so only the fault stops it)
            k.batch(C.BPF_MAP_UPDATE_BATCH, fd, keys=edge_buffer(keys), values=edge_buffer(values),
                    count=0xFFFFFFFF)
            k.batch(C.BPF_MAP_DELETE_BATCH, fd, keys=edge_buffer(keys), count=0xFFFFFFFF)
            k.batch(C.BPF_MAP_UPDATE_BATCH, fd, keys=edge_buffer(keys[:3 * ks]), values=values,
                    count=5)
            k.batch(C.BPF_MAP_UPDATE_BATCH, fd, keys=keys, values=edge_buffer(values[:2 * vsys]),
                    count=5)
            akeys = b"".join(u32(i) for i in (0, 1, 9, 2))
            k.batch(C.BPF_MAP_UPDATE_BATCH, fd, keys=akeys, values=values, count=4)
            k.batch(C.BPF_MAP_DELETE_BATCH, fd, keys=edge_buffer(keys[:ks]), count=3)
            k.batch(C.BPF_MAP_DELETE_BATCH, fd, keys=keys, count=10)
            k.walk(fd, ks)
            for m in (fd, ro, wo):
                k.close(m)
    finally:
        os.close(devnull)
    _finish(k)


@scenario(*ELEM, C.BPF_MAP_LOOKUP_BATCH, C.BPF_MAP_UPDATE_BATCH)
def batch_array(b):
    """LOOKUP_BATCH and UPDATE_BATCH on ARRAY and PERCPU_ARRAY: key-based tokens, ENOENT
    with data at the end, out-of-range tokens restarting at 0, batch.flags ignored."""
    k = Caller(b)
    for t in ARRAYS:
        for vs, n in ((8, 5), (4, 16), (13, 3)):
            vsys = k.value_size_sys(t, vs)
            fd = k.create(t, 4, vs, n)
            keys = b"".join(u32(i) for i in range(n))
            values = b"".join(value_for(k, t, i, vs) for i in range(n))
            k.batch(C.BPF_MAP_UPDATE_BATCH, fd, keys=keys, values=values, count=n)
            for count in (1, 2, 3, n, n + 1):
                token = None
                for _ in range(n + 2):
                    ret, c, kk, vv, out = k.lookup_batch(fd, 4, vsys, count, token=token)
                    if ret != 0:
                        break
                    token = out
            for tok in (0, n - 2, n - 1, n, n + 7, 0xFFFFFFFF):
                k.lookup_batch(fd, 4, vsys, 2, token=u32(tok))
                k.lookup_batch(fd, 4, vsys, 2, token=u32(tok), flags=1 << 63)
            k.close(fd)
    _finish(k)


# --- objects: info, ids, freeze, pins ----------------------------------------------------------------

@scenario(C.BPF_MAP_CREATE, C.BPF_OBJ_GET_INFO_BY_FD, C.BPF_MAP_FREEZE, C.BPF_MAP_UPDATE_ELEM)
def obj_info(b):
    """OBJ_GET_INFO_BY_FD: every info_len, the zero-tail rule from offset 100, echoed input
    fields, effective max_entries and flags, the SHA-256 of a frozen ARRAY, EBADFD/EINVAL."""
    k = Caller(b)
    devnull = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        maps = []
        for t in ALL_TYPES:
            for n, flags in ((4, 0), (3, NO_COMMON_LRU), (5, RDONLY), (7, WRONLY | RDONLY_PROG),
                             (1, NO_COMMON_LRU | ZERO_SEED), (2, NO_PREALLOC)):
                fd = k.create(t, 4, 12, n, flags, name=b"info_%d" % t)
                if fd >= 0:
                    maps.append(fd)
        for fd in maps:
            for n in (0, 1, 4, 8, 24, 40, 44, 88, 96, 100, 104):
                k.info(fd, n)
            k.info(fd, 0, info=0)
            k.info(fd, 8, info=0)
        fd = maps[0]
        garbage = bytes((0xC0 + i) & 0xFF for i in range(88)) + bytes(16)
        k.info(fd, 104, data=garbage)                    # unfilled fields are echoed
        for n in (105, 108, 200, 4096):
            k.info(fd, n)
            for dirty in sorted({100, 103, n - 1}):
                if dirty < n:
                    d = bytearray(n)
                    d[dirty] = 1
                    k.info(fd, n, data=bytes(d))
        for dirty in range(86, 104):
            d = bytearray(104)
            d[dirty] = 0x10
            k.info(fd, 104, data=bytes(d))
        k.info(fd, 4097)
        k.info(fd, 0xFFFFFFFF)
        k.info(fd, 104, info=no_access_page())
        k.info(fd, 104, info=readonly_page())
        k.info(fd, 104, info=edge_buffer(bytes(50)))
        k.info(fd, 120, info=edge_buffer(bytes(104)))
        k.info(fd, 104, size=17)
        for bad in (999, 0xFFFFFFFF, devnull):
            k.info(bad, 104)
            k.info(bad, 0, info=0)
        # the hash of an ARRAY's values, only when frozen
        for t in ALL_TYPES:
            afd = k.create(t, 4, 8, 3)
            if afd < 0:
                continue
            k.update(afd, key(1, 4), value_for(k, t, 1, 8))
            for h, hs in ((k.ptr(Out(32)), 32), (k.ptr(Out(32)), 31), (0, 32), (k.ptr(Out(64)), 64)):
                d = bytearray(104)
                struct.pack_into("<QI", d, 88, h, hs)
                k.info(afd, 104, data=bytes(d))
            k.freeze(afd)
            for h, hs in ((k.ptr(Out(32)), 32), (no_access_page(), 32), (readonly_page(), 32),
                          (k.ptr(Out(32)), 16)):
                d = bytearray(104)
                struct.pack_into("<QI", d, 88, h, hs)
                k.info(afd, 104, data=bytes(d))
            k.close(afd)
    finally:
        os.close(devnull)
    _finish(k)


@scenario(C.BPF_MAP_CREATE, C.BPF_OBJ_GET_INFO_BY_FD, C.BPF_MAP_GET_NEXT_ID,
          C.BPF_MAP_GET_FD_BY_ID, C.BPF_MAP_UPDATE_ELEM, C.BPF_MAP_LOOKUP_ELEM)
def map_ids(b):
    """Map ids: GET_NEXT_ID over the scenario's own maps, GET_FD_BY_ID with every open_flags
    (access modes of the new fd), ids of closed maps, the INT_MAX limit, tails."""
    k = Caller(b)
    fds = [k.create(t, 4, 8, 4, ZERO_SEED if t in HASHES else 0) for t in ALL_TYPES]
    ids = [k.map_id(fd) for fd in fds]
    # other processes' maps would show up between ours: then record again
    for a, nxt in zip(ids, ids[1:]):
        ret, got = k.next_id(a)
        if ret != 0 or got != nxt:
            raise Interference(f"GET_NEXT_ID({a}) gave {got}, not {nxt}")
    ret, got = k.next_id(ids[-1])
    if ret != ENOENT:
        raise Interference(f"a map with an id above {ids[-1]} exists")
    k.next_id(ids[0] - 1)
    k.next_id(ids[2] - 1)
    k.next_id(ids[0], next_id=0xDEAD)
    k.next_id(ids[0], size=4)                   # next_id is written even past size
    for start in (0x7FFFFFFE, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF):
        k.next_id(start)
    k.next_id(ids[0], open_flags=1, size=12)
    for i, fd in zip(ids, fds):
        for of in (0, RDONLY, WRONLY, RDONLY | WRONLY, 1, 0x20, PATH_FD):
            nfd = k.fd_by_id(i, of)
            if nfd >= 0:
                k.info(nfd, 16)
                k.close(nfd)
        nfd = k.fd_by_id(i, size=16, token_fd=5)
        if nfd >= 0:
            k.close(nfd)
    for t_index in (0, 4):
        fd = fds[t_index]
        vsys = k.value_size_sys(ALL_TYPES[t_index], 8)
        rfd = k.fd_by_id(ids[t_index], RDONLY)
        wfd = k.fd_by_id(ids[t_index], WRONLY)
        v = value_for(k, ALL_TYPES[t_index], 3, 8)
        k.update(rfd, key(1, 4), v)
        k.update(wfd, key(1, 4), v)
        k.lookup(rfd, key(1, 4), vsys)
        k.lookup(wfd, key(1, 4), vsys)
        k.close(rfd)
        k.close(wfd)
    # a map outlives its first fd while another fd holds it
    nfd = k.fd_by_id(ids[0])
    k.close(fds[0])
    k.info(nfd, 104)
    k.next_id(ids[0] - 1)
    k.close(nfd)
    k.fd_by_id(ids[0])
    k.next_id(ids[0] - 1)
    for bad in (0, 0x7FFFFFFE, 0x7FFFFFFF, 0xFFFFFFFF):
        k.fd_by_id(bad)
    for fd in fds[1:]:
        k.close(fd)
    for i in ids:
        k.fd_by_id(i)
    _finish(k)


@scenario(C.BPF_MAP_CREATE, C.BPF_MAP_FREEZE, C.BPF_MAP_GET_FD_BY_ID, C.BPF_OBJ_GET_INFO_BY_FD,
          *ELEM, *BATCH)
def map_freeze(b):
    """MAP_FREEZE: every map type, through RDONLY/WRONLY fds, twice (EPERM), and what a frozen
    map still allows (lookups, walks, LOOKUP_BATCH, info) and refuses on every fd (EPERM)."""
    k = Caller(b)
    k.set_cpu(0)
    for t in ALL_TYPES:
        zs = ZERO_SEED if t in HASHES else 0
        vsys = k.value_size_sys(t, 8)
        ro = k.create(t, 4, 8, 4, zs | RDONLY)
        k.freeze(ro)
        wo = k.create(t, 4, 8, 4, zs | WRONLY)
        k.freeze(wo)
        k.freeze(wo)
        fd = k.create(t, 4, 8, 4, zs)
        k.update(fd, key(1, 4), value_for(k, t, 1, 8))
        k.freeze(fd, size=8, pad=1)
        k.freeze(999)
        k.freeze(fd)
        k.freeze(fd)
        v = value_for(k, t, 2, 8)
        k.update(fd, key(1, 4), v)
        k.update(fd, key(2, 4), v, F_LOCK)
        k.delete(fd, key(1, 4))
        k.lookup(fd, key(1, 4), vsys)
        k.next_key(fd, None, 4)
        k.lookup_and_delete(fd, key(1, 4), vsys)
        k.walk(fd, 4)
        k.info(fd, 104)
        keys = b"".join(key(i, 4) for i in range(2))
        values = v * 2
        k.batch(C.BPF_MAP_UPDATE_BATCH, fd, keys=keys, values=values, count=2)
        k.batch(C.BPF_MAP_DELETE_BATCH, fd, keys=keys, count=2)
        k.lookup_batch(fd, 4, vsys, 4)
        k.lookup_batch(fd, 4, vsys, 4, delete=True)
        i = k.map_id(fd)
        nfd = k.fd_by_id(i)
        k.update(nfd, key(1, 4), v)
        k.freeze(nfd)
        k.close(nfd)
        for m in (ro, wo, fd):
            k.close(m)
    _finish(k)


@scenario(C.BPF_MAP_CREATE, C.BPF_OBJ_PIN, C.BPF_OBJ_GET, C.BPF_MAP_UPDATE_ELEM,
          C.BPF_MAP_LOOKUP_ELEM, C.BPF_OBJ_GET_INFO_BY_FD, C.BPF_MAP_GET_FD_BY_ID,
          needs_bpffs=True)
def obj_pin(b):
    """OBJ_PIN and OBJ_GET on a bpffs: pins hold the map, access modes of the new fd, EEXIST,
    ENOENT, EFAULT, EPERM outside a bpffs, EACCES for non-BPF files, flag and fd checks."""
    root = bpffs_root_of(b)
    if root is None:
        return
    k = Caller(b)
    devnull = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = k.create(H, 4, 8, 4, ZERO_SEED)
        k.update(fd, key(1, 4), val(1, 8))
        p = f"{root}/m1"
        k.pin(p, fd)
        k.pin(p, fd)
        for flags in (0, RDONLY, WRONLY, RDONLY | WRONLY, 1, 0x20):
            g = k.obj_get(p, flags)
            if g >= 0:
                k.update(g, key(2, 4), val(2, 8))
                k.lookup(g, key(1, 4), 8)
                k.info(g, 24)
                k.close(g)
        k.obj_get(p, bpf_fd=fd)
        k.obj_get(p, path_fd=3)
        k.obj_get(p, PATH_FD, path_fd=999)
        k.pin(p, fd, path_fd=3)
        k.pin(p + "x", fd, 1)
        k.pin(p + "y", 999)
        k.pin(p + "y", devnull)
        k.pin(p + "y", fd, size=21)
        k.obj_get(None)
        k.obj_get(no_access_page())
        k.obj_get("")
        k.pin("", fd)
        k.pin(None, fd)
        k.obj_get(f"{root}/missing")
        k.obj_get(f"{root}/nodir/m")
        k.pin(f"{root}/nodir/m", fd)
        k.obj_get(root)
        k.obj_get("/")
        k.pin("/tmp/bpfemu-not-a-bpffs-pin", fd)
        k.fs("mkdir", f"{root}/sub")
        k.pin(f"{root}/sub/m2", fd)
        g = k.obj_get(f"{root}/sub/m2")
        i = k.map_id(fd)
        k.close(fd)
        k.close(g)
        # only the pins hold the map now
        g = k.fd_by_id(i)
        if g >= 0:
            k.close(g)
        k.fs("unlink", p)
        k.obj_get(p)
        k.fs("unlink", p)
        g = k.obj_get(f"{root}/sub/m2", RDONLY)
        k.fs("unlink", f"{root}/sub/m2")
        k.fs("rmdir", f"{root}/sub")
        if g >= 0:
            k.lookup(g, key(1, 4), 8)
            k.update(g, key(1, 4), val(3, 8))
            k.close(g)
        k.fd_by_id(i)
    finally:
        os.close(devnull)
    _finish(k)


# --- objects: BTF, programs, fd maps ------------------------------------------------------------

def _btf_blob(*, magic=0xEB9F, version=1, flags=0, hdr_len=24, types=None, strings=None,
              str_off=None) -> bytes:
    """A BTF blob: [1] u32 (INT, 4 bytes), [2] u64 (INT, 8 bytes) unless types are given."""
    if strings is None:
        strings = b"\0u32\0u64\0"
    if types is None:
        types = (struct.pack("<IIII", 1, 1 << 24, 4, 32) + struct.pack("<IIII", 5, 1 << 24, 8, 64))
    if str_off is None:
        str_off = len(types)
    hdr = struct.pack("<HBBIIIII", magic, version, flags, hdr_len, 0, len(types), str_off,
                      len(strings))
    return hdr + types + strings


def _btf_load(k: Caller, blob: bytes, *, size=None, btf_size=None) -> int:
    attr = struct.pack("<QQIII", k.ptr(blob), 0, len(blob) if btf_size is None else btf_size, 0, 0)
    return k.call(C.BPF_BTF_LOAD, attr, 28 if size is None else size)


def _insns(*map_fds) -> bytes:
    """r1 = map (ld_imm64 BPF_PSEUDO_MAP_FD) for each fd, then r0 = 0; exit."""
    out = b""
    for fd in map_fds:
        out += struct.pack("<BBhi", 0x18, 0x11, 0, fd) + bytes(8)
    return out + struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)


def _prog_load(k: Caller, insns: bytes, *, prog_type=1, license=b"GPL\0", name=b"",
               size=128) -> int:
    attr = struct.pack("<IIQQIIQII16s", prog_type, len(insns) // 8, k.ptr(insns),
                       k.ptr(license), 0, 0, 0, 0, 0, bytes(name).ljust(16, b"\0")[:16])
    return k.call(C.BPF_PROG_LOAD, attr, size)


@scenario(C.BPF_BTF_LOAD, C.BPF_PROG_LOAD, C.BPF_MAP_CREATE, C.BPF_MAP_UPDATE_ELEM,
          C.BPF_MAP_LOOKUP_ELEM, C.BPF_MAP_DELETE_ELEM)
def objects(b):
    """BTF_LOAD (a good blob and malformed ones), maps with BTF type ids, PROG_LOAD of programs
    whose 64-bit immediate loads carry map fds, PROG_ARRAY with program fds in and ids out,
    ARRAY_OF_MAPS and HASH_OF_MAPS with an inner map template, map fds in and ids out."""
    k = Caller(b)
    k.set_cpu(0)
    btf = _btf_load(k, _btf_blob())
    _btf_load(k, _btf_blob(magic=0x9FEB))                    # EINVAL: bad magic
    _btf_load(k, _btf_blob(version=2))
    _btf_load(k, _btf_blob(flags=1))
    _btf_load(k, _btf_blob(hdr_len=8))
    _btf_load(k, _btf_blob(str_off=4))                      # sections overlap
    _btf_load(k, _btf_blob(types=struct.pack("<IIII", 1, 20 << 24, 4, 32)))  # unknown kind
    _btf_load(k, _btf_blob(types=struct.pack("<IIII", 99, 1 << 24, 4, 32)))  # bad name offset
    _btf_load(k, _btf_blob(), btf_size=10)
    extra = [_btf_load(k, _btf_blob(), size=40)]            # btf_log_true_size written back
    h = k.create(H, 4, 8, 8, btf_fd=btf, btf_key_type_id=1, btf_value_type_id=2)
    k.create(H, 4, 8, 8, btf_fd=btf, btf_key_type_id=2, btf_value_type_id=2)   # size mismatch
    k.create(H, 4, 8, 8, btf_fd=btf, btf_key_type_id=1, btf_value_type_id=9)   # no such type
    k.create(H, 4, 8, 8, btf_fd=h, btf_key_type_id=1, btf_value_type_id=2)     # not a BTF fd
    a = k.create(A, 4, 4, 4)
    progs = [_prog_load(k, _insns(h), name=b"one"), _prog_load(k, _insns(h, a), name=b"two"),
             _prog_load(k, _insns())]
    _prog_load(k, _insns(999))                              # EBADF: no such map fd
    _prog_load(k, _insns(btf))                              # EINVAL: not a map
    extra.append(_prog_load(k, _insns(), license=b"Proprietary\0"))
    extra.append(_prog_load(k, _insns(), prog_type=999))
    extra.append(_prog_load(k, _insns(), size=144))        # log_true_size written back
    pa = k.create(T.BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 4)
    for i, p in enumerate(progs):
        k.update(pa, key(i, 4), u32(p))
    k.update(pa, key(3, 4), u32(h))                         # a map is no program
    k.update(pa, key(4, 4), u32(progs[0]))                  # E2BIG
    for i in range(4):
        k.lookup(pa, key(i, 4), 4)
    k.delete(pa, key(1, 4))
    k.lookup(pa, key(1, 4), 4)
    inner = k.create(A, 4, 4, 2)
    other = k.create(A, 4, 4, 2)
    for outer_type, n in ((T.BPF_MAP_TYPE_ARRAY_OF_MAPS, 4), (T.BPF_MAP_TYPE_HASH_OF_MAPS, 4)):
        o = k.create(outer_type, 4, 4, n, inner_map_fd=inner)
        k.create(outer_type, 4, 4, n, inner_map_fd=progs[0])  # not a map
        k.update(o, key(1, 4), u32(inner))
        k.update(o, key(2, 4), u32(other))
        k.update(o, key(3, 4), u32(h))                      # EINVAL: not like the template
        k.update(o, key(0, 4), u32(progs[0]))
        for i in range(4):
            k.lookup(o, key(i, 4), 4)
        k.delete(o, key(2, 4))
        k.lookup(o, key(2, 4), 4)
        k.close(o)
    for fd in progs + [btf] + extra:
        if fd >= 0:
            k.close(fd)
    _finish(k)


def bpffs_root_of(backend) -> str | None:
    root = getattr(backend, "bpffs_root", None)
    if root:
        return root
    from .recorder import _unwrap
    from ..emulator import Emulator
    inner = _unwrap(backend)
    if isinstance(inner, Emulator) and hasattr(inner, "bpffs"):
        return inner.bpffs.root
    return None


# Order of the corpus and of ``bpfemu conform``.
ORDER = ["entry", "map_create", "elem_errors", "hash_elem", "percpu_hash_elem", "lru_hash_elem",
         "lru_percpu_hash_elem", "array_elem", "lru_one_cpu", "lru_two_cpus", "batch_hash",
         "batch_errors", "batch_array", "obj_info", "map_ids", "map_freeze", "obj_pin",
         "objects"]
assert sorted(ORDER) == sorted(SCENARIOS), set(ORDER) ^ set(SCENARIOS)
