"""The harness itself: what a client prints reaches the comparison whatever its bytes."""
from . import harness


def test_output_with_bytes_that_are_not_utf8():
    """bpftool's plain `map show` on the live kernel prints other processes' map names,
    which may hold any byte (the emulator tests make names with Latin-1 letters)."""
    script = r'printf "a\351b\n"; printf "PAUSE x\351\n" >&2; read x; printf "y\351\n" >&2'
    run = harness._run(["sh", "-c", script], pause_hook=lambda: "paused")
    assert run.returncode == 0
    assert (run.stdout, run.stderr, run.pause_link, run.at_pause) == \
        ("a\\xe9b\n", "y\\xe9\n", "x\\xe9", "paused")
