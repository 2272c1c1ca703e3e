"""What a client does with the pin directory itself, outside bpf(), under `bpfemu run`.

With `--pin-root DIR` on a directory the user may write, the pin root is that real
directory and each pin is a file in it (bpfemu/bpffs_dir.py): mkdir of a subdirectory to pin
into, ls, mv, rm of a pin and rmdir are the client's own file calls, and statfs() anywhere
under the root reports a bpffs. Each test runs a small bpftool script as root on the live
kernel (a bpffs mounted on the pin directory) and as nobody under `bpfemu run`, and compares
what it printed. The `maps.debug` and `progs.debug` iterators a new bpffs has (bpf_preload)
are left out of listings: the emulated root has none (README, DEVIATION bpffs).
"""
import os
import subprocess
import sys

import pytest

from . import harness

# $1 is the pin directory; every command's output and status is printed.
MKDIR_THEN_PIN = r'''
P=$1
mkdir "$P/app"; echo "mkdir $?"
bpftool map create "$P/app/h" type hash key 4 value 8 entries 4 name gap_mkdir; echo "create $?"
bpftool map show pinned "$P/app/h" | sed 's/^[0-9]*:/ID:/; s/  memlock [0-9]*B//'; echo "show $?"
stat -f -c %T "$P/app"
'''

RM_A_PIN = r'''
P=$1
bpftool map create "$P/h" type hash key 4 value 8 entries 4 name gap_rm; echo "create $?"
ls "$P" | grep -x h; echo "ls $?"
rm "$P/h" 2>/dev/null; echo "rm $?"
bpftool map show pinned "$P/h" >/dev/null 2>&1; echo "show after rm $?"
'''

# The pin held the map's only reference (bpftool's fd closed when it exited): removing the
# pin file frees the map, so its id is gone.
RM_FREES_THE_MAP = r'''
P=$1
bpftool map create "$P/h" type hash key 4 value 8 entries 4 name pin_free; echo "create $?"
id=$(bpftool -j map show pinned "$P/h" | sed 's/.*"id":\([0-9]*\).*/\1/')
bpftool map show id "$id" >/dev/null 2>&1; echo "by id while pinned $?"
ln "$P/h" "$P/h2"; echo "ln $?"
rm "$P/h"; echo "rm one link $?"
bpftool map show id "$id" >/dev/null 2>&1; echo "by id with a link left $?"
bpftool map show pinned "$P/h2" >/dev/null 2>&1; echo "show the other link $?"
rm "$P/h2"; echo "rm the last link $?"
bpftool map show id "$id" 2>&1 | sed "s/($id)/(ID)/"; echo "by id after rm $?"
'''

MOVE_A_PIN = r'''
P=$1
bpftool map create "$P/a" type hash key 4 value 8 entries 4 name pin_mv; echo "create $?"
bpftool map update pinned "$P/a" key 1 0 0 0 value 7 0 0 0 0 0 0 0; echo "update $?"
mkdir "$P/d"; echo "mkdir $?"
mv "$P/a" "$P/d/b"; echo "mv $?"
bpftool map show pinned "$P/a" >/dev/null 2>&1; echo "show old path $?"
bpftool map lookup pinned "$P/d/b" key 1 0 0 0; echo "lookup new path $?"
ls "$P" | grep -vx '.*\.debug'; ls "$P/d"
'''

# Two pins swap names with no bpf() call in between (three renames through a third name):
# the trace sees only the net change, a cycle of renames, which it must replay in an order
# that loses neither pin.
SWAP_TWO_PINS = r'''
P=$1
bpftool map create "$P/a" type hash key 4 value 8 entries 4 name pin_a; echo "create $?"
bpftool map create "$P/b" type array key 4 value 4 entries 2 name pin_b; echo "create b $?"
mv "$P/a" "$P/t" && mv "$P/b" "$P/a" && mv "$P/t" "$P/b"; echo "swap $?"
bpftool map show pinned "$P/a" | sed 's/^[0-9]*:/ID:/; s/  memlock [0-9]*B//'
bpftool map show pinned "$P/b" | sed 's/^[0-9]*:/ID:/; s/  memlock [0-9]*B//'
ls "$P" | grep -vx '.*\.debug'
'''

REMOVE_A_DIRECTORY = r'''
P=$1
mkdir "$P/d"; echo "mkdir $?"
bpftool map create "$P/d/m" type array key 4 value 4 entries 2 name pin_rmdir; echo "create $?"
rmdir "$P/d" 2>/dev/null; echo "rmdir with a pin in it $?"
rm "$P/d/m"; echo "rm $?"
rmdir "$P/d"; echo "rmdir $?"
ls -A "$P" | grep -vx '.*\.debug'; echo "ls $?"
mkdir -p "$P/x/y"; echo "mkdir -p $?"
bpftool map create "$P/x/y/m" type array key 4 value 4 entries 2 name pin_deep; echo "create deep $?"
bpftool map show pinned "$P/x/y/m" | sed 's/^[0-9]*:/ID:/; s/  memlock [0-9]*B//'
rm -r "$P/x"; echo "rm -r $?"
ls -A "$P" | grep -vx '.*\.debug'; echo "ls $?"
'''


def _compare(script: str, client_dir: str, bpfemu_run_ok, replays: bool = True):
    """The script's output as nobody under `bpfemu run --trace` is the kernel's; with
    replays, the trace (fs records for what the script did to the directory) replays with
    no difference on a fresh emulator."""
    if bpfemu_run_ok:
        pytest.skip(bpfemu_run_ok)
    why = harness.kernel_unavailable()
    if why:
        pytest.skip(why)
    if harness.nobody_unavailable():
        pytest.skip(harness.nobody_unavailable())
    argv = ["sh", "-c", script, "pins"]
    kernel = harness.run_on_kernel(argv, client_dir)
    trace = os.path.join(harness.fresh_pin_dir(client_dir, "trace-"), "calls.jsonl")
    emulated = harness.run_emulated(argv, client_dir, as_nobody=True, options=["--trace", trace])
    assert kernel.returncode == 0 and "create 0" in kernel.stdout, kernel.stdout + kernel.stderr
    assert emulated.stdout == kernel.stdout, emulated.stderr
    if replays:
        r = subprocess.run([sys.executable, "-m", "bpfemu", "replay", "-q", trace],
                           capture_output=True, text=True, timeout=harness.TIMEOUT,
                           cwd=os.path.dirname(trace))
        assert r.returncode == 0 and "no differences" in r.stdout, r.stdout + r.stderr
    return kernel.stdout


@pytest.mark.parametrize("client", ["bpftool"], indirect=True)
def test_pin_into_a_new_subdirectory(client, client_dir, bpfemu_run_ok):
    out = _compare(MKDIR_THEN_PIN, client_dir, bpfemu_run_ok)
    assert "create 0" in out and "bpf_fs" in out


@pytest.mark.parametrize("client", ["bpftool"], indirect=True)
def test_list_and_remove_a_pin(client, client_dir, bpfemu_run_ok):
    out = _compare(RM_A_PIN, client_dir, bpfemu_run_ok)
    assert "rm 0" in out and "show after rm 255" in out


@pytest.mark.parametrize("client", ["bpftool"], indirect=True)
def test_removing_the_last_link_frees_the_map(client, client_dir, bpfemu_run_ok):
    out = _compare(RM_FREES_THE_MAP, client_dir, bpfemu_run_ok)
    assert "by id with a link left 0" in out and "No such file or directory" in out


@pytest.mark.parametrize("client", ["bpftool"], indirect=True)
def test_move_a_pin(client, client_dir, bpfemu_run_ok):
    out = _compare(MOVE_A_PIN, client_dir, bpfemu_run_ok)
    assert "mv 0" in out and "lookup new path 0" in out


@pytest.mark.parametrize("client", ["bpftool"], indirect=True)
def test_swap_two_pins(client, client_dir, bpfemu_run_ok):
    out = _compare(SWAP_TWO_PINS, client_dir, bpfemu_run_ok)
    assert "swap 0" in out and "name pin_b" in out.split("swap 0")[1].splitlines()[1]


@pytest.mark.parametrize("client", ["bpftool"], indirect=True)
def test_remove_a_directory(client, client_dir, bpfemu_run_ok):
    out = _compare(REMOVE_A_DIRECTORY, client_dir, bpfemu_run_ok)
    assert "rmdir 0" in out and "create deep 0" in out


@pytest.mark.parametrize("script", ["MKDIR_THEN_PIN", "RM_A_PIN", "RM_FREES_THE_MAP",
                                    "MOVE_A_PIN", "SWAP_TWO_PINS", "REMOVE_A_DIRECTORY"])
@pytest.mark.parametrize("client", ["bpftool"], indirect=True)
def test_recorded_scripts_replay(client, client_dir, script):
    """Under `bpfemu record` (the kernel's bpffs at /sys/fs/bpf, in a private mount
    namespace) each script prints what it prints on the kernel, and what it did to the pins
    with file calls is in the trace as fs records, so the trace replays on a fresh emulator."""
    why = harness.kernel_unavailable()
    if why:
        pytest.skip(why)
    argv = ["sh", "-c", globals()[script], "pins"]
    trace = os.path.join(harness.fresh_pin_dir(client_dir, "record-"), "calls.jsonl")
    recorded = harness.run_recorded(argv, client_dir, trace)
    kernel = harness.run_on_kernel(argv, client_dir)
    assert recorded.stdout == kernel.stdout, recorded.stderr
    r = subprocess.run([sys.executable, "-m", "bpfemu", "replay", "-q", trace],
                       capture_output=True, text=True, timeout=harness.TIMEOUT,
                       cwd=os.path.dirname(trace))
    assert r.returncode == 0 and "no differences" in r.stdout, r.stdout + r.stderr
