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
