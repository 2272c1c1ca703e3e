"""A per-CPU packet counter: each CPU adds to its own slot of a PERCPU_ARRAY (no atomics
needed, no cache line bouncing between CPUs), and userspace adds the slots up.

On the program side a lookup in a per-CPU map gives the slot of the CPU the program runs on.
The emulator's current CPU is ``emu.cpu``; on the live kernel the process is pinned to
each CPU in turn (os.sched_setaffinity) and a real BPF program runs there.

Userspace reads all the slots at once: the value is a list with one entry per possible CPU,
and Map.sum() adds them up.

    python examples/percpu_counter.py            # on the emulator
    python examples/percpu_counter.py --kernel   # on the live kernel (root)
"""
import ctypes
import os

from bpfemu import Emulator, Map
from bpfemu.uapi.consts import BPF_MAP_TYPE_PERCPU_ARRAY

from flows import backend_from_args, dataplane_for

PACKETS_ON_CPU = 3      # CPU n sees PACKETS_ON_CPU + n packets


def run_on_cpu(backend, cpu):
    """Make the program side run on cpu: set the emulator's CPU, or pin this process."""
    if isinstance(backend, Emulator):
        backend.cpu = cpu
    else:
        os.sched_setaffinity(0, {cpu})


def main():
    backend = backend_from_args()
    counter = Map.create(backend, BPF_MAP_TYPE_PERCPU_ARRAY, ctypes.c_uint32, ctypes.c_uint64,
                         1, name="pkt_count")
    print(f"created {counter!r} on {counter.nr_cpus} possible CPUs")

    if isinstance(backend, Emulator):
        cpus = list(range(backend.nr_cpus))
    else:
        cpus = sorted(c for c in os.sched_getaffinity(0) if c < counter.nr_cpus)
    saved = os.sched_getaffinity(0)
    key = ctypes.c_uint32(0)
    with dataplane_for(backend) as dp:
        try:
            for cpu in cpus:
                run_on_cpu(backend, cpu)
                for _ in range(PACKETS_ON_CPU + cpu):
                    slot = dp.lookup_elem(counter.fd, key)    # this CPU's slot
                    dp.fetch_add(slot, 0, 8, 1)
        finally:
            os.sched_setaffinity(0, saved)
    print(f"the program ran on CPUs {', '.join(map(str, cpus))}")

    per_cpu = counter[0]
    for cpu, value in enumerate(per_cpu):
        print(f"  CPU {cpu}: {value.value} packets")
    print(f"total (Map.sum): {counter.sum(0)} packets; busiest CPU (Map.max): "
          f"{counter.max(0)} packets")
    counter.close()


if __name__ == "__main__":
    main()
