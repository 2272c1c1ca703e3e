"""Lockstep driving of one LRU map on the emulator and on the live kernel.

A ``Pair`` creates the same map on both backends and sends every operation to both, on an
explicit CPU: the host thread is pinned there with ``os.sched_setaffinity`` and ``emu.cpu``
is set to match. Each operation returns the emulator's result after asserting that the
kernel's is identical; ``check_order`` compares the full GET_NEXT_KEY walk.

Expected values always come from the kernel side: a mismatch message shows both, plus the
operation log tail, so a failure can be replayed.
"""
import ctypes
import os
import struct

import pytest

from bpfemu import Emulator, HostKernel
from bpfemu.host_progs import HostDataPlane
from bpfemu.progs import DataPlane
from bpfemu.uapi import consts as c

from tests.support import (ENOENT, NCPU, ReusedBufferCaller, host_unavailable_reason,
                           map_create_attr, round_up, sys_value_size)

LRU_HASH = c.BPF_MAP_TYPE_LRU_HASH
LRU_PERCPU_HASH = c.BPF_MAP_TYPE_LRU_PERCPU_HASH
NO_COMMON_LRU = c.BPF_F_NO_COMMON_LRU
ZERO_SEED = c.BPF_F_ZERO_SEED
ANY, NOEXIST, EXIST = c.BPF_ANY, c.BPF_NOEXIST, c.BPF_EXIST

# (id, map_type, map_flags): the four LRU flavours.
FLAVOURS = [
    ("lru", LRU_HASH, 0),
    ("lru_nocommon", LRU_HASH, NO_COMMON_LRU),
    ("lru_percpu", LRU_PERCPU_HASH, 0),
    ("lru_percpu_nocommon", LRU_PERCPU_HASH, NO_COMMON_LRU),
]
FLAVOUR_IDS = [f[0] for f in FLAVOURS]

ONLINE_CPUS = sorted(os.sched_getaffinity(0))


def need_host():
    reason = host_unavailable_reason()
    if reason:
        pytest.skip(f"live kernel bpf() not permitted here: {reason}")
    if len(ONLINE_CPUS) < NCPU:
        pytest.skip(f"needs every possible CPU online and allowed ({NCPU}), have {ONLINE_CPUS}")


@pytest.fixture
def pinned():
    """Restores the thread's CPU affinity after the test."""
    saved = os.sched_getaffinity(0)
    yield
    os.sched_setaffinity(0, saved)


def key_of(n: int, key_size: int = 4) -> bytes:
    return n.to_bytes(8, "little")[:key_size].ljust(key_size, b"\0")


class ElemCaller(ReusedBufferCaller):
    """One backend: the reused-buffer element calls, its data plane, the CPU it runs on."""

    def __init__(self, backend, key_size: int, value_size_sys: int):
        super().__init__(backend, key_size, value_size_sys)
        self.is_emu = isinstance(backend, Emulator)
        if self.is_emu:
            backend.mem.pin(self.k, self.n, self.v)
            self.dp = DataPlane(backend)
        else:
            self.dp = HostDataPlane(backend)

    def close(self):
        if not self.is_emu:
            self.dp.close()
        if self.fd >= 0:
            self.b.close(self.fd)
            self.fd = -1
        if self.is_emu:
            self.b.mem.unpin(self.k, self.n, self.v)

    def set_cpu(self, cpu: int) -> None:
        if self.is_emu:
            self.b.cpu = cpu
        else:
            os.sched_setaffinity(0, {cpu})

    def create(self, map_type, key_size, value_size, max_entries, flags) -> int:
        attr = ctypes.create_string_buffer(
            map_create_attr(map_type, key_size, value_size, max_entries, flags), 168)
        self.fd = self.b.bpf(c.BPF_MAP_CREATE, attr, 168)
        return self.fd

    def fast_keys(self, fd) -> list:
        """The same walk, cheaper: on the kernel a bare libc syscall loop; on the emulator the
        map's get_next_key op called directly (the function BPF_MAP_GET_NEXT_KEY runs, minus
        the entry's attr checks, which the hash differential tests cover). For big maps."""
        ks = self.ks
        out = []
        if self.is_emu:
            m = self.b.map_of(fd)
            get_next = m.ops.map_get_next_key
            key = None
            while True:
                try:
                    key = get_next(m, key)
                except OSError as e:
                    assert e.errno == ENOENT, e
                    return out
                out.append(bytes(key))
        from bpfemu.host import _syscall
        nr, cmd = self.b.nr_bpf, c.BPF_MAP_GET_NEXT_KEY
        string_at, memmove = ctypes.string_at, ctypes.memmove
        attr = self.attr
        ka, na = self.ka, self.na
        struct.pack_into("<IIQQQ", attr, 0, fd, 0, 0, na, 0)
        ref = ctypes.byref(attr)
        ret = _syscall(nr, cmd, ref, 24)
        struct.pack_into("<Q", attr, 8, ka)
        while ret == 0:
            out.append(string_at(na, ks))
            memmove(ka, na, ks)
            ret = _syscall(nr, cmd, ref, 24)
        assert ctypes.get_errno() == ENOENT, ctypes.get_errno()
        return out

    # program side
    def prog_lookup(self, fd, key: bytes):
        view = self.dp.lookup_elem(fd, key)
        return None if view is None else bytes(view)

    def prog_lookup_percpu(self, fd, key: bytes, cpu: int):
        view = self.dp.lookup_percpu_elem(fd, key, cpu)
        return None if view is None else bytes(view)

    def prog_update(self, fd, key: bytes, value: bytes, flags=0) -> int:
        return self.dp.update_elem(fd, key, value, flags)

    def prog_delete(self, fd, key: bytes) -> int:
        return self.dp.delete_elem(fd, key)


class Pair:
    """The same map on the emulator and on the kernel; every call goes to both."""

    def __init__(self, map_type, max_entries, map_flags=0, key_size=4, value_size=8, *,
                 zero_seed=True):
        need_host()
        self.map_type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.percpu = map_type in (LRU_PERCPU_HASH, c.BPF_MAP_TYPE_PERCPU_HASH)
        self.vs_sys = sys_value_size(map_type, value_size)
        flags = map_flags | (ZERO_SEED if zero_seed else 0)
        self.emu = ElemCaller(Emulator(nr_cpus=NCPU, seed=1), key_size, self.vs_sys)
        self.host = ElemCaller(HostKernel(), key_size, self.vs_sys)
        self.log = []
        self.cpu = None
        fe = self.emu.create(map_type, key_size, value_size, max_entries, flags)
        fh = self.host.create(map_type, key_size, value_size, max_entries, flags)
        assert fh >= 0, f"kernel refused the map: {fh}"
        assert fe >= 0, f"emulator refused a map the kernel accepted: {fe}"
        self.set_cpu(0)

    def close(self):
        self.emu.close()
        self.host.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def emu_map(self):
        return self.emu.b.map_of(self.emu.fd)

    def set_cpu(self, cpu: int) -> None:
        if cpu != self.cpu:
            self.emu.set_cpu(cpu)
            self.host.set_cpu(cpu)
            self.cpu = cpu
            self.log.append(("cpu", cpu))

    def _fmt(self, entry) -> str:
        """One log entry, keys as numbers and other bytes as hex."""
        out = []
        for i, a in enumerate(entry[1:]):
            if isinstance(a, bytes):        # the key comes first
                out.append(str(int.from_bytes(a, "little")) if i == 0 else a.hex())
            else:
                out.append(repr(a))
        return f"{entry[0]}({', '.join(out)})"

    def history(self, n: int = 12) -> str:
        return "; ".join(self._fmt(e) for e in self.log[-n:])

    def _both(self, name, *args):
        self.log.append((name,) + args)
        h = getattr(self.host, name)(self.host.fd, *args)
        e = getattr(self.emu, name)(self.emu.fd, *args)
        if e != h:
            raise AssertionError(
                f"{self._fmt(self.log[-1])} on CPU {self.cpu}: kernel {h!r}, emulator {e!r}\n"
                f"after {len(self.log) - 1} operations; last ones: {self.history()}")
        return h

    def value(self, n: int, cpu_salt: int = 0) -> bytes:
        """A recognisable value for key n (the full per-CPU buffer for per-CPU maps)."""
        if not self.percpu:
            return (n * 0x0101010101010101 + cpu_salt).to_bytes(16, "little")[:self.value_size] \
                .ljust(self.value_size, b"\x5a")
        slot = round_up(self.value_size, 8)
        return b"".join(((n + 1000 * i + cpu_salt) & (2**64 - 1)).to_bytes(8, "little")
                        .ljust(slot, b"\x5a")[:slot] for i in range(NCPU))

    def prog_value(self, n: int) -> bytes:
        """value_size bytes for a program-side update."""
        return (n * 0x0303030303030303 + 7).to_bytes(16, "little")[:self.value_size] \
            .ljust(self.value_size, b"\x3c")

    def update(self, key, value, flags=ANY):
        return self._both("update", key, value, flags)

    def delete(self, key):
        return self._both("delete", key)

    def lookup(self, key):
        return self._both("lookup", key)

    def lookup_and_delete(self, key):
        return self._both("lookup_and_delete", key)

    def prog_lookup(self, key):
        return self._both("prog_lookup", key)

    def prog_lookup_percpu(self, key, cpu):
        return self._both("prog_lookup_percpu", key, cpu)

    def prog_update(self, key, value, flags=ANY):
        return self._both("prog_update", key, value, flags)

    def prog_delete(self, key):
        return self._both("prog_delete", key)

    def keys(self, fast: bool = False) -> list:
        """Both full walks, asserted equal; the kernel's. ``fast`` for big maps."""
        if fast:
            h = self.host.fast_keys(self.host.fd)
            e = self.emu.fast_keys(self.emu.fd)
        else:
            h = self.host.keys(self.host.fd)
            e = self.emu.keys(self.emu.fd)
        if e != h:
            hs, es = set(h), set(e)
            raise AssertionError(
                f"GET_NEXT_KEY order differs on CPU {self.cpu} after {len(self.log)} operations:"
                f" kernel {len(h)} keys, emulator {len(e)}; only in kernel "
                f"{sorted(int.from_bytes(k, 'little') for k in hs - es)[:20]}, only in emulator "
                f"{sorted(int.from_bytes(k, 'little') for k in es - hs)[:20]}"
                f"{' (same set, different order)' if hs == es else ''}; "
                f"last operations: {self.history()}")
        return h

    def key_set(self) -> set:
        return {int.from_bytes(k, "little") for k in self.keys()}
