"""Decoded notified calls (bpfemu/intercept/decoded.py): a supervised loop that sends the same
attr again is served without the checks, and still answers as the kernel does when what the
attr names changes underneath (ctool.c's "decoded")."""
import subprocess

import pytest

from bpfemu import Emulator
from bpfemu.intercept.run import Background

# Linux 6.18's answers (checked against the kernel below where bpf() is permitted).
DECODED = """\
update 0 -
lookup 0 -
value 7 -
update_other_key 0 -
count 2 -
reused_by_map 0 -
update_reused 0 -
count_new 1 -
count_old 2 -
reused_by_file 0 -
update_file -1 EINVAL
update_closed -1 EBADF
reused_read_only 0 -
update_read_only -1 EPERM
lookup_read_only 0 -
dup2 0 -
update_again 0 -
freeze 0 -
update_frozen -1 EPERM
lookup_frozen 0 -
lookup_page 0 -
lookup_into_readonly -1 EFAULT
lookup_key_zero -1 ENOENT
lookup_key_prot_none -1 EFAULT
lookup_ok 0 -
value 8 -
lookup_into_prot_none -1 EFAULT
update_fd3 0 -
next_key 0 -
next 5 -
delete 0 -
delete_gone -1 ENOENT
id_alive 0 -
id_after_last_close -2 ENOENT
"""


def test_repeated_attr_with_changes_underneath_matches_the_kernel(supervised, on_kernel, ctool):
    emulated = supervised([ctool, "decoded"])
    assert emulated.returncode == 0, emulated.stderr
    assert emulated.stdout == DECODED
    assert on_kernel([ctool, "decoded"]).stdout == DECODED


def _served(ctool, *args):
    emu = Emulator()
    if emu.decoded_calls is None:
        pytest.skip("decoded calls are off (BPFEMU_DECODED_CALLS=0)")
    bg = Background([ctool, *args], emu, stdout=subprocess.PIPE, text=True)
    out = bg.proc.stdout.read()
    bg.proc.stdout.close()
    assert bg.wait(timeout=120) == 0
    return out, bg.supervisor


def test_the_changes_reach_calls_served_decoded(ctool):
    """The scenario above, in this process: its repeated calls did take the decoded path."""
    out, sup = _served(ctool, "decoded")
    assert out == DECODED
    assert sup.decoded.served >= 20


def test_a_loop_is_served_decoded(ctool):
    """ctool bench: 500 updates then 500 lookups of one attr; all but the first two of each
    (checked, then decoded on the second sighting) are served decoded."""
    out, sup = _served(ctool, "bench", "500")
    assert out.startswith("update_ns ")
    assert sup.calls == 1001                    # and the map's creation
    assert sup.decoded.served == 996


# --- the one read of a decoded call (NotifiedCall), against this process's own memory ------

def _read_plan_case(attr_off: int, key_off: int, value_off: int, moved_attr_off=None):
    """A decoded call whose run reads a 4-byte key and an 8-byte value, over a buffer of two
    pages (offsets from the first page's start): the bytes each read gets, and the remote
    iovecs it took."""
    import ctypes
    import mmap
    import os
    import types

    from bpfemu.intercept.decoded import NotifiedCall, _process_vm_readv
    from bpfemu.intercept.files import SupervisedFiles
    from bpfemu.intercept.task import Caller

    page = mmap.PAGESIZE
    raw = ctypes.create_string_buffer(bytes(range(256)) * (3 * page // 256))
    base = (ctypes.addressof(raw) + page - 1) // page * page
    caller = Caller(-1, SupervisedFiles())
    caller.switch(os.getpid(), 1)
    attr = bytes(range(100, 132))
    ctypes.memmove(base + attr_off, attr, len(attr))

    def make(mem, key_ptr, value_ptr):
        return mem.reader2(key_ptr, 4, value_ptr, 8)
    call = NotifiedCall(caller.mem, len(attr), attr, base + attr_off,
                        types.SimpleNamespace(key=(0, 0)), 0,
                        (make, None, base + key_off, base + value_off))
    if moved_attr_off is not None:
        ctypes.memmove(base + moved_attr_off, attr, len(attr))
        call.aim(base + moved_attr_off)
    got = _process_vm_readv(os.getpid(), call.local, call.nlocal, call.remote, call.nremote, 0)
    assert got == call.expected
    key, value = call.run()
    assert call.attr_read == attr
    assert key == ctypes.string_at(base + key_off, 4)
    assert value == ctypes.string_at(base + value_off, 8)
    return call.nremote


@pytest.mark.parametrize("attr_off, key_off, value_off, moved, remote_iovecs", [
    (100, 200, 300, None, 1),            # attr, key, value in one page: one iovec
    (600, 200, 300, None, 1),            # attr after the key and value
    (200, 240, 232, None, 1),            # value before the key, right after the attr
    (200, 240, 236, None, 3),            # key and value overlap: each read on its own
    (4200, 200, 300, None, 2),           # attr in the next page: attr, then the window
    (100, 200, 1300, None, 3),           # key and value more than 1 KiB apart
    (100, 4094, 4080, None, 3),          # key across the page's end
    (200, 210, 300, None, 2),            # key inside the attr: no scatter
    (100, 200, 300, 4200, 2),            # the attr moves to another page ...
    (4200, 200, 300, 600, 1),            # ... and back into the window's page
    (4200, 200, 300, 4400, 2),           # ... or within the other page
    (4200, 200, 1300, 4400, 3),          # ... with key and value read apart
])
def test_one_read_places_attr_key_and_value(attr_off, key_off, value_off, moved,
                                            remote_iovecs):
    assert _read_plan_case(attr_off, key_off, value_off, moved) == remote_iovecs


def test_decoded_updates_leave_no_undo_journal(ctool):
    """A decoded update is one call of its own for the undo journal (bpfemu/undo.py), as an
    in-process decoded call is: its entries go when it ends, so a program that only updates
    does not grow the journal (3 entries an update before this was fixed)."""
    emu = Emulator()
    if emu.decoded_calls is None:
        pytest.skip("decoded calls are off (BPFEMU_DECODED_CALLS=0)")
    bg = Background([ctool, "updates", "300"], emu)
    assert bg.wait(timeout=120) == 0
    assert bg.supervisor.decoded.served == 298       # all but the first two
    assert emu.undo == []


def test_decoded_lookups_take_no_lock(ctool):
    """A supervised program's decoded lookups run as the in-process caller's do (syscall.py's
    lockless row): without the emulator's lock, the journal or a task switch
    (Emulator.decoded_lockless); its updates still go through Emulator.decoded_as. ctool
    bench 500: 500 updates, then 500 lookups, all but the first two of each decoded."""
    emu = Emulator()
    if emu.decoded_calls is None:
        pytest.skip("decoded calls are off (BPFEMU_DECODED_CALLS=0)")
    locked = []
    decoded_as = emu.decoded_as

    def counted(task, cmd, run, generation):
        locked.append(cmd)
        return decoded_as(task, cmd, run, generation)
    emu.decoded_as = counted
    bg = Background([ctool, "bench", "500"], emu)
    assert bg.wait(timeout=120) == 0
    assert bg.supervisor.decoded.served == 996
    assert locked == [2] * 498                  # BPF_MAP_UPDATE_ELEM only


@pytest.mark.parametrize("loop", ["replaces", "percpu_updates"])
def test_a_replace_loop_reads_no_cpu(ctool, monkeypatch, loop):
    """Loops whose outcome does not depend on the caller's CPU do not read it
    (/proc/<tid>/stat, about 2.4 us a call before). ctool replaces 300: updates of one key of
    a preallocated HASH map; each replace takes a CPU's spare element, and which one it is
    shows only to a program holding a pointer into an element (hashtab.alloc_htab_elem), and
    none was handed out. ctool percpu_updates 300: new keys of a PERCPU_HASH map; a syscall
    writes every CPU's slot."""
    from bpfemu.intercept.files import SupervisedFiles
    reads = []
    task_stat = SupervisedFiles.task_stat

    def counted(self, tid):
        reads.append(tid)
        return task_stat(self, tid)
    monkeypatch.setattr(SupervisedFiles, "task_stat", counted)
    out, sup = _served(ctool, loop, "300")
    assert sup.decoded.served == 298
    assert reads == []


def test_a_kept_fdinfo_file_closed_since_is_not_read_again():
    """A decoded call remembers the kept /proc/<tid>/fdinfo/<n> it read (NotifiedCall.info_fd).
    Once files closes it, that number may name another fdinfo file, one that still shows the
    call's file (here a dup of it), while the caller's fd number now names another file: the
    call must look its fdinfo file up again, and not be served. This process is the caller;
    a served call is seen as -ESRCH (its fd check passed, then NOTIF_ID_VALID failed on a
    "listener" that is /dev/null)."""
    import ctypes
    import errno
    import os
    import types

    from bpfemu.intercept.decoded import NotifiedCall, NotifiedCalls
    from bpfemu.intercept.files import SupervisedFiles, fdinfo_identity
    from bpfemu.intercept.task import Caller

    files = SupervisedFiles()
    not_a_listener = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        tid = os.getpid()
        caller = Caller(not_a_listener, files)
        caller.switch(tid, 1)
        m1 = os.memfd_create("bpf-map", os.MFD_CLOEXEC)
        st = os.fstat(m1)
        if fdinfo_identity((st.st_dev, st.st_ino)) is None:
            pytest.skip("fdinfo shows no inode here")
        key = ctypes.c_uint32(7)
        attr = ctypes.create_string_buffer(
            m1.to_bytes(4, "little") + bytes(4) + ctypes.addressof(key).to_bytes(8, "little"), 16)

        def make(mem, key_ptr):
            return mem.reader(key_ptr, 4)
        call = NotifiedCall(caller.mem, 16, attr.raw, ctypes.addressof(attr),
                            types.SimpleNamespace(key=(st.st_dev, st.st_ino)), 0,
                            (make, None, ctypes.addressof(key)))
        decoded = NotifiedCalls(None, caller, files)
        decoded.last[1] = call

        def serve():
            return decoded.serve(tid, 1, 1, ctypes.addressof(attr), 16)
        assert serve() == -errno.ESRCH              # the fd check passed
        kept = call.info_fd
        dup = os.dup(m1)                            # the call's file lives on
        files.drop_fdinfo(tid, str(m1).encode())
        other = os.open(f"/proc/self/fdinfo/{dup}", os.O_RDONLY | os.O_CLOEXEC)
        m2 = os.memfd_create("bpf-map", os.MFD_CLOEXEC)
        try:
            if other != kept:
                pytest.skip("the closed number was not the lowest free one")
            os.dup2(m2, m1)                         # m1's number: another file now
            assert serve() is None
        finally:
            for fd in (dup, other, m2, m1):
                os.close(fd)
    finally:
        files.close()
        os.close(not_a_listener)
