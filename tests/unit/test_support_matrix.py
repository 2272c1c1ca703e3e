"""The README's support matrix is what the command table and the ops tables say today."""
import pathlib

import pytest

from bpfemu import support_matrix as sm
from bpfemu.errors import ENOTSUPP, errno_name
from bpfemu.maps import MAP_TYPES
from bpfemu.syscall import COMMANDS
from bpfemu.uapi.consts import BpfCmd as C

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_readme_matrix_is_current():
    text = (ROOT / "README.md").read_text()
    section = sm.readme_section(text)
    if section is None:
        pytest.skip("README.md has no <!-- support-matrix:start/end --> section yet")
    assert section.strip() == sm.render_markdown().strip(), (
        "the README's support matrix is stale: run scripts/gen_support_matrix.py")


def test_matrix_covers_every_command_and_emulated_type():
    rows = sm.support_matrix()
    assert [r for r in rows if r.startswith("BPF_") and " " not in r] == [c.name for c in C]
    for cells in rows.values():
        assert len(cells) == len(MAP_TYPES)


def test_matrix_follows_the_tables():
    rows = sm.support_matrix()
    # Arrays have no LOOKUP_AND_DELETE_ELEM/BATCH or DELETE_BATCH (docs: #batch-commands).
    for cmd in ("BPF_MAP_LOOKUP_AND_DELETE_ELEM", "BPF_MAP_LOOKUP_AND_DELETE_BATCH",
                "BPF_MAP_DELETE_BATCH"):
        assert rows[cmd]["ARRAY"] == rows[cmd]["PERCPU_ARRAY"] == errno_name(ENOTSUPP)
        assert rows[cmd]["HASH"] == "yes"
    assert rows["BPF_MAP_DELETE_ELEM"]["ARRAY"] == "EINVAL (always)"
    # Only ARRAY hashes its values for OBJ_GET_INFO_BY_FD (docs: #info-ids-freeze-and-pins).
    hash_row = rows["BPF_OBJ_GET_INFO_BY_FD with info.hash"]
    assert [t for t, v in hash_row.items() if v == "yes"] == ["ARRAY"]
    for cmd in C:
        if cmd not in COMMANDS:
            assert set(rows[cmd.name].values()) == {"EINVAL (not emulated)"}


def test_rewrite_replaces_only_the_section():
    text = "head\n" + sm.START + "\nold\n" + sm.END + "\ntail\n"
    new = sm.rewrite_readme(text)
    assert new.startswith("head\n" + sm.START + "\n") and new.endswith(sm.END + "\ntail\n")
    assert sm.readme_section(new).strip() == sm.render_markdown().strip()
    with pytest.raises(ValueError):
        sm.rewrite_readme("no markers")


def test_unemulated_commands_fail_with_the_documented_errno():
    """Every command the matrix lists as not emulated answers exactly that errno."""
    import ctypes
    from bpfemu import Emulator
    emu = Emulator(nr_cpus=2)
    rows = sm.support_matrix()
    for cmd in C:
        if cmd in COMMANDS:
            continue
        errname = next(iter(rows[cmd.name].values())).split()[0]
        attr = ctypes.create_string_buffer(168)
        ret = emu.bpf(cmd, attr, 168)
        assert errno_name(-ret) == errname, (cmd.name, ret)
