"""--trace: the served calls of a supervised tree, in bpfemu's trace format (abi/README.md).

The Recorder (bpfemu/trace/recorder.py) does the work: it decodes each attr, snapshots every
buffer behind its pointers before and after the call, and writes the record. Here it reads
the calling thread's memory instead of ours, finds maps from the caller's fd numbers (fds of
different processes of the tree share numbers, so nothing is cached between calls), and
records the CPU of the caller.

Only the map commands are recorded; program and BTF commands (PROG_LOAD, BTF_LOAD, their ids
and infos) are served but left out, as are the closes of their fds, so a trace of a tree that loads objects replays
its map calls only.
"""
import weakref

from ..trace.decode import BATCH_CMDS, ELEM_CMDS, MapMeta, render_call
from ..uapi.consts import BpfCmd as C
from ..trace.probe import ProcessProbe
from ..trace.recorder import Recorder
from ..bpffs_dir import DirBpfFs
from ..errors import BpfError


# Calls that see the pin directory (paths) or a pin's lifetime (ids of a map a pin held).
_PIN_VIEW_CMDS = frozenset({C.BPF_OBJ_PIN, C.BPF_OBJ_GET, C.BPF_MAP_GET_NEXT_ID,
                            C.BPF_MAP_GET_FD_BY_ID})


# DEVIATION(trace-objects): --trace leaves program and BTF commands out (TRACED_COMMANDS):
# recording them needs the kinds and ids of program/BTF fds in the callers' own fd tables.
TRACED_COMMANDS = frozenset({C.BPF_MAP_CREATE, C.BPF_MAP_FREEZE, C.BPF_MAP_GET_NEXT_ID,
                             C.BPF_MAP_GET_FD_BY_ID, C.BPF_OBJ_PIN, C.BPF_OBJ_GET,
                             C.BPF_OBJ_GET_INFO_BY_FD}) | ELEM_CMDS | BATCH_CMDS


class _CallerProbe(ProcessProbe):
    """The calling thread's memory; its mappings from /proc/<tid>/maps."""

    def maps(self):
        out = []
        try:
            with open(f"/proc/{self.mem.pid}/maps") as f:
                for line in f:
                    rng, perms = line.split(None, 2)[:2]
                    s, e = rng.split("-")
                    out.append((int(s, 16), int(e, 16), perms[1] == "w", perms[0] == "r"))
        except OSError:
            pass
        return out


class _Served:
    """The backend the Recorder calls: the supervisor serving the current caller."""

    def __init__(self, supervisor):
        self.backend = supervisor.emu            # the Recorder's header: an emulator
        self.supervisor = supervisor

    def bpf(self, cmd, attr, size):
        return self.supervisor.call(cmd, attr, size, False)


def _meta(m) -> MapMeta:
    return MapMeta(m.map_type, m.key_size, m.value_size, m.max_entries, m.map_flags, m.id)


class ServedCallTrace(Recorder):
    """Records every call the supervisor serves to path."""

    def __init__(self, supervisor, path, backend=None):
        caller = supervisor.caller
        super().__init__(backend or _Served(supervisor), path, mem=caller.mem,
                         header_extra={"supervised": True})
        self.probe = _CallerProbe(caller.mem)
        self.caller = caller
        self._tokens = weakref.WeakKeyDictionary()     # open file -> its token
        self._next_token = 1
        # A real pin directory as the trace has shown it so far (fs records).
        self._dirs: dict[str, int] = {}                 # directory -> mode
        self._pins: dict[str, tuple] = {}               # pin path -> (st_dev, st_ino)

    def bpf(self, cmd, attr, size):
        self.maps.clear()                        # fd numbers are per process
        view = self._pin_view() if cmd in _PIN_VIEW_CMDS else None
        if view is None:
            return super().bpf(cmd, attr, size)
        self._sync_pin_dir(view)
        ret = super().bpf(cmd, attr, size)
        if cmd == C.BPF_OBJ_PIN and ret == 0:
            self._pinned(attr)                   # made by the call: in its record
        return ret

    # --- the client's own changes to a real pin directory, as fs records -------------------

    def _pin_view(self):
        """(directories, pins) of a real pin directory now (bpffs_dir.pin_tree), or None
        when the pins are not files."""
        fs = getattr(self.supervisor.emu, "bpffs", None)
        return fs.tree() if isinstance(fs, DirBpfFs) else None

    def _pinned(self, uattr: int) -> None:
        """The trace's view learns the pin the OBJ_PIN just made."""
        self._pins.update(self.supervisor.emu.bpffs.tree()[1])

    def _sync_pin_dir(self, view) -> None:
        """fs records for what the tree did to the pin directory with file calls since the
        last look (directories made or removed; pins removed, moved or linked: a pin is its
        file's inode), so that a replay's bpffs sees what OBJ_PIN and OBJ_GET saw."""
        # DEVIATION(bpffs): only the net change since the last look is recorded, as the
        # fewest file calls that make it (pins that swapped names in between: renames
        # through a temporary name), not the calls the tree made.
        dirs, pins = view
        for path in sorted(set(dirs) - set(self._dirs)):                  # parents first
            self._dirs[path] = dirs[path]
            self._fs_record("mkdir", path, mode=dirs[path])
        was, now = {}, {}
        for path, key in self._pins.items():
            was.setdefault(key, set()).add(path)
        for path, key in pins.items():
            if key in was:                       # a pin the trace has shown
                now.setdefault(key, set()).add(path)
        unlinks, moves = [], []
        for key, old in was.items():
            new = now.get(key, set())
            keep, gone = old & new, sorted(old - new)
            for path in sorted(new - old):
                if keep:
                    moves.append(("link", min(keep), path))
                else:
                    moves.append(("rename", gone.pop(0), path))
                keep.add(path)
            unlinks += gone
        # Names that went first: a move may take the name of a pin that went.
        for path in sorted(unlinks):
            del self._pins[path]
            self._fs_record("unlink", path)
        for op, path, to in _in_order(moves, set(self._pins) | set(pins) | set(dirs)):
            self._pins[to] = self._pins[path]
            if op == "rename":
                del self._pins[path]
            self._fs_record(op, path, to=to)
        for path in sorted(set(self._dirs) - set(dirs), reverse=True):    # children first
            del self._dirs[path]
            self._fs_record("rmdir", path)

    def _fs_record(self, op: str, path: str, mode: int | None = None,
                   to: str | None = None) -> None:
        rec = {"seq": self.seq, "call": "fs", "op": op, "path": path, "cpu": 0,
               "ret": 0, "errno": None}
        if mode is not None:
            rec["mode"] = mode
        if to is not None:
            rec["to"] = to
        rec["strace"] = render_call(rec)
        self.seq += 1
        self.writer.write(rec)

    def _fd_file(self, fd: int):
        """The token of the open file behind the caller's fd: fd numbers are per process,
        and dup(), fork() and SCM_RIGHTS give one open file many numbers, so a replay
        follows files by token (abi/README.md)."""
        try:
            f = self.caller.fds.lookup_any(fd)
        except BpfError:
            return None
        return self._token(f)

    def _token(self, f) -> int:
        token = self._tokens.get(f)
        if token is None:
            token = self._tokens[f] = self._next_token
            self._next_token += 1
        return token

    def released(self, f) -> None:
        """A close record for an open map file the tree let go of (its last fd anywhere
        closed): the number it was installed with, and its file token."""
        self._close_record(min(f.fds) if f.fds else -1, self._token(f))

    def _close_record(self, fd: int, token: int) -> None:
        rec = {"seq": self.seq, "call": "close", "fd": fd, "kind": "map", "cpu": 0,
               "ret": 0, "errno": None, "file": token}
        rec["strace"] = render_call(rec)
        self.seq += 1
        self.writer.write(rec)

    def current_cpu(self) -> int:
        return self.caller.current_cpu() % self.nr_cpus

    def _lookup_map(self, fd: int):
        try:
            f = self.caller.fds.lookup(fd)
        except BpfError:
            return None
        meta = _meta(f.obj)
        self.maps[fd] = meta
        return meta

    def _result_map_meta(self, fd: int):
        return self._lookup_map(fd)

    def _fd_kind(self, fd: int) -> str:
        if self._lookup_map(fd) is not None:
            return "map"
        return "file" if self.caller.fds.is_open(fd) else "closed"


def _in_order(moves: list, names: set) -> list:
    """The moves (op, path, to) in an order that replays them one at a time: a move to a
    name that another pin still has to leave (by a rename) waits for it; renames that form a
    cycle (pins that swapped names) go through a temporary name, one not in names."""
    pending, ordered = list(moves), []
    while pending:
        leaving = {path for op, path, _to in pending if op == "rename"}
        ready = [m for m in pending if m[2] not in leaving]
        if not ready:                                # a cycle of renames: break it
            op, path, to = next(m for m in pending if m[0] == "rename")
            n = 0
            while f"{path}.bpfemu-swap{n}" in names:
                n += 1
            tmp = f"{path}.bpfemu-swap{n}"
            names.add(tmp)
            ordered.append(("rename", path, tmp))
            pending[pending.index((op, path, to))] = ("rename", tmp, to)
            continue
        for m in ready:
            ordered.append(m)
            pending.remove(m)
    return ordered
