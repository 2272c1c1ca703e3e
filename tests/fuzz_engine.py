"""A differential fuzzer of the map commands: the same random and mutated attrs, at the same
addresses, sent to the emulator and to the live kernel from the same starting state.

Both backends run in this process, so a pointer means the same memory to both. All the
memory a call can touch is one pool: 15 read-write pages and a PROT_NONE page after them (for
pointers and attrs that straddle into a hole), and a read-only page. Before each backend's
call the pool is set to the same bytes; after it the whole pool is kept, and the two copies
must be equal (every byte written, and none written elsewhere). Pointers are NULL, unmapped,
kernel addresses, read-only, straddling the hole, or anywhere in the pool (keys there come
from a small key space so that lookups find elements).

fd fields are drawn from logical fds (a live map, a closed fd, a foreign fd, 0, garbage) and
translated to each backend's own number, since the two hand out different fds; map ids
likewise. After every failed call, the contents of the map it named are compared (walk and
values), and every map every CHECK_ALL calls.

Left out, each for a stated reason: MAP_GET_NEXT_ID (the kernel's answer depends on every
map in the system), OBJ_PIN/OBJ_GET with a valid path (they would need a bpffs on the host,
and leave files), BTF and offload fields at creation (DEVIATION(btf), DEVIATION(offload)).
"""
import ctypes
import errno
import mmap
import os
import random
import struct
import traceback
from collections import Counter

from bpfemu import Emulator, HostKernel
from bpfemu.uapi import consts as c

PAGE = 4096
RW_PAGES = 15
ATTR = 168
KERNEL_ADDR = 0xFFFF_FFFF_8100_0000
KEY_SPACE = 12

MAP_TYPES = [c.BPF_MAP_TYPE_HASH, c.BPF_MAP_TYPE_ARRAY, c.BPF_MAP_TYPE_PERCPU_HASH,
             c.BPF_MAP_TYPE_PERCPU_ARRAY, c.BPF_MAP_TYPE_LRU_HASH, c.BPF_MAP_TYPE_LRU_PERCPU_HASH]
ELEM_CMDS = [c.BPF_MAP_LOOKUP_ELEM, c.BPF_MAP_UPDATE_ELEM, c.BPF_MAP_DELETE_ELEM,
             c.BPF_MAP_GET_NEXT_KEY, c.BPF_MAP_LOOKUP_AND_DELETE_ELEM]
BATCH_CMDS = [c.BPF_MAP_LOOKUP_BATCH, c.BPF_MAP_LOOKUP_AND_DELETE_BATCH,
              c.BPF_MAP_UPDATE_BATCH, c.BPF_MAP_DELETE_BATCH]
OTHER_CMDS = [c.BPF_MAP_CREATE, c.BPF_MAP_FREEZE, c.BPF_OBJ_GET_INFO_BY_FD,
              c.BPF_MAP_GET_FD_BY_ID, c.BPF_OBJ_PIN, c.BPF_OBJ_GET]
SIZES = [0, 1, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 72, 92, 100, 120, 160, 167, 168,
         169, 176, 200, 1000, 4095, 4096, 4097]
# Offsets of fd fields, per command: translated from logical fds.
FD_FIELDS = {cmd: (0,) for cmd in ELEM_CMDS + [c.BPF_MAP_FREEZE, c.BPF_OBJ_GET_INFO_BY_FD]}
FD_FIELDS.update({cmd: (36,) for cmd in BATCH_CMDS})
FD_FIELDS[c.BPF_MAP_CREATE] = (20, 48)          # inner_map_fd, btf_fd (kept invalid)
FD_FIELDS[c.BPF_OBJ_PIN] = (8,)
FD_FIELDS[c.BPF_OBJ_GET] = (8,)
# Offsets of pointer fields, per command: after mutation, each must still point where the
# fuzzer means it to (a flipped middle byte could aim a write at the interpreter's heap).
PTR_FIELDS = {cmd: (8, 16) for cmd in ELEM_CMDS}
PTR_FIELDS.update({cmd: (0, 8, 16, 24) for cmd in BATCH_CMDS})
PTR_FIELDS[c.BPF_OBJ_GET_INFO_BY_FD] = (8,)
PTR_FIELDS[c.BPF_OBJ_PIN] = PTR_FIELDS[c.BPF_OBJ_GET] = (0,)
USER_TOP = 1 << 47
CHECK_ALL = 50
MAX_MAPS = 10

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


class Pool:
    """The memory every fuzzed call can touch."""

    def __init__(self, rw_pages: int = RW_PAGES):
        # rw pages, a hole, a read-only page, and a hole after it, so that no copy runs on
        # into memory the interpreter changes between the two sides' calls.
        self.map = mmap.mmap(-1, (rw_pages + 3) * PAGE)
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        self.hole = self.base + rw_pages * PAGE
        self.ro = self.hole + PAGE
        assert _libc.mprotect(self.hole, PAGE, 0) == 0
        assert _libc.mprotect(self.ro, PAGE, mmap.PROT_READ) == 0
        assert _libc.mprotect(self.ro + PAGE, PAGE, 0) == 0
        self.size = rw_pages * PAGE

    def load(self, data: bytes) -> None:
        ctypes.memmove(self.base, data, self.size)

    def save(self) -> bytes:
        return ctypes.string_at(self.base, self.size)


class Side:
    """One backend and its logical -> real fd and id tables."""

    def __init__(self, backend):
        self.b = backend
        self.fds = {}                           # logical map number -> fd
        self.ids = {}                           # logical map number -> map id

    def close_all(self):
        for fd in self.fds.values():
            self.b.close(fd)
        self.fds.clear()


def _u32(x):
    return x & 0xFFFFFFFF


class Fuzzer:
    keep_diverged = False

    def __init__(self, seed: int, nr_cpus: int, emu_kw=None):
        self.rnd = random.Random(seed)
        self.pool = Pool()
        # The attrs live apart from the data pointers reach: their fd fields hold each
        # side's own numbers, which a batch reading keys from there would see.
        self.attrs = Pool(2)
        self.emu = Side(Emulator(nr_cpus=nr_cpus, seed=seed, **(emu_kw or {})))
        self.emu.b.cpu = 0
        self.host = Side(HostKernel())
        self.ncpu = nr_cpus
        self.maps = {}                          # logical number -> (type, key, value, max)
        self.next_map = 0
        self.calls = 0
        self.kinds = Counter()                  # divergences by kind
        self.examples = []                      # the first few divergences, for the report
        self.rets = Counter()                   # results seen (kernel's), by errno name
        self.closed_fd = self._free_fd()
        r, w = os.pipe()
        self.foreign_fd = r
        self._keep = (r, w)
        self.image = bytearray(self.pool.size)  # the pool's bytes before the next call
        for i in range(0, self.pool.size, 4):
            struct.pack_into("<I", self.image, i, self.rnd.randrange(KEY_SPACE))
        self.start_state()

    def start_state(self) -> None:
        """One map of each type on both sides, half full, from the same calls."""
        for t in MAP_TYPES:
            flags = 0 if t in (c.BPF_MAP_TYPE_ARRAY, c.BPF_MAP_TYPE_PERCPU_ARRAY) \
                else c.BPF_F_ZERO_SEED
            a = bytearray(ATTR)
            struct.pack_into("<IIIII", a, 0, t, 4, 8, 8, flags)
            fds = [side.b.bpf(c.BPF_MAP_CREATE, ctypes.create_string_buffer(bytes(a), ATTR),
                              ATTR) for side in (self.emu, self.host)]
            assert min(fds) >= 0, fds
            self.adopt(c.BPF_MAP_CREATE, a, *fds)
            n = self.next_map - 1
            t, ks, vs, me, _ = self.maps[n]
            for k in range(0, KEY_SPACE, 2):
                key = ctypes.create_string_buffer(struct.pack("<I", k % me), 4)
                val = ctypes.create_string_buffer(bytes(self.rnd.randrange(256)
                                                        for _ in range(8 * self.ncpu)))
                for side in (self.emu, self.host):
                    attr = ctypes.create_string_buffer(struct.pack(
                        "<IIQQQ", side.fds[n], 0, ctypes.addressof(key),
                        ctypes.addressof(val), 0), ATTR)
                    assert side.b.bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32) == 0

    @staticmethod
    def _free_fd(n: int = 900) -> int:
        while True:
            try:
                os.fstat(n)
            except OSError:
                return n
            n += 1

    # --- pointers and fds ------------------------------------------------------------------

    def pointer(self) -> int:
        p = self.pool
        kind = self.rnd.random()
        if kind < 0.06:
            return 0
        if kind < 0.10:
            return 4096 * self.rnd.randrange(1, 16)          # below mmap_min_addr: unmapped
        if kind < 0.13:
            return KERNEL_ADDR + self.rnd.randrange(0, 4096)
        if kind < 0.18:
            return p.ro + self.rnd.randrange(0, PAGE - 64)
        if kind < 0.25:
            return p.hole - self.rnd.randrange(1, 64)         # straddles into the hole
        return p.base + self.rnd.randrange(0, p.size - 8192)

    def _ours(self, ptr: int) -> bool:
        """Inside the pool or the attr area (their holes and read-only pages included)."""
        return any(p.base <= ptr < p.ro + PAGE for p in (self.pool, self.attrs))

    def logical_fd(self):
        """('map', n) | ('closed',) | ('foreign',) | ('raw', value)."""
        r = self.rnd.random()
        if r < 0.75 and self.maps:
            return ("map", self.rnd.choice(list(self.maps)))
        if r < 0.83:
            return ("closed",)
        if r < 0.90:
            return ("foreign",)
        return ("raw", self.rnd.choice([0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, -1 & 0xFFFFFFFF]))

    def real_fd(self, side: Side, lfd) -> int:
        if lfd[0] == "map":
            return side.fds[lfd[1]]
        if lfd[0] == "closed":
            return self.closed_fd
        if lfd[0] == "foreign":
            return self.foreign_fd
        return lfd[1]

    # --- attrs -----------------------------------------------------------------------------

    def make_attr(self, cmd: int) -> bytearray:
        rnd = self.rnd
        a = bytearray(PAGE + 8)
        if cmd == c.BPF_MAP_CREATE:
            t = rnd.choice(MAP_TYPES + [0, 99])
            flags = 0
            bits = (c.BPF_F_NO_PREALLOC, c.BPF_F_NO_COMMON_LRU, c.BPF_F_RDONLY, c.BPF_F_WRONLY,
                    c.BPF_F_ZERO_SEED, c.BPF_F_RDONLY_PROG, c.BPF_F_WRONLY_PROG,
                    c.BPF_F_NUMA_NODE, 1 << 30)
            for bit in () if rnd.random() < 0.6 else bits:
                if rnd.random() < 0.12:
                    flags |= bit
            if t in MAP_TYPES[0::2] or t in (c.BPF_MAP_TYPE_LRU_HASH,):
                flags |= c.BPF_F_ZERO_SEED if rnd.random() < 0.9 else 0
            struct.pack_into("<IIIII", a, 0, t, rnd.choice([0, 1, 4, 8, 4, 4, 3]),
                             rnd.choice([0, 1, 8, 8, 12, 16]), rnd.choice([0, 1, 4, 8, 16]),
                             flags)
            name = rnd.choice([b"", b"m", b"fuzz_map", b"bad name", b"\xe9t\xe9", b"x" * 16])
            a[28:28 + len(name)] = name
        elif cmd in ELEM_CMDS:
            struct.pack_into("<IIQQQ", a, 0, 0, 0, self.pointer(), self.pointer(),
                             rnd.choice([0] * 6 + [1, 2, 3, 4, 5, 1 << 32]))
        elif cmd in BATCH_CMDS:
            struct.pack_into("<QQQQIIQQ", a, 0, self.pointer() if rnd.random() < 0.5 else 0,
                             self.pointer(), self.pointer(), self.pointer(),
                             rnd.choice([0, 1, 2, 3, 5, 8, 16, 64, 0xFFFFFFFF]), 0,
                             rnd.choice([0, 0, 0, 4, 1]), rnd.choice([0, 0, 0, 1]))
            if rnd.random() < 0.15:             # values overlapping keys: the copy order shows
                keys = struct.unpack_from("<Q", a, 16)[0]
                struct.pack_into("<Q", a, 24, (keys + rnd.choice([0, 1, 4, 8, -4])) % 2**64)
        elif cmd == c.BPF_OBJ_GET_INFO_BY_FD:
            struct.pack_into("<IIQ", a, 0, 0, rnd.choice([0, 4, 16, 80, 96, 100, 104, 108, 200,
                                                          4096, 4097]), self.pointer())
        elif cmd == c.BPF_MAP_GET_FD_BY_ID:
            lid = rnd.choice(list(self.maps)) if self.maps and rnd.random() < 0.7 else None
            struct.pack_into("<IIII", a, 0, 0, 0, rnd.choice([0, c.BPF_F_RDONLY, c.BPF_F_WRONLY,
                                                              3, 8]), 0)
            # An id nobody has, 0 in its first bytes (a short size reads id 0 on both sides).
            a[0:4] = struct.pack("<I", 0x7F000000 if lid is None else 0)
            self._id_map = lid
        elif cmd in (c.BPF_OBJ_PIN, c.BPF_OBJ_GET):
            # Invalid paths only (see the module docstring).
            ptr = rnd.choice([0, 4096, KERNEL_ADDR, self.pool.hole - 1])
            struct.pack_into("<QIII", a, 0, ptr, 0, rnd.choice([0, c.BPF_F_RDONLY, 0x100]), 0)
        elif cmd == c.BPF_MAP_FREEZE:
            pass
        # Mutations: flip a few bytes anywhere (past the union too, now and then).
        for _ in range(rnd.choice([0, 0, 0, 1, 1, 2, 4])):
            span = ATTR if rnd.random() < 0.9 else len(a)
            a[rnd.randrange(span)] = rnd.randrange(256)
        for off in PTR_FIELDS.get(cmd, ()):
            ptr = struct.unpack_from("<Q", a, off)[0]
            if 0x10000 <= ptr < USER_TOP and not self._ours(ptr):
                struct.pack_into("<Q", a, off, self.pool.base + ptr % (self.pool.size - 8192))
        if cmd == c.BPF_MAP_CREATE:
            a[44:92] = bytes(48)                # DEVIATION(btf)/(offload): BTF, ifindex, token
            a[44:48] = bytes(4)
            ms = struct.unpack_from("<I", a, 12)[0]
            if ms > 64:
                struct.pack_into("<I", a, 12, ms & 63)    # DEVIATION(memory): sizes stay small
            vs = struct.unpack_from("<I", a, 8)[0]
            if vs > 256:
                struct.pack_into("<I", a, 8, vs & 255)
            ks = struct.unpack_from("<I", a, 4)[0]
            if ks > 64:
                struct.pack_into("<I", a, 4, ks & 63)
        return a

    # --- one call on both ------------------------------------------------------------------

    def one_call(self) -> None:
        rnd = self.rnd
        r = rnd.random()
        if r < 0.45:
            cmd = rnd.choice(ELEM_CMDS)
        elif r < 0.70:
            cmd = rnd.choice(BATCH_CMDS)
        elif r < 0.97:
            # FREEZE less often: a frozen map refuses every write from then on.
            cmd = rnd.choice(OTHER_CMDS + OTHER_CMDS + [c.BPF_MAP_CREATE] * 3)
            if cmd == c.BPF_MAP_FREEZE and rnd.random() < 0.7:
                cmd = c.BPF_OBJ_GET_INFO_BY_FD
        else:
            cmd = rnd.choice([c.BPF_MAP_GET_NEXT_ID + 100, 38, 0xFFFF])
        if cmd == c.BPF_MAP_CREATE and len(self.maps) >= MAX_MAPS:
            self.close_map(rnd.choice(list(self.maps)))
        self._id_map = None
        a = self.make_attr(cmd)
        size = rnd.choice(SIZES) if rnd.random() < 0.4 else (
            56 if cmd in BATCH_CMDS else 32 if cmd in ELEM_CMDS else ATTR)
        if cmd == c.BPF_MAP_GET_FD_BY_ID and size < 4 and self._id_map is not None:
            self._id_map = None                 # part of an id: not the same map on both
            a[0:4] = struct.pack("<I", 0x7F000000)   # id 0 in its first bytes: ENOENT on both
        lfds = [self.logical_fd() for _ in FD_FIELDS.get(cmd, ())]
        # Where the attr lives: mostly in the pool, sometimes running into the hole.
        ap = self.attrs
        if rnd.random() < 0.1:
            where = ap.hole - rnd.choice([8, 16, 24, 34, 56, 100, 168, 200, 1000])
            if where + ATTR < ap.hole and rnd.random() < 0.5:
                # A tail that runs into the hole, with a non-zero byte before it or none.
                size = rnd.choice([PAGE, 2000, ATTR + 40])
                if rnd.random() < 0.7:
                    a[rnd.randrange(ATTR, ap.hole - where)] = rnd.randrange(1, 256)
        else:
            where = ap.base + rnd.randrange(0, 256) * 8
        results = []
        for side in (self.emu, self.host):
            attr = bytearray(a)
            for off, lfd in zip(FD_FIELDS.get(cmd, ()), lfds):
                if cmd == c.BPF_MAP_CREATE and off == 48:
                    continue                    # btf_fd stays 0
                struct.pack_into("<I", attr, off, _u32(self.real_fd(side, lfd)))
            if cmd == c.BPF_MAP_GET_FD_BY_ID and self._id_map is not None and size >= 4:
                struct.pack_into("<I", attr, 0, side.ids[self._id_map])
            attr_image = bytearray(ap.size)
            off = where - ap.base
            room = min(len(attr), ap.size - off)
            attr_image[off:off + room] = attr[:room]
            ap.load(bytes(attr_image))
            self.pool.load(bytes(self.image))
            try:
                ret = side.b.bpf(cmd, where, size)
            except BaseException as e:          # an exception escaping bpf(): never allowed
                self._diverge("exception", cmd, size, repr(e) + traceback.format_exc(-3))
                raise
            mem = bytearray(self.pool.save() + ap.save())
            off += self.pool.size               # the attr area follows the pool in mem
            # The fd and id fields hold each side's own numbers: back to the logical bytes
            # where the call left them as they were.
            for field in range(0, 8, 4) if cmd == c.BPF_MAP_GET_FD_BY_ID else \
                    FD_FIELDS.get(cmd, ()):
                at = off + field
                if at + 4 <= room + off and mem[at:at + 4] == attr[field:field + 4]:
                    mem[at:at + 4] = a[field:field + 4]
            results.append((ret, bytes(mem)))
        self.calls += 1
        (eret, emem), (hret, hmem) = results
        self.rets[errno.errorcode.get(-hret, "ok") if hret < 0 else "ok"] += 1
        new_fd = cmd in (c.BPF_MAP_CREATE, c.BPF_MAP_GET_FD_BY_ID, c.BPF_OBJ_GET)
        unordered = cmd in (c.BPF_MAP_GET_NEXT_KEY, c.BPF_MAP_LOOKUP_BATCH,
                            c.BPF_MAP_LOOKUP_AND_DELETE_BATCH) and any(
            lfd[0] == "map" and self.unordered(lfd[1]) for lfd in lfds)
        self.last_attr = (a[:size if size < 256 else 256].hex(), lfds)
        if unordered and cmd == c.BPF_MAP_LOOKUP_AND_DELETE_BATCH:
            # The two sides may have deleted different elements: drop the map (every fd
            # of it).
            for lfd in lfds:
                if lfd[0] == "map" and lfd[1] in self.maps:
                    self.close_aliases(lfd[1])
        if unordered and (eret != hret or emem != hmem):
            # A hash map with a random seed walks in another order on each side.
            self.kinds["not compared: walk of a randomly seeded map"] += 1
            emem = hmem
        elif cmd == c.BPF_MAP_CREATE and eret != hret and \
                struct.unpack_from("<I", a, 0)[0] not in MAP_TYPES and size >= 4:
            self.kinds["DEVIATION(map-types)"] += 1
        elif (eret < 0 or hret < 0 or not new_fd) and eret != hret:
            self._diverge("return value", cmd, size, f"emulator {eret}, kernel {hret}")
        elif (eret >= 0) != (hret >= 0):
            self._diverge("return value", cmd, size, f"emulator {eret}, kernel {hret}")
        if emem != hmem and not self._only_ids_differ(cmd, emem, hmem, where):
            first = next(i for i in range(len(emem)) if emem[i] != hmem[i])
            self._diverge("bytes written", cmd, size,
                          f"first at pool+{first}: emulator {emem[first:first + 8].hex()}, "
                          f"kernel {hmem[first:first + 8].hex()} (ret {eret}/{hret})")
        # The next call starts from what this one left (the kernel's bytes).
        self.image = bytearray(hmem[:self.pool.size])
        if new_fd and eret >= 0 and hret >= 0:
            self.adopt(cmd, a, eret, hret)
        elif new_fd:
            for side, ret in ((self.emu, eret), (self.host, hret)):
                if ret >= 0:
                    side.b.close(ret)
        if eret < 0 or hret < 0:
            for lfd in lfds:
                if lfd[0] == "map" and lfd[1] in self.maps:
                    self.compare_map(lfd[1], cmd)
        if self.calls % CHECK_ALL == 0:
            for n in list(self.maps):
                self.compare_map(n, cmd)

    def _only_ids_differ(self, cmd, emem, hmem, where) -> bool:
        """OBJ_GET_INFO_BY_FD writes the map's id, which differs between backends: equal
        once the id at offset 4 of the info (pointed to by the attr) is masked."""
        if cmd != c.BPF_OBJ_GET_INFO_BY_FD:
            return False
        off = self.pool.size + where - self.attrs.base
        info = struct.unpack_from("<Q", hmem, off + 8)[0] if off + 16 <= len(hmem) else 0
        e, h = bytearray(emem), bytearray(hmem)
        i = info - self.pool.base + 4
        if 0 <= i <= len(e) - 4:
            e[i:i + 4] = h[i:i + 4] = b"\0\0\0\0"
        return e == h

    def adopt(self, cmd, a: bytes, efd: int, hfd: int) -> None:
        """A new fd on both sides: a new logical map (or a second fd of one)."""
        n = self.next_map
        self.next_map += 1
        self.emu.fds[n], self.host.fds[n] = efd, hfd
        info = ctypes.create_string_buffer(104)
        attr = ctypes.create_string_buffer(struct.pack("<IIQ", hfd, 104, ctypes.addressof(info)),
                                           ATTR)
        assert self.host.b.bpf(c.BPF_OBJ_GET_INFO_BY_FD, attr, 16) == 0
        t, _, ks, vs, me, flags = struct.unpack_from("<IIIIII", info, 0)
        self.maps[n] = (t, ks, vs, me, flags)
        for side in (self.emu, self.host):
            info = ctypes.create_string_buffer(104)
            attr = ctypes.create_string_buffer(struct.pack("<IIQ", side.fds[n], 104,
                                                           ctypes.addressof(info)), ATTR)
            side.ids[n] = struct.unpack_from("<I", info, 4)[0] \
                if side.b.bpf(c.BPF_OBJ_GET_INFO_BY_FD, attr, 16) == 0 else 0

    def unordered(self, n: int) -> bool:
        t, _, _, _, flags = self.maps[n]
        return (t not in (c.BPF_MAP_TYPE_ARRAY, c.BPF_MAP_TYPE_PERCPU_ARRAY)
                and not flags & c.BPF_F_ZERO_SEED)

    def close_aliases(self, n: int) -> None:
        """Close every logical map that is the same map as n (fds from GET_FD_BY_ID)."""
        same = self.emu.ids.get(n)
        for m in list(self.maps):
            if m == n or (same and self.emu.ids.get(m) == same):
                self.close_map(m)

    def close_map(self, n: int) -> None:
        for side in (self.emu, self.host):
            side.b.close(side.fds.pop(n))
            side.ids.pop(n, None)
        del self.maps[n]

    def contents(self, side: Side, n: int):
        """(walk of keys, {key: value}) of one map, through plain calls."""
        t, ks, vs, me, _ = self.maps[n]
        percpu = t in (c.BPF_MAP_TYPE_PERCPU_HASH, c.BPF_MAP_TYPE_PERCPU_ARRAY,
                       c.BPF_MAP_TYPE_LRU_PERCPU_HASH)
        vsz = ((vs + 7) // 8 * 8 * self.ncpu) if percpu else vs
        key = ctypes.create_string_buffer(max(ks, 1))
        nxt = ctypes.create_string_buffer(max(ks, 1))
        val = ctypes.create_string_buffer(max(vsz, 1))
        fd = side.fds[n]
        walk, values = [], {}
        cur = 0
        while len(walk) <= me + 1:
            attr = ctypes.create_string_buffer(struct.pack("<IIQQ", fd, 0, cur,
                                                           ctypes.addressof(nxt)), ATTR)
            ret = side.b.bpf(c.BPF_MAP_GET_NEXT_KEY, attr, 24)
            if ret != 0:
                walk.append(ret)
                break
            k = nxt.raw[:ks]
            walk.append(k)
            key.raw = k
            attr = ctypes.create_string_buffer(struct.pack("<IIQQQ", fd, 0, ctypes.addressof(key),
                                                           ctypes.addressof(val), 0), ATTR)
            r = side.b.bpf(c.BPF_MAP_LOOKUP_ELEM, attr, 32)
            values[k] = (r, val.raw[:vsz] if r == 0 else None)
            cur = ctypes.addressof(key)
        return walk, values

    def compare_map(self, n: int, cmd: int) -> None:
        e, h = self.contents(self.emu, n), self.contents(self.host, n)
        if e != h:
            t = self.maps[n][0]
            hashed = t not in (c.BPF_MAP_TYPE_ARRAY, c.BPF_MAP_TYPE_PERCPU_ARRAY)
            if hashed and e[1] == h[1]:
                # Same elements in another order: a map made without BPF_F_ZERO_SEED.
                return
            self._diverge("map contents", cmd, None, f"map {n} (type {t}, flags "
                          f"{self.maps[n][4]:#x}): emulator "
                          f"{len(e[1])} elements, kernel {len(h[1])}")
            # Drop the map, so that one divergence is counted once (keep_diverged: keep it,
            # to look at it).
            if not self.keep_diverged:
                self.close_aliases(n)

    def _diverge(self, kind, cmd, size, detail) -> None:
        self.kinds[kind] += 1
        if len(self.examples) < 20:
            self.examples.append(f"call {self.calls}: {kind}: cmd {cmd} size {size}: {detail}; "
                                 f"attr {getattr(self, 'last_attr', None)}")

    def run(self, n: int) -> None:
        for _ in range(n):
            self.one_call()

    def close(self) -> None:
        for n in list(self.maps):
            self.close_map(n)
        self.emu.b.close_all()
        for fd in self._keep:
            os.close(fd)

    def real_divergences(self) -> dict:
        """Divergences outside documented DEVIATIONs and walks that cannot be compared."""
        return {k: n for k, n in self.kinds.items()
                if not k.startswith(("DEVIATION", "not compared"))}

    def report(self) -> str:
        lines = [f"{self.calls} calls, divergences: {dict(self.kinds) or 0}",
                 f"kernel results: {dict(self.rets.most_common())}"]
        lines += self.examples
        return "\n".join(lines)
