"""libbpf 1.x's low-level API (tools/lib/bpf/bpf.h) over any backend.

Same names, argument order and return convention as libbpf: 0 or an fd on success, else a
negative errno (libbpf_err_errno). Keys and values may be bytes, bytearrays, memoryviews,
ctypes objects or plain int addresses (None is NULL); output arguments (values, next keys,
batch buffers, info) must be writable: a bytearray or a ctypes object, and
``count``/``info_len``/``next_id`` a ``ctypes.c_uint32``, as libbpf takes a ``__u32 *``.

Use a backend explicitly, ``LibBpf(HostKernel())``, or the module-level functions, which act on
the backend chosen with ``use()`` (an Emulator by default).

Python objects have lengths, C pointers do not: the first element or batch call on an fd
learns its map's key and value sizes (once per fd, out of band: the emulated map, or the
kernel's /proc/self/fdinfo, so that no bpf() call is added to libbpf's; again after
``close()`` or a call that returns that fd number anew; on an emulator also whenever its fd
table may have changed behind the layer), and a Python buffer shorter than
the call reads or writes (a key, a value, a batch of ``count`` elements) is a ValueError
naming the sizes, before any syscall. A longer one is fine, as in C. Raw int addresses and
ctypes pointers keep C's contract: they are passed on unchecked. Arguments that are not ints
where C takes an int, or that do not fit their field (a ``max_entries`` of -1 or 2**40), are
TypeError or OverflowError naming the argument.

Element calls are made as a C loop makes them, with one attr and one set of buffers per
thread and map fd (libbpf_calls.py): pinned on an emulator, so a repeated call is a decoded
call there.
"""
import ctypes
import errno
import os
import struct
import sys
import threading
from dataclasses import dataclass

from .libbpf_calls import CTYPES, SLOW, DirectCalls, PinnedCalls, kind_of
from .uapi import consts as c

# The map types whose syscall value is one 8-byte-aligned slot per possible CPU: maps/core.py's
# PERCPU_VALUE_TYPES (tests/unit/test_import_cost.py checks they agree), not imported from
# there, which would load every emulated map type for a layer over the kernel.
_T = c.BpfMapType
PERCPU_VALUE_TYPES = frozenset({_T.BPF_MAP_TYPE_PERCPU_HASH, _T.BPF_MAP_TYPE_LRU_PERCPU_HASH,
                                _T.BPF_MAP_TYPE_PERCPU_ARRAY,
                                _T.BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE})
_PERCPU_TYPES = PERCPU_VALUE_TYPES
_HASH_TYPES = frozenset({c.BPF_MAP_TYPE_HASH, c.BPF_MAP_TYPE_PERCPU_HASH,
                         c.BPF_MAP_TYPE_LRU_HASH, c.BPF_MAP_TYPE_LRU_PERCPU_HASH})

# What libbpf sends as `size`: offsetofend() of the last field each function sets, as in
# tools/lib/bpf/bpf.c built against the 6.18 UAPI. (libbpf 1.1, Debian 12, sends 72 for
# MAP_CREATE, offsetofend(map_extra); the kernel accepts both alike.)
ATTR_SIZES = {
    c.BPF_MAP_CREATE: 92,                   # excl_prog_hash_size
    c.BPF_MAP_LOOKUP_ELEM: 32,
    c.BPF_MAP_UPDATE_ELEM: 32,
    c.BPF_MAP_DELETE_ELEM: 32,
    c.BPF_MAP_LOOKUP_AND_DELETE_ELEM: 32,
    c.BPF_MAP_GET_NEXT_KEY: 24,
    c.BPF_MAP_FREEZE: 4,
    c.BPF_MAP_LOOKUP_BATCH: 56,
    c.BPF_MAP_LOOKUP_AND_DELETE_BATCH: 56,
    c.BPF_MAP_UPDATE_BATCH: 56,
    c.BPF_MAP_DELETE_BATCH: 56,
    c.BPF_OBJ_GET_INFO_BY_FD: 16,
    c.BPF_MAP_GET_NEXT_ID: 12,              # open_flags (bpf_obj_get_next_id)
    c.BPF_MAP_GET_FD_BY_ID: 12,             # open_flags (only BTF_GET_FD_BY_ID sends a token)
    c.BPF_OBJ_PIN: 20,                      # path_fd
    c.BPF_OBJ_GET: 20,
}
_LOOKUP, _POP = c.BPF_MAP_LOOKUP_ELEM, c.BPF_MAP_LOOKUP_AND_DELETE_ELEM
_LOOKUP_BATCHES = frozenset({c.BPF_MAP_LOOKUP_BATCH, c.BPF_MAP_LOOKUP_AND_DELETE_BATCH})
# struct { in_batch, out_batch, keys, values; u32 count, map_fd; elem_flags, flags } (56 bytes)
_pack_batch = struct.Struct("<QQQQIIQQ").pack_into
_unpack_u32 = struct.Struct("<I").unpack_from
_NO_LENGTHS = (None, None, None, None)
# Map fds whose element-call buffers one thread keeps pinned on an emulator (about 1.5 KiB
# each); a thread using more takes turns, the oldest fd's buffers going (each pin and unpin
# forgets the emulator's decoded calls, so taking turns at every call would cost more).
MAX_PINNED_FDS = 256


class _CheckEveryCall:
    """A generation no FdCalls ever matches: each call looks its map up again (an emulator
    whose decoded calls are off has no count of its fd table's changes)."""

    @property
    def generation(self):
        return object()


_CHECK_EVERY_CALL = _CheckEveryCall()


class bpf_map_info(ctypes.Structure):
    """struct bpf_map_info (104 bytes)."""
    _fields_ = [
        ("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32), ("name", ctypes.c_char * 16),
        ("ifindex", ctypes.c_uint32), ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64), ("netns_ino", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32), ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32), ("btf_vmlinux_id", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64), ("hash", ctypes.c_uint64),
        ("hash_size", ctypes.c_uint32),
    ]


@dataclass
class bpf_map_create_opts:
    btf_fd: int = 0
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    btf_vmlinux_value_type_id: int = 0
    inner_map_fd: int = 0
    map_flags: int = 0
    map_extra: int = 0
    numa_node: int = 0
    map_ifindex: int = 0
    value_type_btf_obj_fd: int = 0
    token_fd: int = 0
    excl_prog_hash: bytes | None = None     # 32 bytes (SHA-256 of the program)
    excl_prog_hash_size: int | None = None  # None: len(excl_prog_hash)


@dataclass
class bpf_map_batch_opts:
    elem_flags: int = 0
    flags: int = 0


@dataclass
class bpf_get_fd_by_id_opts:
    open_flags: int = 0
    token_fd: int = 0       # libbpf sends it for BTF only; bpf_map_get_fd_by_id_opts ignores it


@dataclass
class bpf_obj_pin_opts:
    file_flags: int = 0
    path_fd: int = 0


@dataclass
class bpf_obj_get_opts:
    file_flags: int = 0
    path_fd: int = 0


class opts:
    """libbpf's option structs by their C names: ``opts.bpf_obj_get_opts(file_flags=...)``.

    In C, ``struct bpf_obj_pin_opts`` and the function ``bpf_obj_pin_opts()`` share a name;
    a Python module cannot, so at module level ``bpf_obj_pin_opts`` and ``bpf_obj_get_opts``
    are the functions and their structs are here. Every ``opts`` argument also takes a dict
    of the struct's fields, or None for all zeros."""
    bpf_map_create_opts = bpf_map_create_opts
    bpf_map_batch_opts = bpf_map_batch_opts
    bpf_get_fd_by_id_opts = bpf_get_fd_by_id_opts
    bpf_obj_pin_opts = bpf_obj_pin_opts
    bpf_obj_get_opts = bpf_obj_get_opts


_PinOpts, _GetOpts = bpf_obj_pin_opts, bpf_obj_get_opts


def _opts(cls, o):
    """The options as cls: None is all zeros, a dict gives fields by name."""
    if o is None:
        return cls()
    if isinstance(o, dict):
        return cls(**o)
    return o


_CTYPES_BUFFERS = (ctypes._SimpleCData, ctypes.Array, ctypes.Structure, ctypes.Union)
# Arguments taken as the pointer itself rather than as a buffer: an int address, a ctypes
# pointer, a c_void_p (what C code would pass for a `void *`).
_ADDRESSES = (int, ctypes._Pointer, ctypes.c_void_p)


class _Pointers:
    """Addresses for the call's arguments, keeping temporary copies alive until the call ends.

    Read-only inputs (bytes) are copied into buffers of `scratch` (a per-thread ScratchBuffers
    of the layer) when there is one, so that a call repeated with equal arguments passes the
    same addresses again and the emulator's decoded-call cache applies."""

    def __init__(self, scratch=None):
        self.keep = []
        self.scratch = scratch
        self.used = 0

    def inp(self, obj) -> int:
        """Address of an input buffer (NULL for None); read-only buffers are copied."""
        if obj is not None and not isinstance(obj, _CTYPES_BUFFERS + _ADDRESSES) \
                and memoryview(obj).readonly:
            data = bytes(obj)
            if self.scratch is not None:
                self.used += 1
                return self.scratch.copy_in(self.used - 1, data)
            buf = ctypes.create_string_buffer(data, max(len(data), 1))
            self.keep.append(buf)
            return ctypes.addressof(buf)
        return self.out(obj)

    def out(self, obj) -> int:
        """Address of a writable buffer the call fills (NULL for None)."""
        if obj is None:
            return 0
        if isinstance(obj, _ADDRESSES):
            return _address(obj)
        if isinstance(obj, _CTYPES_BUFFERS):
            return ctypes.addressof(obj)
        view = memoryview(obj).cast("B")
        if view.readonly:
            raise TypeError("output buffers must be writable (bytearray or a ctypes object)")
        if view.nbytes == 0:
            return 0
        arr = (ctypes.c_char * view.nbytes).from_buffer(view)
        self.keep.append(arr)
        return ctypes.addressof(arr)


class ScratchBuffers:
    """One thread's buffers for a LibBpf layer: an attr per element or batch command and
    input copies by position, reused from call to call; pinned when the backend is an
    emulator (its copies are then slices, not process_vm_readv calls)."""

    def __init__(self, backend):
        self.attrs = {}                         # cmd -> its attr buffer
        self.inputs = []                        # position -> buffer
        mem = getattr(backend, "own_mem", getattr(backend, "mem", None))
        self.pin = getattr(mem, "pin", None)

    def attr(self, cmd: int, data: bytes) -> ctypes.Array:
        buf = self.attrs.get(cmd)
        if buf is None:
            buf = self.attr_buffer(cmd)
        buf.raw = data                          # the rest stays zero: a command's attr
        return buf                              # bytes always have the same length

    def attr_buffer(self, cmd: int) -> ctypes.Array:
        """cmd's attr buffer, made (and pinned: what the command writes back, a batch's
        count, is then a slice) on first use."""
        buf = self.attrs.get(cmd)
        if buf is None:
            buf = self.attrs[cmd] = self._new(168)    # passed as an object
        return buf

    def copy_in(self, i: int, data: bytes) -> int:
        if i == len(self.inputs):
            self.inputs.append(None)
        buf = self.inputs[i]
        if buf is None or len(buf) != max(len(data), 1):
            buf = self.inputs[i] = self._new(max(len(data), 1))
        buf.raw = data                          # (ctypes.memmove costs more than the call)
        return ctypes.addressof(buf)

    def _new(self, n: int) -> ctypes.Array:
        buf = ctypes.create_string_buffer(n)
        if self.pin is not None:
            self.pin(buf)                       # held by the emulator from now on
        return buf


def _address(obj) -> int:
    """An int address, or what a ctypes pointer / c_void_p points at."""
    if isinstance(obj, bool):
        raise TypeError("a bool is not a buffer or an address")
    if isinstance(obj, int):
        return obj & 0xFFFFFFFFFFFFFFFF
    if isinstance(obj, ctypes.c_void_p):
        return obj.value or 0
    return ctypes.cast(obj, ctypes.c_void_p).value or 0


def _length(obj):
    """The length in bytes of a Python buffer the layer can check, or None (None, an int
    address, a ctypes pointer: C's contract)."""
    if obj is None or isinstance(obj, _ADDRESSES):
        return None
    if isinstance(obj, _CTYPES_BUFFERS):
        return ctypes.sizeof(obj)
    try:
        return memoryview(obj).nbytes
    except TypeError:
        return None


def _check_len(obj, need: int, what: str, sizes: str) -> None:
    n = _length(obj)
    if n is not None and n < need:
        raise ValueError(f"{what} is a {n}-byte buffer; the call reads or writes {need} "
                         f"bytes there ({sizes})")


def _int_arg(name: str, value) -> int:
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return value


# struct fields the layer packs: (name, lowest, highest) for the range errors' messages.
_FIELD_RANGES = {"I": (0, 0xFFFFFFFF), "i": (-0x80000000, 0x7FFFFFFF),
                 "Q": (0, 0xFFFFFFFFFFFFFFFF)}


def _pack(fmt: str, names: tuple, *values) -> bytes:
    """struct.pack, with an error that names the argument that does not fit its field."""
    try:
        return struct.pack(fmt, *values)
    except struct.error:
        codes = [ch for ch in fmt.lstrip("<") if ch.isalpha() and ch != "x"]
        for name, code, v in zip(names, codes, values):
            if name is None:
                continue
            _int_arg(name, v)
            lo, hi = _FIELD_RANGES.get(code, (None, None))
            if lo is not None and not lo <= v <= hi:
                raise OverflowError(f"{name}={v} does not fit its field ({lo}..{hi})") from None
        raise


def _cstring(path) -> ctypes.Array:
    return ctypes.create_string_buffer(os.fsencode(path))


U64 = 0xFFFFFFFFFFFFFFFF


def _map_of(backend, fd: int):
    """(map type, key size, value size) of the map behind fd, out of band, so that the calls
    a trace records are libbpf's own: the emulated map itself, or the kernel's
    /proc/self/fdinfo (what BPF_OBJ_GET_INFO_BY_FD would say). None when fd is no map."""
    from .emulator import Emulator
    for _ in range(8):                          # through wrappers (a Recorder) to the backend
        if isinstance(backend, Emulator) or not hasattr(backend, "backend"):
            break
        backend = backend.backend
    if isinstance(backend, Emulator):
        try:
            m = backend.map_of(fd)
        except KeyError:
            return None
        return m.map_type, m.key_size, m.value_size
    if not 0 <= fd <= 0x7FFFFFFF:
        return None
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["map_type"]), int(fields["key_size"]), int(fields["value_size"])
    except (OSError, KeyError, ValueError):
        return None


class LibBpf:
    """libbpf's bpf.h functions, calling ``backend.bpf(cmd, attr, size)``."""

    def __init__(self, backend):
        self.backend = backend
        self._sizes: dict[int, tuple] = {}    # fd -> (key_size, value bytes, token bytes)
        self._local = threading.local()        # .scratch: this thread's ScratchBuffers;
        #                                        .calls: its FdCalls by fd (libbpf_calls.py)
        # Every live thread's .calls, with its thread: to forget an fd in, and to unpin what
        # a thread that has ended kept (_register_calls).
        self._all_calls: list[tuple] = []
        self._calls_lock = threading.Lock()
        # On an emulator, element calls copy through pinned buffers, checked against the
        # emulated map whenever its decoded calls were forgotten (every call if they are off).
        emulator = sys.modules.get("bpfemu.emulator")     # not loaded: no Emulator exists
        self._decoded = None
        if emulator is not None and isinstance(backend, emulator.Emulator) \
                and hasattr(backend.mem, "pin"):
            # Without decoded calls nothing counts the fd table's changes: check every call.
            self._decoded = backend.decoded_calls or _CHECK_EVERY_CALL
        # What an FdCalls' generation is compared with (DirectCalls: never changes).
        self._generation = self._decoded if self._decoded is not None else DirectCalls

    def _scratch(self) -> ScratchBuffers:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = ScratchBuffers(self.backend)
        return scratch

    def _map_sizes(self, fd):
        """(key_size, the syscall's value size, the batch token's size) of the map behind fd,
        learned once per fd; None when fd is not a map this backend knows (the call then
        gets the kernel's answer)."""
        sizes = self._sizes.get(fd)
        if sizes is None:
            found = _map_of(self.backend, fd)
            if found is None:
                return None
            sizes = self._sizes[fd] = self._sizes_of(*found)
        return sizes

    def _sizes_of(self, map_type, ks, vs):
        if map_type in _PERCPU_TYPES:
            vs = (vs + 7) // 8 * 8 * self.libbpf_num_possible_cpus()
        token = 4 if map_type in _HASH_TYPES else ks
        return ks, vs, token

    # --- element calls made as a C loop makes them (libbpf_calls.py) --------------------

    def _fd_calls(self, fd: int):
        """This thread's FdCalls for fd (an int), or None when fd is no map it knows."""
        try:
            fc = self._local.calls[fd]
            if fc.generation == self._generation.generation:
                return fc
        except (AttributeError, KeyError):
            pass
        try:
            calls = self._local.calls
        except AttributeError:
            calls = self._local.calls = self._register_calls()
        return self._new_fd_calls(fd, calls, calls.get(fd))

    def _register_calls(self) -> dict:
        """A new thread's FdCalls dict, registered; the buffers of threads that have ended
        are unpinned here (a program that starts a thread per task would otherwise keep
        every ended thread's buffers pinned, and each pin sorts them all)."""
        calls: dict = {}
        ended = []
        with self._calls_lock:
            live = [(t, c) for t, c in self._all_calls if t.is_alive()]
            if len(live) < len(self._all_calls):
                ended = [c for t, c in self._all_calls if not t.is_alive()]
            live.append((threading.current_thread(), calls))
            self._all_calls = live
        for old in ended:
            for fc in old.values():
                fc.release()
        return calls

    def _new_fd_calls(self, fd: int, calls: dict, old):
        """fd's FdCalls made (again): on an emulator, for the map fd names now."""
        decoded = self._decoded
        if decoded is None:
            sizes = self._map_sizes(fd)
            if sizes is None:
                return None
            fc = calls[fd] = DirectCalls(self.backend, fd, sizes[0], sizes[1])
            return fc
        generation = decoded.generation
        try:
            m = self.backend.map_of(fd)
        except KeyError:
            m = None
        if old is not None:
            if old.map is m:
                old.generation = generation
                return old
            calls.pop(fd, None)
            old.release()
        if m is None:
            return None
        sizes = self._sizes[fd] = self._sizes_of(m.map_type, m.key_size, m.value_size)
        if not sizes[0] or not sizes[1]:
            return None                         # no key or no value: the general path
        if len(calls) >= MAX_PINNED_FDS:        # the oldest fd's buffers go
            with self._calls_lock:              # (_forget_fd may pop from calls meanwhile)
                oldest = calls.pop(next(iter(calls), None), None)
            if oldest is not None:
                oldest.release()
        fc = PinnedCalls(self.backend, fd, sizes[0], sizes[1], m, 0)
        # The generation after the pin (which forgets decoded calls), then fd looked up again:
        # a close and a new map at that number in between (another thread) moved the
        # generation past the one read here, or shows now; then the next call checks again.
        generation = decoded.generation
        try:
            still = self.backend.map_of(fd) is m
        except KeyError:
            still = False
        fc.generation = generation if still else -1
        calls[fd] = fc
        return fc

    def _forget_fd(self, fd: int) -> None:
        """fd was closed or names a new object: every thread's FdCalls for it go."""
        self._sizes.pop(fd, None)
        with self._calls_lock:
            for _thread, calls in self._all_calls:
                fc = calls.pop(fd, None)
                if fc is not None:
                    fc.release()

    def _check_elem(self, fd, key=None, value=None, value_out=None, next_key=None):
        if not isinstance(fd, int):
            raise TypeError(f"fd must be an int, not {type(fd).__name__}")
        if all(_length(b) is None for b in (key, value, value_out, next_key)):
            return                              # nothing but addresses: C's contract

        def check(sizes):
            ks, vs, _ = sizes
            what = f"fd {fd}: key {ks} bytes, value {vs} bytes"
            _check_len(key, ks, "key", what)
            _check_len(next_key, ks, "next_key", what)
            _check_len(value, vs, "value", what)
            _check_len(value_out, vs, "value", what)
        self._checked(fd, check)

    def _checked(self, fd, check) -> None:
        """check(sizes) against fd's map; a failure is raised only if it holds for sizes
        learned again now (the fd may have been closed behind this layer and reused)."""
        sizes = self._map_sizes(fd)
        if sizes is None:
            return
        try:
            check(sizes)
        except ValueError:
            self._sizes.pop(fd, None)
            sizes = self._map_sizes(fd)
            if sizes is not None:
                check(sizes)

    def _new_fd(self, ret: int) -> int:
        if ret >= 0:
            self._forget_fd(ret)                # another object at that number now
        return ret

    def _sys_bpf(self, cmd: int, attr: bytes, reuse: bool = False) -> tuple[int, ctypes.Array]:
        """The call, with a new attr buffer, or (reuse) this thread's buffer for cmd, so that
        a call repeating the last one's bytes is a decoded call on the emulator."""
        buf = self._scratch().attr(cmd, attr) if reuse else ctypes.create_string_buffer(attr, 168)
        ret = self.backend.bpf(cmd, buf, ATTR_SIZES[cmd])
        return ret, buf

    # --- maps --------------------------------------------------------------------------

    def bpf_map_create(self, map_type, map_name, key_size, value_size, max_entries, opts=None):
        o = _opts(bpf_map_create_opts, opts)
        name = map_name.encode() if isinstance(map_name, str) else (map_name or b"")
        p = _Pointers()
        hash_ptr = p.inp(o.excl_prog_hash)
        hash_size = o.excl_prog_hash_size
        if hash_size is None:
            hash_size = len(o.excl_prog_hash) if isinstance(o.excl_prog_hash, (bytes, bytearray)) \
                else 0
        # libbpf copies map_flags as given: BPF_F_TOKEN_FD is the caller's to set with token_fd.
        attr = _pack("<IIIIIII16sIIIIIQiiQI",
                     ("map_type", "key_size", "value_size", "max_entries", "map_flags",
                      "inner_map_fd", "numa_node", None, "map_ifindex", "btf_fd",
                      "btf_key_type_id", "btf_value_type_id", "btf_vmlinux_value_type_id",
                      "map_extra", "value_type_btf_obj_fd", "token_fd", None,
                      "excl_prog_hash_size"),
                     map_type, key_size, value_size, max_entries,
                     o.map_flags, o.inner_map_fd, o.numa_node,
                     name[:15].ljust(16, b"\0"),          # libbpf copies at most 15 chars
                     o.map_ifindex, o.btf_fd, o.btf_key_type_id, o.btf_value_type_id,
                     o.btf_vmlinux_value_type_id, o.map_extra, o.value_type_btf_obj_fd,
                     o.token_fd, hash_ptr, hash_size)
        return self._new_fd(self._sys_bpf(c.BPF_MAP_CREATE, attr)[0])

    def _elem(self, cmd, fd, key_ptr, value_ptr, flags):
        attr = struct.pack("<IIQQQ", fd & 0xFFFFFFFF, 0, key_ptr, value_ptr,
                           _int_arg("flags", flags) & U64)
        return self._sys_bpf(cmd, attr, reuse=True)[0]

    # Each element function first tries fd's FdCalls (libbpf_calls.py: a C loop's attr and
    # buffers); what that cannot make (SLOW) takes the general path: check, wrap, call.

    def bpf_map_update_elem(self, fd, key, value, flags=0):
        if type(fd) is int:
            fc = self._fd_calls(fd)
            if fc is not None:
                ret = fc.update(key, value, flags)
                if ret is not SLOW:
                    return ret
        self._check_elem(fd, key=key, value=value)
        p = _Pointers(self._scratch())
        return self._elem(c.BPF_MAP_UPDATE_ELEM, fd, p.inp(key), p.inp(value), flags)

    def bpf_map_lookup_elem(self, fd, key, value):
        if type(fd) is int:                     # bpf_map_lookup_elem_flags(..., 0), inlined
            fc = self._fd_calls(fd)
            if fc is not None:
                ret = fc.lookup(_LOOKUP, key, value, 0)
                if ret is not SLOW:
                    return ret
        return self.bpf_map_lookup_elem_flags(fd, key, value, 0)

    def bpf_map_lookup_elem_flags(self, fd, key, value, flags):
        if type(fd) is int:
            fc = self._fd_calls(fd)
            if fc is not None:
                ret = fc.lookup(_LOOKUP, key, value, flags)
                if ret is not SLOW:
                    return ret
        self._check_elem(fd, key=key, value_out=value)
        p = _Pointers(self._scratch())
        return self._elem(c.BPF_MAP_LOOKUP_ELEM, fd, p.inp(key), p.out(value), flags)

    def bpf_map_lookup_and_delete_elem(self, fd, key, value):
        return self.bpf_map_lookup_and_delete_elem_flags(fd, key, value, 0)

    def bpf_map_lookup_and_delete_elem_flags(self, fd, key, value, flags):
        if type(fd) is int:
            fc = self._fd_calls(fd)
            if fc is not None:
                ret = fc.lookup(_POP, key, value, flags)
                if ret is not SLOW:
                    return ret
        self._check_elem(fd, key=key, value_out=value)
        p = _Pointers(self._scratch())
        return self._elem(c.BPF_MAP_LOOKUP_AND_DELETE_ELEM, fd, p.inp(key), p.out(value), flags)

    def bpf_map_delete_elem(self, fd, key):
        if type(fd) is int:                     # bpf_map_delete_elem_flags(..., 0), inlined
            fc = self._fd_calls(fd)
            if fc is not None:
                ret = fc.delete(key, 0)
                if ret is not SLOW:
                    return ret
        return self.bpf_map_delete_elem_flags(fd, key, 0)

    def bpf_map_delete_elem_flags(self, fd, key, flags):
        if type(fd) is int:
            fc = self._fd_calls(fd)
            if fc is not None:
                ret = fc.delete(key, flags)
                if ret is not SLOW:
                    return ret
        self._check_elem(fd, key=key)
        p = _Pointers(self._scratch())
        return self._elem(c.BPF_MAP_DELETE_ELEM, fd, p.inp(key), 0, flags)

    def bpf_map_get_next_key(self, fd, key, next_key):
        if type(fd) is int:
            fc = self._fd_calls(fd)
            if fc is not None:
                ret = fc.next_key(key, next_key)
                if ret is not SLOW:
                    return ret
        self._check_elem(fd, key=key, next_key=next_key)
        p = _Pointers(self._scratch())
        return self._elem(c.BPF_MAP_GET_NEXT_KEY, fd, p.inp(key), p.out(next_key), 0)

    def bpf_map_freeze(self, fd):
        _int_arg("fd", fd)
        return self._sys_bpf(c.BPF_MAP_FREEZE, struct.pack("<I", fd & 0xFFFFFFFF))[0]

    def _batch(self, cmd, fd, in_batch, out_batch, keys, values, count, opts):
        if not isinstance(count, ctypes.c_uint32):
            raise TypeError("count must be a ctypes.c_uint32 (in: capacity, out: elements done)")
        if opts is None:
            elem_flags = flags = 0
        else:
            o = _opts(bpf_map_batch_opts, opts)
            elem_flags, flags = o.elem_flags, o.flags
        _int_arg("fd", fd)
        n = count.value
        ret = self._batch_ctypes(cmd, fd, in_batch, out_batch, keys, values, count, n,
                                 elem_flags, flags)
        if ret is not SLOW:
            return ret
        self._check_batch(fd, cmd, in_batch, out_batch, keys, values, n)
        scratch = self._scratch()
        p = _Pointers(scratch)
        # Lookup batches fill keys and values; update and delete batches only read them.
        fill = p.out if cmd in _LOOKUP_BATCHES else p.inp
        # This thread's attr for cmd, packed in place (a command's attr always has the same
        # length): a batch repeated on the same buffers sends the same bytes.
        buf = scratch.attrs.get(cmd) or scratch.attr_buffer(cmd)
        _pack_batch(buf, 0, p.inp(in_batch), p.out(out_batch), fill(keys), fill(values), n,
                    fd & 0xFFFFFFFF, elem_flags & U64, flags & U64)
        ret = self.backend.bpf(cmd, buf, 56)
        count.value = _unpack_u32(buf, 32)[0]  # *count = attr.batch.count
        return ret

    def _batch_ctypes(self, cmd, fd, in_batch, out_batch, keys, values, count, n,
                      elem_flags, flags):
        """_batch for what a C caller passes and nothing else: ctypes arrays and objects (or
        None) of at least the sizes the call uses, on an fd this layer knows the map of;
        else SLOW (the general path checks and reports)."""
        sizes = self._sizes.get(fd) if type(fd) is int else None
        if sizes is None:
            return SLOW
        ks, vs, token = sizes
        ptrs = []
        for obj, need in ((in_batch, token), (out_batch, token), (keys, ks * n),
                          (values, 0 if cmd == c.BPF_MAP_DELETE_BATCH else vs * n)):
            if obj is None:
                ptrs.append(0)
            elif kind_of(type(obj)) == CTYPES and ctypes.sizeof(obj) >= need:
                ptrs.append(ctypes.addressof(obj))
            else:
                return SLOW
        scratch = self._scratch()
        buf = scratch.attrs.get(cmd) or scratch.attr_buffer(cmd)
        _pack_batch(buf, 0, *ptrs, n, fd & 0xFFFFFFFF, elem_flags & U64, flags & U64)
        ret = self.backend.bpf(cmd, buf, 56)
        count.value = _unpack_u32(buf, 32)[0]  # *count = attr.batch.count
        return ret

    def _check_batch(self, fd, cmd, in_batch, out_batch, keys, values, count):
        lens = (_length(keys), _length(values), _length(in_batch), _length(out_batch))
        if lens == _NO_LENGTHS:
            return                              # nothing but addresses: C's contract
        sizes = self._map_sizes(fd)
        if sizes is None:
            return
        ks, vs, token = sizes
        nk, nv, ni, no = lens
        if ((nk is None or nk >= ks * count)
                and (nv is None or cmd == c.BPF_MAP_DELETE_BATCH or nv >= vs * count)
                and (ni is None or ni >= token) and (no is None or no >= token)):
            return

        def check(sizes):
            ks, vs, token = sizes
            what = (f"fd {fd}: key {ks} bytes, value {vs} bytes, batch token {token} bytes, "
                    f"count {count}")
            _check_len(keys, ks * count, "keys", what)
            if cmd != c.BPF_MAP_DELETE_BATCH:
                _check_len(values, vs * count, "values", what)
            _check_len(in_batch, token, "in_batch", what)
            _check_len(out_batch, token, "out_batch", what)
        self._checked(fd, check)

    def bpf_map_lookup_batch(self, fd, in_batch, out_batch, keys, values, count, opts=None):
        return self._batch(c.BPF_MAP_LOOKUP_BATCH, fd, in_batch, out_batch, keys, values,
                           count, opts)

    def bpf_map_lookup_and_delete_batch(self, fd, in_batch, out_batch, keys, values, count,
                                        opts=None):
        return self._batch(c.BPF_MAP_LOOKUP_AND_DELETE_BATCH, fd, in_batch, out_batch, keys,
                           values, count, opts)

    def bpf_map_update_batch(self, fd, keys, values, count, opts=None):
        return self._batch(c.BPF_MAP_UPDATE_BATCH, fd, None, None, keys, values, count, opts)

    def bpf_map_delete_batch(self, fd, keys, count, opts=None):
        return self._batch(c.BPF_MAP_DELETE_BATCH, fd, None, None, keys, None, count, opts)

    # --- objects -----------------------------------------------------------------------

    def bpf_obj_get_info_by_fd(self, bpf_fd, info, info_len):
        if not isinstance(info_len, ctypes.c_uint32):
            raise TypeError("info_len must be a ctypes.c_uint32 (in/out)")
        _int_arg("bpf_fd", bpf_fd)
        n = _length(info)
        if n is not None and n < info_len.value:
            raise ValueError(f"info is a {n}-byte buffer; info_len says {info_len.value}")
        p = _Pointers()
        attr = struct.pack("<IIQ", bpf_fd & 0xFFFFFFFF, info_len.value, p.out(info))
        ret, buf = self._sys_bpf(c.BPF_OBJ_GET_INFO_BY_FD, attr)
        if ret == 0:
            info_len.value = struct.unpack_from("<I", buf, 4)[0]
        return ret

    def bpf_map_get_info_by_fd(self, map_fd, info, info_len):
        return self.bpf_obj_get_info_by_fd(map_fd, info, info_len)

    def bpf_map_get_next_id(self, start_id, next_id):
        if not isinstance(next_id, ctypes.c_uint32):
            raise TypeError("next_id must be a ctypes.c_uint32")
        ret, buf = self._sys_bpf(c.BPF_MAP_GET_NEXT_ID,
                                 struct.pack("<I", _int_arg("start_id", start_id) & 0xFFFFFFFF))
        if ret == 0:
            next_id.value = struct.unpack_from("<I", buf, 4)[0]
        return ret

    def bpf_map_get_fd_by_id(self, map_id):
        return self.bpf_map_get_fd_by_id_opts(map_id, None)

    def bpf_map_get_fd_by_id_opts(self, map_id, opts=None):
        o = _opts(bpf_get_fd_by_id_opts, opts)
        # offsetofend(open_flags), as libbpf: token_fd is not sent for maps.
        attr = struct.pack("<III", _int_arg("map_id", map_id) & 0xFFFFFFFF, 0,
                           o.open_flags & 0xFFFFFFFF)
        return self._new_fd(self._sys_bpf(c.BPF_MAP_GET_FD_BY_ID, attr)[0])

    def bpf_obj_pin(self, fd, pathname):
        return self.bpf_obj_pin_opts(fd, pathname, None)

    def bpf_obj_pin_opts(self, fd, pathname, opts=None):
        o = _opts(_PinOpts, opts)
        path = _cstring(pathname)
        attr = struct.pack("<QIIi", ctypes.addressof(path), _int_arg("fd", fd) & 0xFFFFFFFF,
                           o.file_flags, o.path_fd)
        return self._sys_bpf(c.BPF_OBJ_PIN, attr)[0]

    def bpf_obj_get(self, pathname):
        return self.bpf_obj_get_opts(pathname, None)

    def bpf_obj_get_opts(self, pathname, opts=None):
        o = _opts(_GetOpts, opts)
        path = _cstring(pathname)
        attr = struct.pack("<QIIi", ctypes.addressof(path), 0, o.file_flags, o.path_fd)
        return self._new_fd(self._sys_bpf(c.BPF_OBJ_GET, attr)[0])

    def libbpf_num_possible_cpus(self):
        nr = getattr(self.backend, "nr_cpus", None)
        if nr is not None:
            return nr
        from .profile import host_possible_cpus
        return host_possible_cpus()

    def close(self, fd):
        if isinstance(fd, int):
            self._forget_fd(fd)
        return self.backend.close(fd)


_default: LibBpf | None = None


def use(backend) -> LibBpf:
    """Choose the backend the module-level functions act on; returns its LibBpf."""
    global _default
    _default = LibBpf(backend)
    return _default


def default() -> LibBpf:
    global _default
    if _default is None:
        from .emulator import Emulator
        _default = LibBpf(Emulator())
    return _default


def _forward(name):
    def call(*args, **kwargs):
        return getattr(default(), name)(*args, **kwargs)
    call.__name__ = name
    call.__doc__ = f"libbpf's {name}() on the backend chosen with use()."
    return call


for _name in [n for n in dir(LibBpf) if n.startswith(("bpf_", "libbpf_"))]:
    globals()[_name] = _forward(_name)
del _name

# The module-level bpf_obj_pin_opts / bpf_obj_get_opts are the functions; see class opts.
__all__ = ["LibBpf", "use", "default", "ATTR_SIZES", "opts", "bpf_map_info",
           "bpf_map_create_opts", "bpf_map_batch_opts", "bpf_get_fd_by_id_opts"]
__all__ += [n for n in dir(LibBpf) if n.startswith(("bpf_", "libbpf_"))]
_ = errno
