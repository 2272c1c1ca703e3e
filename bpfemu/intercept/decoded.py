"""Decoded calls of supervised tasks: the decoded-call seam (fastpath.py) for notified calls.

A supervised program's loop sends the same attr again and again (a raw-syscall loop, or
libbpf's bpf_map_update_elem() from one call site): same command, size and attr bytes, so
the same fd, key and value pointers and flags. As in fastpath.py, a notified element call
that has passed its checks leaves a decoded call (fastpath's lookup_call, update_call...,
built with a PrefetchedMemory), made the second time those attr bytes are seen; the next
calls with the same bytes run only the rest of the command.

What differs from an in-process caller's decoded call:
- the attr is in the caller's memory. It is read with the key and value of the decoded call
  last made for that command, in one process_vm_readv, then compared with the decoded
  bytes; other bytes or a short read go the checked way (Emulator.bpf_as), which reads everything again in the kernel's
  order. The key and value are thus read before the fd is checked, where the kernel reads
  them after: a read has no effect the caller can see, and a call whose fd no longer
  passes is served the checked way, which reads them again.
- the fd is looked up in the caller's own table on every call (files.py): the decoded call
  runs only if it still names the same open file, so a number closed and reused reaches the
  new file, never the old map.
- what the in-process decoded calls are forgotten for (a file released, a map frozen:
  DecodedCalls.generation) forgets these too, checked under the emulator's lock.
- NOTIF_ID_VALID comes after the one read and the fd check, before anything is done with
  what they found (task.py). The write of a lookup's value that follows makes no other:
  a check shows the caller waiting at that moment only, so an exec in another of its
  threads within the microseconds between the check and the write could still hand the
  tid to the new image (not closed; the checked path has the same window after its last
  read).
"""
import ctypes
import errno
import fcntl
import mmap
import os
import struct
from functools import partial

from ..errors import BpfError
from ..memory import Memory
from ..uapi.consts import BpfCmd as C
from . import seccomp
from .files import fdinfo_identity

# The commands whose handlers leave a decoded call (map_cmds.py); map_fd is their first u32.
DECODABLE = frozenset({C.BPF_MAP_LOOKUP_ELEM, C.BPF_MAP_UPDATE_ELEM, C.BPF_MAP_DELETE_ELEM,
                       C.BPF_MAP_GET_NEXT_KEY})
_IOVEC = struct.Struct("=QQ")
# Called with the GIL held (PyDLL): it never blocks, and handing the GIL over and back costs
# more instructions than the copy.
_process_vm_readv = ctypes.PyDLL(None).process_vm_readv
_process_vm_readv.restype = ctypes.c_ssize_t
_process_vm_writev = ctypes.PyDLL(None).process_vm_writev
_process_vm_writev.restype = ctypes.c_ssize_t
# fstatat() called with the GIL held: struct stat (x86_64) starts with st_dev, st_ino.
_fstatat = ctypes.PyDLL(None).fstatat
_STAT_SIZE = 144
_EFAULT = errno.EFAULT
_NO_CALLER = -errno.ESRCH          # the result of a call whose caller is gone (no reply lands)
_PAGE = mmap.PAGESIZE
_WINDOW_MAX = 1024
# Where the bytes between the attr and the spans, read along in one iovec, go.
_GAP = ctypes.create_string_buffer(_PAGE)
_GAP_ADDR = ctypes.addressof(_GAP)
_U32 = struct.Struct("<I")
_N_CMDS = max(DECODABLE) + 1
_ioctl = fcntl.ioctl
_pread = os.pread
# fdinfo's first four lines (pos, flags, mnt_id, ino) take at most 91 bytes; a bytes object
# of 128 comes from Python's small-object allocator, one of 512 from malloc.
_FDINFO_READ = 128
_pack_id = struct.Struct("<Q").pack_into      # seccomp_notif_resp.id
_NOTIF_ID_VALID = seccomp.NOTIF_ID_VALID


class PrefetchedMemory(Memory):
    """The memory a decoded notified call is built with. Each reader it hands out adds a span
    to the call's one process_vm_readv (after the attr's), read into a buffer of its own, and
    returns that buffer's bytes as the last read left them; writes go to the caller's
    memory."""

    def __init__(self, caller_mem):
        self.caller_mem = caller_mem
        self.spans: list[tuple[int, int, object]] = []     # (address, length, buffer)

    def _span(self, addr: int, n: int):
        buf = ctypes.create_string_buffer(n)
        self.spans.append((addr, n, buf))
        return buf

    def reader(self, addr: int, n: int):
        # partial(getattr, buf, "raw"): the bytes with no Python frame (half a lambda's cost)
        return partial(getattr, self._span(addr, n), "raw")

    def reader2(self, addr1: int, n1: int, addr2: int, n2: int):
        buf1, buf2 = self._span(addr1, n1), self._span(addr2, n2)
        return lambda: (buf1.raw, buf2.raw)

    def read(self, addr: int, n: int) -> bytes:
        return self.caller_mem.read(addr, n)

    def writer(self, addr: int, n: int):
        """NOTIF_ID_VALID, then one process_vm_writev through iovecs packed here."""
        caller, write_any = self.caller_mem.caller, self.caller_mem.write
        scratch = ctypes.create_string_buffer(max(n, 1))
        iov = ctypes.create_string_buffer(2 * _IOVEC.size)
        _IOVEC.pack_into(iov, 0, ctypes.addressof(scratch), n)
        _IOVEC.pack_into(iov, _IOVEC.size, addr, n)
        local, remote = ctypes.byref(iov, 0), ctypes.byref(iov, _IOVEC.size)

        def write(data):
            if len(data) != n:
                return write_any(addr, data)
            if not caller.checked:           # NotifiedCalls.serve checked it after the read
                caller.check_alive()
            scratch.raw = data
            # A short count: the bytes before the fault are written, as copy_to_user leaves them.
            if _process_vm_writev(caller.tid, local, 1, remote, 1, 0) != n:
                raise BpfError(_EFAULT)
        return write

    def write(self, addr: int, data) -> None:
        self.caller_mem.write(addr, data)


def _disjoint(pieces) -> bool:
    """No two of the (address, length, ...) pieces share a byte."""
    ordered = sorted(pieces, key=lambda p: p[0])
    return all(a[0] + a[1] <= b[0] for a, b in zip(ordered, ordered[1:]))


def _scatter(pieces) -> tuple[list, int]:
    """The local iovecs that take one remote read of the pieces' whole extent (one page):
    each piece's bytes into its buffer, the bytes between them into a scratch page; and the
    extent's start."""
    ordered = sorted(pieces, key=lambda p: p[0])
    locals_, pos = [], ordered[0][0]
    for addr, n, local in ordered:
        if addr > pos:
            locals_.append((_GAP_ADDR, addr - pos))
        locals_.append((local, n))
        pos = addr + n
    return locals_, ordered[0][0]


class NotifiedCall:
    """One decoded notified call: what identifies it, its one read, and the rest to run.

    The read: the attr into attr_read, each span its run reads into the buffer its reader
    returns (PrefetchedMemory). Each remote iovec costs the kernel a page pin (about 0.15
    us), so spans that share a page, 1 KiB or less apart and not overlapping, are read as
    one window (the bytes between go to a scratch page), and when the attr is in that page
    too (overlapping none), attr and window are one remote iovec. A read of bytes of a page
    the call reads anyway faults exactly when the call's own bytes would."""
    __slots__ = ("size", "attr_bytes", "fd_name", "file_key", "fdinfo", "fdinfo_seen",
                 "info_tid", "info_fd", "info_closes",
                 "generation", "lockless", "run", "attr_read", "_attr_view", "iov", "local",
                 "remote", "nlocal", "nremote", "expected", "attr_ptr", "spans",
                 "window", "window_page", "merged")

    def __init__(self, caller_mem, size: int, attr_bytes: bytes, attr_ptr: int, file,
                 generation: int, decodable: tuple):
        self.size = size
        self.attr_bytes = attr_bytes
        ufd = _U32.unpack_from(attr_bytes)[0]
        # The fd as its /proc/<tid>/fd entry is named (a u32 past INT_MAX names none).
        self.fd_name = str(ufd if ufd <= 0x7FFFFFFF else -1).encode()
        self.file_key = struct.pack("=QQ", *file.key)     # its (st_dev, st_ino), as stat gives them
        self.fdinfo = fdinfo_identity(file.key)           # the same, as fdinfo shows them
        # The last whole fdinfo text that showed that identity: the same text shows it again.
        self.fdinfo_seen = None
        # The kept fdinfo file it read last (files.keep_fdinfo): for which task, its fd, and
        # files.fdinfo_closes then (a close since may have given the number to another file).
        self.info_tid, self.info_fd, self.info_closes = None, -1, -1
        self.generation = generation
        self.lockless = False                   # a lookup (learn() says): no lock
        make, _mem, *args = decodable
        mem = PrefetchedMemory(caller_mem)
        self.run = make(mem, *args)
        # The attr as the last read left it: a bytearray compares with bytes for less than
        # a ctypes buffer's .raw costs.
        self.attr_read = bytearray(size)
        self._attr_view = (ctypes.c_char * size).from_buffer(self.attr_read)   # fixed size
        self.spans = [(addr, n, ctypes.addressof(buf)) for addr, n, buf in mem.spans]
        # The spans as one window (start, length, local iovecs), if they make one.
        self.window = None
        if self.spans and _disjoint(self.spans):
            locals_, lo = _scatter(self.spans)
            hi = max(a + n for a, n, _ in self.spans)
            if hi - lo <= _WINDOW_MAX and lo // _PAGE == (hi - 1) // _PAGE:
                self.window = (lo, hi - lo, locals_)
        self.iov = ctypes.create_string_buffer((3 * len(self.spans) + 4) * _IOVEC.size)
        self.window_page = self.window[0] // _PAGE if self.window is not None else None
        self.merged, self.attr_ptr = False, None
        self.aim(attr_ptr)

    def aim(self, attr_ptr: int) -> None:
        """Set up the read for the attr at attr_ptr (the spans stay where they are)."""
        size = self.size
        if (not self.merged and self.attr_ptr is not None
                and attr_ptr // _PAGE != self.window_page):
            # Still apart from the spans (an attr that moves on every call, as a caller's
            # new stack or heap object): only its remote iovec, the first, changes.
            _IOVEC.pack_into(self.iov, self.nlocal * _IOVEC.size, attr_ptr, size)
            self.attr_ptr = attr_ptr
            return
        attr = (attr_ptr, size, ctypes.addressof(self._attr_view))
        window = self.window
        self.merged = False
        if window is not None and size:
            lo, n, _ = window
            pieces = [attr] + self.spans
            start, end = min(attr_ptr, lo), max(attr_ptr + size, lo + n)
            if start // _PAGE == (end - 1) // _PAGE and _disjoint(pieces):
                locals_, start = _scatter(pieces)
                self._set(attr_ptr, locals_, [(start, end - start)])
                self.merged = True
                return
        locals_, remotes = [(attr[2], size)], [(attr_ptr, size)]
        if window is not None:
            locals_ += window[2]
            remotes.append(window[:2])
        else:
            locals_ += [(local, n) for _, n, local in self.spans]
            remotes += [(addr, n) for addr, n, _ in self.spans]
        self._set(attr_ptr, locals_, remotes)

    def _set(self, attr_ptr: int, locals_: list, remotes: list) -> None:
        iov, pack = self.iov, _IOVEC.pack_into
        for i, (addr, n) in enumerate(locals_ + remotes):
            pack(iov, i * _IOVEC.size, addr, n)
        self.nlocal, self.nremote = len(locals_), len(remotes)
        self.local = ctypes.byref(iov, 0)
        self.remote = ctypes.byref(iov, len(locals_) * _IOVEC.size)
        self.expected = sum(n for _, n in locals_)
        self.attr_ptr = attr_ptr


class NotifiedCalls:
    """The decoded calls of one supervisor: the last one made per command, and the attr
    bytes last seen per command (a decoded call is made the second time they are)."""

    def __init__(self, emu, caller, files):
        self.emu = emu
        self.caller = caller
        self.files = files
        self.fd_dirs = files.fd_dirs
        self.fdinfo_files = files.fdinfo_files
        self._stat = ctypes.create_string_buffer(_STAT_SIZE)
        self._stat_ref = ctypes.byref(self._stat)
        self._stat_dev_ino = (ctypes.c_char * 16).from_buffer(self._stat)
        self.listener = caller.listener
        # The reply to a call served here (struct seccomp_notif_resp), its id set by serve();
        # the supervisor sends it as it is when the result is 0.
        self.resp = bytearray(seccomp.RESP.size)
        self.last: list[NotifiedCall | None] = [None] * _N_CMDS    # by command
        self.seen: dict[int, bytes] = {}
        self.served = 0                              # calls served decoded (tests, benchmark)

    def generation(self) -> int | None:
        calls = self.emu.decoded_calls
        return None if calls is None else calls.generation

    def serve(self, tid: int, notif_id: int, cmd: int, attr_ptr: int, size: int) -> int | None:
        """The call of thread tid (notification notif_id), if a decoded call serves it: its
        result. None: not served (nothing was done that the checked path would not do
        again). cmd and size are the raw 64-bit registers: the kernel reads their low 32 bits
        only, so one with high bits set finds no decoded call and goes the checked way."""
        if cmd >= _N_CMDS:
            return None
        call = self.last[cmd]
        if call is None or call.size != size:
            return None
        # The reply, as most calls get it (0): NOTIF_ID_VALID reads its id too. Only the id
        # changes: a call with another result is replied to from another buffer.
        resp = self.resp
        _pack_id(resp, 0, notif_id)
        caller = self.caller
        # Caller.switch(), less what only the checked path reads (attr_copy, last_file)
        if caller.tid != tid:
            caller.tid = caller.mem.pid = caller.fds.tid = tid
        caller.notif_id = notif_id
        # (caller.checked: set below, after NOTIF_ID_VALID, before anything can write; a call
        # not served here goes through Caller.switch(), which clears it.)
        # The attr and every span in one read; a short one (a fault) goes the checked way.
        if attr_ptr != call.attr_ptr:
            call.aim(attr_ptr)
        if (_process_vm_readv(tid, call.local, call.nlocal, call.remote, call.nremote, 0)
                != call.expected):
            return None
        if call.attr_read != call.attr_bytes:
            return None
        # fdget(), every call: is the caller's fd still open on the file this call was
        # decoded for? Whether the file is still registered is not asked: its release
        # forgets the decoded calls made with it (DecodedCalls.generation, checked in
        # decoded_as).
        fdinfo = call.fdinfo
        if fdinfo is not None:
            # One pread of the task's kept /proc/<tid>/fdinfo/<n> (files.keep_fdinfo), which
            # looks the fd up again at each read: half the cost of a stat of
            # /proc/<tid>/fd/<n>, whose walk follows the fd's link (and checks our ptrace
            # access) at each call.
            files = self.files
            if tid == call.info_tid and call.info_closes == files.fdinfo_closes:
                info = call.info_fd
            else:
                info = self.fdinfo_files.get((tid, call.fd_name))
                if info is None:
                    info = files.keep_fdinfo(tid, call.fd_name)
                    if info is None:
                        return None
                call.info_tid, call.info_fd, call.info_closes = tid, info, files.fdinfo_closes
            try:
                text = _pread(info, _FDINFO_READ, 0)
            except OSError:                          # not open now, or the task is gone
                self.files.drop_fdinfo(tid, call.fd_name)
                return None
            if text != call.fdinfo_seen:
                # Another text (a first read, or the fd's position or flags changed): its
                # identity lines say which open file; a text once seen to show this call's
                # file shows it whenever it comes again.
                if not text.startswith(fdinfo, text.find(b"\nmnt_id:")):
                    return None
                call.fdinfo_seen = text
        else:
            # fstatat() of /proc/<tid>/fd/<n> into a kept buffer, with the GIL held (it
            # never blocks): os.stat would build a whole stat_result (float and nanosecond
            # times) and hand the GIL over twice. Only through the task's kept directory
            # (files.py): without one, the checked way keeps one.
            d = self.fd_dirs.get(tid)
            if (d is None or _fstatat(d, call.fd_name, self._stat_ref, 0) != 0
                    or self._stat_dev_ino.raw != call.file_key):
                return None
        # NOTIF_ID_VALID after the reads it protects: the attr, key and value just read, and
        # the fd just looked up, were the caller's (task.py). A caller gone since RECV gets
        # nothing: its tid may name another image now (tests/intercept/test_exec_race.py).
        try:
            _ioctl(self.listener, _NOTIF_ID_VALID, resp, True)
        except OSError:
            self.served += 1                         # answered here (the reply lands nowhere)
            return _NO_CALLER
        caller.checked = True
        if call.lockless:                            # a lookup: no lock, no task switch
            ret = self.emu.decoded_lockless(cmd, call.run, call.generation)
        else:
            ret = self.emu.decoded_as(caller, cmd, call.run, call.generation)
        if ret is None:                              # forgotten since: decode again
            self.last[cmd] = None
        else:
            self.served += 1
        return ret

    def learn(self, cmd: int, attr_ptr: int, size: int, generation: int | None) -> None:
        """After a checked call: decode it if its handler left a decoded call and these attr
        bytes were seen before. ``generation``: DecodedCalls.generation before the call."""
        caller = self.caller
        decodable, attr_bytes, f = caller.decodable, caller.mem.attr_copy, caller.fds.last_file
        if (decodable is None or generation is None or attr_bytes is None
                or len(attr_bytes) != size or f is None or f.obj is not decodable[2]):
            return
        if self.seen.get(cmd) != attr_bytes:
            self.seen[cmd] = attr_bytes
            return
        call = NotifiedCall(caller.mem, size, attr_bytes, attr_ptr, f, generation, decodable)
        call.lockless = self.emu.dispatch[cmd].lockless
        self.last[cmd] = call
