"""Record the real clients' transcripts on the live kernel into tests/clients/expected/.

    .venv/bin/python -m tests.clients.record [CLIENT...]     (as root, on the kernel to record)

The recorded transcripts stand in for the live kernel where the tests cannot run clients on
it (no root, no bpf()). Record on a machine with 2 possible CPUs (test_real_clients checks
the recorded transcripts only there); run it twice and compare, to be sure a client's output
does not depend on the moment.
"""
import os
import shutil
import sys

from . import harness
from .build import Unavailable
from .clients import CLIENTS
from .test_real_clients import EXPECTED


def main(names) -> int:
    why = harness.kernel_unavailable()
    if why:
        sys.exit(f"cannot record: {why}")
    base = harness.world_readable_tmpdir("bpfemu-clients-")
    try:
        for name in names or sorted(CLIENTS):
            spec = CLIENTS[name]
            try:
                argv = spec.builder(base)
            except Unavailable as e:
                print(f"{name}: skipped: {e}")
                continue
            run = harness.run_on_kernel(argv, base)
            if run.returncode != 0:
                sys.exit(f"{name} exited {run.returncode}:\n{run.stderr}")
            path = os.path.join(EXPECTED, f"{name}.txt")
            with open(path, "w") as f:
                f.write(spec.normalise(run.stdout, run.pin_dir))
            print(f"{name}: {path}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
