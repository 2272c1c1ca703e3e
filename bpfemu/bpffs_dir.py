"""A bpffs whose tree is a real directory: `bpfemu run --pin-root DIR` on a directory we may
write.

The pin root and everything under it are ordinary files of the host: a subdirectory is a
real directory (the client makes it with mkdir(2)), and a pin is an empty regular file that
OBJ_PIN creates, mode 0600 & ~umask as bpf_obj_do_pin() gives it. OBJ_GET finds the object
from the inode the path leads to, so ls, mv, ln, rm, mkdir and rmdir made by the client with
ordinary file calls act on the pins as they would on a bpffs, and nothing is mounted.

A pin holds a reference on its object until its inode's last link is gone (the kernel
drops it when it evicts the inode): an inotify watch on each pin file reports that
(IN_DELETE_SELF, sent when the link count reaches zero, then IN_IGNORED). Events are read
before every lookup that could see the dead pin (OBJ_PIN, OBJ_GET, the id commands through
Emulator.reap_closed_fds), so a map whose last pin is removed and which has no fd left is
gone for the next such call, as on the kernel. Nothing here runs per element call. Facts:
docs/seccomp.md section 5.
"""
import ctypes
import errno
import os
import stat

from .bpffs import AT_FDCWD, BpfFs
from .errors import BpfError
from .fdtable import inotify_events

BPF_FS_MAGIC = 0xCAFE4A11
_IN_DELETE_SELF, _IN_UNMOUNT, _IN_IGNORED, _IN_Q_OVERFLOW = 0x400, 0x2000, 0x8000, 0x4000
_libc = ctypes.CDLL(None, use_errno=True)


class _StatFs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_long * 15)]


def pin_dir_unusable(path: str) -> str | None:
    """None when path can be a pin directory (a directory we may create files in that is not
    itself on a real bpffs, where no regular file can be made), else why not. Calls statfs():
    never from a process whose statfs() is served by its own supervisor (in-process)."""
    if not os.path.isdir(path):
        return f"{path} is not a directory"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{path} is not writable"
    buf = _StatFs()
    if _libc.statfs(os.fsencode(path), ctypes.byref(buf)) == 0 and \
            buf.f_type & 0xFFFFFFFF == BPF_FS_MAGIC:
        return f"{path} is a real bpffs"
    return None


def pin_tree(root: str, pin_keys) -> tuple:
    """A pin directory now: ({directory: mode} below root, {pin path: (st_dev, st_ino)} of
    the files whose inodes are in pin_keys), paths absolute."""
    dirs, pins = {}, {}
    for dirpath, dirnames, files in os.walk(root):
        for name in dirnames:
            p = os.path.join(dirpath, name)
            try:
                dirs[p] = stat.S_IMODE(os.lstat(p).st_mode)
            except OSError:
                pass
        for name in files:
            p = os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in pin_keys:
                pins[p] = (st.st_dev, st.st_ino)
    return dirs, pins


class _Pin:
    __slots__ = ("obj", "watch", "path")

    def __init__(self, obj, watch: int, path: str):
        self.obj = obj
        self.watch = watch
        self.path = path            # where it was made (it may have moved since)


class DirBpfFs(BpfFs):
    """The emulated bpffs mounted at ``root``, a real directory whose files are the pins."""

    def __init__(self, root: str, put=None):
        super().__init__(root, put)
        self._real_root = os.path.realpath(self.root)
        self._pins: dict[tuple, _Pin] = {}          # (st_dev, st_ino) of the file -> pin
        self._by_wd: dict[int, tuple] = {}
        ifd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if ifd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.inotify_fd = ifd

    def __len__(self) -> int:
        return len(self._pins)

    # --- path resolution: the host's, from the caller's cwd or path_fd --------------------

    def _resolve(self, path: str, dirfd: int) -> str:
        """The absolute path to hand to the host (ENOENT for "", ENAMETOOLONG checked)."""
        if path == "":
            raise BpfError(errno.ENOENT)
        raw = self._absolute(path, dirfd)
        self._split(raw)                        # ENAMETOOLONG
        return raw

    def _ours(self, path: str) -> bool:
        """Whether an existing path lies on this bpffs (symlinks followed)."""
        real = os.path.realpath(path)
        return real == self._real_root or real.startswith(self._real_root.rstrip("/") + "/")

    # --- what OBJ_PIN and OBJ_GET need ----------------------------------------------------

    def pin(self, path: str, dirfd: int, obj) -> None:
        """bpf_obj_do_pin(): user_path_create() (ENOENT, ENOTDIR, EEXIST), EPERM when the
        directory is not on this bpffs, then the file (vfs_mkobj); the caller has taken the
        reference the pin keeps."""
        self.reap()
        raw = self._resolve(path, dirfd)
        stripped = raw.rstrip("/")
        parent, name = stripped.rsplit("/", 1) if stripped else ("", "")
        parent = parent or "/"
        st = self._real_stat(parent)
        if not stat.S_ISDIR(st.st_mode):
            raise BpfError(errno.ENOTDIR)
        if name in ("", ".", ".."):             # "/" or a last "." / "..": not LAST_NORM
            raise BpfError(errno.EEXIST)
        full = parent.rstrip("/") + "/" + name
        if os.path.lexists(full):
            raise BpfError(errno.EEXIST)
        if raw.endswith("/"):                   # a non-existing "name/" asks for a directory
            raise BpfError(errno.ENOENT)
        if not self._ours(parent):              # dir->i_op != &bpf_dir_iops
            raise BpfError(errno.EPERM)
        # DEVIATION(bpffs): the pin is an empty regular file the supervisor makes: it can be
        # opened and read (Linux: EIO, or a BTF dump), moved or linked out of the root (Linux:
        # EXDEV) and still found by OBJ_GET; a new root has no maps.debug/progs.debug.
        mode = 0o600 & ~self._umask()
        try:
            fd = os.open(full, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                         | os.O_CLOEXEC, mode)
        except OSError as e:
            raise BpfError(e.errno) from None
        try:
            os.fchmod(fd, mode)                 # not our umask: the caller's
            self._chown_to_caller(fd)
            fst = os.fstat(fd)
            wd = _libc.inotify_add_watch(self.inotify_fd, f"/proc/self/fd/{fd}".encode(),
                                         _IN_DELETE_SELF)
            if wd < 0:
                err = ctypes.get_errno() or errno.ENOMEM
                os.unlink(full)
                raise BpfError(err)
        finally:
            os.close(fd)
        key = (fst.st_dev, fst.st_ino)
        self._pins[key] = _Pin(obj, wd, full)
        self._by_wd[wd] = key

    def _chown_to_caller(self, fd: int) -> None:
        """The file is the caller's (its fsuid and fsgid), as the kernel makes it, when we
        may give it away (a root supervisor serving an unprivileged tree)."""
        if self.proc is None or os.geteuid() != 0:
            return
        try:
            ids = {}
            with open(f"{self.proc}/status") as f:
                for line in f:
                    if line.startswith(("Uid:", "Gid:")):
                        ids[line[:3]] = int(line.split()[4])     # the fs id
            os.fchown(fd, ids["Uid"], ids["Gid"])
        except (OSError, KeyError, ValueError, IndexError):
            pass

    def get(self, path: str, dirfd: int):
        """bpf_obj_do_get(): the object pinned at the inode the path leads to (symlinks
        followed); EACCES for anything that is not a pin."""
        self.reap()
        raw = self._resolve(path, dirfd)
        st = self._real_stat(raw)
        pin = self._pins.get((st.st_dev, st.st_ino))
        if pin is None:                         # bpf_inode_type()
            raise BpfError(errno.EACCES)
        return pin.obj

    def is_on_bpffs(self, path: str, dirfd: int = AT_FDCWD) -> bool:
        """For statfs(): True for an existing path on this bpffs, False elsewhere; BpfError
        (ENOENT, ENOTDIR...) for a path that does not resolve."""
        raw = self._resolve(path, dirfd)
        if not self._ours(raw):
            return False                        # the host's filesystem answers
        self._real_stat(raw)
        return True

    def holds_file(self, path: str) -> bool:
        """For fstatfs(): the pin files and directories are this bpffs's (one removed since,
        shown with " (deleted)", still is, as on a bpffs)."""
        return self._ours(path)

    # --- pins whose last link is gone ----------------------------------------------------

    def reap(self) -> None:
        """Drop the pins whose files' last link was removed (their references go)."""
        while self.inotify_fd >= 0:
            try:
                data = os.read(self.inotify_fd, 65536)
            except BlockingIOError:
                return
            for wd, mask in inotify_events(data):
                if mask & _IN_Q_OVERFLOW:
                    self._reap_by_scan()
                elif mask & (_IN_DELETE_SELF | _IN_IGNORED | _IN_UNMOUNT):
                    key = self._by_wd.get(wd)
                    if key is not None:
                        self._drop(key)

    def _drop(self, key) -> None:
        pin = self._pins.pop(key)
        self._by_wd.pop(pin.watch, None)
        _libc.inotify_rm_watch(self.inotify_fd, pin.watch)    # EINVAL once IN_IGNORED came
        if self._put is not None:
            self._put(pin.obj)

    def _live_keys(self) -> set:
        """(st_dev, st_ino) of every file with a link under the root."""
        live = set()
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except OSError:
                    continue
                live.add((st.st_dev, st.st_ino))
        return live

    def _reap_by_scan(self) -> None:
        """After an event queue overflow: the pins no file under the root links to any more
        (one moved out of the root counts as gone)."""
        live = self._live_keys()
        for key in [k for k in self._pins if k not in live]:
            self._drop(key)

    def tree(self):
        """What a trace of the tree needs of the directory now (pin_tree)."""
        return pin_tree(self.root, self._pins)

    # --- the user's side of the filesystem: the host's calls ------------------------------

    def _host_path(self, path: str) -> str:
        self._node_at(path)                     # ValueError when not under the root
        return path

    def mkdir(self, path: str, mode: int = 0o700) -> None:
        os.mkdir(self._host_path(path), mode)

    def unlink(self, path: str) -> None:
        os.unlink(self._host_path(path))
        self.reap()

    def rmdir(self, path: str) -> None:
        os.rmdir(self._host_path(path))

    def rename(self, path: str, new: str) -> None:
        os.rename(self._host_path(path), self._host_path(new))
        self.reap()                             # a pin it replaced

    def link(self, path: str, new: str) -> None:
        os.link(self._host_path(path), self._host_path(new))

    def listdir(self, path: str | None = None) -> list:
        return sorted(os.listdir(self._host_path(path or self.root)))

    def exists(self, path: str) -> bool:
        try:
            return os.path.lexists(self._host_path(path))
        except ValueError:
            return False

    def clear(self) -> None:
        """Unmount: every pin file made here is removed and its reference dropped (the
        directories the clients made stay)."""
        if self.inotify_fd < 0:
            return
        self.reap()
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                p = os.path.join(dirpath, name)
                try:
                    st = os.lstat(p)
                    if (st.st_dev, st.st_ino) in self._pins:
                        os.unlink(p)
                except OSError:
                    pass
        self.reap()
        for key in list(self._pins):            # hard links left, or moved out of the root
            self._drop(key)
        if self.inotify_fd >= 0:
            os.close(self.inotify_fd)
            self.inotify_fd = -1
