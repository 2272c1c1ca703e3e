"""What a client does with the pin directory itself, outside bpf(), under `bpfemu run`.

The emulated bpffs is the Emulator's own tree (README, DEVIATIONs bpffs and bpffs-statfs):
OBJ_PIN and OBJ_GET reach it, statfs() there reports a bpffs, but the file-system calls a
client makes on a real bpffs (mkdir of a subdirectory to pin into, ls, rm of a pin) go to
the real directory. Each test runs a small bpftool script on the live kernel and under
`bpfemu run` and compares what it printed; they are strict xfails, so that closing a gap
shows up as a failure to update.
"""
import pytest

from . import harness

# $1 is the pin directory; every command's output and status is printed.
MKDIR_THEN_PIN = r'''
P=$1
mkdir "$P/app"; echo "mkdir $?"
bpftool map create "$P/app/h" type hash key 4 value 8 entries 4 name gap_mkdir; echo "create $?"
bpftool map show pinned "$P/app/h" | sed 's/^[0-9]*:/ID:/; s/  memlock [0-9]*B//'; echo "show $?"
'''

RM_A_PIN = r'''
P=$1
bpftool map create "$P/h" type hash key 4 value 8 entries 4 name gap_rm; echo "create $?"
ls "$P" | grep -x h; echo "ls $?"
rm "$P/h" 2>/dev/null; echo "rm $?"
bpftool map show pinned "$P/h" >/dev/null 2>&1; echo "show after rm $?"
'''


def _compare(script: str, client_dir: str, bpfemu_run_ok):
    if bpfemu_run_ok:
        pytest.skip(bpfemu_run_ok)
    why = harness.kernel_unavailable()
    if why:
        pytest.skip(why)
    if harness.nobody_unavailable():
        pytest.skip(harness.nobody_unavailable())
    argv = ["sh", "-c", script, "gap"]
    kernel = harness.run_on_kernel(argv, client_dir)
    # As nobody: bpftool, finding no bpffs under a pin path, mounts one itself, which root
    # under `bpfemu run` can do, on the host's mount namespace.
    emulated = harness.run_emulated(argv, client_dir, as_nobody=True)
    assert kernel.returncode == 0 and "create 0" in kernel.stdout, kernel.stdout + kernel.stderr
    assert emulated.stdout == kernel.stdout


@pytest.mark.xfail(strict=True, reason="mkdir under the pin root makes a real directory the "
                   "emulated bpffs does not have: statfs() there is not a bpffs, so bpftool "
                   "tries to mount one (EPERM as nobody; as root it mounts a real bpffs on "
                   "the host), and a pin there would get ENOENT")
@pytest.mark.parametrize("client", ["bpftool"], indirect=True)
def test_pin_into_a_new_subdirectory(client, client_dir, bpfemu_run_ok):
    _compare(MKDIR_THEN_PIN, client_dir, bpfemu_run_ok)


@pytest.mark.xfail(strict=True, reason="pins are not files of the real directory: ls does "
                   "not list them and rm cannot remove them (cilium's Unpin, libbpf's "
                   "bpf_object__unpin_maps and `rm` fail)")
@pytest.mark.parametrize("client", ["bpftool"], indirect=True)
def test_list_and_remove_a_pin(client, client_dir, bpfemu_run_ok):
    _compare(RM_A_PIN, client_dir, bpfemu_run_ok)
