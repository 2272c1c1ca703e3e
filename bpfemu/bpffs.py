"""An emulated bpf filesystem: where OBJ_PIN puts objects and OBJ_GET finds them.

The Emulator owns one, mounted (in its own namespace only) at ``root``, /sys/fs/bpf by
default. Paths are resolved like the kernel resolves them for the two commands
(user_path_create() for a pin, user_path_at() for a get): a relative path starts at the
caller's directory or at ``path_fd``; everything at or below ``root`` is looked up in the
emulated tree, everything else in the real filesystem, which is never modified. A path
outside the emulated tree is therefore "not on a bpffs" (EPERM for a pin, EACCES for a
get of something that exists).

Directories and unlinking are the user's side of a filesystem, so they are methods here
(``mkdir``, ``rmdir``, ``unlink``, ``listdir``), the counterparts of the real calls on a
real bpffs. A pin holds a reference on its map: unlinking the last pin of a map with no fd
left frees it.
"""
import errno
import os
import stat

from .errors import BpfError

AT_FDCWD = -100
NAME_MAX = 255


class BpfDir:
    __slots__ = ("entries", "mode")

    def __init__(self, mode: int = 0o700):
        self.entries: dict[str, object] = {}
        self.mode = stat.S_IFDIR | mode


class BpfObjFile:
    """An inode made by bpf_mkmap(): it holds a reference on the object until its last link
    goes (the kernel drops it when it evicts the inode)."""
    __slots__ = ("obj", "mode", "nlink")

    def __init__(self, obj, mode: int):
        self.obj = obj
        self.mode = stat.S_IFREG | mode
        self.nlink = 1


class BpfFs:
    def __init__(self, root: str = "/sys/fs/bpf", put=None):
        if not root.startswith("/"):
            raise ValueError("the bpffs root must be an absolute path")
        self.root = os.path.normpath(root)
        if self.root.startswith("//"):
            self.root = "/" + self.root.lstrip("/")
        self.top = BpfDir(0o777 | stat.S_ISVTX)
        self._put = put                      # called with an object whose pin went away
        # The calling task's /proc directory when it is another process's thread (under
        # interception: its cwd, fds and umask); None for this process.
        self.proc = None

    # --- path resolution ---------------------------------------------------------------

    def _absolute(self, path: str, dirfd: int) -> str:
        """The absolute path the kernel would start from, before normalisation."""
        if path.startswith("/"):
            return path
        try:
            proc = self.proc
            if dirfd == AT_FDCWD:
                base = os.getcwd() if proc is None else os.readlink(f"{proc}/cwd")
            else:
                if dirfd < 0:
                    raise BpfError(errno.EBADF)
                try:
                    st = os.fstat(dirfd) if proc is None else os.stat(f"{proc}/fd/{dirfd}")
                except OSError:
                    raise BpfError(errno.EBADF) from None
                if not stat.S_ISDIR(st.st_mode):
                    raise BpfError(errno.ENOTDIR)
                base = os.readlink(f"{proc or '/proc/self'}/fd/{dirfd}")
        except BpfError:
            raise
        except OSError as e:                    # a removed cwd / directory, or no /proc
            raise BpfError(errno.ENOENT if isinstance(e, FileNotFoundError) else e.errno) from None
        if not base.startswith("/"):            # "/path (deleted)" and such are gone
            raise BpfError(errno.ENOENT)
        return base.rstrip("/") + "/" + path

    def _split(self, abspath: str):
        """(components of the normalised path, trailing slash?)"""
        trailing = abspath.endswith("/") and abspath.strip("/") != ""
        # DEVIATION(bpffs): ".." is resolved lexically and symlinks are not followed; a
        # component longer than NAME_MAX is ENAMETOOLONG even after a missing directory.
        if any(len(os.fsencode(p)) > NAME_MAX for p in abspath.split("/")):
            raise BpfError(errno.ENAMETOOLONG)
        norm = os.path.normpath(abspath)
        parts = [p for p in norm.split("/") if p]
        return parts, trailing

    def _inside(self, parts) -> list | None:
        """Components below the root if the path is in the emulated tree, else None."""
        rparts = [p for p in self.root.split("/") if p]
        if parts[:len(rparts)] == rparts:
            return parts[len(rparts):]
        return None

    def _walk_dir(self, rel):
        """The emulated directory at rel (components under the root)."""
        node = self.top
        for name in rel:
            nxt = node.entries.get(name)
            if nxt is None:
                raise BpfError(errno.ENOENT)
            if not isinstance(nxt, BpfDir):
                raise BpfError(errno.ENOTDIR)
            node = nxt
        return node

    @staticmethod
    def _real_stat(path: str, follow: bool = True):
        try:
            return os.stat(path) if follow else os.lstat(path)
        except FileNotFoundError:
            raise BpfError(errno.ENOENT) from None
        except NotADirectoryError:
            raise BpfError(errno.ENOTDIR) from None
        except PermissionError:
            raise BpfError(errno.EACCES) from None
        except OSError as e:
            raise BpfError(e.errno) from None

    def _parent_and_name(self, path: str, dirfd: int):
        """user_path_create(): (emulated parent dir or None for a real one, name).
        ENOENT for "" or a missing parent, EEXIST for an existing name, "." or ".."."""
        if path == "":
            raise BpfError(errno.ENOENT)
        raw = self._absolute(path, dirfd)
        last = raw.rstrip("/").rsplit("/", 1)[-1] if raw.strip("/") else ""
        if last in ("", ".", ".."):             # "/" or a final "." / "..": not LAST_NORM
            parts, _ = self._split(raw.rstrip("/").rsplit("/", 1)[0] or "/")
            self._lookup_dir(parts)
            raise BpfError(errno.EEXIST)
        parts, trailing = self._split(raw)
        if self._inside(parts) == []:           # the mount point itself
            raise BpfError(errno.EEXIST)
        parent, name = parts[:-1], parts[-1]
        pdir = self._lookup_dir(parent)
        if pdir is not None:
            exists = name in pdir.entries
        else:
            try:
                self._real_stat("/" + "/".join(parts), follow=False)
                exists = True
            except BpfError as e:
                if e.errno != errno.ENOENT:
                    raise
                exists = False
        if exists:
            raise BpfError(errno.EEXIST)
        if trailing:                            # a non-existing "name/" asks for a directory
            raise BpfError(errno.ENOENT)
        return pdir, name

    def _lookup_dir(self, parts):
        """The directory with these absolute components: a BpfDir, or None for a real one."""
        rel = self._inside(parts)
        if rel is not None:
            return self._walk_dir(rel)
        # A real directory; a path that crosses into the emulated tree below it is handled
        # above, so this one is entirely outside.
        st = self._real_stat("/" + "/".join(parts))
        if not stat.S_ISDIR(st.st_mode):
            raise BpfError(errno.ENOTDIR)
        return None

    def _lookup(self, path: str, dirfd: int):
        """user_path_at(LOOKUP_FOLLOW): the emulated node, or None for a real file."""
        if path == "":
            raise BpfError(errno.ENOENT)
        raw = self._absolute(path, dirfd)
        parts, trailing = self._split(raw)
        rel = self._inside(parts)
        if rel is None:
            self._real_stat("/" + "/".join(parts) + ("/" if trailing else ""))
            return None
        if not rel:
            return self.top
        pdir = self._walk_dir(rel[:-1])
        node = pdir.entries.get(rel[-1])
        if node is None:
            raise BpfError(errno.ENOENT)
        if trailing and not isinstance(node, BpfDir):
            raise BpfError(errno.ENOTDIR)
        return node

    # --- what OBJ_PIN and OBJ_GET need ----------------------------------------------------

    def pin(self, path: str, dirfd: int, obj) -> None:
        """bpf_obj_do_pin(): create the file; the caller has taken the reference it keeps."""
        pdir, name = self._parent_and_name(path, dirfd)
        if pdir is None:                        # dir->i_op != &bpf_dir_iops
            raise BpfError(errno.EPERM)
        mask = self._umask()
        pdir.entries[name] = BpfObjFile(obj, 0o600 & ~mask)

    def _umask(self) -> int:
        """The calling task's umask."""
        if self.proc is not None:
            try:
                with open(f"{self.proc}/status") as f:
                    for line in f:
                        if line.startswith("Umask:"):
                            return int(line.split()[1], 8)
            except OSError:
                pass
            return 0o022
        mask = os.umask(0)
        os.umask(mask)
        return mask

    def get(self, path: str, dirfd: int):
        """bpf_obj_do_get(): the pinned object; EACCES for anything that is not one."""
        node = self._lookup(path, dirfd)
        if not isinstance(node, BpfObjFile):    # bpf_inode_type()
            raise BpfError(errno.EACCES)
        return node.obj

    def is_on_bpffs(self, path: str, dirfd: int = AT_FDCWD) -> bool:
        """For statfs(): True when path resolves into the emulated tree (to something that
        exists: BpfError ENOENT/ENOTDIR otherwise), False when it is outside it."""
        if path == "":
            raise BpfError(errno.ENOENT)
        parts, _ = self._split(self._absolute(path, dirfd))
        if self._inside(parts) is None:
            return False
        self._lookup(path, dirfd)
        return True

    def holds_file(self, path: str) -> bool:
        """For fstatfs(): whether a host file, by the absolute path /proc/<pid>/fd shows for
        it, is on this bpffs. The emulator's own tree has no host files."""
        return False

    # --- the user's side of the filesystem ------------------------------------------------

    def _node_at(self, path: str):
        parts, trailing = self._split(os.path.abspath(path) if not path.startswith("/") else path)
        rel = self._inside(parts)
        if rel is None:
            raise ValueError(f"{path} is not on the emulated bpffs at {self.root}")
        return rel

    def mkdir(self, path: str, mode: int = 0o700) -> None:
        """mkdir(2) on the emulated bpffs (OSError with the kernel's errno)."""
        rel = self._node_at(path)
        if not rel:
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
        pdir = self._walk_dir_os(rel[:-1], path)
        if rel[-1] in pdir.entries:
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
        pdir.entries[rel[-1]] = BpfDir(mode & 0o7777)

    def _walk_dir_os(self, rel, path):
        try:
            return self._walk_dir(rel)
        except BpfError as e:
            raise OSError(e.errno, os.strerror(e.errno), path) from None

    def unlink(self, path: str) -> None:
        """unlink(2): removes a pin and drops the reference it held."""
        rel = self._node_at(path)
        if not rel:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        pdir = self._walk_dir_os(rel[:-1], path)
        node = pdir.entries.get(rel[-1])
        if node is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        if isinstance(node, BpfDir):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        del pdir.entries[rel[-1]]
        self._unlinked(node)

    def _unlinked(self, node) -> None:
        """One link of a pin gone: the last one drops the reference."""
        node.nlink -= 1
        if node.nlink == 0 and self._put is not None:
            self._put(node.obj)

    def _entry(self, path: str):
        """(directory, name, node or None) of a path below the root (OSError otherwise)."""
        rel = self._node_at(path)
        if not rel:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        pdir = self._walk_dir_os(rel[:-1], path)
        return pdir, rel[-1], pdir.entries.get(rel[-1])

    def link(self, path: str, new: str) -> None:
        """link(2) (simple_link): another name for a pin."""
        _, _, node = self._entry(path)
        if node is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        if isinstance(node, BpfDir):
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), path)
        ndir, nname, existing = self._entry(new)
        if existing is not None:
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), new)
        node.nlink += 1
        ndir.entries[nname] = node

    def rename(self, path: str, new: str) -> None:
        """rename(2) (simple_rename) of a pin or a directory; a pin at the new name is
        replaced, an empty directory too."""
        odir, oname, node = self._entry(path)
        if node is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        ndir, nname, existing = self._entry(new)
        if existing is node:
            return
        if isinstance(node, BpfDir):
            d = ndir
            while d is not None:                 # not into itself
                if d is node:
                    raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), new)
                d = self._parent_of(d)
        if existing is not None:
            if isinstance(existing, BpfDir) != isinstance(node, BpfDir):
                e = errno.EISDIR if isinstance(existing, BpfDir) else errno.ENOTDIR
                raise OSError(e, os.strerror(e), new)
            if isinstance(existing, BpfDir) and existing.entries:
                raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY), new)
        del odir.entries[oname]
        ndir.entries[nname] = node
        if isinstance(existing, BpfObjFile):
            self._unlinked(existing)

    def _parent_of(self, target):
        def walk(d):
            for child in d.entries.values():
                if child is target:
                    return d
                if isinstance(child, BpfDir):
                    found = walk(child)
                    if found is not None:
                        return found
            return None
        return None if target is self.top else walk(self.top)

    def rmdir(self, path: str) -> None:
        rel = self._node_at(path)
        if not rel:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        pdir = self._walk_dir_os(rel[:-1], path)
        node = pdir.entries.get(rel[-1])
        if node is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        if not isinstance(node, BpfDir):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        if node.entries:
            raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY), path)
        del pdir.entries[rel[-1]]

    def listdir(self, path: str | None = None) -> list:
        rel = self._node_at(path or self.root)
        node = self._walk_dir_os(rel, path)
        return sorted(node.entries)

    def exists(self, path: str) -> bool:
        try:
            rel = self._node_at(path)
            if not rel:
                return True
            return rel[-1] in self._walk_dir(rel[:-1]).entries
        except (BpfError, ValueError):
            return False

    def reap(self) -> None:
        """Nothing to do: a pin of this tree goes with unlink(), which drops its reference
        (a bpffs in a real directory, bpffs_dir.py, learns of removed pins here)."""

    def clear(self) -> None:
        """Remove every pin (unmount): each releases its reference."""
        def walk(d):
            for name, node in list(d.entries.items()):
                if isinstance(node, BpfDir):
                    walk(node)
                else:
                    del d.entries[name]
                    self._unlinked(node)
        walk(self.top)
        self.top.entries.clear()
