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
_ioctl = fcntl.ioctl
_pread = os.pread
# fdinfo's first four lines (pos, flags, mnt_id, ino) take at most 91 bytes; a bytes object
# of 128 comes from Python's small-object allocator, one of 512 from malloc.
_FDINFO_READ = 128
_pack_resp = seccomp.RESP.pack_into
_NOTIF_ID_VALID = seccomp.NOTIF_ID_VALID


class PrefetchedMemory(Memory):
    """The memory a decoded notified call is built with. Each reader it hands out adds a span
    to the call's one process_vm_readv (after the attr's) and returns that span's bytes of
    the last read (``data``); writes go to the caller's memory. ``place``: where a span's
    bytes are in data, from its address (a window of the caller's page, see NotifiedCall);
    without it the spans follow the attr one after another."""

    def __init__(self, caller_mem, attr_size: int, place=None):
        self.caller_mem = caller_mem
        self.spans: list[tuple[int, int]] = []      # (address, length) after the attr
        self.end = attr_size                         # where the next span goes in data
        self.place = place
        self.data = b""                              # attr, then the spans, as last read

    def _span(self, addr: int, n: int) -> int:
        self.spans.append((addr, n))
        if self.place is not None:
            return self.place(addr)
        off = self.end
        self.end += n
        return off

    def reader(self, addr: int, n: int):
        off = self._span(addr, n)
        return lambda: self.data[off:off + n]

    def reader2(self, addr1: int, n1: int, addr2: int, n2: int):
        off1 = self._span(addr1, n1)
        off2 = self._span(addr2, n2)
        return lambda: (self.data[off1:off1 + n1], self.data[off2:off2 + n2])

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


class NotifiedCall:
    """One decoded notified call: what identifies it, its one read, and the rest to run.

    The read: data is the attr, then the spans its run reads. Each remote iovec costs the
    kernel a page pin (about 0.15 us), so spans that share a page, 1 KiB or less apart, are
    read as one window (the bytes between come along), and when the attr is in that page
    too, attr and window are one remote iovec, scattered to their places in data (the
    bytes between them to a scratch page). A read of bytes of a page the call reads
    anyway faults exactly when the call's own bytes would."""
    __slots__ = ("size", "attr_bytes", "fd_name", "file_key", "fdinfo", "generation", "mem",
                 "lockless", "run", "buf", "iov", "local", "remote", "nlocal", "nremote",
                 "expected", "attr_ptr", "spans", "total", "window_page", "merged")

    def __init__(self, caller_mem, size: int, attr_bytes: bytes, attr_ptr: int, file,
                 generation: int, decodable: tuple):
        self.size = size
        self.attr_bytes = attr_bytes
        ufd = _U32.unpack_from(attr_bytes)[0]
        # The fd as its /proc/<tid>/fd entry is named (a u32 past INT_MAX names none).
        self.fd_name = str(ufd if ufd <= 0x7FFFFFFF else -1).encode()
        self.file_key = struct.pack("=QQ", *file.key)     # its (st_dev, st_ino), as stat gives them
        self.fdinfo = fdinfo_identity(file.key)           # the same, as fdinfo shows them
        self.generation = generation
        self.lockless = False                   # a lookup (learn() says): no lock
        make, _mem, *args = decodable
        mem = PrefetchedMemory(caller_mem, size)
        run = make(mem, *args)
        spans = mem.spans
        if len(spans) > 1:
            lo = min(a for a, _ in spans)
            hi = max(a + n for a, n in spans)
            if hi - lo <= _WINDOW_MAX and lo // _PAGE == (hi - 1) // _PAGE:
                mem = PrefetchedMemory(caller_mem, size, lambda addr: size + addr - lo)
                run = make(mem, *args)
                spans = [(lo, hi - lo)]
        self.mem, self.run = mem, run
        self.spans = spans                            # the remote reads after the attr
        self.total = size + sum(n for _, n in spans)  # the length of data
        self.buf = ctypes.create_string_buffer(max(self.total, 1))
        self.iov = ctypes.create_string_buffer((2 * len(spans) + 4) * _IOVEC.size)
        # The page an attr must be in to be read with the spans in one iovec (one span only).
        self.window_page = spans[0][0] // _PAGE if len(spans) == 1 else None
        self.merged, self.attr_ptr = False, None
        self.aim(attr_ptr)

    def aim(self, attr_ptr: int) -> None:
        """Set up the read for the attr at attr_ptr (the spans stay where they are)."""
        size, spans = self.size, self.spans
        if (not self.merged and self.attr_ptr is not None
                and attr_ptr // _PAGE != self.window_page):
            # Still apart from the spans (an attr that moves on every call, as a caller's
            # new stack or heap object): only its remote iovec, the first, changes.
            _IOVEC.pack_into(self.iov, self.nlocal * _IOVEC.size, attr_ptr, size)
            self.attr_ptr = attr_ptr
            return
        local = ctypes.addressof(self.buf)
        self.merged = False
        if len(spans) == 1:
            lo, n = spans[0]
            start, end = min(attr_ptr, lo), max(attr_ptr + size, lo + n)
            if (start // _PAGE == (end - 1) // _PAGE
                    and (attr_ptr + size <= lo or lo + n <= attr_ptr)):
                attr, window = (local, size), (local + size, n)
                gap = (_GAP_ADDR, end - start - size - n)
                self._set(attr_ptr, [attr, gap, window] if attr_ptr < lo else [window, gap, attr],
                          [(start, end - start)])
                self.merged = True
                return
        locals_ = [(local, size)]
        local += size
        for _, n in spans:
            locals_.append((local, n))
            local += n
        self._set(attr_ptr, locals_, [(attr_ptr, size)] + spans)

    def _set(self, attr_ptr: int, locals_: list, remotes: list) -> None:
        iov, pack = self.iov, _IOVEC.pack_into
        for i, (addr, n) in enumerate(locals_ + remotes):
            pack(iov, i * _IOVEC.size, addr, n)
        self.nlocal, self.nremote = len(locals_), len(remotes)
        self.local = ctypes.byref(iov, 0)
        self.remote = ctypes.byref(iov, len(locals_) * _IOVEC.size)
        self.expected = sum(n for _, n in remotes)
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
        self.last: dict[int, NotifiedCall] = {}
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
        call = self.last.get(cmd)
        if call is None or call.size != size:
            return None
        # The reply, as most calls get it (0): NOTIF_ID_VALID reads its id too.
        resp = self.resp
        _pack_resp(resp, 0, notif_id, 0, 0, 0)
        caller = self.caller
        # Caller.switch(), less what only the checked path reads (attr_copy, last_file)
        if caller.tid != tid:
            caller.tid = caller.mem.pid = caller.fds.tid = tid
        caller.notif_id = notif_id
        caller.checked = False
        # The attr and every span in one read; a short one (a fault) goes the checked way.
        if attr_ptr != call.attr_ptr:
            call.aim(attr_ptr)
        if (_process_vm_readv(tid, call.local, call.nlocal, call.remote, call.nremote, 0)
                != call.expected):
            return None
        data = call.buf.raw
        if not data.startswith(call.attr_bytes):
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
            key = (tid, call.fd_name)
            info = self.fdinfo_files.get(key)
            if info is None:
                info = self.files.keep_fdinfo(tid, call.fd_name)
                if info is None:
                    return None
            try:
                text = _pread(info, _FDINFO_READ, 0)
            except OSError:                          # not open now, or the task is gone
                self.files.drop_fdinfo(tid, call.fd_name)
                return None
            if not text.startswith(fdinfo, text.find(b"\nmnt_id:")):
                return None
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
            return _NO_CALLER
        caller.checked = True
        call.mem.data = data
        if call.lockless:                            # a lookup: no lock, no task switch
            ret = self.emu.decoded_lockless(cmd, call.run, call.generation)
        else:
            ret = self.emu.decoded_as(caller, cmd, call.run, call.generation)
        if ret is None:                              # forgotten since: decode again
            del self.last[cmd]
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
