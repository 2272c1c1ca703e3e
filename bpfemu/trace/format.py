"""The bpfemu trace format (version 1): JSON Lines, optionally gzip-compressed.

The specification is abi/README.md. This module is the only code that knows how a trace
looks on disk: ``TraceWriter`` writes it (one flushed line per call), ``open_trace`` reads
and validates it. Everything else works on ``Header`` and plain record dicts.

Reading is strict about what it cannot trust and lenient about an interrupted recording:

- invalid JSON in the middle of a file, a missing or unknown format version, a trace from
  another architecture, a record without its required fields: ``TraceError``, one line that
  names the file and the record;
- a last line cut short (the recorder died mid-write), a gzip stream without its end, a
  trace without its end line: a warning (``Trace.warnings``); every complete record is used.
"""
import errno as _errno
import gzip
import json
import os
import re
import zlib
from dataclasses import dataclass, field

from ..errors import ENOTSUPP

FORMAT_NAME = "bpfemu-trace"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
# The emulator models the x86_64 ABI (little-endian, 64-bit pointers, syscall layout).
SUPPORTED_ARCHES = ("x86_64",)

_EXTRA_ERRNOS = {"ENOTSUPP": ENOTSUPP}


class TraceError(Exception):
    """Bad trace input. ``str(e)`` is one line: file, record, what is wrong."""

    def __init__(self, path, record, message):
        self.path, self.record, self.message = path, record, message
        where = f"{path}" if record is None else f"{path}: record {record}"
        super().__init__(f"{where}: {message}")


def errno_name(err: int) -> str:
    if err == ENOTSUPP:
        return "ENOTSUPP"
    return _errno.errorcode.get(err, f"E{err}")


def errno_number(name: str) -> int:
    if name in _EXTRA_ERRNOS:
        return _EXTRA_ERRNOS[name]
    n = getattr(_errno, name, None)
    if isinstance(n, int):
        return n
    if name.startswith("E") and name[1:].isdigit():
        return int(name[1:])
    raise ValueError(f"unknown errno name {name!r}")


def result_fields(ret: int) -> tuple[int, str | None]:
    """A backend's bpf()/close() result (fd/0 or -errno) as the record's (ret, errno)."""
    if ret < 0:
        return -1, errno_name(-ret)
    return ret, None


def record_result(rec: dict) -> int:
    """The record's result in the backend convention: fd/0, or -errno."""
    if rec.get("errno"):
        return -errno_number(rec["errno"])
    return rec["ret"]


@dataclass
class Header:
    """The first line of a trace."""
    kernel_release: str
    arch: str
    page_size: int
    possible_cpus: int
    recorder: str = "bpfemu"
    recorder_version: str = ""
    backend: str = "kernel"                 # what answered the calls: "kernel" or "emulator"
    scenario: str | None = None
    version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = {"format": FORMAT_NAME, "version": self.version,
             "kernel_release": self.kernel_release, "arch": self.arch,
             "page_size": self.page_size, "possible_cpus": self.possible_cpus,
             "recorder": {"name": self.recorder, "version": self.recorder_version},
             "backend": self.backend}
        if self.scenario is not None:
            d["scenario"] = self.scenario
        d.update(self.extra)
        return d

    @classmethod
    def from_json(cls, d: dict, path) -> "Header":
        if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
            raise TraceError(path, None, "not a bpfemu trace (the first line has no "
                             f"\"format\": \"{FORMAT_NAME}\")")
        version = d.get("version")
        if version not in SUPPORTED_VERSIONS:
            raise TraceError(path, None, f"unknown trace format version {version!r} "
                             f"(this bpfemu reads version {', '.join(map(str, SUPPORTED_VERSIONS))})")
        known = {"format", "version", "kernel_release", "arch", "page_size", "possible_cpus",
                 "recorder", "backend", "scenario"}
        rec = d.get("recorder") or {}
        if not isinstance(rec, dict):
            raise TraceError(path, None, "header field \"recorder\" must be an object")
        h = cls(kernel_release=_field(d, "kernel_release", str, path),
                arch=_field(d, "arch", str, path),
                page_size=_field(d, "page_size", int, path),
                possible_cpus=_field(d, "possible_cpus", int, path),
                recorder=str(rec.get("name", "")), recorder_version=str(rec.get("version", "")),
                backend=str(d.get("backend", "kernel")), scenario=d.get("scenario"),
                version=version, extra={k: v for k, v in d.items() if k not in known})
        if h.arch not in SUPPORTED_ARCHES:
            raise TraceError(path, None, f"recorded on {h.arch}; bpfemu replays "
                             f"{', '.join(SUPPORTED_ARCHES)} traces only")
        if h.page_size != 4096:
            raise TraceError(path, None, f"page size {h.page_size} is not supported (4096 only)")
        if not 1 <= h.possible_cpus <= MAX_POSSIBLE_CPUS:
            raise TraceError(path, None, f"possible_cpus {h.possible_cpus} is not valid "
                             f"(1 to {MAX_POSSIBLE_CPUS}, the most CPUs Linux is built for)")
        return h


# CONFIG_NR_CPUS is at most 8192 on x86_64 (MAXSMP): a header asking for more is corrupt,
# and replaying it would size every per-CPU value for that many CPUs.
MAX_POSSIBLE_CPUS = 8192


def _field(d: dict, name: str, kind, path):
    """Header field name as kind (str or int), or a TraceError that names it."""
    if name not in d:
        raise TraceError(path, None, f"header lacks the field \"{name}\"")
    value = d[name]
    if kind is int:
        if type(value) is not int:
            raise TraceError(path, None, f"header field \"{name}\" must be an integer, "
                             f"not {json.dumps(value)[:40]}")
        return value
    if not isinstance(value, str):
        raise TraceError(path, None, f"header field \"{name}\" must be a string, "
                         f"not {json.dumps(value)[:40]}")
    return value


# --- records ------------------------------------------------------------------------------

# Filesystem operations a trace records (fs records), and those with a second path ("to").
FS_OPS = frozenset({"unlink", "mkdir", "rmdir", "rename", "link"})
FS_TWO_PATHS = frozenset({"rename", "link"})

_REQUIRED = {
    "bpf": ("seq", "cmd", "size", "attr", "ret", "errno"),
    "close": ("seq", "fd", "ret", "errno"),
    "fs": ("seq", "op", "path", "ret", "errno"),
}


_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*\Z").match


def _hex_ok(s) -> bool:
    return type(s) is str and _HEX(s) is not None


def _check_buf(b, what) -> str | None:
    if type(b) is not dict:
        return f"{what} is not an object"
    a = b.get("addr")
    if type(a) is not str or not a.startswith("0x"):
        return f"{what} has no hex \"addr\""
    for k in ("bytes", "before", "after"):
        if k in b and not _hex_ok(b[k]):
            return f"{what}.{k} is not a hex string"
    return None


def validate_record(rec, path, n) -> None:
    """TraceError unless rec is a well-formed version-1 record."""
    if type(rec) is not dict:
        raise TraceError(path, n, "a record must be a JSON object")
    call = rec.get("call")
    required = _REQUIRED.get(call)
    if required is None:
        raise TraceError(path, n, f"unknown call {call!r} (expected \"bpf\", \"close\" or \"fs\")")
    for k in required:
        if k not in rec:
            raise TraceError(path, n, f"{call} record lacks the field {k!r}")
    err = rec["errno"]
    if type(rec["ret"]) is not int or (err is not None and type(err) is not str):
        raise TraceError(path, n, "ret must be an integer and errno a name or null")
    if err is not None and err not in _KNOWN_ERRNOS:
        try:
            errno_number(err)
        except ValueError:
            raise TraceError(path, n, f"unknown errno {err!r}") from None
        _KNOWN_ERRNOS.add(err)
    if call == "bpf":
        if type(rec["cmd"]) is not int or type(rec["size"]) is not int:
            raise TraceError(path, n, "cmd and size must be integers")
        attr = rec["attr"]
        msg = _check_buf(attr, "attr")
        if msg is None and not ("before" in attr and "after" in attr):
            msg = "attr needs hex \"before\" and \"after\""
        if msg:
            raise TraceError(path, n, msg)
        for key, need in (("read", ("bytes",)), ("written", ("before", "after"))):
            for i, b in enumerate(rec.get(key, ())):
                msg = _check_buf(b, f"{key}[{i}]")
                if msg is None and not all(k in b for k in need):
                    msg = f"{key}[{i}] needs " + " and ".join(f"\"{k}\"" for k in need)
                if msg:
                    raise TraceError(path, n, msg)
    elif call == "fs" and rec["op"] not in FS_OPS:
        raise TraceError(path, n, f"unknown filesystem operation {rec['op']!r}")
    elif call == "fs" and rec["op"] in FS_TWO_PATHS and "to" not in rec:
        raise TraceError(path, n, f"{rec['op']} needs \"to\"")


_KNOWN_ERRNOS: set = set()


# --- writing ------------------------------------------------------------------------------

def _is_gzip_path(path) -> bool:
    return str(path).endswith(".gz")


class TraceWriter:
    """Writes a header, then one line per record, each flushed to the OS as it is written.

    With a ``.gz`` path every line ends a deflate block with Z_SYNC_FLUSH, so everything
    written so far can be decompressed after a crash (the reader reports the missing end).
    """

    def __init__(self, path, header: Header, *, fsync: bool = False):
        self.path = path
        self.fsync = fsync
        self._raw = open(path, "wb")
        if _is_gzip_path(path):
            self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6, mtime=0)
            self._out = self._gz
        else:
            self._gz = None
            self._out = self._raw
        self.count = 0
        self._write(header.to_json())

    def _write(self, obj) -> None:
        line = json.dumps(obj, separators=(",", ":")) + "\n"
        self._out.write(line.encode())
        if self._gz is not None:
            self._gz.flush(zlib.Z_SYNC_FLUSH)
        self._raw.flush()
        if self.fsync:
            os.fsync(self._raw.fileno())

    def write(self, rec: dict) -> None:
        self._write(rec)
        self.count += 1

    def close(self) -> None:
        if self._raw.closed:
            return
        self._write({"end": self.count})
        if self._gz is not None:
            self._gz.close()
        self._raw.close()


# --- reading ------------------------------------------------------------------------------

class Trace:
    """An opened trace: ``header``, and ``records()`` yielding (record number, dict).

    Record numbers count from 1 (the header is line 1, record n is line n + 1). Problems that
    do not make the records untrustworthy are collected in ``warnings``.
    """

    def __init__(self, path):
        self.path = str(path)
        self.warnings: list[str] = []
        self.ended = False
        self._lines = self._iter_lines()
        try:
            first = next(self._lines)
        except StopIteration:
            raise TraceError(self.path, None, "empty file (no header line)") from None
        line, complete = first
        if not complete:
            raise TraceError(self.path, None, "truncated header line")
        try:
            hdr = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TraceError(self.path, None, f"header is not valid JSON ({_short(e)})") from None
        self.header = Header.from_json(hdr, self.path)
        self._used = False

    def _iter_lines(self):
        """(bytes line without newline, complete?) pairs; gzip end-of-stream errors become
        a truncated final line."""
        try:
            raw = open(self.path, "rb")
        except OSError as e:
            raise TraceError(self.path, None, f"cannot open: {e.strerror}") from None
        self.raw = raw
        magic = raw.read(2)
        raw.seek(0)
        buf = gzip.GzipFile(fileobj=raw, mode="rb") if magic == b"\x1f\x8b" else raw
        try:
            while True:
                try:
                    line = buf.readline()
                except EOFError:
                    self.warnings.append(f"{self.path}: the compressed stream ends early "
                                         "(the recording was interrupted)")
                    return
                except (gzip.BadGzipFile, zlib.error, OSError) as e:
                    raise TraceError(self.path, None, f"corrupt gzip data ({e})") from None
                if not line:
                    return
                if line.endswith(b"\n"):
                    yield line[:-1], True
                else:
                    yield line, False
        finally:
            raw.close()

    def progress(self) -> float | None:
        """Fraction of the file read so far (by position in the file on disk), or None."""
        try:
            total = os.fstat(self.raw.fileno()).st_size
            return self.raw.tell() / total if total else None
        except (OSError, ValueError):
            return None

    def records(self):
        if self._used:
            raise RuntimeError("a Trace can be iterated once; open it again")
        self._used = True
        n = 0
        for line, complete in self._lines:
            if self.ended:
                if line.strip():
                    raise TraceError(self.path, n + 1, "data after the end line")
                continue
            if not line.strip():
                continue
            n += 1
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                if not complete:
                    self.warnings.append(f"{self.path}: record {n}: the last line is truncated "
                                         "(the recording was interrupted); ignored")
                    return
                raise TraceError(self.path, n, f"invalid JSON ({_short(e)})") from None
            if not complete:
                self.warnings.append(f"{self.path}: record {n}: the last line has no newline")
            if isinstance(rec, dict) and set(rec) == {"end"}:
                self.ended = True
                if rec["end"] != n - 1:
                    raise TraceError(self.path, n, f"the end line counts {rec['end']} records, "
                                     f"the file has {n - 1}")
                continue
            validate_record(rec, self.path, n)
            yield n, rec
        if not self.ended and not any("truncated" in w or "ends early" in w for w in self.warnings):
            self.warnings.append(f"{self.path}: no end line (the recording did not finish); "
                                 f"{n} records read")


def _short(e) -> str:
    return str(e).split("\n")[0]


def open_trace(path) -> Trace:
    return Trace(path)


def read_all(path) -> tuple[Header, list, list]:
    """(header, [records], warnings) of a whole trace."""
    t = Trace(path)
    recs = [r for _, r in t.records()]
    return t.header, recs, t.warnings
