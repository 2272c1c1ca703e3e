"""`bpfemu record -o TRACE -- CMD`: a native program's bpf() calls performed on the live kernel
by the supervisor, and written to a trace with every byte behind every pointer.

For each call of the tree the supervisor
1. reads the attr and decodes which buffers the call may touch (trace/decode.py), finding the
   maps behind the caller's fds on the kernel (OBJ_GET_INFO_BY_FD on a copy of the caller's
   fd, taken with pidfd_getfd);
2. mirrors those buffers, and the attr, in its own memory page for page: the same offsets in
   the page, the same bytes, and the same protection as the caller's pages (unreadable pages
   stay inaccessible, read-only ones read-only), so the kernel's copies fault exactly where
   they would have faulted in the caller;
3. points the attr's pointer fields at the mirror and its fd fields at the copies of the
   caller's fds (a closed fd at a number that is never open), and makes the call;
4. writes back to the caller every byte the kernel changed, and installs a returned fd in the
   caller with NOTIF_ADDFD: the caller sees exactly what the kernel returned.
The Recorder snapshots the caller's memory before and after, as for any backend.

Commands the decoder does not model (PROG_LOAD, BTF_LOAD, links...) are left to the kernel to
run as the caller (SECCOMP_USER_NOTIF_FLAG_CONTINUE) and are not in the trace.

Each map fd in the trace names its open file (a file token, abi/README.md), and the release
of an open file (its last fd in the tree closed) is a close record, written before the next
recorded call: kernel_files.py tells both without holding a reference to any map.
"""
import ctypes
import errno
import os
import struct

from ..errors import BpfError
from ..host import HostKernel
from ..trace import decode
from ..trace.decode import FD_RESULT_CMDS, MapMeta, call_layout, info_hash_buf
from ..uapi.consts import BpfCmd as C
from ..bpffs_dir import pin_tree
from ..uapi.consts import BPF_F_PATH_FD
from ..usercopy import strncpy_from_user
from .kernel_files import KernelFiles
from .mirror import Mirror
from .tracing import ServedCallTrace
from . import seccomp
from .supervisor import Supervisor

PAGE = 4096
_libc = ctypes.CDLL(None, use_errno=True)
_NR_PIDFD_GETFD = 438
_PIDFD_THREAD = os.O_EXCL
_AT_FDCWD = 0xFFFFFF9C                    # -100 as the u32 of path_fd
_NEVER_OPEN = 0x7FFFFFFF                  # an fd number no process has open
# The attr offset of each pointer field the decoder names (union bpf_attr, 6.18).
_POINTER_OFF = {"excl_prog_hash": 80, "key": 8, "value": 16, "next_key": 16, "in_batch": 0,
                "out_batch": 8, "keys": 16, "values": 24, "info": 8, "pathname": 0}
_INFO_HASH_OFF = 88                       # bpf_map_info.hash
_OBJ_ATTR = struct.Struct("<QIIi")         # pathname, bpf_fd, file_flags, path_fd
MODELLED = frozenset({C.BPF_MAP_CREATE, C.BPF_MAP_LOOKUP_ELEM, C.BPF_MAP_UPDATE_ELEM,
                      C.BPF_MAP_DELETE_ELEM, C.BPF_MAP_GET_NEXT_KEY, C.BPF_OBJ_PIN, C.BPF_OBJ_GET,
                      C.BPF_MAP_GET_NEXT_ID, C.BPF_MAP_GET_FD_BY_ID, C.BPF_OBJ_GET_INFO_BY_FD,
                      C.BPF_MAP_LOOKUP_AND_DELETE_ELEM, C.BPF_MAP_FREEZE,
                      C.BPF_MAP_LOOKUP_BATCH, C.BPF_MAP_LOOKUP_AND_DELETE_BATCH,
                      C.BPF_MAP_UPDATE_BATCH, C.BPF_MAP_DELETE_BATCH})


class KernelOnBehalf:
    """The backend the Recorder calls in record mode: the caller's call, made on the kernel."""

    def __init__(self, supervisor):
        self.supervisor = supervisor
        self.host = HostKernel()
        self.nr_cpus = None

    # -- fds --------------------------------------------------------------------------------
    def _getfd(self, ufd: int) -> int | None:
        """A copy in this process of the caller's fd (same open file), or None."""
        if ufd > 0x7FFFFFFF:
            return None
        try:
            pidfd = os.pidfd_open(self.supervisor.caller.tid, _PIDFD_THREAD)
        except OSError:
            return None
        try:
            fd = _libc.syscall(_NR_PIDFD_GETFD, pidfd, ufd, 0)
            return fd if fd >= 0 else None
        finally:
            os.close(pidfd)

    def map_meta(self, ufd: int):
        fd = self._getfd(ufd)
        if fd is None:
            return None
        try:
            info = ctypes.create_string_buffer(decode.MAP_INFO_SIZE)
            attr = ctypes.create_string_buffer(decode.ATTR_SIZE)
            struct.pack_into("<IIQ", attr, 0, fd, decode.MAP_INFO_SIZE, ctypes.addressof(info))
            if self.host.bpf(C.BPF_OBJ_GET_INFO_BY_FD, attr, 16) != 0:
                return None
            return MapMeta.from_info(info.raw)
        finally:
            os.close(fd)

    # -- the call ---------------------------------------------------------------------------
    def bpf(self, cmd: int, uattr: int, size: int) -> int:
        sup = self.supervisor
        caller = sup.caller
        mem = caller.mem
        size32 = size & 0xFFFFFFFF
        n_attr = min(size32, PAGE) if size32 <= PAGE else 0
        mirror = Mirror(mem, caller.tid)
        mirror.add(uattr, max(n_attr, decode.ATTR_SIZE))
        try:
            raw = mem.read(uattr, min(size32, decode.ATTR_SIZE)) if n_attr else b""
        except BpfError:
            raw = None                       # unreadable: the kernel will say EFAULT
        layout = None
        if raw is not None:
            union = decode.attr168(raw, len(raw))
            layout = call_layout(cmd, union, self.map_meta, self.nr_cpus, sup.trace.probe.strlen)
            for b in layout.bufs:
                mirror.add(b.addr, min(b.length, decode.MAX_BUFFER))
                if b.field == "info":
                    try:
                        hb = info_hash_buf(b.addr, mem.read(b.addr, b.length))
                    except BpfError:
                        hb = None
                    if hb is not None:
                        mirror.add(hb.addr, hb.length)
        local_fds = []
        cwd = os.getcwd()
        try:
            mirror.build()
            lattr = mirror.local(uattr) if n_attr else uattr
            if layout is not None:
                self._patch(lattr, layout, mirror, local_fds)
            if not seccomp.id_valid(sup.listener, caller.notif_id):
                return -errno.ESRCH       # the caller died: what we read may be a newcomer's
            if cmd in (C.BPF_OBJ_PIN, C.BPF_OBJ_GET):
                os.chdir(f"/proc/{caller.tid}/cwd")       # a relative path is the caller's
            cpu = sup.trace.current_cpu()
            if os.sched_getaffinity(0) != {cpu}:
                os.sched_setaffinity(0, {cpu})            # the call runs on the caller's CPU
            ret = self.host.bpf(cmd, lattr, size)
            if layout is not None:
                self._unpatch()
            mirror.write_back()
        finally:
            os.chdir(cwd)
            for fd in local_fds:
                os.close(fd)
            mirror.free()
        if cmd in FD_RESULT_CMDS and ret >= 0:
            ret = sup._install(caller.notif_id, ret, None, False)
        else:
            sup._unreplied = (ret if ret >= 0 else 0, ret if ret < 0 else 0)
        return ret

    def _patch(self, lattr: int, layout, mirror: Mirror, local_fds: list) -> None:
        """Pointers to the mirror, fds to our copies of the caller's; every cell changed is
        remembered in self._patched to be put back."""
        patched = self._patched = []

        def put(ctype, addr, value):
            cell = ctype.from_address(addr)
            patched.append((cell, cell.value))
            cell.value = value
        for b in layout.bufs:
            if b.field == "info.hash":
                continue
            put(ctypes.c_uint64, lattr + _POINTER_OFF[b.field], mirror.local(b.addr))
            if b.field == "info" and b.length >= _INFO_HASH_OFF + 8:
                cell = mirror.local(b.addr) + _INFO_HASH_OFF
                hash_ptr = ctypes.c_uint64.from_address(cell).value
                if hash_ptr:
                    try:
                        put(ctypes.c_uint64, cell, mirror.local(hash_ptr))
                    except KeyError:
                        pass
        for name, off in layout.fd_fields:
            value = ctypes.c_uint32.from_address(lattr + off).value
            if name == "path_fd" and value == _AT_FDCWD:
                fd = os.open(f"/proc/{self.supervisor.caller.tid}/cwd", os.O_PATH | os.O_DIRECTORY)
            else:
                fd = self._getfd(value)
            if fd is None:
                put(ctypes.c_uint32, lattr + off, _NEVER_OPEN if value <= 0x7FFFFFFF else value)
            else:
                local_fds.append(fd)
                put(ctypes.c_uint32, lattr + off, fd)

    def _unpatch(self) -> None:
        """The caller's own pointer and fd values back, so that only what the kernel wrote
        (count, info_len, next_id, the buffers) reaches the caller."""
        for cell, value in reversed(self._patched):
            cell.value = value
        self._patched = []


class RecordingSupervisor(Supervisor):
    """The supervisor of record mode: modelled commands are made on the kernel and recorded;
    the others are left to the kernel (CONTINUE)."""

    def serve_bpf(self, notif_id: int, tid: int, a0: int, attr: int, a2: int) -> None:
        cmd = (a0 & 0xFFFFFFFF) - ((a0 & 0x80000000) << 1)
        if cmd not in MODELLED:
            self._reply(notif_id, 0, 0, seccomp.SECCOMP_USER_NOTIF_FLAG_CONTINUE)
            return
        self.caller.switch(tid, notif_id)
        self.checked_calls += 1
        self._unreplied = None
        self.trace.bpf(cmd, attr, a2 & 0xFFFFFFFF)
        if self._unreplied is not None:
            self._reply(notif_id, *self._unreplied)


def record(cmd: list, path: str, on_start=None) -> int:
    """Run cmd with its bpf() calls made on the kernel and recorded to path; its exit status."""
    from ..emulator import Emulator
    from .run import exit_status, spawn
    emu = Emulator()
    # The bpffs's directories before the command runs: a replay is assumed to have them
    # (those it makes are fs records), so a busy /sys/fs/bpf does not fill the trace.
    root = emu.bpffs.root
    dirs_before = pin_tree(root, ())[0] if os.path.isdir(root) else {}
    proc, listener = spawn(cmd, statfs=False)
    if on_start is not None:
        on_start(proc)
    traces = []

    def trace(sup):
        traces.append(KernelCallTrace(sup, path))
        traces[0]._dirs.update(dirs_before)
        return traces[0]
    try:
        RecordingSupervisor(emu, listener, trace=trace).serve()
    finally:
        os.close(listener)
        if traces:
            traces[0].finish()
    return exit_status(proc.wait())


class KernelCallTrace(ServedCallTrace):
    """The Recorder of record mode: the kernel answers; maps are looked up on it."""

    def __init__(self, supervisor, path):
        self.kernel = KernelOnBehalf(supervisor)
        super().__init__(supervisor, path, backend=self.kernel)
        self.kernel.nr_cpus = self.nr_cpus
        self.files = KernelFiles()

    def bpf(self, cmd, attr, size):
        for token, fd in self.files.released():    # closes made since the last call
            self._close_record(fd, token)
        return super().bpf(cmd, attr, size)

    def _fd_file(self, fd: int):
        meta = self._lookup_map(fd)
        copy = self.kernel._getfd(fd) if meta is not None else None
        if copy is None:
            return None
        try:
            return self.files.token(self.caller.tid, fd, copy, meta.id)
        finally:
            os.close(copy)

    def finish(self):
        self.files.close()
        super().finish()

    # The pins are the kernel's, files of the bpffs at bpffs_root: what the tree does to
    # them with file calls (rm, mv, ln, mkdir, rmdir) becomes fs records as under `bpfemu run`.
    def _pin_view(self):
        # Where a replay's emulator has its bpffs (the trace names no other root).
        root = self.bpffs_root or self.supervisor.emu.bpffs.root
        if not root or not os.path.isdir(root):
            return None
        return pin_tree(root, set(self._pins.values()))

    def _pinned(self, uattr: int) -> None:
        path = self._pin_path(uattr)
        if path is None:
            return
        try:
            st = os.lstat(path)
        except OSError:
            return
        self._pins[path] = (st.st_dev, st.st_ino)

    def _pin_path(self, uattr: int) -> str | None:
        """The absolute path OBJ_PIN pinned at, resolved as the caller's (its cwd or
        path_fd), lexically normalised."""
        mem, tid = self.caller.mem, self.caller.tid
        try:
            ptr, _bpf_fd, flags, path_fd = _OBJ_ATTR.unpack(mem.read(uattr, _OBJ_ATTR.size))
            path = os.fsdecode(strncpy_from_user(mem, ptr))
            if not path.startswith("/"):
                base = (f"/proc/{tid}/fd/{path_fd}" if flags & BPF_F_PATH_FD
                        else f"/proc/{tid}/cwd")
                path = os.readlink(base) + "/" + path
        except (BpfError, OSError):
            return None
        return os.path.normpath(path)

    def _lookup_map(self, fd: int):
        meta = self.maps.get(fd)                 # found earlier in this call
        if meta is not None:
            return meta
        meta = self.kernel.map_meta(fd)
        if meta is not None:
            self.maps[fd] = meta
        return meta

    def _fd_kind(self, fd: int) -> str:
        if self._lookup_map(fd) is not None:
            return "map"
        return "file" if self.caller.fds.is_open(fd) else "closed"
