"""Emulator: an emulated kernel (fd table, map ids, CPU, profile) with the bpf() contract."""
import os
import random

from .bpffs import BpfFs
from .emu_lock import new_lock, track
from .fastpath import DecodedCalls
from .errors import BpfError
from .fdtable import FdTable, IdrCyclic
from .memory import Memory, ProcessMemory
from .profile import KernelProfile
from .syscall import __sys_bpf as entry
from .syscall import build_dispatch


class Emulator:
    """A Linux 6.18 kernel's map side, in this process.

    ``bpf(cmd, attr, size)`` has the real syscall's contract: the fd or 0, or -errno.
    ``attr`` is a writable buffer or an int address; pointers inside it are addresses in
    ``mem`` (this process's memory by default). ``cpu`` is the CPU the next call runs on.
    Any thread may call it: calls run one at a time under ``lock``, except lookups through a
    decoded call, which, like Linux's, take no lock (fastpath.py).
    """

    def __init__(self, *, nr_cpus: int | None = None, seed: int | None = None,
                 profile: KernelProfile | None = None, mem: Memory | None = None,
                 bpffs_root: str = "/sys/fs/bpf", store: str | None = None,
                 decoded_calls: bool | None = None):
        self.profile = profile or KernelProfile()
        if nr_cpus is not None:
            self.profile.nr_cpus = nr_cpus
        if self.profile.nr_cpus < 1:
            raise ValueError("nr_cpus must be at least 1")
        self.mem = mem if mem is not None else ProcessMemory()
        if store is None:
            store = os.environ.get("BPFEMU_HTAB_STORE") or "columnar"
        if store not in ("columnar", "simple"):
            raise ValueError(f"store must be 'columnar' or 'simple', not {store!r}")
        # How hash maps keep their elements (maps/htab_store.py): both give the same results.
        self.htab_store = store
        self.fds = FdTable()
        self.map_idr = IdrCyclic()
        self.lock = new_lock()
        track(self)
        # The decoded-call cache in front of the entry (fastpath.py), unless turned off.
        if decoded_calls is None:
            decoded_calls = os.environ.get("BPFEMU_DECODED_CALLS", "1") != "0"
        self.decoded_calls = DecodedCalls(self, entry) if decoded_calls else None
        if self.decoded_calls is not None:
            self.bpf = self.decoded_calls.sys_bpf
        self.decodable = None                   # what a handler leaves for decoding
        self.mem.on_views_changed(self.forget_decoded_calls)
        self.dispatch = build_dispatch(self.profile)
        # Read on every call: plain attributes, not a walk through the profile.
        self.attr_size = self.profile.attr_size
        self.page_size = self.profile.page_size
        # Without a seed, hash seeds are random per map, as get_random_u32() makes them.
        self._rng = random.Random(seed) if seed is not None else random.SystemRandom()
        self._cpu = 0
        # The bpf filesystem OBJ_PIN and OBJ_GET use; its pins hold map references.
        self.bpffs = BpfFs(bpffs_root, put=self._unpinned)

    def bpf(self, cmd: int, attr, size: int) -> int:
        """bpf(cmd, attr, size): the fd or 0, or -errno (replaced by the decoded-call
        cache's, which comes here for what it has not decoded)."""
        return entry(self, cmd, attr, size)

    def forget_decoded_calls(self) -> None:
        """An fd went away, a map was frozen, or pinned buffers changed."""
        if self.decoded_calls is not None:
            self.decoded_calls.forget()

    def _unpinned(self, m) -> None:
        with self.lock:
            self.bpf_map_put(m)

    @property
    def nr_cpus(self) -> int:
        return self.profile.nr_cpus

    @property
    def cpu(self) -> int:
        return self._cpu

    @cpu.setter
    def cpu(self, cpu: int) -> None:
        if not 0 <= cpu < self.profile.nr_cpus:
            raise ValueError(f"cpu {cpu} is not a possible CPU (0..{self.profile.nr_cpus - 1})")
        self._cpu = cpu

    def random_u32(self) -> int:
        return self._rng.getrandbits(32)

    def bpf_map_new_fd(self, m, f_mode: int) -> int:
        """bpf_map_alloc_id() then bpf_map_new_fd(): an id is used up even if the fd fails."""
        m.id = self.map_idr.alloc(m)
        try:
            fd = self.fds.install(m, f_mode)
        except BpfError:
            self.map_idr.remove(m.id)
            raise
        m.refcnt += 1
        return fd

    def bpf_map_put(self, m) -> None:
        """Drop one reference; the last one frees the map and its id."""
        m.refcnt -= 1
        if m.refcnt == 0:
            self.map_idr.remove(m.id)
            if m.ops.map_free is not None:
                m.ops.map_free(m)

    def close(self, fd: int) -> int:
        """close(2) for any fd; closing the last fd of a map releases it. 0 or -errno."""
        with self.lock:
            try:
                released = self.fds.close(fd)
            except BpfError as e:
                return -e.errno
            self.forget_decoded_calls()
            for f in released:             # the last fput() of each file
                self.bpf_map_put(f.obj)
            return 0

    def reap_closed_fds(self) -> None:
        """Release the maps whose last fd was closed without close() seeing it (a dup()
        closed with os.close). close() does this itself; commands that look maps up by id
        call it first so that an id dies when its last fd does, as in the kernel."""
        with self.lock:
            released = self.fds.reap()
            if released:
                self.forget_decoded_calls()
            for f in released:
                self.bpf_map_put(f.obj)

    def map_of(self, fd: int):
        """The emulated map behind fd, for tests and the Python API (KeyError if none)."""
        f = self.fds.files.get(fd)
        if f is None:
            raise KeyError(fd)
        return f.obj

    def close_all(self) -> None:
        """Close every emulated fd (the process exiting)."""
        for fd in list(self.fds.files):
            if fd in self.fds.files:        # not released already with an earlier one
                self.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close_all()
