"""Dict-like map objects for Python users, with bcc's table conventions, over any backend.

    m = Map.create(backend, BPF_MAP_TYPE_HASH, ctypes.c_uint32, ctypes.c_uint64, 1024)
    m[1] = 10; m[1].value == 10; del m[1]     # KeyError when the key is missing
    for k, v in m.items(): ...

Keys and values are encoded from and decoded to the types given: a ctypes type (an instance,
its bytes, an int for integer types, a tuple or dict of fields for a Structure), a construct
Struct (values decode to its Container), or None for raw bytes (ints are accepted on input and
packed little-endian). Per-CPU maps take and give a list with one value per possible CPU;
``sum()``/``max()`` fold it. A missing key is KeyError; every other failure is BpfError, an
OSError with the errno. A key or value of the wrong size is ValueError naming the size,
raised before any syscall; a closed Map raises ValueError.

Iteration walks the keys with GET_NEXT_KEY (``len()`` too, as bcc) and gives each key once
even when keys are deleted during the walk; ``items()``/``values()`` skip keys deleted
between the walk and their lookup. ``clear()`` deletes every key (zeroes an array's values).
"""
import ctypes
import errno
import struct
from dataclasses import dataclass

from .errors import BpfError, errno_name
from .libbpf import (ATTR_SIZES, PERCPU_VALUE_TYPES, LibBpf, _int_arg, bpf_map_batch_opts,
                     bpf_map_create_opts, bpf_map_info)
from .uapi import consts as c
from .uapi.consts import BPF_ANY, BpfMapType

_CTYPES = (ctypes._SimpleCData, ctypes.Structure, ctypes.Union, ctypes.Array)
_ARRAY_TYPES = frozenset({BpfMapType.BPF_MAP_TYPE_ARRAY, BpfMapType.BPF_MAP_TYPE_PERCPU_ARRAY})


_SCALAR_CODES = "bBhHiIlLqQnN?fdg"

_LOOKUP, _UPDATE, _DELETE = c.BPF_MAP_LOOKUP_ELEM, c.BPF_MAP_UPDATE_ELEM, c.BPF_MAP_DELETE_ELEM
_POP, _NEXT = c.BPF_MAP_LOOKUP_AND_DELETE_ELEM, c.BPF_MAP_GET_NEXT_KEY
_LOOKUP_SIZE, _UPDATE_SIZE, _DELETE_SIZE = (ATTR_SIZES[cmd] for cmd in (_LOOKUP, _UPDATE, _DELETE))
_POP_SIZE, _NEXT_SIZE = ATTR_SIZES[_POP], ATTR_SIZES[_NEXT]
_ELEM = struct.Struct("<IIQQQ")       # map_fd, pad, key, value (or next_key), flags


def _elem_attr(fd: int, key_ptr: int, value_ptr: int) -> ctypes.Array:
    return ctypes.create_string_buffer(_ELEM.pack(fd & 0xFFFFFFFF, 0, key_ptr, value_ptr, 0), 168)


def _is_scalar(typ) -> bool:
    return (isinstance(typ, type) and issubclass(typ, ctypes._SimpleCData)
            and getattr(typ, "_type_", None) in _SCALAR_CODES)


_HASHABLE: dict = {}


def hashable_type(typ):
    """A subclass of the ctypes type typ whose instances compare and hash by their bytes
    (scalars: by value, and equal to the plain Python number), so that decoded keys can be
    dict keys and set members: ``dict(m.items())``, ``set(m)``, ``7 in set(m)``."""
    h = _HASHABLE.get(typ)
    if h is not None:
        return h
    scalar = _is_scalar(typ)

    def __eq__(self, other):
        if isinstance(other, _CTYPES):
            return ctypes.sizeof(other) == ctypes.sizeof(self) and bytes(other) == bytes(self)
        if scalar and isinstance(other, (int, float)):
            return self.value == other
        return NotImplemented

    def __hash__(self):
        return hash(self.value) if scalar else hash(bytes(self))

    def __repr__(self):
        if scalar:
            return f"{typ.__name__}({self.value!r})"
        if hasattr(typ, "_fields_"):
            fields = ", ".join(f"{f[0]}={getattr(self, f[0])!r}" for f in typ._fields_)
            return f"{typ.__name__}({fields})"
        return f"{typ.__name__}({list(self)!r})"

    h = type(typ.__name__, (typ,), {"__eq__": __eq__, "__hash__": __hash__,
                                    "__repr__": __repr__, "__module__": typ.__module__})
    _HASHABLE[typ] = h
    return h


class _Codec:
    """Encodes Python values to the map's bytes and back, for one declared type. Keys decode
    to hashable instances (hashable_type); with ``ints``, scalar ctypes types decode to
    Python numbers."""

    def __init__(self, typ, size: int, what: str, ints: bool = False):
        self.typ, self.size, self.what = typ, size, what
        self.as_number = ints and _is_scalar(typ)
        self.decode_as = hashable_type(typ) if (what == "key" and isinstance(typ, type)
                                                 and issubclass(typ, _CTYPES)) else typ
        if typ is None:
            self.kind = "raw"
        elif isinstance(typ, type) and issubclass(typ, (ctypes._SimpleCData, ctypes.Structure,
                                                        ctypes.Union, ctypes.Array)):
            self.kind = "ctypes"
            if ctypes.sizeof(typ) != size:
                raise ValueError(f"{what} type {typ.__name__} is {ctypes.sizeof(typ)} bytes; "
                                 f"the map's {what} size is {size}")
        elif hasattr(typ, "build") and hasattr(typ, "parse"):
            self.kind = "construct"
            try:
                n = typ.sizeof()
            except Exception:
                n = None
            if n is not None and n != size:
                raise ValueError(f"{what} struct is {n} bytes; the map's {what} size is {size}")
        else:
            raise TypeError(f"{what} type must be a ctypes type, a construct Struct or None")
        self._pack = self._unpack = self._iter_unpack = None
        if self.kind == "ctypes":
            self._pack, self._unpack, self._iter_unpack = _int_struct(typ)

    def encode(self, obj) -> bytes:
        """The map's bytes for obj; ValueError (naming the size) or TypeError, never a
        syscall, when obj cannot be this key or value."""
        if self._pack is not None:
            # An integer type and an int in range: struct packs the bytes ctypes would make.
            # Anything else (out of range, not an int) takes the checks below.
            try:
                return self._pack(obj)
            except struct.error:
                pass
        if self.kind == "ctypes":
            data = self._encode_ctypes(obj)
        elif self.kind == "construct":
            if isinstance(obj, (bytes, bytearray, memoryview)):
                data = bytes(obj)
            else:
                try:
                    data = self.typ.build(obj)
                except Exception as e:     # construct's own errors, and KeyError for a field
                    raise ValueError(f"cannot build the {self.size}-byte {self.what} from "
                                     f"{obj!r}: {type(e).__name__}: {e}") from None
        elif isinstance(obj, int) and not isinstance(obj, bool):
            if self.size > 8:
                raise ValueError(f"an int cannot be a {self.size}-byte {self.what}; pass bytes")
            try:
                data = obj.to_bytes(self.size, "little", signed=obj < 0)
            except OverflowError:
                raise ValueError(f"{obj} does not fit in the map's {self.size}-byte "
                                 f"{self.what}") from None
        elif isinstance(obj, _CTYPES):
            data = bytes(obj)
        else:
            try:
                data = bytes(memoryview(obj))
            except TypeError:
                raise TypeError(f"{self.what} must be bytes or an int for this map "
                                f"({self.size} bytes), not {type(obj).__name__}") from None
        if len(data) != self.size:
            raise ValueError(f"{self.what} must be {self.size} bytes, got {len(data)}")
        return data

    def _encode_ctypes(self, obj) -> bytes:
        typ = self.typ
        if isinstance(obj, typ) or isinstance(obj, (bytes, bytearray, memoryview)):
            return bytes(obj)
        if isinstance(obj, _CTYPES):
            if ctypes.sizeof(obj) == self.size and not isinstance(obj, ctypes._SimpleCData):
                return bytes(obj)
            if isinstance(obj, ctypes._SimpleCData) and issubclass(typ, ctypes._SimpleCData):
                obj = obj.value
        try:
            if issubclass(typ, ctypes._SimpleCData):
                if not isinstance(obj, (list, tuple, dict)):
                    _fits(typ, obj, self.what)
                    return bytes(typ(obj))
            elif isinstance(obj, (list, tuple)):        # Structure fields / Array items
                _fits_fields(typ, dict(zip(_field_names(typ, len(obj)), obj)), self.what)
                return bytes(typ(*obj))
            elif isinstance(obj, dict) and not issubclass(typ, ctypes.Array):
                _fits_fields(typ, obj, self.what)
                return bytes(typ(**obj))
        except OverflowError:
            raise
        except (TypeError, ValueError) as e:
            raise TypeError(f"cannot make a {typ.__name__} {self.what} from {obj!r}: "
                            f"{e}") from None
        raise TypeError(f"{self.what} must be a {typ.__name__} (or its {self.size} bytes), "
                        f"not {type(obj).__name__}")

    def decode_run(self, raw: bytes, n: int) -> list:
        """decode() of each of the first n items of raw (a batch's keys or values): integers
        in one struct pass."""
        size = self.size
        if self.as_number and self._unpack is not None:
            return [v for (v,) in self._iter_unpack(raw[:n * size])]
        return [self.decode(raw[i * size:(i + 1) * size]) for i in range(n)]

    def decode(self, data: bytes):
        if self.kind == "ctypes":
            if self.as_number:
                if self._unpack is not None:
                    return self._unpack(data)[0]
                return self.typ.from_buffer_copy(data).value
            return self.decode_as.from_buffer_copy(data)
        if self.kind == "construct":
            return self.typ.parse(data)
        return bytes(data)


_INT_CODES = "bBhHiIlLqQnN"


def _int_struct(typ):
    """(pack, unpack, iter_unpack) of a struct that makes the same bytes as the ctypes integer
    type typ (its size and byte order, checked on a sample), or (None, None, None)."""
    code = getattr(typ, "_type_", None)
    if not (isinstance(code, str) and code in _INT_CODES and isinstance(typ, type)
            and issubclass(typ, ctypes._SimpleCData)):
        return None, None, None
    st = struct.Struct("@" + code)
    sample = 0x0102 if st.size > 1 else 1
    if st.size != ctypes.sizeof(typ) or st.pack(sample) != bytes(typ(sample)):
        return None, None, None                 # another byte order (__ctype_be__)
    return st.pack, st.unpack, st.iter_unpack


def _fits(typ, v, what: str) -> None:
    """OverflowError when the int v does not fit the ctypes integer type (ctypes itself
    would wrap it silently: c_uint32(-1) is 4294967295)."""
    if not isinstance(v, int) or getattr(typ, "_type_", None) not in _INT_CODES:
        return
    bits = ctypes.sizeof(typ) * 8
    lo, hi = (-(1 << bits - 1), (1 << bits - 1) - 1) if typ(-1).value < 0 else (0, (1 << bits) - 1)
    if not lo <= v <= hi:
        raise OverflowError(f"{what} {v} does not fit {typ.__name__} ({lo}..{hi})")


def _field_names(typ, n: int) -> list:
    if issubclass(typ, ctypes.Array):
        return [f"[{i}]" for i in range(n)]
    return [f[0] for f in typ._fields_[:n]]


def _fits_fields(typ, values: dict, what: str) -> None:
    if issubclass(typ, ctypes.Array):
        for name, v in values.items():
            _fits(typ._type_, v, f"{what}{name}")
        return
    fields = {f[0]: f for f in getattr(typ, "_fields_", ())}
    for name, v in values.items():
        f = fields.get(name)
        if f is None:
            continue
        if len(f) == 3 and isinstance(v, int):      # a bit field: its width, not its type's
            bits = f[2]
            lo, hi = ((-(1 << bits - 1), (1 << bits - 1) - 1) if f[1](-1).value < 0
                      else (0, (1 << bits) - 1))
            if not lo <= v <= hi:
                raise OverflowError(f"{what} field {name!r}: {v} does not fit its {bits} bits "
                                    f"({lo}..{hi})")
        else:
            _fits(f[1], v, f"{what} field {name!r}:")


class Map:
    """A BPF map as a Python mapping. Create one with ``Map.create`` or wrap an fd with
    ``Map.open``; ``close()`` (or a ``with`` block) releases the fd."""

    def __init__(self, lib: LibBpf, fd: int, map_type: int, key_size: int, value_size: int,
                 max_entries: int, key_type=None, value_type=None, owns_fd: bool = True,
                 name: str = "", ints: bool = False):
        self._lib = lib
        self._fd = fd
        self.name = name
        self.map_type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.percpu = map_type in PERCPU_VALUE_TYPES
        self.nr_cpus = lib.libbpf_num_possible_cpus()
        self._slot = (value_size + 7) // 8 * 8      # round_up(value_size, 8)
        self._value_bytes = self._slot * self.nr_cpus if self.percpu else value_size
        self._key = _Codec(key_type, key_size, "key", ints)
        self._value = _Codec(value_type, value_size, "value", ints)
        self._owns_fd = owns_fd
        self._kbuf = ctypes.create_string_buffer(max(key_size, 1))
        self._nbuf = ctypes.create_string_buffer(max(key_size, 1))
        self._vbuf = ctypes.create_string_buffer(max(self._value_bytes, 1))
        # On an emulator, the buffers every call passes are pinned: its copies are slices.
        self._mem = getattr(lib.backend, "own_mem", getattr(lib.backend, "mem", None))
        if not hasattr(self._mem, "pin"):
            self._mem = None
        if self._mem is not None:
            self._mem.pin(self._kbuf, self._nbuf, self._vbuf, owner=self)   # or when dropped
        # One attr per element command, packed once with this fd and the buffers above, as a
        # C loop over bpf() keeps them: on an emulator a repeated operation is a decoded call
        # (the buffers are pinned), and on either backend the layer makes no attr per call.
        # Their sizes and bytes are LibBpf's; the codecs made the key and value sizes right.
        self._bpf = lib.backend.bpf
        kp, vp, np_ = (ctypes.addressof(b) for b in (self._kbuf, self._vbuf, self._nbuf))
        self._lookup_attr = _elem_attr(fd, kp, vp)
        self._update_attr = _elem_attr(fd, kp, vp)
        self._update_flags = 0                      # the flags packed in _update_attr
        self._delete_attr = _elem_attr(fd, kp, 0)
        self._pop_attr = _elem_attr(fd, kp, vp)
        self._next_attr = _elem_attr(fd, kp, np_)
        self._first_attr = _elem_attr(fd, 0, np_)

    # --- construction -------------------------------------------------------------------

    @classmethod
    def create(cls, backend, map_type, key_type, value_type, max_entries, *, flags=0, name="",
               key_size=None, value_size=None, ints=False):
        """Create a map. key_type/value_type: a ctypes type, a construct Struct, or an int size
        for raw bytes (or pass key_size/value_size with a type of None). ``ints=True``:
        scalar ctypes keys and values read back as Python numbers."""
        key_type, key_size = _type_and_size(key_type, key_size, "key")
        value_type, value_size = _type_and_size(value_type, value_size, "value")
        lib = backend if isinstance(backend, LibBpf) else LibBpf(backend)
        fd = lib.bpf_map_create(int(map_type), name, key_size, value_size, max_entries,
                                bpf_map_create_opts(map_flags=flags))
        if fd < 0:
            raise BpfError.with_context(-fd, cmd="BPF_MAP_CREATE", map_name=name or None,
                                        map_type=_type_name(map_type))
        try:
            info = _info(lib, fd)
            return cls(lib, fd, info.type, key_size, value_size, info.max_entries, key_type,
                       value_type, name=_name(info), ints=ints)
        except BaseException:
            lib.close(fd)
            raise

    @classmethod
    def open(cls, backend, fd: int, key_type=None, value_type=None, *, owns_fd=False,
             ints=False):
        """Wrap an existing map fd; sizes and type come from BPF_OBJ_GET_INFO_BY_FD."""
        if not isinstance(fd, int) or isinstance(fd, bool):
            raise TypeError(f"fd must be an int, not {type(fd).__name__}")
        lib = backend if isinstance(backend, LibBpf) else LibBpf(backend)
        info = _info(lib, fd)
        return cls(lib, fd, info.type, info.key_size, info.value_size, info.max_entries,
                   key_type, value_type, owns_fd, name=_name(info), ints=ints)

    @classmethod
    def from_pin(cls, backend, path, key_type=None, value_type=None, *, ints=False):
        """The map pinned at path (BPF_OBJ_GET), with an fd of its own (closed by close())."""
        lib = backend if isinstance(backend, LibBpf) else LibBpf(backend)
        return cls._adopt(lib, lib.bpf_obj_get(path), f"BPF_OBJ_GET {str(path)!r}",
                          key_type, value_type, ints)

    @classmethod
    def from_id(cls, backend, map_id: int, key_type=None, value_type=None, *, ints=False):
        """The map with this id (BPF_MAP_GET_FD_BY_ID), with an fd of its own."""
        lib = backend if isinstance(backend, LibBpf) else LibBpf(backend)
        return cls._adopt(lib, lib.bpf_map_get_fd_by_id(map_id), f"BPF_MAP_GET_FD_BY_ID {map_id}",
                          key_type, value_type, ints)

    @classmethod
    def _adopt(cls, lib, fd, cmd, key_type, value_type, ints):
        """A Map owning fd, the result of cmd (a negative errno raises); fd closed on failure."""
        if fd < 0:
            raise BpfError.with_context(-fd, cmd=cmd)
        try:
            return cls.open(lib, fd, key_type, value_type, owns_fd=True, ints=ints)
        except BaseException:
            lib.close(fd)
            raise

    def pin(self, path) -> None:
        """BPF_OBJ_PIN at path (in a bpffs); the pin keeps the map after its fds close."""
        ret = self._lib.bpf_obj_pin(self.fd, path)
        if ret < 0:
            raise self._error(-ret, f"BPF_OBJ_PIN {str(path)!r}")

    def freeze(self) -> None:
        """BPF_MAP_FREEZE: no more changes through the syscall (EPERM from then on)."""
        self._check(self._lib.bpf_map_freeze(self.fd), cmd="BPF_MAP_FREEZE")

    @property
    def Key(self):
        """The class decoded keys have: the key's ctypes type, hashable by value (to make a
        key to look up in ``to_dict()``'s result); None for other key types."""
        return self._key.decode_as if self._key.decode_as is not self._key.typ else None

    @property
    def info(self) -> "MapInfo":
        """BPF_OBJ_GET_INFO_BY_FD now: id, name, type, sizes, max_entries, flags."""
        i = _info(self._lib, self.fd)
        t = BpfMapType(i.type) if i.type in BpfMapType._value2member_map_ else i.type
        return MapInfo(i.id, _name(i), t, i.key_size, i.value_size, i.max_entries, i.map_flags)

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"this Map is closed ({self._describe()}); "
                             f"create or open it again to use it")
        return self._fd

    def close(self) -> None:
        if self._fd is not None and self._owns_fd:
            self._lib.close(self._fd)
        if self._fd is not None and self._mem is not None:
            self._mem.unpin(self._kbuf, self._nbuf, self._vbuf)
        self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _describe(self) -> str:
        name = BpfMapType(self.map_type).name if self.map_type in BpfMapType._value2member_map_ \
            else f"map type {self.map_type}"
        return (f"{name} key={self.key_size}B value={self.value_size}B "
                f"max_entries={self.max_entries}")

    def __repr__(self):
        state = "closed" if self._fd is None else f"fd={self._fd}"
        return f"<Map {self._describe()} {state}>"

    # --- values -------------------------------------------------------------------------

    def _encode_value(self, value) -> bytes:
        if not self.percpu:
            return self._value.encode(value)
        if not isinstance(value, (list, tuple)) or len(value) != self.nr_cpus:
            got = f"{len(value)} values" if isinstance(value, (list, tuple)) \
                else f"a {type(value).__name__}"
            raise ValueError(f"a per-CPU map takes a list of {self.nr_cpus} values "
                             f"(one per possible CPU), got {got}")
        return b"".join(self._value.encode(v).ljust(self._slot, b"\0") for v in value)

    def _decode_value(self, data: bytes):
        if not self.percpu:
            return self._value.decode(data)
        return [self._value.decode(data[i * self._slot:i * self._slot + self.value_size])
                for i in range(self.nr_cpus)]

    def _check(self, ret: int, key=None, cmd=None) -> None:
        if ret == -errno.ENOENT and key is not None:
            raise KeyError(key)
        if ret < 0:
            raise self._error(-ret, cmd, key)

    def _error(self, err: int, cmd=None, key=None, *, message=None) -> BpfError:
        """A BpfError naming the command, this map (fd, name, type) and the key."""
        return BpfError.with_context(err, message, cmd=cmd, fd=self._fd,
                                     map_name=self.name or None,
                                     map_type=_type_name(self.map_type), key=key)

    # --- the mapping protocol -----------------------------------------------------------

    def lookup(self, key, default=None):
        """The value, or default when the key is missing."""
        try:
            return self[key]
        except KeyError:
            return default

    get = lookup

    def __getitem__(self, key):
        if self._fd is None:
            self.fd                                 # ValueError: closed
        self._kbuf.raw = self._key.encode(key)
        ret = self._bpf(_LOOKUP, self._lookup_attr, _LOOKUP_SIZE)
        if ret:
            self._check(ret, key, "BPF_MAP_LOOKUP_ELEM")
        return self._decode_value(self._vbuf.raw[:self._value_bytes])

    def update(self, key, value, flags=BPF_ANY) -> None:
        """BPF_MAP_UPDATE_ELEM with flags (BPF_ANY, BPF_NOEXIST, BPF_EXIST); BpfError on failure."""
        if self._fd is None:
            self.fd                                 # ValueError: closed
        k, v = self._key.encode(key), self._encode_value(value)
        if type(flags) is not int or flags != self._update_flags:
            _ELEM.pack_into(self._update_attr, 0, self._fd & 0xFFFFFFFF, 0,
                            ctypes.addressof(self._kbuf), ctypes.addressof(self._vbuf),
                            _int_arg("flags", flags) & 0xFFFFFFFFFFFFFFFF)
            self._update_flags = flags
        self._kbuf.raw = k
        self._vbuf.raw = v
        ret = self._bpf(_UPDATE, self._update_attr, _UPDATE_SIZE)
        if ret < 0:
            raise self._error(-ret, "BPF_MAP_UPDATE_ELEM", key)

    def __setitem__(self, key, value):
        self.update(key, value, BPF_ANY)

    def __delitem__(self, key):
        if self._fd is None:
            self.fd                                 # ValueError: closed
        self._kbuf.raw = self._key.encode(key)
        ret = self._bpf(_DELETE, self._delete_attr, _DELETE_SIZE)
        if ret:
            self._check(ret, key, "BPF_MAP_DELETE_ELEM")

    def pop(self, key, *default):
        """BPF_MAP_LOOKUP_AND_DELETE_ELEM: the value, removed from the map."""
        if self._fd is None:
            self.fd                                 # ValueError: closed
        self._kbuf.raw = self._key.encode(key)
        ret = self._bpf(_POP, self._pop_attr, _POP_SIZE)
        if ret == -errno.ENOENT and default:
            return default[0]
        self._check(ret, key, "BPF_MAP_LOOKUP_AND_DELETE_ELEM")
        return self._decode_value(self._vbuf.raw[:self._value_bytes])

    def __contains__(self, key) -> bool:
        if self._fd is None:
            self.fd                                 # ValueError: closed
        self._kbuf.raw = self._key.encode(key)
        ret = self._bpf(_LOOKUP, self._lookup_attr, _LOOKUP_SIZE)
        if ret == -errno.ENOENT:
            return False
        self._check(ret, cmd="BPF_MAP_LOOKUP_ELEM")
        return True

    def _raw_keys(self):
        """GET_NEXT_KEY walk from NULL, each key once.

        When the key the walk stands on is deleted (by the caller between two steps, or by
        anyone else), the kernel starts the walk again from the first key; keys already
        yielded are then skipped, so a loop that deletes as it goes sees every key once."""
        self.fd                                     # ValueError: closed
        bpf, kbuf, nbuf, n = self._bpf, self._kbuf, self._nbuf, self.key_size
        seen = set()
        ret = bpf(_NEXT, self._first_attr, _NEXT_SIZE)
        while ret == 0:
            cur = nbuf.raw[:n]
            if cur not in seen:
                seen.add(cur)
                yield cur
            self.fd                                 # closed while walking: ValueError
            kbuf.raw = cur              # the caller may have used the key buffer meanwhile
            ret = bpf(_NEXT, self._next_attr, _NEXT_SIZE)
        if ret != -errno.ENOENT:
            raise self._error(-ret, "BPF_MAP_GET_NEXT_KEY")

    def __iter__(self):
        for k in self._raw_keys():
            yield self._key.decode(k)

    def keys(self) -> list:
        return [self._key.decode(k) for k in self._raw_keys()]

    def __len__(self) -> int:
        return sum(1 for _ in self._raw_keys())       # by walk, as bcc does

    def items(self) -> list:
        """(key, value) pairs; keys deleted between the walk and their lookup are skipped."""
        out = []
        for k in list(self._raw_keys()):
            self._kbuf.raw = k
            ret = self._bpf(_LOOKUP, self._lookup_attr, _LOOKUP_SIZE)
            if ret == -errno.ENOENT:
                continue
            self._check(ret, cmd="BPF_MAP_LOOKUP_ELEM")
            out.append((self._key.decode(k), self._decode_value(self._vbuf.raw[:self._value_bytes])))
        return out

    def values(self) -> list:
        return [v for _, v in self.items()]

    def to_dict(self) -> dict:
        """{key: value} of every element (keys are hashable; see hashable_type)."""
        return dict(self.items())

    def clear(self) -> None:
        """Delete every key (keys first, then deletes, so the walk is not disturbed).

        Array maps cannot delete (EINVAL): as bcc does, their values are zeroed instead."""
        keys = list(self._raw_keys())
        if self.map_type in _ARRAY_TYPES:
            zero = bytes(self._value_bytes)
            for k in keys:
                self._check(self._lib.bpf_map_update_elem(self.fd, k, zero, BPF_ANY),
                            cmd="BPF_MAP_UPDATE_ELEM")
            return
        for k in keys:
            ret = self._lib.bpf_map_delete_elem(self.fd, k)
            if ret not in (0, -errno.ENOENT):
                raise self._error(-ret, "BPF_MAP_DELETE_ELEM", self._key.decode(k))

    # --- per-CPU helpers ----------------------------------------------------------------

    def sum(self, key):
        """The per-CPU values of key added up: an int for integer values (ctypes integers,
        raw little-endian bytes), or for a ctypes Structure of integers a Structure whose
        fields are the sums (no wrapping: the fields are Python-side totals, so a sum past
        the field's width is an error rather than a silently wrapped number)."""
        return _fold(self._percpu(key), sum, "sum")

    def max(self, key):
        """The largest per-CPU value of key (field by field for a Structure)."""
        return _fold(self._percpu(key), max, "max")

    def set_all_cpus(self, key, value, flags=BPF_ANY) -> None:
        """A per-CPU map's element with every CPU's slot set to the one value."""
        if not self.percpu:
            raise TypeError(f"set_all_cpus() is for per-CPU maps; this is {self._describe()}")
        self.update(key, [value] * self.nr_cpus, flags)

    def _percpu(self, key):
        if not self.percpu:
            raise TypeError(f"sum()/max() are for per-CPU maps; this is {self._describe()}")
        return self[key]

    # --- batches ------------------------------------------------------------------------

    def _lookup_batch(self, delete: bool, chunk: int):
        """Walk with LOOKUP(_AND_DELETE)_BATCH, growing the chunk on ENOSPC; the walk's
        buffers are made once (again when the chunk grows)."""
        fd = self.fd
        call = (self._lib.bpf_map_lookup_and_delete_batch if delete
                else self._lib.bpf_map_lookup_batch)
        out = []
        first = True
        tsize = max(self.key_size, 4)
        token, in_batch = ctypes.create_string_buffer(tsize), ctypes.create_string_buffer(tsize)
        chunk = max(1, chunk)
        count = ctypes.c_uint32()
        opts = bpf_map_batch_opts()
        keys = values = None
        while True:
            if keys is None:
                keys = ctypes.create_string_buffer(self.key_size * chunk)
                values = ctypes.create_string_buffer(self._value_bytes * chunk)
            count.value = chunk
            ret = call(fd, None if first else in_batch, token, keys, values, count, opts)
            if ret == -errno.ENOSPC:
                chunk *= 2
                keys = None
                continue
            if ret not in (0, -errno.ENOENT):
                raise self._error(-ret, "BPF_MAP_LOOKUP_AND_DELETE_BATCH" if delete
                                  else "BPF_MAP_LOOKUP_BATCH")
            n = count.value
            kraw, vraw = keys.raw, values.raw      # once a call (.raw copies the buffer)
            if self.percpu:
                vs = self._value_bytes
                vals = [self._decode_value(vraw[i * vs:(i + 1) * vs]) for i in range(n)]
            else:
                vals = self._value.decode_run(vraw, n)
            out.extend(zip(self._key.decode_run(kraw, n), vals))
            if ret == -errno.ENOENT:
                return out
            in_batch.raw = token.raw
            first = False

    def items_lookup_batch(self, chunk: int = 64) -> list:
        return self._lookup_batch(False, chunk)

    def items_lookup_and_delete_batch(self, chunk: int = 64) -> list:
        return self._lookup_batch(True, chunk)

    def items_update_batch(self, keys, values) -> None:
        """UPDATE_BATCH of these pairs (as BPF_ANY: batches take no NOEXIST/EXIST). BpfError
        on failure, e.g. E2BIG when the map fills up; the elements before it are stored."""
        keys, values = list(keys), list(values)
        if len(keys) != len(values):
            raise ValueError("keys and values differ in length")
        if not keys:
            return
        kb = b"".join(self._key.encode(k) for k in keys)
        vb = b"".join(self._encode_value(v) for v in values)
        count = ctypes.c_uint32(len(keys))
        ret = self._lib.bpf_map_update_batch(self.fd, kb, vb, count)
        if ret < 0:
            raise self._error(-ret, "BPF_MAP_UPDATE_BATCH", message=(
                f"{errno_name(-ret)}: the batch stopped after {count.value} of {len(keys)} "
                "elements"))

    def items_delete_batch(self, keys=None) -> None:
        """Delete these keys (all keys when None) with DELETE_BATCH. A missing key is
        KeyError; the keys before it are deleted."""
        keys = list(self._raw_keys()) if keys is None else [self._key.encode(k) for k in keys]
        if not keys:
            return
        count = ctypes.c_uint32(len(keys))
        ret = self._lib.bpf_map_delete_batch(self.fd, b"".join(keys), count)
        if ret == -errno.ENOENT:
            raise KeyError(self._key.decode(keys[count.value]))
        if ret < 0:
            raise self._error(-ret, "BPF_MAP_DELETE_BATCH")


@dataclass(frozen=True)
class MapInfo:
    """What BPF_OBJ_GET_INFO_BY_FD says about a map."""
    id: int
    name: str
    type: object                # a BpfMapType (or the number, for a type bpfemu has no name for)
    key_size: int
    value_size: int
    max_entries: int
    flags: int


def _name(info) -> str:
    return info.name.decode("latin-1")


def _type_name(map_type) -> str:
    try:
        return BpfMapType(map_type).name
    except ValueError:
        return f"map type {map_type}"


def _type_and_size(typ, size, what):
    if isinstance(typ, int) and not isinstance(typ, bool):
        return None, typ
    if typ is None:
        if size is None:
            raise ValueError(f"give a {what} type or {what}_size")
        return None, size
    if isinstance(typ, type) and issubclass(typ, (ctypes._SimpleCData, ctypes.Structure,
                                                  ctypes.Union, ctypes.Array)):
        return typ, ctypes.sizeof(typ)
    if hasattr(typ, "sizeof"):
        return typ, typ.sizeof()
    raise TypeError(f"{what} type must be a ctypes type, a construct Struct or a size")


def _info(lib: LibBpf, fd: int) -> bpf_map_info:
    info = bpf_map_info()
    n = ctypes.c_uint32(ctypes.sizeof(info))
    ret = lib.bpf_map_get_info_by_fd(fd, info, n)
    if ret < 0:
        raise BpfError.with_context(-ret, f"{errno_name(-ret)}: not a usable map",
                                    cmd="BPF_OBJ_GET_INFO_BY_FD", fd=fd)
    return info


def _as_number(v):
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, ctypes._SimpleCData) and isinstance(v.value, int):
        return v.value
    if isinstance(v, (bytes, bytearray)):
        return int.from_bytes(v, "little")
    raise TypeError(f"cannot add up values of type {type(v).__name__}")


def _fold(values: list, fn, what: str):
    """fn (sum or max) over per-CPU values: numbers, or ctypes Structures field by field."""
    first = values[0]
    if isinstance(first, ctypes.Structure):
        out = type(first)()
        for spec in type(first)._fields_:
            name = spec[0]
            total = fn(_as_number(getattr(v, name)) for v in values)
            setattr(out, name, total)
            if getattr(out, name) != total:
                raise OverflowError(f"the {what} of field {name!r} ({total}) does not fit in "
                                    f"the field")
        return out
    return fn(_as_number(v) for v in values)
