"""Where a decoded notified call's supervisor time goes, stage by stage.

Each stage of `bpfemu run`'s hot path (Supervisor._serve_notifications, intercept/decoded.py) is run
on its own in a loop in this process, against this process's own memory and fd table (the
notified caller is another process in real use; the system calls are the same), and timed
with the thread's CPU clock; NOTIF_ID_VALID on a child's pending call. RECV and SEND need
a new notification each, so they are not here:
bench_intercept.py times the whole path, and its README section gives their share from a
profile. Run: python benchmarks/bench_supervisor_stages.py [--loops N]
"""
import argparse
import ctypes
import errno
import fcntl
import os
import select
import struct
import sys
import time
import types

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bpfemu import Emulator  # noqa: E402
from bpfemu import fastpath  # noqa: E402
from bpfemu.errors import BpfError  # noqa: E402
from bpfemu.intercept.decoded import (NotifiedCall, NotifiedCalls, PrefetchedMemory,  # noqa: E402
                                      _fstatat, _process_vm_readv)
from bpfemu.intercept import seccomp  # noqa: E402
from bpfemu.intercept.files import SupervisedFiles, fdinfo_identity  # noqa: E402
from bpfemu.intercept.run import spawn  # noqa: E402
from bpfemu.intercept.seccomp import NOTIF_SIZE  # noqa: E402
from bpfemu.intercept.supervisor import _NOTIF_HEAD  # noqa: E402
from bpfemu.intercept.task import Caller  # noqa: E402
from bpfemu.libbpf import LibBpf  # noqa: E402
from bpfemu.uapi.consts import BpfMapType as T  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loops", type=int, default=100_000)
    n = ap.parse_args().loops
    emu = Emulator()
    files = SupervisedFiles()
    caller = Caller(-1, files)
    tid = os.getpid()
    caller.switch(tid, 1)
    fd = LibBpf(emu).bpf_map_create(T.BPF_MAP_TYPE_HASH, None, 4, 8, n + 1)
    m = emu.map_of(fd)
    key, value = ctypes.c_uint32(0), ctypes.c_uint64(1)
    attr = ctypes.create_string_buffer(struct.pack("<IIQQQ", fd, 0, ctypes.addressof(key),
                                                   ctypes.addressof(value), 0), 32)
    decodable = (fastpath.update_call, caller.mem, m, ctypes.addressof(key),
                 ctypes.addressof(value), 0)
    own_file = types.SimpleNamespace(key=(0, 0))     # what same_file compares is timed alike
    call = NotifiedCall(caller.mem, 32, attr.raw, ctypes.addressof(attr), own_file,
                        emu.decoded_calls.generation, decodable)
    own_fd = os.open("/dev/null", os.O_RDONLY)
    fd_name = str(own_fd).encode()
    try:
        files.lookup_any(tid, own_fd)                # keeps this task's /proc/<tid>/fd open
    except BpfError:
        pass                                         # EINVAL: /dev/null is no bpf object

    decoded = NotifiedCalls(emu, caller, files)

    def fd_check():
        d = files.fd_dirs.get(tid)
        _fstatat(d, fd_name, decoded._stat_ref, 0)
        return decoded._stat_dev_ino.raw == call.file_key

    memfd = os.memfd_create("bpf-map", os.MFD_CLOEXEC)
    memfd_name = str(memfd).encode()
    st = os.fstat(memfd)
    identity = fdinfo_identity((st.st_dev, st.st_ino))
    files.keep_fdinfo(tid, memfd_name)

    seen = [None]

    def fdinfo_check():                              # as NotifiedCalls.serve makes it
        info = files.fdinfo_files.get((tid, memfd_name))
        text = os.pread(info, 128, 0)
        if text != seen[0]:                          # the first time only
            if not text.startswith(identity, text.find(b"\nmnt_id:")):
                return False
            seen[0] = text
        return True
    assert fdinfo_check()

    def read():                                      # and the attr compared, as serve() does
        _process_vm_readv(tid, call.local, call.nlocal, call.remote, call.nremote, 0)
        return call.attr_read == call.attr_bytes

    def update_new_keys():
        key.value += 1
        read()
        return emu.decoded_as(caller, 2, call.run, call.generation)

    writer = PrefetchedMemory(caller.mem).writer(ctypes.addressof(value), 8)
    eight = bytes(8)

    def write_value():
        caller.checked = True                        # NOTIF_ID_VALID needs a notification
        writer(eight)

    poller = select.poll()
    r, w = os.pipe()
    os.write(w, b"x")
    poller.register(r, select.POLLIN)
    notif = bytes(NOTIF_SIZE)

    def recv_buffer():
        return _NOTIF_HEAD.unpack_from(notif)

    # A pending notification for NOTIF_ID_VALID: a child whose one bpf() call waits for us.
    child, listener = spawn([sys.executable, "-c",
                             "import ctypes; ctypes.CDLL(None).syscall(321, 0, 0, 0)"])
    pending = seccomp.recv(listener)
    resp = bytearray(seccomp.RESP.size)
    seccomp.RESP.pack_into(resp, 0, pending[0], 0, 0, 0)

    def id_valid():                                  # as NotifiedCalls.serve makes it
        fcntl.ioctl(listener, seccomp.NOTIF_ID_VALID, resp, True)

    stages = [
        ("poll() of one ready fd (the polling loop only)", poller.poll),
        ("NOTIF_ID_VALID of a pending notification (fcntl.ioctl)", id_valid),
        ("RECV's notification unpacked (no ioctl)", recv_buffer),
        ("caller switched", lambda: caller.switch(tid, 1)),
        ("attr+key+value: one process_vm_readv, attr compared", read),
        ("fd still the same open file: fstatat (without fdinfo)", fd_check),
        ("fd still the same open file: pread of the kept fdinfo", fdinfo_check),
        ("decoded_as around an empty call", lambda: emu.decoded_as(caller, 2, int, call.generation)),
        ("update of a new key: read, decoded_as, map op", update_new_keys),
        ("value written back: process_vm_writev (ID_VALID aside)", write_value),
        ("the caller's CPU from its kept /proc/<tid>/stat", caller.current_cpu),
    ]
    print(f"{n:,} loops each, thread CPU time per loop (load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs)")
    for name, fn in stages:
        t0 = time.thread_time_ns()
        for _ in range(n):
            fn()
        print(f"  {name:56s} {(time.thread_time_ns() - t0) / n / 1000:6.2f} us")
    seccomp.send(listener, pending[0], 0, -errno.ENOSYS)
    child.wait()
    os.close(listener)
    return 0


if __name__ == "__main__":
    sys.exit(main())
