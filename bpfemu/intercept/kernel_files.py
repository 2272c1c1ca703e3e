"""`bpfemu record -- CMD`: which kernel open file each map fd of the tree is, and when the
tree lets one go, without holding a reference to any (a reference would keep the map alive
after the program closed its last fd, and change what the kernel answers).

An epoll instance of ours is the register. Each open file of a map the tree holds is added to
it once, through a copy of the caller's fd (pidfd_getfd) dup'd to a number of ours that no
other registered file uses (its "tfd"), and the copy is closed at once: an epoll entry holds
no reference, and the kernel removes it when the file is released (__fput ->
eventpoll_release), so the entries listed in /proc/self/fdinfo/<epoll fd> are exactly the
registered files still open somewhere. Every map file has a poll method (bpf_map_poll), so
any can be added. Identity is kcmp(KCMP_EPOLL_TFD): is the caller's fd the file registered
at tfd? It is asked only of the registered files of the same map id. Facts: docs/seccomp.md
section 7.
"""
import ctypes
import fcntl
import os
import select

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_NR_KCMP = 312
_KCMP_EPOLL_TFD = 7
_FIRST_TFD = 64                 # registration numbers start here (below RLIMIT_NOFILE)


class _Slot(ctypes.Structure):
    """struct kcmp_epoll_slot"""
    _fields_ = [("efd", ctypes.c_uint32), ("tfd", ctypes.c_uint32), ("toff", ctypes.c_uint32)]


class _File:
    __slots__ = ("token", "map_id", "fd")

    def __init__(self, token: int, map_id: int, fd: int):
        self.token, self.map_id, self.fd = token, map_id, fd


class KernelFiles:
    """File tokens for the kernel map files of a recorded tree."""

    def __init__(self):
        self._ep = select.epoll()
        # Its fdinfo lists the live entries; a seq file, read again from offset 0 each time.
        self._fdinfo = os.open(f"/proc/self/fdinfo/{self._ep.fileno()}",
                               os.O_RDONLY | os.O_CLOEXEC)
        self._pid = os.getpid()
        self._by_tfd: dict[int, _File] = {}
        self._by_map: dict[int, list[int]] = {}      # map id -> tfds
        self._next_token = 1

    def token(self, tid: int, ufd: int, copy: int, map_id: int) -> int | None:
        """The token of the open file behind the caller's ufd (copy: our fd of it), made
        and registered the first time the file is seen; None if it cannot be registered
        (the trace then names that fd by its number)."""
        slot = _Slot(self._ep.fileno(), 0, 0)
        for tfd in self._by_map.get(map_id, ()):
            slot.tfd = tfd
            if _libc.syscall(_NR_KCMP, tid, self._pid, _KCMP_EPOLL_TFD, ufd,
                             ctypes.byref(slot)) == 0:
                return self._by_tfd[tfd].token
        try:
            tfd = self._free_number()
            os.dup2(copy, tfd, inheritable=False)
            try:
                self._ep.register(tfd, 0)
            finally:
                os.close(tfd)
        except OSError:
            return None
        f = _File(self._next_token, map_id, ufd)
        self._next_token += 1
        self._by_tfd[tfd] = f
        self._by_map.setdefault(map_id, []).append(tfd)
        return f.token

    def _free_number(self) -> int:
        """A number no registered file uses and no fd of ours holds."""
        n = _FIRST_TFD
        while True:
            if n not in self._by_tfd:
                try:
                    fcntl.fcntl(n, fcntl.F_GETFD)
                except OSError:
                    return n
            n += 1

    def released(self) -> list:
        """[(token, fd first seen)] of the registered files no process holds any more, in
        the order they were registered; forgotten here."""
        if not self._by_tfd:
            return []
        data, chunk = b"", os.pread(self._fdinfo, 65536, 0)
        while chunk:
            data += chunk
            chunk = os.pread(self._fdinfo, 65536, len(data))
        live = {int(line.split()[1]) for line in data.split(b"\n") if line.startswith(b"tfd:")}
        gone = sorted((t for t in self._by_tfd if t not in live),
                      key=lambda t: self._by_tfd[t].token)
        out = []
        for tfd in gone:
            f = self._by_tfd.pop(tfd)
            self._by_map[f.map_id].remove(tfd)
            if not self._by_map[f.map_id]:
                del self._by_map[f.map_id]
            out.append((f.token, f.fd))
        return out

    def close(self) -> None:
        os.close(self._fdinfo)
        self._ep.close()
