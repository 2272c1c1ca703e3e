"""The kept /proc handles of supervised tasks (files.py: /proc/<tid>/fd directories,
/proc/<tid>/stat files and /proc/<tid>/fdinfo/<n> files) belong to the task, not to its
number: once the task is gone they find nothing, even when its tid is reused, and the
supervisor retries through fresh ones.
Checked by reusing a pid for real: in a new pid namespace (root), ns_last_pid chooses the
next pid."""
import os
import shutil
import subprocess
import sys

import pytest

SCRIPT = r"""
import errno, os, subprocess, sys
sys.path.insert(0, sys.argv[1])
from bpfemu.errors import BpfError
from bpfemu.intercept.files import SupervisedFiles

def fd0(files, pid):
    try:
        files.lookup_any(pid, 0)
    except BpfError as e:
        return errno.errorcode[e.errno]

files = SupervisedFiles()
a = subprocess.Popen(["sleep", "30"], stdin=subprocess.DEVNULL)
pid = a.pid
print("first", fd0(files, pid), files.task_stat(pid).split()[0].decode())
info = files.keep_fdinfo(pid, b"0")
print("fdinfo", os.pread(info, 512, 0).split(b"\t")[0].decode())
a.kill(); a.wait()
with open("/proc/sys/kernel/ns_last_pid", "w") as f:
    f.write(str(pid - 1))
b = subprocess.Popen(["sleep", "30"], stdin=subprocess.DEVNULL)
print("reused", b.pid == pid)
# The kept handles are the dead task's: the newcomer's fd 0 and stat are found afresh.
print("after", fd0(files, pid), files.task_stat(pid).split()[0].decode())
# A kept fdinfo file fails too: decoded calls then open a fresh one (decoded.py).
try:
    print("fdinfo_after", os.pread(info, 512, 0).split(b"\t")[0].decode())
except OSError as e:
    print("fdinfo_after", errno.errorcode[e.errno])
b.kill(); b.wait()
files.close()
"""


def test_kept_proc_handles_do_not_outlive_their_task():
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        pytest.skip("needs root and unshare(1) to reuse a pid in a new pid namespace")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([unshare, "--pid", "--fork", "--mount-proc", sys.executable, "-c",
                        SCRIPT, root], capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and "unshare" in r.stderr:
        pytest.skip(f"no new pid namespace here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    first, fdinfo, reused, after, fdinfo_after = r.stdout.splitlines()
    pid = first.split()[2]
    assert first == f"first EINVAL {pid}"       # fd 0 open, not a bpf object
    assert fdinfo == "fdinfo pos:"
    assert reused == "reused True"
    assert after == f"after EINVAL {pid}"
    assert fdinfo_after == "fdinfo_after ENOENT"
