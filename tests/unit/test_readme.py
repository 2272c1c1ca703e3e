"""The README stays true: every DEVIATION tag in the code is listed in it, and vice versa."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
TAG = re.compile(r"DEVIATION\(([a-z0-9-]+)\)")


def code_tags() -> set:
    tags = set()
    for path in (ROOT / "bpfemu").rglob("*.py"):
        tags |= set(TAG.findall(path.read_text()))
    return tags


def readme_tags() -> set:
    text = (ROOT / "README.md").read_text()
    section = text.split("<!-- deviations:start -->")[1].split("<!-- deviations:end -->")[0]
    return set(re.findall(r"^- \*\*([a-z0-9-]+)\*\*", section, re.M))


def test_every_deviation_in_the_code_is_listed_in_the_readme():
    missing = code_tags() - readme_tags()
    assert not missing, f"README's deviation list lacks: {sorted(missing)}"


def test_the_readme_lists_no_deviation_the_code_no_longer_has():
    stale = readme_tags() - code_tags()
    assert not stale, f"README lists deviations no code carries: {sorted(stale)}"


def test_ci_runs_the_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "<!-- ci:setup -->" in readme and "<!-- ci:test -->" in readme
    assert "ci:setup" in ci and "ci:test" in ci


def _python_blocks(text: str) -> list:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_readme_python_blocks_run_in_order():
    """The quickstart, then the tour's snippets, run as a newcomer would paste them."""
    text = (ROOT / "README.md").read_text()
    blocks = _python_blocks(text.split("## Support matrix")[0])
    assert len(blocks) >= 3
    ns: dict = {}
    exec(compile(blocks[0], "README quickstart", "exec"), ns)
    from bpfemu import Emulator
    ns["emu"] = Emulator()                       # the tour continues on a fresh emulator
    for i, block in enumerate(blocks[1:], 1):
        if "def test_" in block:                 # the pytest example: define and call it
            exec(compile(block, f"README block {i}", "exec"), ns)
            ns["test_counts"](ns["emu"])
            continue
        exec(compile(block, f"README block {i}", "exec"), ns)


def test_each_readme_python_block_runs_on_its_own():
    """A newcomer pastes one snippet, not all of them: each block has its own imports and
    set-up (the libbpf, Map and pytest snippets used to rely on names from earlier ones)."""
    from bpfemu import Emulator
    text = (ROOT / "README.md").read_text()
    blocks = _python_blocks(text.split("## Support matrix")[0])
    for i, block in enumerate(blocks):
        ns: dict = {}
        exec(compile(block, f"README block {i}", "exec"), ns)
        for name, fn in list(ns.items()):
            if name.startswith("test_") and callable(fn):   # the pytest example
                emu = Emulator()
                fn(emu)
                emu.close_all()


def _cli_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## The `bpfemu` command")[1].split("\n## ")[0]


def test_the_readme_documents_every_cli_subcommand_and_option():
    import argparse

    from bpfemu.cli import build_parser
    doc = _cli_section()
    parser = build_parser()
    assert "--version" in doc
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        assert f"bpfemu {name}" in doc, f"README's CLI section lacks `bpfemu {name}`"
        for action in sub._actions:
            for opt in action.option_strings:
                if opt in ("-h", "--help"):
                    continue
                assert opt in doc, f"README's CLI section lacks {name}'s {opt}"
            for choice in action.choices or ():
                if not isinstance(action, argparse._SubParsersAction):
                    assert str(choice) in doc, f"README lacks {name}'s choice {choice}"


def test_the_readme_lists_every_exit_status():
    from bpfemu import cli
    doc = _cli_section()
    codes = {v for k, v in vars(cli).items() if k.startswith("EXIT_")}
    for code in codes:
        assert f"\n| {code} |" in doc, f"README's exit status table lacks {code}"
