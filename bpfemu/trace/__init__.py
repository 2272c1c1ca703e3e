"""Record bpf() calls with their user memory, replay them onto any backend, and diff.

- ``Recorder(backend, path)``: a backend that forwards and records every call.
- ``replay(path, backend)``: recreate each call's memory, run it, compare; a ReplayReport.
- ``open_trace(path)``: read and validate a trace (TraceError on bad input).
- ``dump(path)``: the strace-style listing.

The format is specified in abi/README.md.
"""
from .decode import MapMeta, render_call
from .format import FORMAT_VERSION, Header, Trace, TraceError, open_trace, read_all
from .recorder import Recorder, set_cpu
from .replay import Difference, ReplayArena, ReplayReport, replay


def dump(path, out=None, *, bytes_limit: int | None = 16, warn=None) -> int:
    """Print the strace-style listing of a trace; returns the number of records. Problems
    found (a truncated trace) are listed after it, and each is passed to warn() too."""
    import sys
    out = out or sys.stdout
    t = open_trace(path)
    h = t.header
    out.write(f"# {t.path}: bpfemu trace v{h.version}, {h.backend} {h.kernel_release} "
              f"({h.arch}), {h.possible_cpus} possible CPUs, recorded by {h.recorder} "
              f"{h.recorder_version}" + (f", scenario {h.scenario}" if h.scenario else "") + "\n")
    n = 0
    for n, rec in t.records():
        out.write(f"{rec.get('seq', n - 1):6d} cpu{rec.get('cpu', '?')} {render_call(rec)}\n")
    for w in t.warnings:
        out.write(f"# warning: {w}\n")
        if warn is not None:
            warn(w)
    return n


__all__ = ["Recorder", "replay", "dump", "open_trace", "read_all", "Trace", "TraceError",
           "Header", "ReplayReport", "Difference", "ReplayArena", "MapMeta", "render_call",
           "set_cpu", "FORMAT_VERSION"]
