"""What a supervised tree can do to the supervisor and the supervisor to it: signals, kills,
threads, garbage, privilege, static binaries, many short-lived processes."""
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from bpfemu import Emulator
from bpfemu.intercept.run import Background
from tests.intercept.conftest import AS_NOBODY, BPFEMU, HERE


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("restart", [1, 0], ids=["SA_RESTART", "no-SA_RESTART"])
def test_updates_under_a_100us_timer_apply_exactly_once(supervised, ctool, restart):
    """20,000 NOEXIST updates of new keys with SIGALRM every 100 us: every update takes
    effect exactly once (an EEXIST would be an update reported failed but applied). Without
    SA_RESTART, a call interrupted before the supervisor received it fails with EINTR and
    did nothing (the client retries it): DEVIATION(eintr)."""
    r = supervised([ctool, "signals", "20000", "100", str(restart)])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ticks_seen 1\neexist 0\nother 0\nelements 20000\n"


def test_child_killed_mid_call_leaves_the_emulator_sound(ctool):
    """SIGKILL while the child is making calls as fast as it can: no error in the supervisor,
    and the map it held is released with the process."""
    emu = Emulator()
    for _ in range(3):
        bg = Background([ctool, "bench", "10000000"], emu, stdout=subprocess.DEVNULL)
        time.sleep(random.uniform(0.2, 0.6))
        bg.proc.send_signal(signal.SIGKILL)
        assert bg.wait(timeout=60) == 128 + signal.SIGKILL
        emu.reap_closed_fds()
        assert emu.map_idr.objs == {}
    bg = Background([ctool, "create"], emu, stdout=subprocess.PIPE, text=True)
    assert bg.wait(timeout=60) == 0 and bg.proc.stdout.read() == "create 0 -\n"


def test_supervisor_killed_child_gets_enosys_without_hanging(ctool, public_dir, supervised):
    """The child's later bpf() calls fail with ENOSYS (the listener is gone), at once."""
    out = os.path.join(public_dir, "late.txt")
    prefix = AS_NOBODY if supervised.as_nobody else []
    with open(out, "w") as f:
        os.chmod(out, 0o666)
        sup = subprocess.Popen(prefix + BPFEMU + ["run", "--", ctool, "late", "2"], stdout=f)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:         # the command runs (under load, this takes a while)
        with open(out) as f:
            if f.read():
                break
        time.sleep(0.05)
    sup.kill()
    sup.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(out) as f:
            text = f.read()
        if text.count("\n") == 2:
            break
        time.sleep(0.1)
    assert text == "started\nlate_create -1 ENOSYS\n"


def test_setuid_binary_gains_nothing(supervised, ctool, public_dir):
    """NO_NEW_PRIVS: a setuid-root program run by nobody in the tree keeps nobody's euid."""
    if os.geteuid() != 0 or not supervised.as_nobody:
        pytest.skip("needs root to make a setuid-root binary and run as nobody")
    suid = os.path.join(public_dir, "ctool-suid")
    shutil.copy(ctool, suid)
    os.chown(suid, 0, 0)
    os.chmod(suid, 0o4755)
    direct = subprocess.run(AS_NOBODY + [suid, "euid"], capture_output=True, text=True)
    assert direct.stdout.startswith("euid 0\n")          # the bit works outside the tree
    r = supervised([suid, "euid"])
    assert r.stdout == f"euid {65534}\ncreate 0 -\n"


def test_static_binary(supervised, public_dir):
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    static = os.path.join(public_dir, "ctool-static")
    built = subprocess.run([cc, "-static", "-O2", "-o", static, os.path.join(HERE, "ctool.c"),
                            "-lpthread"], capture_output=True)
    if built.returncode != 0:
        pytest.skip("no static libc")
    r = supervised(["sh", "-c", f"exec {static} identity"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("id_alive 0 -\nid_after_last_close -2 ENOENT\n")


def test_thousand_short_lived_children_leak_nothing(ctool):
    """1,000 processes in a row, each creating a map and exiting: every map is freed, and the
    supervisor (a thread of this process) ends with the fds it started with."""
    emu = Emulator()
    warm = Background([ctool, "create"], emu, stdout=subprocess.DEVNULL)
    assert warm.wait(timeout=60) == 0
    fds, rss = _open_fds(), _rss_kib()
    bg = Background(["sh", "-c", f"i=0; while [ $i -lt 1000 ]; do {ctool} create || exit 1;"
                     f" i=$((i+1)); done"], emu, stdout=subprocess.PIPE, text=True)
    out = bg.proc.stdout.read()
    bg.proc.stdout.close()
    assert bg.wait(timeout=600) == 0
    assert out == "create 0 -\n" * 1000
    assert bg.supervisor.calls == 1000
    emu.reap_closed_fds()
    assert emu.map_idr.objs == {}
    grown = _rss_kib() - rss
    sys.stderr.write(f"1000 children: fds {fds} -> {_open_fds()}, RSS +{grown} KiB\n")
    assert _open_fds() == fds
    assert grown < 4096


def test_a_bug_in_serving_fails_one_call_not_the_tree(ctool, capfd):
    """An exception escaping the emulator (a bug) fails that call with EINVAL, is reported
    on stderr, and the supervisor goes on serving."""
    emu = Emulator()
    real = emu.bpf_as
    calls = []

    def flaky(task, cmd, attr, size):
        calls.append(cmd)
        if len(calls) == 1:
            raise RuntimeError("injected")
        return real(task, cmd, attr, size)
    emu.bpf_as = flaky
    bg = Background(["sh", "-c", f"{ctool} create; {ctool} create"], emu,
                    stdout=subprocess.PIPE, text=True)
    out = bg.proc.stdout.read()
    bg.proc.stdout.close()
    assert bg.wait(timeout=60) == 0
    assert out == "create -1 EINVAL\ncreate 0 -\n"
    assert "RuntimeError: injected" in capfd.readouterr().err


def test_supervisor_thread_dying_fails_calls_instead_of_hanging(ctool, monkeypatch):
    """If the supervisor thread of a Background dies, the tree's calls fail with ENOSYS (the
    listener is closed) instead of waiting for ever, and wait() reports the error."""
    from bpfemu.intercept.supervisor import Supervisor

    def broken(self, notif):
        raise RuntimeError("supervisor broke")
    monkeypatch.setattr(Supervisor, "handle", broken)
    bg = Background([ctool, "create"], Emulator(), stdout=subprocess.PIPE, text=True)
    out = bg.proc.stdout.read()                 # hangs here without the fix
    bg.proc.stdout.close()
    with pytest.raises(RuntimeError, match="supervisor broke"):
        bg.wait(timeout=60)
    assert out == "create -1 ENOSYS\n"


def test_run_loop_releases_a_closed_map_while_waiting_in_recv(ctool, tmp_path):
    """`bpfemu run`'s loop waits in NOTIF_RECV, not in poll(): a map whose last fd is closed
    is still released at once (the close-reaper thread), while the tree makes no call."""
    import threading

    from bpfemu.intercept.run import run
    emu = Emulator()
    out = tmp_path / "out"
    fds = _open_fds()
    go_r, go_w = os.pipe()
    done = []
    t = threading.Thread(target=lambda: done.append(
        run(["sh", "-c", f"{ctool} create > {out} && read x"], emu, stdin=go_r)))
    t.start()
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and out.read_text()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert out.read_text() == "create 0 -\n"        # made, and ctool exited
        while emu.map_idr.objs and time.monotonic() < deadline:
            time.sleep(0.01)                    # sh waits on its stdin: no call comes
        assert emu.map_idr.objs == {} and t.is_alive() and not done
    finally:
        os.write(go_w, b"\n")
        t.join(60)
        os.close(go_r)
        os.close(go_w)
    assert done == [0]
    assert _open_fds() == fds                   # the reaper's pipe and the listener closed
