"""The LibBpf layer's element calls on one map fd, made the way a C loop over bpf() makes them.

A C program keeps one attr and one key and value buffer per map and calls bpf() with them
again and again; the layer's first version packed a new attr and wrapped every argument per
call, which cost ~10 us a call on either backend. An ``FdCalls`` is what one thread keeps for
one map fd: an attr per element command and the buffers the attrs point at.

``PinnedCalls`` (an emulator with decoded calls): the buffers are pinned
(``ProcessMemory.pin``) and every attr is packed once, so a repeated call is a decoded call
copying through slices (fastpath.py). The caller's key (and an update's value) is copied into
the buffers before the call and the output copied out after it. That is exact whatever the
caller's buffers alias: the kernel copies the key and an update's value in before it writes
anything (``__bpf_copy_key``) and copies the output out only when the command succeeded
(``map_lookup_elem``, ``map_lookup_and_delete_elem``, ``map_get_next_key``: ``copy_to_user``
after ``err == 0``). The buffers are sized from the emulated map, which the layer checks again
whenever the emulator's decoded calls were forgotten (an fd closed, a map frozen, buffers
pinned), so an fd number now naming another map is seen before anything is copied.

``DirectCalls`` (the kernel, any other backend): the attr points at the caller's own buffers,
packed per call; only ``bytes`` (read-only) inputs of exactly the fd's sizes are copied, into
the fd's buffers (longer ones go the general path and are copied whole).

What a method cannot make this way (an int address, a ctypes pointer, None, a memoryview, a
buffer shorter than the map's sizes, flags that are not an int, a map with a key or value of
0 bytes) returns ``SLOW``, and the layer takes its general path, which checks the arguments and
reports what is wrong with them.
"""
import ctypes
import struct

from .uapi import consts as c

SLOW = None                         # a method's answer when the general path must make the call

_LOOKUP, _UPDATE, _DELETE = c.BPF_MAP_LOOKUP_ELEM, c.BPF_MAP_UPDATE_ELEM, c.BPF_MAP_DELETE_ELEM
_POP, _NEXT = c.BPF_MAP_LOOKUP_AND_DELETE_ELEM, c.BPF_MAP_GET_NEXT_KEY
_ELEM_SIZE, _NEXT_SIZE = 32, 24     # libbpf's attr sizes (libbpf.ATTR_SIZES)
_pack_elem = struct.Struct("<IIQQQ").pack_into     # map_fd, pad, key, value/next_key, flags
_addressof, _sizeof = ctypes.addressof, ctypes.sizeof
_U64 = 0xFFFFFFFFFFFFFFFF

# How an argument is read or pointed at, by its type: a ctypes object, bytes, a bytearray;
# anything else (OTHER) takes the general path.
CTYPES, BYTES, BYTEARRAY, OTHER = 1, 2, 3, 0
_KINDS: dict = {bytes: BYTES, bytearray: BYTEARRAY}
_CTYPES_BUFFERS = (ctypes._SimpleCData, ctypes.Array, ctypes.Structure, ctypes.Union)


def kind_of(typ) -> int:
    kind = _KINDS.get(typ)
    if kind is None:
        # c_void_p (and c_char_p, c_wchar_p) are pointers: C's contract, the general path.
        kind = _KINDS[typ] = CTYPES if (issubclass(typ, _CTYPES_BUFFERS) and not issubclass(
            typ, (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_wchar_p))) else OTHER
    return kind


def _new_attr(fd: int, key_ptr: int, value_ptr: int) -> ctypes.Array:
    attr = ctypes.create_string_buffer(168)
    _pack_elem(attr, 0, fd & 0xFFFFFFFF, 0, key_ptr, value_ptr, 0)
    return attr


class _Views:
    """Byte views of the caller's ctypes objects by address, n bytes each: a copy between two
    views is a memoryview slice assignment, the cheapest copy CPython has (bytes(obj) or a
    char array's .raw cost two to four times as much). The view of the last address is kept;
    it is used only for an object found at that address now with n bytes or more, so it
    never outlives what it points at."""
    __slots__ = ("n", "addr", "view")

    def __init__(self, n: int):
        self.n, self.addr, self.view = n, None, None

    def of(self, obj, writable: bool):
        """A view of obj's first n bytes (ctypes object, bytearray; bytes when not writable),
        or None."""
        kind = _KINDS.get(type(obj)) or kind_of(type(obj))
        if kind == CTYPES:
            if _sizeof(obj) < self.n:
                return None
            addr = _addressof(obj)
            if addr != self.addr:
                self.view = memoryview((ctypes.c_char * self.n).from_address(addr)).cast("B")
                self.addr = addr
            return self.view
        if kind == BYTES and writable or not kind or len(obj) < self.n:
            return None
        return obj if len(obj) == self.n else memoryview(obj)[:self.n]


class PinnedCalls:
    """One thread's element calls on one emulated map fd, through pinned buffers."""

    def __init__(self, backend, fd: int, ks: int, vs: int, m, generation: int):
        self.fd, self.ks, self.vs, self.map, self.generation = fd, ks, vs, m, generation
        self.kbuf = ctypes.create_string_buffer(ks)
        self.vbuf = ctypes.create_string_buffer(vs)
        self.nbuf = ctypes.create_string_buffer(ks)
        self.mem = getattr(backend, "own_mem", backend.mem)   # not a task's: emulator.py
        self.mem.pin(self.kbuf, self.vbuf, self.nbuf, owner=self)   # unpinned when dropped too
        self.kview, self.vview, self.nview = (memoryview(b).cast("B") for b in
                                              (self.kbuf, self.vbuf, self.nbuf))
        self.bpf = backend.bpf
        k, v, n = (_addressof(b) for b in (self.kbuf, self.vbuf, self.nbuf))
        self.lookup_attr, self.update_attr = _new_attr(fd, k, v), _new_attr(fd, k, v)
        self.pop_attr, self.delete_attr = _new_attr(fd, k, v), _new_attr(fd, k, 0)
        self.next_attr, self.first_attr = _new_attr(fd, k, n), _new_attr(fd, 0, n)
        self.flags = {}                         # id(attr) -> the flags packed in it, if not 0
        # The caller's key, value (in and out) and next key, by the address of the last one.
        self.key_in, self.value_in = _Views(ks), _Views(vs)
        self.value_out, self.key_out = _Views(vs), _Views(ks)

    def release(self) -> None:
        """Unpin the buffers (the fd was closed, or names another map now)."""
        if self.mem is not None:
            # (The views stay: another thread may be in a call through them right now.)
            self.mem.unpin(self.kbuf, self.vbuf, self.nbuf)
            self.mem = None

    def _flags(self, attr, flags) -> None:
        """Pack flags into attr if they are not the ones packed there."""
        if self.flags.get(id(attr), 0) != flags:
            _pack_elem(attr, 0, self.fd & 0xFFFFFFFF, 0,
                       *struct.unpack_from("<QQ", attr, 8), flags & _U64)
            self.flags[id(attr)] = flags

    def update(self, key, value, flags):
        k = self.key_in.of(key, False)
        v = self.value_in.of(value, False)
        if k is None or v is None or type(flags) is not int:
            return SLOW
        attr = self.update_attr
        if flags or self.flags:
            self._flags(attr, flags)
        self.kview[:] = k
        self.vview[:] = v
        return self.bpf(_UPDATE, attr, _ELEM_SIZE)

    def lookup(self, cmd, key, value, flags):
        """LOOKUP_ELEM or LOOKUP_AND_DELETE_ELEM."""
        k = self.key_in.of(key, False)
        dst = self.value_out.of(value, True)
        if k is None or dst is None or type(flags) is not int:
            return SLOW
        attr = self.lookup_attr if cmd == _LOOKUP else self.pop_attr
        if flags or self.flags:
            self._flags(attr, flags)
        self.kview[:] = k
        ret = self.bpf(cmd, attr, _ELEM_SIZE)
        if ret == 0:
            dst[:self.vs] = self.vview          # copy_to_user() after success
        return ret

    def delete(self, key, flags):
        k = self.key_in.of(key, False)
        if k is None or type(flags) is not int:
            return SLOW
        attr = self.delete_attr
        if flags or self.flags:
            self._flags(attr, flags)
        self.kview[:] = k
        return self.bpf(_DELETE, attr, _ELEM_SIZE)

    def next_key(self, key, next_key):
        dst = self.key_out.of(next_key, True)
        if dst is None:
            return SLOW
        if key is None:
            attr = self.first_attr
        else:
            k = self.key_in.of(key, False)
            if k is None:
                return SLOW
            self.kview[:] = k
            attr = self.next_attr
        ret = self.bpf(_NEXT, attr, _NEXT_SIZE)
        if ret == 0:
            dst[:self.ks] = self.nview
        return ret


class DirectCalls:
    """One thread's element calls on one map fd of any backend, pointing at the caller's
    buffers (bytes copied first), as libbpf's functions do."""
    map = None
    generation = 0                      # never checked again (no decoded calls to follow)

    def __init__(self, backend, fd: int, ks: int, vs: int):
        self.fd, self.ks, self.vs = fd & 0xFFFFFFFF, ks, vs
        self.kbuf = ctypes.create_string_buffer(ks)
        self.vbuf = ctypes.create_string_buffer(vs)
        self.kaddr, self.vaddr = _addressof(self.kbuf), _addressof(self.vbuf)
        self.bpf = backend.bpf
        self.attr = ctypes.create_string_buffer(168)

    def release(self) -> None:
        pass

    def _in(self, obj, n: int, buf, addr: int):
        """The address the kernel reads n bytes of obj at, or None."""
        kind = _KINDS.get(type(obj)) or kind_of(type(obj))
        if kind == CTYPES:
            return _addressof(obj) if _sizeof(obj) >= n else None
        if kind == BYTES and len(obj) == n:
            # Only the size learned for the fd: longer bytes take the general path, which
            # copies them whole (the fd may name a map with a bigger key or value now, which
            # this backend does not tell the layer about; the kernel then reads them all).
            buf.raw = obj
            return addr
        return None

    def _out(self, obj, n: int):
        kind = _KINDS.get(type(obj)) or kind_of(type(obj))
        if kind == CTYPES and _sizeof(obj) >= n:
            return _addressof(obj)
        return None

    def _call(self, cmd, size, kptr, vptr, flags):
        if kptr is None or vptr is None or type(flags) is not int:
            return SLOW
        attr = self.attr
        _pack_elem(attr, 0, self.fd, 0, kptr, vptr, flags & _U64)
        return self.bpf(cmd, attr, size)

    def update(self, key, value, flags):
        return self._call(_UPDATE, _ELEM_SIZE, self._in(key, self.ks, self.kbuf, self.kaddr),
                          self._in(value, self.vs, self.vbuf, self.vaddr), flags)

    def lookup(self, cmd, key, value, flags):
        return self._call(cmd, _ELEM_SIZE, self._in(key, self.ks, self.kbuf, self.kaddr),
                          self._out(value, self.vs), flags)

    def delete(self, key, flags):
        return self._call(_DELETE, _ELEM_SIZE, self._in(key, self.ks, self.kbuf, self.kaddr),
                          0, flags)

    def next_key(self, key, next_key):
        kptr = 0 if key is None else self._in(key, self.ks, self.kbuf, self.kaddr)
        return self._call(_NEXT, _NEXT_SIZE, kptr, self._out(next_key, self.ks), 0)
