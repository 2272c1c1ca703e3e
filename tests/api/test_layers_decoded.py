"""The LibBpf and Map layers over an Emulator: a call repeated with equal arguments is a
decoded call (no command handler runs), and still gives the same results."""
import ctypes

from bpfemu import Emulator
from bpfemu.libbpf import LibBpf
from bpfemu.maps_api import Map
from bpfemu.uapi import consts as c


def handler_runs(emu) -> list:
    """A counter of the command handlers emu runs from now on."""
    counter = [0]

    def counted(handler):
        def run(*args):
            counter[0] += 1
            return handler(*args)
        return run
    emu.dispatch = {cmd: row._replace(handler=counted(row.handler))
                    for cmd, row in emu.dispatch.items()}
    return counter


def test_libbpf_repeated_element_calls_are_decoded():
    with Emulator() as emu:
        lib = LibBpf(emu)
        fd = lib.bpf_map_create(c.BPF_MAP_TYPE_HASH, "m", 4, 8, 16)
        key, value = ctypes.c_uint32(3), ctypes.c_uint64()
        assert lib.bpf_map_update_elem(fd, b"\3\0\0\0", b"\7" * 8) == 0
        runs = handler_runs(emu)
        for i in range(5):
            assert lib.bpf_map_update_elem(fd, b"\3\0\0\0", bytes([i]) * 8) == 0
            assert lib.bpf_map_lookup_elem(fd, key, value) == 0
            assert value.value == int.from_bytes(bytes([i]) * 8, "little")
        assert runs[0] == 1                     # the first lookup; every repeat decoded


def test_map_repeated_operations_are_decoded():
    with Emulator() as emu:
        m = Map.create(emu, c.BPF_MAP_TYPE_ARRAY, ctypes.c_uint32, ctypes.c_uint64, 8, ints=True)
        m[1] = 5
        assert m[1] == 5
        runs = handler_runs(emu)
        for i in range(5):
            m[1] = i
            assert m[1] == i
        assert runs[0] == 0
        m.close()


def test_libbpf_repeated_batch_calls_are_decoded():
    """LibBpf batch calls repeated on the same buffers send the same attr bytes: decoded
    calls (batch_fastpath.py), a count change included, with the kernel's results."""
    with Emulator() as emu:
        lib = LibBpf(emu)
        fd = lib.bpf_map_create(c.BPF_MAP_TYPE_HASH, "m", 4, 8, 64)
        keys, values = (ctypes.c_uint32 * 8)(), (ctypes.c_uint64 * 8)()
        count = ctypes.c_uint32(8)
        for k in range(8):
            keys[k], values[k] = k, 100 + k
        assert lib.bpf_map_update_batch(fd, keys, values, count) == 0
        runs = handler_runs(emu)
        for base in (8, 16, 24):
            for k in range(8):
                keys[k] = base + k
            count.value = 8 if base < 24 else 5
            assert lib.bpf_map_update_batch(fd, keys, values, count) == 0
            assert count.value == (8 if base < 24 else 5)
        assert runs[0] == 0
        for k in range(8):
            keys[k] = 100 + k                   # none in the map
        count.value = 8
        assert lib.bpf_map_delete_batch(fd, keys, count) == -2     # ENOENT at the first
        assert count.value == 0
        count.value = 8
        assert lib.bpf_map_delete_batch(fd, keys, count) == -2
        assert runs[0] == 1                     # the first delete batch; its repeat decoded
