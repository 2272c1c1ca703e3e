"""The order in which --trace writes the renames and links a pin directory went through
between two looks (intercept/tracing.py _in_order): replayed one at a time, they must give
the same names."""
import pytest

from bpfemu.intercept.tracing import _in_order


def _apply(names: dict, moves: list) -> dict:
    names = dict(names)
    for op, path, to in moves:
        assert path in names and to not in names, (op, path, to)
        names[to] = names[path]
        if op == "rename":
            del names[path]
    return names


@pytest.mark.parametrize("before, moves, after", [
    ({"/p/a": 1, "/p/b": 2}, [("rename", "/p/a", "/p/b"), ("rename", "/p/b", "/p/a")],
     {"/p/a": 2, "/p/b": 1}),                                       # a swap
    ({"/p/a": 1, "/p/b": 2, "/p/c": 3},
     [("rename", "/p/a", "/p/b"), ("rename", "/p/b", "/p/c"), ("rename", "/p/c", "/p/a")],
     {"/p/b": 1, "/p/c": 2, "/p/a": 3}),                            # a cycle of three
    ({"/p/a": 1, "/p/b": 2}, [("rename", "/p/a", "/p/b"), ("rename", "/p/b", "/p/c")],
     {"/p/b": 1, "/p/c": 2}),                                       # a chain
    ({"/p/a": 1, "/p/b": 2}, [("link", "/p/a", "/p/b"), ("rename", "/p/b", "/p/c")],
     {"/p/a": 1, "/p/b": 1, "/p/c": 2}),                            # a link into a name left
])
def test_moves_replay_in_order(before, moves, after):
    names = set(before) | set(after)
    assert _apply(before, _in_order(moves, names)) == after
