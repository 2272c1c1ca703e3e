"""Emulator: an emulated kernel (fd table, map ids, CPU, profile) with the bpf() contract."""
import errno
import os
import random
from sys import _getframe, gettrace as _gettrace

from .bpffs import BpfFs
from .emu_lock import new_lock, track, wait_turn
from .fastpath import DecodedCalls
from .errors import BpfError
from .fdtable import MAP_KIND, FdTable, IdrCyclic
from .interrupts import defer_signal_handlers
from .memory import Memory, ProcessMemory
from .failure import our_failure, our_failure_undone
from .profile import KernelProfile, get_profile
from .syscall import __sys_bpf as entry
from .syscall import build_dispatch
from .undo import MARK, atomic, undo_call


class Emulator:
    """A Linux 6.18 kernel's map side, in this process.

    ``bpf(cmd, attr, size)`` has the real syscall's contract: the fd or 0, or -errno.
    ``attr`` is a writable buffer or an int address; pointers inside it are addresses in
    ``mem`` (this process's memory by default). ``cpu`` is the CPU the next call runs on.
    Any thread may call it: calls run one at a time under ``lock``, except lookups through a
    decoded call, which, like Linux's, take no lock (fastpath.py).
    """

    def __init__(self, *, nr_cpus: int | None = None, seed: int | None = None,
                 profile: KernelProfile | str | None = None, mem: Memory | None = None,
                 bpffs_root: str = "/sys/fs/bpf", store: str | None = None,
                 decoded_calls: bool | None = None):
        # A KernelProfile, or a kernel by name ("6.1", "6.12", "6.18"); None: 6.18, or the
        # kernel named by the BPFEMU_PROFILE environment variable.
        if profile is None or isinstance(profile, str):
            profile = get_profile(profile)
        self.profile = profile
        if nr_cpus is not None:
            self.profile.nr_cpus = nr_cpus
        if self.profile.nr_cpus < 1:
            raise ValueError("nr_cpus must be at least 1")
        self.mem = mem if mem is not None else ProcessMemory()
        # This process's memory, whatever task a call runs as (bpf_as swaps self.mem for
        # the calling task's): where the layers above pin their buffers.
        self.own_mem = self.mem
        if store is None:
            store = os.environ.get("BPFEMU_HTAB_STORE") or "columnar"
        if store not in ("columnar", "simple"):
            raise ValueError(f"store must be 'columnar' or 'simple', not {store!r}")
        # How hash maps keep their elements (maps/htab_store.py): both give the same results.
        self.htab_store = store
        # The undo journal (bpfemu/undo.py): what the call in progress has changed, so that
        # a call stopped half-way is rolled back. Made first: maps and tables hold it.
        self.undo: list = []
        self.fds = FdTable()
        self.fds.undo = self.undo
        self.fds.on_stale = self.forget_decoded_calls
        # Other tasks' fd tables (supervised processes), reaped with this process's: a map
        # whose last fd any of them held is gone for every caller.
        self.fd_tables: list = []
        self.map_idr = IdrCyclic()
        self.btf_idr = IdrCyclic()              # BTF ids: a space of their own, as btf_idr
        self.prog_idr = IdrCyclic()             # program ids, as prog_idr
        from .btf_cmds import register_kernel_btf
        register_kernel_btf(self)
        self.lock = new_lock()
        track(self)
        defer_signal_handlers()                 # a handler never runs half-way through a call
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
        self._task = None                 # the task of a call made through bpf_as()
        self.uattr_size = 0               # the size of the attr of the call being served
        # The bpf filesystem OBJ_PIN and OBJ_GET use; its pins hold map references.
        self.bpffs = BpfFs(bpffs_root, put=self._unpinned)

    def bpf(self, cmd: int, attr, size: int) -> int:
        """bpf(cmd, attr, size): the fd or 0, or -errno (replaced by the decoded-call
        cache's, which comes here for what it has not decoded)."""
        return entry(self, cmd, attr, size)

    def bpf_as(self, task, cmd: int, attr, size: int) -> int:
        """bpf() made by another task (a thread of a supervised process, bpfemu/intercept/):
        pointers are addresses in task.mem, fds are numbers in task.fds, and the call runs on
        the task's CPU. The emulator's current task (mem, fds, CPU, the bpffs's view of cwd)
        is switched for the call, under the lock, as a context switch would: the semantic
        code reads the current task and does not know which one it is. A task has ``mem``
        (a Memory), ``fds`` (the FdTable interface: files, lookup, lookup_any, install, unwatch,
        is_open, reap),
        ``proc`` (its /proc directory, for paths relative to its cwd) and ``current_cpu()``;
        the emulator's own mem, fds and cpu are the in-process caller's. What the handler
        left for decoding goes to ``task.decodable`` (intercept/decoded.py decodes it).
        The switch is made inside the try that undoes it, with this frame's line events off
        (as the entry's, bpfemu/undo.py): an exception raised at any line leaves the lock
        free and the in-process caller's task current again."""
        if _gettrace() is not None:
            _getframe().f_trace = None          # no line events here: see undo.py
        lock = self.lock
        try:
            if not lock.acquire(False):     # held: wait for it with the GIL (emu_lock.py)
                wait_turn(lock)
                lock.acquire()
        except BaseException:                   # see undo.py, "The lock"
            if lock._is_mine():
                lock.release()
            raise
        try:
            saved = self.mem, self.fds, self._cpu, self._task, self.bpffs.proc
            try:
                self.mem, self.fds, self._cpu, self._task = task.mem, task.fds, -1, task
                self.bpffs.proc = task.proc
                self.decodable = None
                return entry(self, cmd, attr, size)
            finally:
                # Not for the in-process caller's decoded calls: the task's own.
                task.decodable, self.decodable = self.decodable, None
                self.mem, self.fds, self._cpu, self._task, self.bpffs.proc = saved
        finally:
            lock.release()

    def decoded_as(self, task, cmd: int, run, generation: int):
        """A decoded call of another task (intercept/decoded.py): run()'s result or -errno,
        with the task's CPU as the current one; None if decoded calls were forgotten since
        ``generation`` (DecodedCalls.generation), checked under the lock. Only the CPU is
        switched: a decoded call copies through the memory it was built with and looks up
        no fd and no path. A call of its own for the undo journal, as the entry's and the
        in-process decoded calls are (bpfemu/undo.py): rolled back whole if anything but a
        BpfError stops it, its entries gone when it ends."""
        if _gettrace() is not None:
            _getframe().f_trace = None          # no line events here: see undo.py
        lock, undo = self.lock, self.undo
        try:
            if not lock.acquire(False):     # held: wait for it with the GIL (emu_lock.py)
                wait_turn(lock)
                lock.acquire()
        except BaseException:                   # see undo.py, "The lock"
            if lock._is_mine():
                lock.release()
            raise
        try:
            calls = self.decoded_calls
            if calls is None or calls.generation != generation:
                return None
            if undo:
                undo_call(self)                 # a call stopped where it could not roll
                return None                     # back; that forgot the decoded calls
            undo.append(MARK)
            saved_cpu, saved_task = self._cpu, self._task
            self._cpu, self._task = -1, task
            try:
                ret = run()
                undo.clear()
                return ret
            except BpfError as e:
                undo.clear()
                return -e.errno
            except Exception as e:
                return our_failure_undone(self, cmd, e)
            except BaseException:               # noqa: B036 - an interruption: undone
                undo_call(self)
                raise
            finally:
                self._cpu, self._task = saved_cpu, saved_task
        finally:
            lock.release()

    def decoded_lockless(self, cmd: int, run, generation: int):
        """A decoded lookup of another task (intercept/decoded.py): run()'s result or -errno,
        with no lock and nothing to undo, as the in-process caller's decoded lookups run
        (syscall.COMMANDS, lockless): a syscall lookup changes nothing, not even an LRU
        reference bit, and reads no CPU; its run copies through the memory it was built with,
        so the current task is not switched. None if decoded calls were forgotten since
        ``generation``."""
        calls = self.decoded_calls
        if calls is None or calls.generation != generation:
            return None
        try:
            return run()
        except BpfError as e:
            return -e.errno
        except Exception as e:
            return our_failure(cmd, e)

    def forget_decoded_calls(self) -> None:
        """An fd went away, a map was frozen, or pinned buffers changed."""
        if self.decoded_calls is not None:
            self.decoded_calls.forget()

    def _unpinned(self, obj) -> None:
        atomic(self, self.bpf_obj_put_ref, obj, objects=True)

    def bpf_obj_put_ref(self, obj) -> None:
        """Drop one reference on a map or a program (a pin's, or a failed pin's)."""
        if hasattr(obj, "map_type"):
            self.bpf_map_put(obj)
        else:
            obj.put(self)

    @property
    def nr_cpus(self) -> int:
        return self.profile.nr_cpus

    @property
    def cpu(self) -> int:
        cpu = self._cpu
        if cpu < 0:                 # a task's CPU, read when a call first needs it
            # DEVIATION(cpus): with fewer possible CPUs than the host has (bpfemu run
            # --cpus N), a thread on CPU c runs its call as CPU c mod N.
            cpu = self._cpu = self._task.current_cpu() % self.profile.nr_cpus
        return cpu

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
        attach = getattr(m, "attach_memfd", None)
        if attach is not None:
            # BPF_F_MMAPABLE: the values move into this fd's memfd, which outlives its fds
            # while the map maps it, so its closes are seen by close() (fdtable.unwatch).
            try:
                attach(fd)
            except OSError as e:                # no /proc, no memory: no map either
                self.fds.unwatch(fd)            # so that close() releases it at once
                for f in self.fds.close(fd):
                    f.obj.refcnt -= 1
                self.map_idr.remove(m.id)
                raise BpfError(e.errno or errno.ENOMEM) from None
            self.fds.unwatch(fd)
        return fd

    def bpf_map_put(self, m) -> None:
        """Drop one reference; the last one frees the map and its id."""
        m.refcnt -= 1
        if m.refcnt == 0:
            self.map_idr.remove(m.id)
            if m.ops.map_free is not None:
                m.ops.map_free(m)
            if m.btf is not None:
                m.btf.put(self)                 # bpf_map_free(): btf_put(map->btf)

    def close(self, fd: int) -> int:
        """close(2) for any fd; closing the last fd of a map releases it. 0 or -errno."""
        if not isinstance(fd, int) or not -0x80000000 <= fd <= 0x7FFFFFFF:
            return -errno.EBADF                 # not an fd a C caller could name
        try:
            return atomic(self, self._close, fd, objects=True)
        except BpfError as e:
            return -e.errno

    def _close(self, fd: int) -> int:
        released = self.fds.close(fd)
        self.forget_decoded_calls()
        for f in released:                 # the last fput() of each file
            self.bpf_obj_put(f)
        return 0

    def reap_closed_fds(self) -> None:
        """Release the maps whose last fd was closed without close() seeing it (a dup()
        closed with os.close). close() does this itself; commands that look maps up by id
        call it first so that an id dies when its last fd does, as in the kernel (and when
        its last pin is removed: a pin file rm'd in a real pin directory)."""
        atomic(self, self._reap_closed_fds, objects=True)

    def _reap_closed_fds(self) -> None:
        self.bpffs.reap()
        released = self.fds.reap()
        for table in self.fd_tables:
            if table is not self.fds:
                released += table.reap()
        if released:
            self.forget_decoded_calls()
        for f in released:
            self.bpf_obj_put(f)

    def bpf_obj_put(self, f) -> None:
        """The release of a file's last fd: drop its object's reference by the object's kind."""
        if f.kind == MAP_KIND:
            self.bpf_map_put(f.obj)
        else:
            f.obj.put(self)

    def map_of(self, fd: int):
        """The emulated map behind fd, for tests and the Python API (KeyError if none)."""
        if _gettrace() is not None:
            _getframe().f_trace = None  # the lock's release must not be skipped: undo.py
        with self.lock:             # not in the middle of a call made as another task
            f = self.fds.files.get(fd)
        if f is None:
            raise KeyError(fd)
        return f.obj

    def close_all(self) -> None:
        """Close every emulated fd (the process exiting)."""
        for table in (self.fds.files, self.fds.others):
            for fd in list(table):
                if fd in table:             # not released already with an earlier one
                    self.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close_all()
