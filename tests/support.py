"""The test support module: backends, errnos, value sizes, guarded buffers, pages that fault,
attr builders and a raw caller with reused buffers, for raw bpf() calls.

Tests build the attr bytes themselves (that is what is under test) and read back every byte
the call may have written, with guard bytes around each output buffer to catch overruns.
The helpers of one family of tests (the LRU lockstep pair, batch/info/pin attrs, hash
configurations) live in tests/differential/*_support.py and take everything generic from here.
"""
import ctypes
import mmap
import os
import struct
import sys
import threading
from errno import (E2BIG, EACCES, EBADF, EBADFD, EBUSY, EEXIST, EFAULT, EINVAL,  # noqa: F401
                   EMFILE, ENOENT, ENOMEM, ENOSPC, ENOTDIR, EOPNOTSUPP, EPERM)

import bpfemu
from bpfemu import Emulator, HostKernel
from bpfemu.errors import ENOTSUPP  # noqa: F401  (524: kernel-internal, no name in errno)
from bpfemu.profile import KernelProfile, get_profile, host_possible_cpus, profile_name_for_release
from bpfemu.uapi import consts as c

GUARD = 16
GUARD_BYTE = 0xA5
NCPU = host_possible_cpus()
PAGE = 4096

PERCPU_TYPES = frozenset({c.BPF_MAP_TYPE_PERCPU_HASH, c.BPF_MAP_TYPE_PERCPU_ARRAY,
                          c.BPF_MAP_TYPE_LRU_PERCPU_HASH})


def round_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def sys_value_size(map_type, value_size: int) -> int:
    """Bytes the syscall copies per element: value_size, or for the per-CPU types one
    8-byte-rounded slot per possible CPU (docs/linux-6.18.md#per-cpu-values)."""
    return round_up(value_size, 8) * NCPU if map_type in PERCPU_TYPES else value_size


def profile_under_test(backend) -> KernelProfile:
    """The profile of the kernel a test body is checking, so that a test states that kernel's
    answer rather than 6.18's: an Emulator's own profile; for the live kernel, the profile its
    release names (scripts/differential-on-kernels runs the suite inside 6.1 and 6.12), else
    the default (BPFEMU_PROFILE, or 6.18)."""
    if isinstance(backend, Emulator):
        return backend.profile
    return get_profile(profile_name_for_release(os.uname().release))


def dirty_byte_errno(profile: KernelProfile, pos: int) -> int:
    """The errno a non-zero byte at attr offset pos (past the command's last field, size 168)
    gets on the kernel of profile: EINVAL inside its union bpf_attr (CHECK_ATTR), E2BIG past
    it (a non-zero tail: 144 bytes on 6.1, 152 on 6.12, 168 on 6.18)."""
    return EINVAL if pos < profile.attr_size else E2BIG


def dirty_tail_result(backend, tail) -> int:
    """What a call whose attr (size 168) is dirty at tail (an offset, or {offset: byte}) past
    the command's last field returns on the kernel under test: -EINVAL, or -E2BIG where a
    dirty byte lies past that kernel's union bpf_attr (the size check comes first)."""
    pos = max(tail) if isinstance(tail, dict) else tail
    return -dirty_byte_errno(profile_under_test(getattr(backend, "b", backend)), pos)


def last_field_end(profile: KernelProfile, cmd: int, end_on_6_18: int) -> int:
    """The end of cmd's last field (CHECK_ATTR's bound) on the kernel of profile."""
    return profile.last_field_end.get(cmd, end_on_6_18)


def u32(n: int) -> bytes:
    return struct.pack("<I", n & 0xFFFFFFFF)


def u64(n: int) -> bytes:
    return struct.pack("<Q", n & (2**64 - 1))


_host_reason = None
_host_checked = False


def host_unavailable_reason():
    """None when the live kernel's bpf() is usable here; otherwise why not."""
    global _host_reason, _host_checked
    if not _host_checked:
        _host_reason = HostKernel.available()
        _host_checked = True
    return _host_reason


class Buf:
    """A ctypes buffer with GUARD bytes of 0xA5 on both sides. ``addr`` is the payload."""

    def __init__(self, data=b"", size=None):
        data = bytes(data)
        self.size = len(data) if size is None else size
        self.raw = ctypes.create_string_buffer(bytes([GUARD_BYTE]) * (self.size + 2 * GUARD))
        self.addr = ctypes.addressof(self.raw) + GUARD
        self.set(data.ljust(self.size, b"\0")[: self.size])

    def set(self, data: bytes) -> None:
        ctypes.memmove(self.addr, bytes(data), len(data))

    @property
    def data(self) -> bytes:
        return ctypes.string_at(self.addr, self.size)

    def guards_intact(self) -> bool:
        full = self.raw.raw
        return full[:GUARD] == bytes([GUARD_BYTE]) * GUARD and \
            full[GUARD + self.size: GUARD + self.size + GUARD] == bytes([GUARD_BYTE]) * GUARD


# --- addresses that fault ----------------------------------------------------------------------

def unmapped_address() -> int:
    """An address that is not mapped and stays so: the first page at or above 4 KiB and
    vm.mmap_min_addr. Only MAP_FIXED can map there; ordinary mmap() allocates top-down near
    mmap_base (whereas a page unmapped at random could be mapped again by a later allocation)."""
    try:
        with open("/proc/sys/vm/mmap_min_addr") as f:
            floor = int(f.read())
    except (OSError, ValueError):
        floor = 65536
    return max(floor, 8192) - 4096


_leaked = []        # mappings that must outlive the test that made them


def _mprotect(addr: int, length: int, prot: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(addr, length, prot) == 0, os.strerror(ctypes.get_errno())


def _mapped_pages(n: int) -> int:
    m = mmap.mmap(-1, n * PAGE)
    _leaked.append(m)
    return ctypes.addressof(ctypes.c_char.from_buffer(m))


def readonly_address(size: int = PAGE) -> int:
    """A mapped, read-only page (writes there fault, reads succeed)."""
    addr = _mapped_pages(1)
    _mprotect(addr, PAGE, mmap.PROT_READ)
    return addr


def prot_none_page() -> int:
    """A mapped PROT_NONE page: every access faults, and nothing else can be mapped there
    (unlike an unmapped address, which a later mmap might reuse)."""
    addr = _mapped_pages(1)
    _mprotect(addr, PAGE, 0)            # PROT_NONE
    return addr


class Cliff:
    """A writable page followed by a PROT_NONE page: ``at(n)`` is an address with exactly
    n accessible bytes before the fault."""

    def __init__(self):
        self.base = _mapped_pages(2)
        _mprotect(self.base + PAGE, PAGE, 0)      # PROT_NONE

    def at(self, n: int) -> int:
        return self.base + PAGE - n

    def fill(self, byte: int = GUARD_BYTE) -> None:
        ctypes.memset(self.base, byte, PAGE)

    def tail(self, n: int) -> bytes:
        """The last n writable bytes."""
        return ctypes.string_at(self.base + PAGE - n, n)

    def put(self, n: int, data: bytes) -> int:
        """Copy (at most n bytes of) data to at(n) and return that address."""
        addr = self.at(n)
        ctypes.memmove(addr, data, min(len(data), n))
        return addr


def page_before_hole() -> int:
    """The address of a writable page whose next page faults (a Cliff's base)."""
    return Cliff().base


# --- attr builders and callers ------------------------------------------------------------------

def attr_buf(data: bytes = b"", size: int = 168):
    buf = ctypes.create_string_buffer(max(size, 168))
    ctypes.memmove(buf, data, len(data))
    return buf


def map_create_attr(map_type, key_size, value_size, max_entries, map_flags=0, *, numa_node=0,
                    name=b"", inner_map_fd=0, map_ifindex=0, btf_fd=0, btf_key_type_id=0,
                    btf_value_type_id=0, btf_vmlinux_value_type_id=0, map_extra=0,
                    value_type_btf_obj_fd=0, map_token_fd=0, excl_prog_hash=0,
                    excl_prog_hash_size=0) -> bytes:
    return struct.pack("<IIIIIII16sIIIIIQiiQI", map_type, key_size, value_size, max_entries,
                       map_flags, inner_map_fd, numa_node, bytes(name).ljust(16, b"\0")[:16],
                       map_ifindex, btf_fd, btf_key_type_id, btf_value_type_id,
                       btf_vmlinux_value_type_id, map_extra, value_type_btf_obj_fd, map_token_fd,
                       excl_prog_hash, excl_prog_hash_size)


def elem_attr(map_fd, key=0, value=0, flags=0, pad=0) -> bytes:
    """MAP_*_ELEM / GET_NEXT_KEY attr: key and value are addresses (value = next_key)."""
    return struct.pack("<IIQQQ", map_fd & 0xFFFFFFFF, pad, key, value, flags & (2**64 - 1))


class Client:
    """Raw calls on one backend, returning what the syscall returns plus the written bytes."""

    def __init__(self, backend):
        self.b = backend
        self.fds = []

    def bpf(self, cmd, attr: bytes, size=None):
        buf = attr_buf(attr, size or 168)
        return self.b.bpf(cmd, buf, len(attr) if size is None else size)

    def create(self, map_type, key_size, value_size, max_entries, map_flags=0, **kw):
        fd = self.bpf(c.BPF_MAP_CREATE, map_create_attr(map_type, key_size, value_size,
                                                         max_entries, map_flags, **kw), 168)
        if fd >= 0:
            self.fds.append(fd)
        return fd

    def update(self, fd, key: bytes, value: bytes, flags=0):
        k, v = Buf(key), Buf(value)
        return self.bpf(c.BPF_MAP_UPDATE_ELEM, elem_attr(fd, k.addr, v.addr, flags), 32)

    def lookup(self, fd, key: bytes, value_size: int, flags=0):
        """(ret, value bytes or None). Asserts the guards around the value survived."""
        k, v = Buf(key), Buf(size=value_size)
        ret = self.bpf(c.BPF_MAP_LOOKUP_ELEM, elem_attr(fd, k.addr, v.addr, flags), 32)
        assert v.guards_intact(), "lookup wrote outside the value buffer"
        return ret, (v.data if ret == 0 else None)

    def delete(self, fd, key: bytes):
        k = Buf(key)
        return self.bpf(c.BPF_MAP_DELETE_ELEM, elem_attr(fd, k.addr), 16)

    def lookup_and_delete(self, fd, key: bytes, value_size: int, flags=0):
        k, v = Buf(key), Buf(size=value_size)
        ret = self.bpf(c.BPF_MAP_LOOKUP_AND_DELETE_ELEM, elem_attr(fd, k.addr, v.addr, flags), 32)
        assert v.guards_intact()
        return ret, (v.data if ret == 0 else None)

    def next_key(self, fd, key: bytes | None, key_size: int):
        k = Buf(key) if key is not None else None
        n = Buf(size=key_size)
        ret = self.bpf(c.BPF_MAP_GET_NEXT_KEY, elem_attr(fd, k.addr if k else 0, n.addr), 24)
        assert n.guards_intact()
        return ret, (n.data if ret == 0 else None)

    def keys(self, fd, key_size: int) -> list:
        """The full GET_NEXT_KEY walk from NULL."""
        out, cur = [], None
        while True:
            ret, nxt = self.next_key(fd, cur, key_size)
            if ret != 0:
                assert ret == -ENOENT, ret
                return out
            out.append(nxt)
            cur = nxt
            assert len(out) <= 1 << 20

    def close(self, fd):
        if fd in self.fds:
            self.fds.remove(fd)
        return self.b.close(fd)

    def close_all(self):
        for fd in list(self.fds):
            self.close(fd)


class ReusedBufferCaller:
    """Raw element calls on one backend with buffers allocated once (key, next key, value,
    attr) and reused by every call: the cheap way to drive long traces and full key walks."""

    def __init__(self, backend, key_size: int, value_size_sys: int):
        self.b = backend
        self.ks = key_size
        self.vs_sys = value_size_sys
        self.fd = -1
        self.attr = ctypes.create_string_buffer(168)
        self.k = ctypes.create_string_buffer(max(key_size, 8))
        self.n = ctypes.create_string_buffer(max(key_size, 8))
        self.v = ctypes.create_string_buffer(max(value_size_sys, 8))
        self.ka, self.na, self.va = (ctypes.addressof(self.k), ctypes.addressof(self.n),
                                     ctypes.addressof(self.v))

    def _call(self, cmd, fd, key_addr, value_addr, flags=0) -> int:
        struct.pack_into("<IIQQQ", self.attr, 0, fd, 0, key_addr, value_addr, flags)
        return self.b.bpf(cmd, self.attr, 32)

    def update(self, fd, key: bytes, value: bytes, flags=0) -> int:
        ctypes.memmove(self.ka, key, self.ks)
        ctypes.memmove(self.va, value, len(value))
        return self._call(c.BPF_MAP_UPDATE_ELEM, fd, self.ka, self.va, flags)

    def delete(self, fd, key: bytes) -> int:
        ctypes.memmove(self.ka, key, self.ks)
        return self._call(c.BPF_MAP_DELETE_ELEM, fd, self.ka, 0)

    def _value_call(self, cmd, fd, key: bytes):
        ctypes.memmove(self.ka, key, self.ks)
        ctypes.memset(self.va, GUARD_BYTE, self.vs_sys)
        ret = self._call(cmd, fd, self.ka, self.va)
        return ret, (self.v.raw[:self.vs_sys] if ret == 0 else None)

    def lookup(self, fd, key: bytes):
        """(ret, the value bytes or None)."""
        return self._value_call(c.BPF_MAP_LOOKUP_ELEM, fd, key)

    def lookup_and_delete(self, fd, key: bytes):
        return self._value_call(c.BPF_MAP_LOOKUP_AND_DELETE_ELEM, fd, key)

    def next_key(self, fd, key):
        """(ret, the next key or None); key None starts the walk."""
        if key is None:
            ret = self._call(c.BPF_MAP_GET_NEXT_KEY, fd, 0, self.na)
        else:
            ctypes.memmove(self.ka, key, self.ks)
            ret = self._call(c.BPF_MAP_GET_NEXT_KEY, fd, self.ka, self.na)
        return ret, (self.n.raw[:self.ks] if ret == 0 else None)

    def keys(self, fd) -> list:
        """The full GET_NEXT_KEY walk from NULL."""
        out = []
        ks, ka, na = self.ks, self.ka, self.na
        ret = self._call(c.BPF_MAP_GET_NEXT_KEY, fd, 0, na)
        while ret == 0:
            key = self.n.raw[:ks]
            out.append(key)
            ctypes.memmove(ka, key, ks)
            ret = self._call(c.BPF_MAP_GET_NEXT_KEY, fd, ka, na)
            assert len(out) <= 1 << 22
        assert ret == -ENOENT, ret
        return out


def race(nthreads: int, work) -> list:
    """work(i) for i in range(nthreads), each on its own thread, all released at once by a
    barrier; their results in order. Meanwhile the GIL changes hands every microsecond, not
    every 5 ms (a thousand calls), so that the threads interleave inside the calls: with the
    default, the race tests passed with the emulator's lock made a no-op."""
    barrier = threading.Barrier(nthreads)
    results = [None] * nthreads

    def run(i):
        barrier.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(nthreads)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    return results


def in_forked_child(body) -> None:
    """body() in a forked child (for tests that change process-wide limits); it passes when
    body returns None (else the child prints what it returned)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            bad = body()
            code = 0 if bad is None else 2
            if bad is not None:
                print(bad)
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


class Stop(BaseException):
    """What a test's trace function raises to stop a call at a line: like KeyboardInterrupt,
    nothing in the emulator catches it."""


def lock_is_free(lock) -> bool:
    """Whether another thread can take lock (within 2 s): a stopped call did not leave it held."""
    got = []

    def take():
        if lock.acquire(True, 2):
            lock.release()
            got.append(True)
    t = threading.Thread(target=take)
    t.start()
    t.join()
    return got == [True]


def stop_at_line(k: int, call, stopped="stopped"):
    """(call()'s result, the lines run): call() with Stop raised by a trace function at the
    k-th line it runs in the bpfemu package; the result is ``stopped`` if it was stopped."""
    pkg = os.path.dirname(bpfemu.__file__)
    seen = 0

    def local(frame, event, arg):
        nonlocal seen
        if event == "line":
            seen += 1
            if seen == k:
                raise Stop
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code.co_filename.startswith(pkg) else None

    result = stopped
    sys.settrace(tracer)
    try:
        result = call()
    except Stop:
        pass
    finally:
        sys.settrace(None)
    return result, seen


def stop_at_c_return(k: int, call, stopped="stopped"):
    """(call()'s result, the C calls returned): call() with Stop raised at the return of the
    k-th C function (a builtin or a method of a C type) that bpfemu code calls. That is where
    a signal's handler runs mid-line: CPython checks for pending signals after each call,
    before the caller has used the result (a popped item not yet journaled, say), which no
    line-by-line stop can reach. A profile function that raises at "c_return" drops the
    result, as the handler's exception does."""
    pkg = os.path.dirname(bpfemu.__file__)
    seen = 0

    def profile(frame, event, arg):
        nonlocal seen
        if event == "c_return" and frame.f_code.co_filename.startswith(pkg):
            seen += 1
            if seen == k:
                raise Stop

    result = stopped
    sys.setprofile(profile)
    try:
        result = call()
    except Stop:
        pass
    finally:
        sys.setprofile(None)
    return result, seen