"""``python -m bpfemu``: the bpfemu command (see bpfemu/cli.py)."""
import sys

from .cli import main

sys.exit(main())
