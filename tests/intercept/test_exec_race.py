"""A thread execs while its group leader waits in a notified bpf() (tests/intercept/execrace.c).

de_thread() gives the leader's tid to the exec'ing thread, so once the exec is done the
leader's tid (and the /proc/<tid>/fd directory the supervisor keeps for it) names the new
image. A map fd whose FD_CLOEXEC was cleared is still open there, and a -no-pie program has
the same attr bytes at the same address: the attr, the fd and the open file all match. Only
NOTIF_ID_VALID, after the reads it protects, says that the caller is gone; without it the
leader's pending update would be applied with the new image's key and value.
"""
import os
import select
import shutil
import struct
import subprocess
import threading

import pytest

from bpfemu import Emulator
from bpfemu.intercept import seccomp
from bpfemu.intercept.run import spawn
from bpfemu.intercept.supervisor import Supervisor
from bpfemu.uapi.consts import BpfCmd as C

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def execrace(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    out = str(tmp_path_factory.mktemp("execrace") / "execrace")
    subprocess.run([cc, "-O2", "-no-pie", "-o", out, os.path.join(HERE, "execrace.c"),
                    "-lpthread"], check=True, capture_output=True)
    return out


def _value_of_key_7(emu) -> int | None:
    (m,) = emu.map_idr.objs.values()
    v = m.ops.map_lookup_elem_sys(m, struct.pack("<I", 7))
    return None if v is None else struct.unpack("<Q", v)[0]


@pytest.mark.parametrize("decoded", [True, False], ids=["decoded", "checked"])
def test_exec_while_the_leader_waits_in_bpf(execrace, decoded, tmp_path):
    ready, go = str(tmp_path / "ready"), str(tmp_path / "go")
    os.mkfifo(ready)
    os.mkfifo(go)
    ready_r = os.open(ready, os.O_RDWR)          # O_RDWR: neither open waits for the other end
    go_w = os.open(go, os.O_RDWR)
    proc, listener = spawn([execrace, "old", ready, go])
    emu = Emulator(decoded_calls=decoded)
    if decoded and emu.decoded_calls is None:
        pytest.skip("decoded calls are off (BPFEMU_DECODED_CALLS=0)")
    sup = Supervisor(emu, listener)
    serve = sup.decoded.serve
    seen = {"updates": 0}

    def held(tid, notif_id, cmd, attr, size):
        """The leader's 4th update: served only once a thread has exec'd."""
        if cmd == C.BPF_MAP_UPDATE_ELEM:
            seen["updates"] += 1
            if seen["updates"] == 4:
                seen["before"] = _value_of_key_7(emu)
                os.write(go_w, b"g")                      # the thread execs
                r, _, _ = select.select([ready_r], [], [], 60)
                assert r and os.read(ready_r, 1) == b"r"  # the new image runs
                try:
                    ret = serve(tid, notif_id, cmd, attr, size)
                    if ret is None:                       # the loop's checked way
                        sup.handle((notif_id, tid, 0, seccomp.NR_BPF, seccomp.AUDIT_ARCH_X86_64,
                                    0, cmd, attr, size, 0, 0, 0))
                    seen["after"] = _value_of_key_7(emu)
                    seen["decoded"] = sup.decoded.served
                finally:
                    proc.kill()
                return -1                                 # replied (or the caller is gone)
        return serve(tid, notif_id, cmd, attr, size)
    sup.decoded.serve = held
    t = threading.Thread(target=sup.serve)
    t.start()
    try:
        t.join(120)
        assert not t.is_alive()
    finally:
        proc.kill()
        proc.wait()
        os.close(listener)
        os.close(ready_r)
        os.close(go_w)
    assert seen["before"] == 0x2222
    # Not 0x1111, the new image's value: the caller was gone before its call was served.
    assert seen["after"] == 0x2222
