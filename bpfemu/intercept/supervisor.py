"""The supervisor: every bpf() (and statfs() on the emulated bpffs) of a process tree,
served from one Emulator through a seccomp user-notification listener.

One loop, one thread: poll the listener (and the inotify fd that reports closed map fds),
NOTIF_RECV a notification, serve it as the notified thread (Emulator.bpf_as with a Caller),
reply with NOTIF_SEND, or with NOTIF_ADDFD + SEND when the call made a new fd. The listener
polls POLLHUP once no process uses the filter any more: the tree is gone and the loop ends.
The supervisor itself never calls bpf(): in-process (inprocess.py) its own call would wait
for its own reply.
"""
import ctypes
import errno
import fcntl
import os
import select
import struct
import sys
import threading
from sys import _getframe, gettrace as _gettrace

from ..errors import BpfError
from ..usercopy import strncpy_from_user
from . import seccomp
from .decoded import DECODABLE, NotifiedCalls
from .files import SupervisedFiles
from .task import Caller
from .tracing import TRACED_COMMANDS
from ..fdtable import MAP_KIND
from ..maps.array_mmap import SUPERVISED_TREES

_BPF_NRS = frozenset({seccomp.NR_BPF, seccomp.X32_SYSCALL_BIT | seccomp.NR_BPF})
_STATFS_NRS = frozenset({seccomp.NR_STATFS, seccomp.X32_SYSCALL_BIT | seccomp.NR_STATFS})
_FSTATFS_NRS = frozenset({seccomp.NR_FSTATFS, seccomp.X32_SYSCALL_BIT | seccomp.NR_FSTATFS})
BPF_FS_MAGIC = 0xCAFE4A11
# struct statfs (x86_64): f_type, f_bsize, f_blocks, f_bfree, f_bavail, f_files, f_ffree,
# f_fsid, f_namelen, f_frsize, f_flags, f_spare[4]
_STATFS = struct.Struct("<qqQQQQQ8sqqq32x")
# What a bpffs mounted the usual way (nosuid,nodev,noexec,relatime) reports: simple_statfs()
# fills the type, block size and name length, and the mount adds its flags.
_ST_VALID, _ST_NOSUID, _ST_NODEV, _ST_NOEXEC, _ST_RELATIME = 0x20, 0x2, 0x4, 0x8, 0x1000
BPFFS_STATFS = _STATFS.pack(BPF_FS_MAGIC, 4096, 0, 0, 0, 0, 0, bytes(8), 255, 4096,
                            _ST_VALID | _ST_NOSUID | _ST_NODEV | _ST_NOEXEC | _ST_RELATIME)
_libc = ctypes.CDLL(None, use_errno=True)
_POLLIN, _POLLHUP = select.POLLIN, select.POLLHUP
_ENOENT, _EINTR = errno.ENOENT, errno.EINTR
_ioctl = fcntl.ioctl
# RECV's argument: zeroed, as the kernel wants it, and never written: with mutate=False
# fcntl.ioctl hands the kernel a copy and returns the notification as new bytes, which costs
# less than zeroing a buffer again for every call.
_RECV_ARG = bytearray(seccomp.NOTIF_SIZE)
# struct seccomp_notif: the fields the loop reads: id, pid (a tid), nr and arch as one u64
# (nr in its low half), args[0..2]
_NOTIF_HEAD = struct.Struct("<QI4xQ8x3Q")
assert seccomp.NOTIF.format == "<QIIiIQ6Q"
_pack_resp = seccomp.RESP.pack_into
_NOTIF_RECV, _NOTIF_SEND = seccomp.NOTIF_RECV, seccomp.NOTIF_SEND
_BPF_X86_64 = seccomp.AUDIT_ARCH_X86_64 << 32 | seccomp.NR_BPF     # nr and arch, as one u64


def _recv_ends_with_the_tree() -> bool:
    """Whether a NOTIF_RECV already waiting returns (ENOENT) when the filter's last user
    exits: recv_wait_event() checks the users and recv_wake_function() takes the POLLHUP
    wake-up (Linux 6.18, checked by test_run_loop_releases_a_closed_map_while_waiting_in_recv;
    kernels before the change leave it waiting for ever). Older kernels than the one
    checked take the poll loop."""
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (6, 18)


RECV_ENDS_WITH_THE_TREE = _recv_ends_with_the_tree()


def _tree_gone(listener: int) -> bool:
    """The listener polls POLLHUP: no process uses the filter any more."""
    p = select.poll()
    p.register(listener, _POLLIN)
    return any(ev & _POLLHUP for _fd, ev in p.poll(0))


class CloseReaper:
    """A thread that releases the open files the tree closed for good (Supervisor.reap)
    while the supervisor's loop waits in NOTIF_RECV: it waits on the inotify fd, and on a
    pipe that stop() writes to."""

    def __init__(self, sup):
        self.sup = sup
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        self.thread = threading.Thread(target=self._run, name="bpfemu-close-reaper",
                                       daemon=True)
        try:
            self.thread.start()
        except BaseException:
            os.close(self._stop_r)
            os.close(self._stop_w)
            raise

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.sup.files.inotify_fd, _POLLIN)
        poller.register(self._stop_r, _POLLIN)
        while True:
            for fd, _ev in poller.poll():
                if fd == self._stop_r:
                    return
                try:
                    self.sup.reap()
                except Exception:
                    import traceback
                    sys.stderr.write("bpfemu: internal error releasing closed map fds "
                                     f"(please report):\n{traceback.format_exc()}")

    def stop(self) -> None:
        os.write(self._stop_w, b"x")
        self.thread.join()
        os.close(self._stop_r)
        os.close(self._stop_w)


class Supervisor:
    """Serves the calls notified on ``listener`` from ``emu``.

    ``trace``: a factory (supervisor) -> a Recorder-like object whose bpf(cmd, attr, size)
    records the call it makes through supervisor.call() (--trace). ``stop_fd``: the loop
    also ends when this fd becomes readable.
    """

    def __init__(self, emu, listener: int, *, trace=None, stop_fd: int | None = None):
        self.emu = emu
        self.listener = listener
        self.files = SupervisedFiles()
        emu.fd_tables.append(self.files)
        self.caller = Caller(listener, self.files)
        # Element calls that repeat their attr skip the checks (decoded.py).
        self.decoded = NotifiedCalls(emu, self.caller, self.files)
        self.trace = trace(self) if trace is not None else None
        self._unreplied = None
        self.stop_fd = stop_fd
        self.checked_calls = 0                  # bpf() calls served the checked way
        self.sync_wakeup = seccomp.set_sync_wakeup(listener)
        self._decoded_tried = False              # the loop found no decoded call for it
        SUPERVISED_TREES[0] += 1                 # FREEZE sees the tree's mappings too

    @property
    def calls(self) -> int:
        """bpf() calls served (tests, benchmarks): counted once each, at no cost per decoded
        call."""
        return self.checked_calls + self.decoded.served

    # --- the loop -------------------------------------------------------------------------

    def serve(self) -> None:
        """Serve until no process uses the filter any more (or stop_fd is readable).

        `bpfemu run` (no stop_fd, no trace) waits in NOTIF_RECV itself, with no poll() per
        call: RECV returns ENOENT once no process uses the filter any more
        (recv_wait_event() checks the filter's users, as the listener's POLLHUP does), and
        closes are reaped by a thread that waits on the inotify fd (CloseReaper). With a
        stop_fd or a trace, the loop polls the listener, the inotify fd and stop_fd."""
        reaper = poller = None
        try:
            # In the try: a reaper that cannot start (no fds, no thread) still closes the tree.
            if self.stop_fd is None and self.trace is None and RECV_ENDS_WITH_THE_TREE:
                reaper = CloseReaper(self)
            else:
                poller = select.poll()
                poller.register(self.listener, _POLLIN)
                poller.register(self.files.inotify_fd, _POLLIN)
                if self.stop_fd is not None:
                    poller.register(self.stop_fd, _POLLIN)
            self._serve_notifications(poller)
        finally:
            if reaper is not None:
                reaper.stop()
            self.close()

    def _serve_notifications(self, poller) -> None:
        """Receive notifications and serve them until the tree is gone. The common case,
        an x86_64 element call that repeats its attr, is served decoded here, with what it
        uses bound once; everything else by handle()."""
        listener, inotify_fd = self.listener, self.files.inotify_fd
        recv_arg, unpack_head, resp = _RECV_ARG, _NOTIF_HEAD.unpack_from, self.decoded.resp
        other_resp = bytearray(seccomp.RESP.size)    # the reply to a result other than 0
        serve_decoded = self.decoded.serve if self.trace is None else None
        while True:
            if poller is not None:
                ready = False
                for fd, ev in poller.poll():
                    if fd == listener:
                        if ev & _POLLIN:
                            ready = True
                        elif ev & _POLLHUP:
                            return
                    elif fd == inotify_fd:
                        self.reap()
                    else:
                        return                       # stop_fd
                if not ready:
                    continue
            try:
                buf = _ioctl(listener, _NOTIF_RECV, recv_arg, False)
            except OSError as e:
                if e.errno not in (_ENOENT, _EINTR):
                    raise
                # The caller went away before RECV; or (ENOENT) no process uses the filter
                if poller is None and e.errno == _ENOENT and _tree_gone(listener):
                    return
                continue
            notif_id, tid, nr_arch, a0, a1, a2 = unpack_head(buf)
            if nr_arch != _BPF_X86_64 or serve_decoded is None:
                self.handle(seccomp.NOTIF.unpack(buf))
                continue
            try:
                ret = serve_decoded(tid, notif_id, a0, a1, a2)
            except Exception:
                ret = None                           # handle() does it the checked way, and reports
            if ret is None:
                self._decoded_tried = True
                try:
                    self.handle(seccomp.NOTIF.unpack(buf))
                finally:
                    self._decoded_tried = False
                continue
            try:
                if ret:
                    _pack_resp(other_resp, 0, notif_id, ret if ret >= 0 else 0,
                               ret if ret < 0 else 0, 0)
                    _ioctl(listener, _NOTIF_SEND, other_resp, True)
                else:                                # resp holds (notif_id, 0, 0, 0) already
                    _ioctl(listener, _NOTIF_SEND, resp, True)
            except OSError as e:
                if e.errno != _ENOENT:               # ENOENT: the caller is gone (killed)
                    raise

    def close(self) -> None:
        """Drop what the tree still held (its processes are gone, or we stop serving them)."""
        if _gettrace() is not None:
            _getframe().f_trace = None      # the lock's release must not be skipped: undo.py
        if self.files.inotify_fd < 0:
            return
        SUPERVISED_TREES[0] -= 1
        emu = self.emu
        with emu.lock:
            released = self.files.reap() + self.files.close()
            if self.files in emu.fd_tables:
                emu.fd_tables.remove(self.files)
            for f in released:
                emu.bpf_obj_put(f)
            if released:
                emu.forget_decoded_calls()

    def reap(self) -> None:
        """Release the open files the tree has closed for good (their maps' references)."""
        if _gettrace() is not None:
            _getframe().f_trace = None      # the lock's release must not be skipped: undo.py
        emu = self.emu
        # Under the lock, as every other change of self.files: the CloseReaper thread
        # reaps beside the loop's checked calls.
        with emu.lock:
            released = self.files.reap()
            if not released:
                return
            for f in released:
                emu.bpf_obj_put(f)
            emu.forget_decoded_calls()
        if self.trace is not None:
            for f in released:
                if f.kind == MAP_KIND:           # others are not traced (TRACED_COMMANDS)
                    self.trace.released(f)

    def handle(self, notif) -> None:
        """Serve one notification (NOTIF's fields) and reply to it."""
        notif_id, tid, _flags, nr, arch, _ip, a0, a1, a2, *_ = notif
        try:
            if nr in _BPF_NRS or (arch == seccomp.AUDIT_ARCH_I386 and nr == seccomp.NR_BPF_I386):
                self.serve_bpf(notif_id, tid, a0, a1, a2)
            elif nr in _STATFS_NRS:
                self.serve_statfs(notif_id, tid, a0, a1)
            elif nr in _FSTATFS_NRS:
                self.serve_fstatfs(notif_id, tid, a0, a1)
            else:                                    # not ours: let the kernel run it
                self._reply(notif_id, 0, 0, seccomp.SECCOMP_USER_NOTIF_FLAG_CONTINUE)
        except Exception:
            # A bug of ours must not leave the whole tree without bpf() (ENOSYS): say so,
            # fail this call, and go on serving.
            import traceback
            sys.stderr.write(f"bpfemu: internal error serving system call {nr} of thread "
                             f"{tid} (please report):\n{traceback.format_exc()}")
            try:
                self._reply(notif_id, 0, -errno.EINVAL)
            except OSError:
                pass                                 # replied already (EINPROGRESS)

    # --- bpf() ----------------------------------------------------------------------------

    def serve_bpf(self, notif_id: int, tid: int, a0: int, attr: int, a2: int) -> None:
        cmd = (a0 & 0xFFFFFFFF) - ((a0 & 0x80000000) << 1)     # int cmd
        size = a2 & 0xFFFFFFFF
        caller = self.caller
        caller.switch(tid, notif_id)
        if self.trace is None and cmd in DECODABLE:
            decoded = self.decoded
            ret = (None if self._decoded_tried
                   else decoded.serve(tid, notif_id, cmd, attr, size))
            if ret is not None:                  # counted in decoded.served
                self._reply(notif_id, ret if ret >= 0 else 0, ret if ret < 0 else 0)
                return
            self.checked_calls += 1
            generation = decoded.generation()
            self.call(cmd, attr, size, True)
            decoded.learn(cmd, attr, size, generation)
            return
        self.checked_calls += 1
        if self.trace is None or cmd not in TRACED_COMMANDS:
            self.call(cmd, attr, size, True)
            return
        # Traced: the trace reads the caller's buffers after the call, so the reply (which
        # lets the caller go on and change them) waits until the record is made.
        self._unreplied = None
        self.reap()             # a close just before this call comes before it in the trace
        self.trace.bpf(cmd, attr, size)
        if self._unreplied is not None:
            self._reply(notif_id, *self._unreplied)

    def call(self, cmd: int, attr: int, size: int, reply: bool) -> int:
        """The call of the caller switched to, served; the result it gets. With reply=False
        an fd is installed (ADDFD) but the reply is left in self._unreplied."""
        notif_id = self.caller.notif_id
        ret = self.emu.bpf_as(self.caller, cmd, attr, size)
        pending = self.files.take_pending()
        if pending is not None:
            fd, f = pending
            if ret >= 0:
                return self._install(notif_id, fd, f, reply)
            self._drop(f)                        # cannot happen: the fd is made last
            os.close(fd)
        result = (ret if ret >= 0 else 0, ret if ret < 0 else 0)
        if reply:
            self._reply(notif_id, *result)
        else:
            self._unreplied = result
        return ret

    def _install(self, notif_id: int, fd: int, f, send: bool) -> int:
        """NOTIF_ADDFD: fd becomes the caller's lowest free fd (O_CLOEXEC, as bpf_map_new_fd
        gives it). With send, ADDFD_FLAG_SEND makes that number the call's result in the same
        step, so that no fd is ever left behind in a caller that did not get the answer.
        Returns the result."""
        try:
            ret = seccomp.addfd(self.listener, notif_id, fd, os.O_CLOEXEC, send)
            if f is not None:
                f.fds.add(ret)                   # the number it got (a trace's close record)
            if not send:
                self._unreplied = (ret, 0)
        except OSError as e:
            # EMFILE and the like: the call fails as bpf_map_new_fd() would, dropping the
            # reference it took; ENOENT: the caller is gone.
            if f is not None:
                self._drop(f)
            ret = -e.errno
            if e.errno != _ENOENT:
                if send:
                    self._reply(notif_id, 0, ret)
                else:
                    self._unreplied = (0, ret)
        finally:
            os.close(fd)
        return ret

    def _drop(self, f) -> None:
        if _gettrace() is not None:
            _getframe().f_trace = None      # the lock's release must not be skipped: undo.py
        with self.emu.lock:
            self.files.abandon(f)
            self.emu.bpf_obj_put(f)

    def _reply(self, notif_id: int, val: int, error: int, flags: int = 0) -> None:
        try:
            seccomp.send(self.listener, notif_id, val, error, flags)
        except OSError as e:
            if e.errno != _ENOENT:                   # ENOENT: the caller is gone (killed)
                raise

    # --- statfs() -------------------------------------------------------------------------

    def serve_statfs(self, notif_id: int, tid: int, path_ptr: int, buf_ptr: int) -> None:
        # DEVIATION(bpffs-statfs): statfs() and fstatfs() under the pin root report a bpffs
        # (with a real pin directory, bpffs_dir.py, its files are the pins); those of i386
        # programs go to the host's filesystem.
        """statfs() of a path on the emulated bpffs gets BPF_FS_MAGIC (so that clients that
        check before pinning pin); every other path goes on to the kernel (CONTINUE)."""
        if _gettrace() is not None:
            _getframe().f_trace = None      # the lock's release must not be skipped: undo.py
        caller = self.caller
        caller.switch(tid, notif_id)
        emu = self.emu
        try:
            with emu.lock:
                try:
                    emu.bpffs.proc = caller.proc
                    path = os.fsdecode(strncpy_from_user(caller.mem, path_ptr))
                    ours = emu.bpffs.is_on_bpffs(path)
                finally:
                    emu.bpffs.proc = None
            if ours:
                caller.mem.write(buf_ptr, BPFFS_STATFS)
        except BpfError as e:
            self._reply(notif_id, 0, -e.errno)
            return
        if ours:
            self._reply(notif_id, 0, 0)
        else:
            self._reply(notif_id, 0, 0, seccomp.SECCOMP_USER_NOTIF_FLAG_CONTINUE)

    def serve_fstatfs(self, notif_id: int, tid: int, fd_arg: int, buf_ptr: int) -> None:
        """fstatfs() of an emulated object's fd gets what Linux gives for its anonymous inode,
        and of an fd of a file or directory of a real pin directory a bpffs's answer; every
        other fd (and one that is not open: EBADF) goes on to the kernel (CONTINUE)."""
        if _gettrace() is not None:
            _getframe().f_trace = None      # the lock's release must not be skipped: undo.py
        caller = self.caller
        caller.switch(tid, notif_id)
        fd = (fd_arg & 0xFFFFFFFF) - ((fd_arg & 0x80000000) << 1)     # unsigned int fd
        answer = None
        try:
            self.files.lookup_any(tid, fd)
            answer = anon_inode_statfs()
        except BpfError:
            try:
                path = os.readlink(f"/proc/{tid}/fd/{fd}")
            except OSError:
                path = ""
            if path.startswith("/"):
                emu = self.emu
                with emu.lock:
                    if emu.bpffs.holds_file(path):
                        answer = BPFFS_STATFS
        if answer is None:
            self._reply(notif_id, 0, 0, seccomp.SECCOMP_USER_NOTIF_FLAG_CONTINUE)
            return
        try:
            caller.mem.write(buf_ptr, answer)
        except BpfError as e:
            self._reply(notif_id, 0, -e.errno)
            return
        self._reply(notif_id, 0, 0)


_ANON_STATFS = []


def anon_inode_statfs() -> bytes:
    """struct statfs of the kernel's anonymous-inode filesystem, where Linux's map, program
    and BTF fds live (ours are memfds): the host's own answer for an eventfd, which lives
    there too (same type, block size, name length, fsid and flags)."""
    if not _ANON_STATFS:
        buf = ctypes.create_string_buffer(_STATFS.size)
        efd = os.eventfd(0, os.EFD_CLOEXEC)
        try:
            if _libc.fstatfs(efd, buf) != 0:
                raise BpfError(ctypes.get_errno() or errno.EINVAL)
        finally:
            os.close(efd)
        _ANON_STATFS.append(buf.raw)
    return _ANON_STATFS[0]
