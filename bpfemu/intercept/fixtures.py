"""pytest fixtures for interception (registered by bpfemu.pytest_plugin).

- ``bpf_intercepted``: every bpf() of the test's own process (ctypes, cffi, libbpf.so.1
  loaded with ctypes) is served by ``bpf_emulator`` for the length of the test. The first
  use leaves this process filtered for the rest of its life (calls outside a test go on to
  the kernel, through a round trip to the supervisor thread): see inprocess.py.
- ``bpf_run``: runs commands under `bpfemu run` served by the test's own ``bpf_emulator``,
  with the supervisor in a thread of the test process, so that the test prepares maps before
  the command starts and inspects what it left, by id, by pin path or through ``Map``. Its
  bpffs is a real pin directory made for the test (``bpf_run.pin_root``), as with
  `bpfemu run --pin-root DIR`: the commands' own mkdir, ls, mv and rm act on the pins.
"""
import os
import shutil
import subprocess
import tempfile

import pytest

from ..bpffs import BpfFs
from ..bpffs_dir import DirBpfFs, pin_dir_unusable
from ..libbpf import LibBpf
from ..maps_api import Map
from .inprocess import InterceptionError, intercepted
from .run import Background


@pytest.fixture
def bpf_intercepted(bpf_emulator):
    """The test's Emulator, serving every bpf() this process makes during the test."""
    try:
        with intercepted(bpf_emulator) as emu:
            yield emu
    except InterceptionError as e:
        pytest.skip(f"in-process interception is not possible here: {e}")


class SharedEmulator:
    """Commands served by the test's Emulator (``emu``), and the test's handles on its maps."""

    def __init__(self, emu, pin_root: str | None = None):
        """pin_root: a directory to be the emulator's bpffs, as a real pin directory (if it
        cannot be one, bpffs_dir.pin_dir_unusable, pins live in the emulator's own tree
        there); None keeps the emulator's bpffs."""
        self.emu = emu
        self.lib = LibBpf(emu)
        self._started: list[Background] = []
        if pin_root is not None:
            if pin_dir_unusable(pin_root) is None:
                emu.bpffs = DirBpfFs(pin_root, put=emu._unpinned)
            else:
                emu.bpffs = BpfFs(pin_root, put=emu._unpinned)
        self.pin_root = emu.bpffs.root

    def use_emulated_pin_tree(self, root: str = "/sys/fs/bpf") -> None:
        """Pins at root live in the emulator's own tree (only bpf() sees them), for a
        client that pins under a fixed path such as /sys/fs/bpf. Before anything is pinned."""
        self._unmount()
        self.emu.bpffs = BpfFs(root, put=self.emu._unpinned)
        self.pin_root = root

    def run(self, cmd: list, *, timeout: float | None = 300, **popen_kw) -> subprocess.CompletedProcess:
        """Run cmd (and its tree) to the end; stdout and stderr captured as text."""
        popen_kw.setdefault("stdout", subprocess.PIPE)
        popen_kw.setdefault("stderr", subprocess.PIPE)
        popen_kw.setdefault("text", True)
        bg = self.start(cmd, **popen_kw)
        out, err = bg.proc.communicate(timeout=timeout)
        code = bg.wait(timeout)
        return subprocess.CompletedProcess(cmd, code, out, err)

    def start(self, cmd: list, **popen_kw) -> Background:
        """Start cmd; the test goes on while it runs. ``.wait()`` for its exit status."""
        bg = Background(cmd, self.emu, **popen_kw)
        self._started.append(bg)
        return bg

    def map_by_id(self, map_id: int, key_type=None, value_type=None) -> Map:
        """A Map (an fd of the test's own) on the emulated map with this id."""
        fd = self.lib.bpf_map_get_fd_by_id(map_id)
        if fd < 0:
            raise KeyError(map_id)
        return Map.open(self.emu, fd, key_type, value_type, owns_fd=True)

    def map_by_pin(self, path: str, key_type=None, value_type=None) -> Map:
        """A Map on the map pinned at path on the emulated bpffs."""
        fd = self.lib.bpf_obj_get(path)
        if fd < 0:
            raise FileNotFoundError(path)
        return Map.open(self.emu, fd, key_type, value_type, owns_fd=True)

    def map_ids(self) -> list:
        self.emu.reap_closed_fds()
        return sorted(self.emu.map_idr.objs)

    def close(self) -> None:
        for bg in self._started:
            if bg.listener >= 0:
                bg.kill()
        self._unmount()

    def _unmount(self) -> None:
        if isinstance(self.emu.bpffs, DirBpfFs):
            with self.emu.lock:
                self.emu.bpffs.clear()          # the pin files go, their references too


@pytest.fixture
def bpf_run(bpf_emulator):
    """Run commands served by the test's own Emulator (``bpf_run.emu``), its bpffs a real
    pin directory made for the test (``bpf_run.pin_root``)."""
    root = tempfile.mkdtemp(prefix="bpfemu-pins-")
    os.chmod(root, 0o777)                       # a command run as another user pins there too
    shared = SharedEmulator(bpf_emulator, pin_root=root)
    try:
        yield shared
    finally:
        shared.close()
        shutil.rmtree(root, ignore_errors=True)
