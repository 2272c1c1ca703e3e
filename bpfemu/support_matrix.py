"""Which bpf() commands work on which map types, generated from the code itself.

The command table (``bpfemu.syscall.COMMANDS``) says which commands are emulated; the ops
tables (``bpfemu.maps.MAP_TYPES``) say which map types have the operation a command calls.
The README's support matrix is ``render_markdown()``, rewritten by
``scripts/gen_support_matrix.py`` and checked by ``tests/unit/test_support_matrix.py``.
"""
import errno

from .errors import ENOTSUPP, BpfError, errno_name
from .maps import MAP_TYPES
from .syscall import COMMANDS, _not_emulated
from .uapi.consts import BpfCmd as C
from .uapi.consts import BpfMapType as T

YES = "yes"

# Commands that call a map-type operation: (ops field, errno when the type lacks it).
# Everything else the command table handles works the same on every map type.
OP_OF_COMMAND = {
    C.BPF_MAP_LOOKUP_ELEM: ("map_lookup_elem_sys", ENOTSUPP),
    C.BPF_MAP_UPDATE_ELEM: ("map_update_elem_sys", ENOTSUPP),
    C.BPF_MAP_DELETE_ELEM: ("map_delete_elem", ENOTSUPP),
    C.BPF_MAP_GET_NEXT_KEY: ("map_get_next_key", ENOTSUPP),
    C.BPF_MAP_LOOKUP_AND_DELETE_ELEM: ("map_lookup_and_delete_elem", ENOTSUPP),
    C.BPF_MAP_LOOKUP_BATCH: ("map_lookup_batch", ENOTSUPP),
    C.BPF_MAP_LOOKUP_AND_DELETE_BATCH: ("map_lookup_and_delete_batch", ENOTSUPP),
    C.BPF_MAP_UPDATE_BATCH: ("map_update_batch", ENOTSUPP),
    C.BPF_MAP_DELETE_BATCH: ("map_delete_batch", ENOTSUPP),
}
# Emulated commands on objects other than maps (BTF, programs): listed apart, not per map type.
OBJECT_COMMANDS = (C.BPF_BTF_LOAD, C.BPF_BTF_GET_FD_BY_ID, C.BPF_BTF_GET_NEXT_ID,
                   C.BPF_PROG_LOAD, C.BPF_PROG_GET_NEXT_ID, C.BPF_PROG_GET_FD_BY_ID,
                   C.BPF_PROG_BIND_MAP)
# Extra rows for a feature of a command that depends on the map type.
FEATURE_ROWS = {
    "BPF_OBJ_GET_INFO_BY_FD with info.hash": ("map_value_hash", errno.EINVAL),
}


def _not_emulated_errno(cmd) -> int:
    """The errno the entry answers for a command without a handler."""
    try:
        _not_emulated(None, b"", None)
    except BpfError as e:
        return e.errno
    raise AssertionError("_not_emulated returned")  # pragma: no cover


def _cell(ops, field: str, missing: int) -> str:
    fn = getattr(ops, field)
    if fn is None:
        return errno_name(missing)
    always = getattr(fn, "always_errno", None)
    if always is not None:
        return f"{errno_name(always)} (always)"
    return YES


def support_matrix() -> dict:
    """{row name: {map type name: cell}} for every bpf command (in enum order) and the
    type-dependent features. A cell is "yes", or the errno the call always fails with."""
    types = sorted(MAP_TYPES)
    names = [T(t).name.removeprefix("BPF_MAP_TYPE_") for t in types]
    rows = {}
    for cmd in C:
        if cmd not in COMMANDS:
            unemulated = errno_name(_not_emulated_errno(cmd))
            rows[cmd.name] = {n: f"{unemulated} (not emulated)" for n in names}
        elif cmd in OP_OF_COMMAND:
            field, missing = OP_OF_COMMAND[cmd]
            rows[cmd.name] = {n: _cell(MAP_TYPES[t], field, missing) for t, n in zip(types, names)}
        else:
            rows[cmd.name] = {n: YES for n in names}
    for row, (field, missing) in FEATURE_ROWS.items():
        rows[row] = {n: _cell(MAP_TYPES[t], field, missing) for t, n in zip(types, names)}
    return rows


def render_markdown() -> str:
    """The matrix as Markdown (what goes between the README's markers): a table of the
    emulated commands, then the commands that are not emulated with the errno each gets."""
    rows = support_matrix()
    names = list(next(iter(rows.values())))
    lines = ["| command | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    unemulated = {}
    others = {C(cmd).name for cmd in OBJECT_COMMANDS if cmd in COMMANDS}
    for row, cells in rows.items():
        if row in others:
            continue
        values = set(cells.values())
        if len(values) == 1 and next(iter(values)).endswith(" (not emulated)"):
            unemulated.setdefault(next(iter(values)).split()[0], []).append(row)
            continue
        lines.append(f"| `{row}` | " + " | ".join(cells[n] for n in names) + " |")
    lines.append("")
    lines.append("A cell is `yes`, or the errno the command always returns for that map type.")
    if others:
        lines.append("")
        lines.append("Emulated, on BTF and program objects: "
                     + ", ".join(f"`{c}`" for c in rows if c in others) + ".")
    for err, cmds in unemulated.items():
        lines.append("")
        lines.append(f"Not emulated, {err} on every map type: "
                     + ", ".join(f"`{c}`" for c in cmds) + ".")
    return "\n".join(lines) + "\n"


START = "<!-- support-matrix:start -->"
END = "<!-- support-matrix:end -->"


def readme_section(text: str) -> str | None:
    """What the README has between the markers, or None without them."""
    if START not in text or END not in text:
        return None
    return text.split(START, 1)[1].split(END, 1)[0]


def rewrite_readme(text: str) -> str:
    """The README text with the section between the markers regenerated."""
    if readme_section(text) is None:
        raise ValueError(f"the README has no {START} ... {END} section")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + START + "\n" + render_markdown() + END + tail
