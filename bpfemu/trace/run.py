"""Running scenarios: recording them on a backend, and finding them by name.

``record_scenario`` is what ``bpfemu record``, ``bpfemu conform`` and
scripts/record_corpus.py use: it picks the backend, pins the process to CPU 0 (or sets the
emulator's CPU), gives pin scenarios a bpffs (a private mount on the live kernel), records,
and records again when a scenario reports interference from other processes.
"""
import contextlib
import ctypes
import importlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

from ..emulator import Emulator
from ..host import HostKernel
from ..profile import host_possible_cpus
from .recorder import Recorder
from .scenarios import SCENARIOS, Interference

REPO = Path(__file__).resolve().parents[2]


def abi_dir() -> Path:
    """The ABI data (layouts, golden traces): the package's own copy, bpfemu/abi/, when
    bpfemu is installed (setup.py ships the repository's abi/ there), else the source
    tree's abi/ (an editable install or a checkout on sys.path)."""
    import importlib.resources
    shipped = importlib.resources.files("bpfemu") / "abi"
    if shipped.is_dir():
        return Path(str(shipped))
    return REPO / "abi"


GOLDEN_DIR = abi_dir() / "linux-6.18" / "traces"


class ScenarioError(Exception):
    """A scenario that cannot be found or loaded (one line)."""


def load_scenario(spec: str):
    """A built-in name, ``module:function`` or ``path/to/file.py:function`` -> (name, callable)."""
    if spec in SCENARIOS:
        return spec, SCENARIOS[spec]
    if ":" not in spec:
        raise ScenarioError(f"{spec}: not a built-in scenario ({', '.join(SCENARIOS)}) "
                            "and not module:function or file.py:function")
    where, _, fname = spec.rpartition(":")
    if where.endswith(".py") or os.sep in where:
        if not os.path.exists(where):
            raise ScenarioError(f"{where}: no such file")
        modspec = importlib.util.spec_from_file_location(Path(where).stem, where)
        mod = importlib.util.module_from_spec(modspec)
        try:
            modspec.loader.exec_module(mod)
        except Exception as e:
            raise ScenarioError(f"{where}: cannot load: {type(e).__name__}: {e}") from None
    else:
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())     # as `python -m` would find it
        try:
            mod = importlib.import_module(where)
        except ImportError as e:
            raise ScenarioError(f"{where}: cannot import: {e}") from None
    fn = getattr(mod, fname, None)
    if not callable(fn):
        raise ScenarioError(f"{spec}: {where} has no function {fname!r}")
    return fname, fn


_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def private_bpffs(root: str | None = None):
    """A bpffs mounted for the duration (at root, or at a new temporary directory)."""
    created = False
    if root is None:
        root = tempfile.mkdtemp(prefix="bpfemu-bpffs-")
        created = True
    elif not os.path.isdir(root):
        os.makedirs(root)
        created = True
    if _libc.mount(b"bpf", os.fsencode(root), b"bpf", 0, None) != 0:
        err = ctypes.get_errno()
        if created:
            os.rmdir(root)
        raise OSError(err, f"cannot mount a bpffs at {root}: {os.strerror(err)}")
    try:
        yield root
    finally:
        _libc.umount2(os.fsencode(root), 2)     # MNT_DETACH
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(root)


def make_backend(kind: str, cpus: int | None = None, bpffs_root: str | None = None,
                 profile: str | None = None):
    if kind == "kernel":
        if cpus is not None and cpus != host_possible_cpus():
            raise ScenarioError(f"--cpus {cpus}: the live kernel has {host_possible_cpus()} "
                                "possible CPUs")
        return HostKernel()
    if kind == "emulator":
        kw = {"bpffs_root": bpffs_root} if bpffs_root else {}
        kw["profile"] = profile
        try:
            return Emulator(nr_cpus=cpus, seed=0, **kw)
        except TypeError:
            return Emulator(nr_cpus=cpus, seed=0, profile=profile)
    raise ScenarioError(f"unknown backend {kind!r} (kernel or emulator)")


def record_scenario(spec, path, *, backend: str = "kernel", cpus: int | None = None,
                    bpffs_root: str | None = None, retries: int = 5,
                    profile: str | None = None) -> str:
    """Record one scenario into ``path``; returns its name. The process is pinned to CPU 0
    for the run (the affinity is restored afterwards)."""
    name, fn = load_scenario(spec) if isinstance(spec, str) else (spec.__name__, spec)
    needs_bpffs = getattr(fn, "needs_bpffs", False)
    saved = os.sched_getaffinity(0)
    with contextlib.ExitStack() as stack:
        root = bpffs_root
        if backend == "kernel" and (needs_bpffs or bpffs_root):
            root = stack.enter_context(private_bpffs(bpffs_root))
        for attempt in range(retries):
            be = make_backend(backend, cpus, root, profile)
            try:
                os.sched_setaffinity(0, {0})
            except OSError:
                pass
            rec = Recorder(be, path, scenario=name,
                           bpffs_root=root if (needs_bpffs or bpffs_root) else None)
            if isinstance(be, Emulator):
                be.cpu = 0
            try:
                fn(rec)
                rec.close_all_maps()
                return name
            except Interference:
                if attempt == retries - 1:
                    raise
            finally:
                rec.finish()
                if isinstance(be, Emulator):
                    be.close_all()
                os.sched_setaffinity(0, saved)
    return name
