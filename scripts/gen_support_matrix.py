#!/usr/bin/env python3
"""Regenerate the README's support matrix (commands x map types) from the code.

Rewrites what lies between <!-- support-matrix:start --> and <!-- support-matrix:end -->
in README.md. ``--check`` only reports whether it is current (exit 1 if not); ``--print``
writes the table to stdout.
"""
import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bpfemu.support_matrix import readme_section, render_markdown, rewrite_readme  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readme", default=str(ROOT / "README.md"))
    ap.add_argument("--check", action="store_true", help="exit 1 if the README is stale")
    ap.add_argument("--print", action="store_true", help="print the table and exit")
    args = ap.parse_args()
    if args.print:
        sys.stdout.write(render_markdown())
        return 0
    path = pathlib.Path(args.readme)
    text = path.read_text()
    if readme_section(text) is None:
        print(f"{path}: no support-matrix markers; add them where the table belongs",
              file=sys.stderr)
        return 2
    new = rewrite_readme(text)
    if args.check:
        if new != text:
            print(f"{path}: support matrix is stale; run {pathlib.Path(__file__).name}",
                  file=sys.stderr)
            return 1
        return 0
    if new != text:
        path.write_text(new)
        print(f"{path}: support matrix regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
