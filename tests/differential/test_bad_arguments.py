"""Arguments no C caller could pass (a cmd that is not a number, a None attr, a close of
None) get the same answer from both backends, as a return value: raw bpf() and close()
never raise. Before, the emulator raised TypeError for each of these."""
import pytest

CASES = [
    ("a command name instead of its number", ("BPF_MAP_LOOKUP_ELEM", bytearray(32), 32), -22),
    ("a list as the command", ([1], bytearray(32), 32), -22),
    ("a NULL attr", (1, None, 32), -14),
    ("a NULL attr past the union", (0, None, 200), -14),
    ("a NULL attr past a page", (0, None, 5000), -7),
    ("a NULL attr of size 0", (0, None, 0), -22),
    ("a str as the attr", (1, "abc", 32), -14),
    ("a float as the attr", (1, 3.5, 32), -14),
    ("size None", (1, bytearray(32), None), -22),
]


@pytest.mark.parametrize("what, args, expected", CASES, ids=[c[0] for c in CASES])
def test_bpf_with_arguments_c_could_not_pass(backend, what, args, expected):
    assert backend.bpf(*args) == expected


@pytest.mark.parametrize("fd", [None, "3", 2 ** 40, -1])
def test_close_of_what_is_not_an_fd_is_ebadf(backend, fd):
    assert backend.close(fd) == -9
