"""LibBpf element calls made as a C loop makes them (bpfemu/libbpf_calls.py): on an emulator
through pinned buffers copied in before the call and out after it, on the kernel through the
caller's buffers. The copies must give the kernel's bytes whatever the caller's buffers alias,
leave an output untouched when the command fails, and follow an fd number to the map it
names now."""
import ctypes
import os
import threading
import errno

import pytest

from bpfemu import Emulator
from bpfemu.libbpf import LibBpf
from bpfemu.uapi import consts as c


@pytest.fixture
def lb(backend):
    """LibBpf straight over the backend (no recorder between: the emulator's pinned calls)."""
    lib = LibBpf(backend)
    fds = []
    orig = lib.bpf_map_create

    def create(*a, **kw):
        fd = orig(*a, **kw)
        fds.append(fd)
        return fd
    lib.bpf_map_create = create
    yield lib
    for fd in fds:
        lib.close(fd)


def _hash(lib, ks=4, vs=8, n=16, map_type=c.BPF_MAP_TYPE_HASH, flags=0):
    fd = lib.bpf_map_create(map_type, "calls", ks, vs, n, {"map_flags": flags})
    assert fd >= 0
    return fd


def test_a_failed_lookup_leaves_the_value_untouched(lb):
    fd = _hash(lb)
    value = ctypes.c_uint64(0x1122334455667788)
    assert lb.bpf_map_lookup_elem(fd, ctypes.c_uint32(5), value) == -errno.ENOENT
    assert value.value == 0x1122334455667788
    out = bytearray(b"\xaa" * 8)
    assert lb.bpf_map_lookup_and_delete_elem(fd, ctypes.c_uint32(5), out) == -errno.ENOENT
    assert out == bytearray(b"\xaa" * 8)


def test_lookup_into_the_key_buffer_itself(lb):
    """value and key the same 8 bytes: the key is read before the value is written."""
    fd = _hash(lb, ks=8, vs=8)
    assert lb.bpf_map_update_elem(fd, ctypes.c_uint64(1), ctypes.c_uint64(2), 0) == 0
    assert lb.bpf_map_update_elem(fd, ctypes.c_uint64(2), ctypes.c_uint64(3), 0) == 0
    buf = ctypes.c_uint64(1)
    assert lb.bpf_map_lookup_elem(fd, buf, buf) == 0
    assert buf.value == 2
    assert lb.bpf_map_lookup_elem(fd, buf, buf) == 0           # now the key 2
    assert buf.value == 3


def test_a_walk_with_one_buffer_for_key_and_next_key(lb):
    """The C idiom bpf_map_get_next_key(fd, &key, &key) walks every key once."""
    fd = _hash(lb)
    for k in range(5):
        assert lb.bpf_map_update_elem(fd, ctypes.c_uint32(k), ctypes.c_uint64(k), 0) == 0
    key = ctypes.c_uint32()
    seen = []
    ret = lb.bpf_map_get_next_key(fd, None, key)
    while ret == 0:
        seen.append(key.value)
        ret = lb.bpf_map_get_next_key(fd, key, key)
    assert ret == -errno.ENOENT
    assert sorted(seen) == list(range(5))


def test_outputs_into_bytearrays_and_longer_buffers(lb):
    fd = _hash(lb)
    assert lb.bpf_map_update_elem(fd, bytearray(b"\1\0\0\0"), b"\7" * 8, 0) == 0
    out = bytearray(b"\xee" * 12)                   # longer than the value: the tail stays
    assert lb.bpf_map_lookup_elem(fd, b"\1\0\0\0\xff\xff", out) == 0
    assert out == bytearray(b"\7" * 8 + b"\xee" * 4)
    nxt = (ctypes.c_uint8 * 6)(*[0xcc] * 6)
    assert lb.bpf_map_get_next_key(fd, None, nxt) == 0
    assert bytes(nxt) == b"\1\0\0\0\xcc\xcc"
    assert len(out) == 12


def test_flags_change_from_call_to_call(lb):
    fd = _hash(lb)
    key, value = ctypes.c_uint32(1), ctypes.c_uint64(1)
    assert lb.bpf_map_update_elem(fd, key, value, c.BPF_NOEXIST) == 0
    assert lb.bpf_map_update_elem(fd, key, value, c.BPF_NOEXIST) == -errno.EEXIST
    assert lb.bpf_map_update_elem(fd, key, value, c.BPF_EXIST) == 0
    assert lb.bpf_map_update_elem(fd, key, value, 0) == 0
    assert lb.bpf_map_update_elem(fd, ctypes.c_uint32(2), value, c.BPF_EXIST) == -errno.ENOENT
    assert lb.bpf_map_lookup_elem_flags(fd, key, value, 1 << 40) == -errno.EINVAL
    assert lb.bpf_map_lookup_elem_flags(fd, key, value, 0) == 0
    assert lb.bpf_map_delete_elem_flags(fd, key, 1) == -errno.EINVAL
    assert lb.bpf_map_delete_elem_flags(fd, key, 0) == 0


def test_per_cpu_values(lb):
    ncpu = lb.libbpf_num_possible_cpus()
    fd = _hash(lb, map_type=c.BPF_MAP_TYPE_PERCPU_HASH)
    vals = (ctypes.c_uint64 * ncpu)(*range(10, 10 + ncpu))
    assert lb.bpf_map_update_elem(fd, ctypes.c_uint32(3), vals, 0) == 0
    out = (ctypes.c_uint64 * ncpu)()
    assert lb.bpf_map_lookup_elem(fd, ctypes.c_uint32(3), out) == 0
    assert list(out) == list(range(10, 10 + ncpu))


@pytest.mark.parametrize("decoded", [True, False])
def test_an_fd_number_taken_by_another_map_behind_the_layer(decoded):
    """The fd closed without the layer and its number given to a map with bigger keys and
    values: the layer's next calls copy the new map's sizes (not the old buffers' 4 and 8),
    with the emulator's decoded calls on (checked when they are forgotten) or off (checked
    at every call)."""
    with Emulator(decoded_calls=decoded) as emu:
        lib = LibBpf(emu)
        fd = _hash(lib)
        assert lib.bpf_map_update_elem(fd, ctypes.c_uint32(1), ctypes.c_uint64(1), 0) == 0
        emu.close(fd)
        other = LibBpf(emu)
        assert other.bpf_map_create(c.BPF_MAP_TYPE_HASH, "big", 16, 64, 4, None) == fd
        key, value = bytes(range(16)), bytes(range(64))
        assert lib.bpf_map_update_elem(fd, key, value, 0) == 0
        out = ctypes.create_string_buffer(64)
        assert lib.bpf_map_lookup_elem(fd, key, out) == 0
        assert out.raw == value
        assert other.bpf_map_lookup_elem(fd, key, out) == 0 and out.raw == value
        with pytest.raises(ValueError, match="key is a 4-byte buffer"):
            lib.bpf_map_lookup_elem(fd, ctypes.c_uint32(1), out)


def test_repeated_calls_copy_through_pinned_buffers():
    """On an emulator, ctypes keys and values (not pinned by the caller) are copied into the
    layer's pinned buffers: the decoded calls read and write no process memory."""
    with Emulator(decoded_calls=True) as emu:
        lib = LibBpf(emu)
        fd = _hash(lib)
        key, value = ctypes.c_uint32(1), ctypes.c_uint64(5)
        assert lib.bpf_map_update_elem(fd, key, value, 0) == 0
        assert lib.bpf_map_lookup_elem(fd, key, value) == 0
        used = []
        mem = emu.mem
        for name in ("read", "read2", "write", "reader", "reader2", "writer"):
            orig = getattr(mem, name)
            setattr(mem, name, lambda *a, _o=orig, _n=name: (used.append(_n), _o(*a))[1])
        for i in range(4):
            key.value, value.value = i, 100 + i
            assert lib.bpf_map_update_elem(fd, key, value, 0) == 0
            value.value = 0
            assert lib.bpf_map_lookup_elem(fd, key, value) == 0
            assert value.value == 100 + i
        assert used == []


def test_more_maps_than_the_layer_keeps_pinned(monkeypatch):
    """Round-robin over more map fds than a thread keeps buffers for: the oldest fd's
    buffers go and come back, and every call still reads and writes the right map."""
    monkeypatch.setattr("bpfemu.libbpf.MAX_PINNED_FDS", 3)
    with Emulator() as emu:
        lib = LibBpf(emu)
        fds = [_hash(lib) for _ in range(5)]
        key, value = ctypes.c_uint32(), ctypes.c_uint64()
        for rnd in range(3):
            for i, fd in enumerate(fds):
                key.value, value.value = rnd, i * 100 + rnd
                assert lib.bpf_map_update_elem(fd, key, value, 0) == 0
        for i, fd in enumerate(fds):
            for rnd in range(3):
                key.value = rnd
                assert lib.bpf_map_lookup_elem(fd, key, value) == 0
                assert value.value == i * 100 + rnd


def test_threads_have_buffers_of_their_own():
    """Two threads calling through one LibBpf on one map: each its own pinned buffers, so
    neither reads the other's key or gets the other's value."""
    import threading
    with Emulator() as emu:
        lib = LibBpf(emu)
        fd = _hash(lib, n=512)
        errors = []

        def work(base):
            key, value = ctypes.c_uint32(), ctypes.c_uint64()
            for i in range(2000):
                key.value, value.value = base + i % 200, (base + i % 200) * 7
                if lib.bpf_map_update_elem(fd, key, value, 0) != 0:
                    errors.append(("update", base, i))
                value.value = 0
                if lib.bpf_map_lookup_elem(fd, key, value) != 0 or value.value != key.value * 7:
                    errors.append(("lookup", base, i, value.value))
        threads = [threading.Thread(target=work, args=(b,)) for b in (0, 256)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []


def test_an_fd_closed_with_os_close_and_taken_by_a_bigger_map(backend):
    """The fd closed behind everything (os.close) and its number given to a map with bigger
    keys and values by another layer: the first layer's next calls with bytes of the new
    sizes reach the new map whole. On the kernel the layer learned 4 and 8 for the fd and
    must not cut the bytes to them (the kernel reads 16 and 64 at the addresses); on an
    emulator the decoded call kept for the old map must not serve the new one."""
    lib, other = LibBpf(backend), LibBpf(backend)
    fd = _hash(lib)
    for _ in range(3):                          # decoded on an emulator from the second on
        assert lib.bpf_map_update_elem(fd, bytes(4), bytes(8), 0) == 0
    os.close(fd)
    fd2 = other.bpf_map_create(c.BPF_MAP_TYPE_HASH, "big", 16, 64, 4, None)
    try:
        assert fd2 == fd
        key, value = bytes(range(1, 17)), bytes(range(64))
        assert lib.bpf_map_update_elem(fd, key, value, 0) == 0
        out = ctypes.create_string_buffer(64)
        assert other.bpf_map_lookup_elem(fd, key, out) == 0
        assert out.raw == value
        first = ctypes.create_string_buffer(16)
        assert other.bpf_map_get_next_key(fd, None, first) == 0 and first.raw == key
    finally:
        other.close(fd2)


def test_a_thread_that_ended_leaves_nothing_pinned():
    """Each thread's buffers are its own and pinned; when another thread first calls, the
    buffers of threads that have ended are unpinned (a thread per task would otherwise pin
    three buffers per thread and map, for good)."""
    with Emulator() as emu:
        lib = LibBpf(emu)
        fd = _hash(lib, n=128)

        def task(k):
            assert lib.bpf_map_update_elem(fd, ctypes.c_uint32(k), ctypes.c_uint64(k), 0) == 0
        for k in range(50):
            t = threading.Thread(target=task, args=(k,))
            t.start()
            t.join()
        assert len(emu.own_mem._pinned) <= 2 * 3    # the last thread's, and the one before
        task(99)
        assert len(emu.own_mem._pinned) <= 2 * 3


def test_dropped_layers_leave_nothing_pinned():
    """A LibBpf, or a Map, dropped without close() (a test that makes one per case): its
    buffers are unpinned at the next pin after it is gone, so 30 of them in a row keep no
    more pinned than one does, and the calls after them read and write the right bytes."""
    import gc
    from bpfemu.maps_api import Map
    with Emulator() as emu:
        fd = _hash(LibBpf(emu), n=256)
        mem = emu.own_mem
        for k in range(30):
            lib = LibBpf(emu)
            assert lib.bpf_map_update_elem(fd, ctypes.c_uint32(k), ctypes.c_uint64(k), 0) == 0
            m = Map.open(emu, fd, ctypes.c_uint32, ctypes.c_uint64)
            assert m[k].value == k
            m[k] = k + 1000
            del lib, m
            gc.collect()
            assert mem.pinned_count <= 2 * 3        # the dropped pair's, until the next pin
        lib = LibBpf(emu)
        value = ctypes.c_uint64()
        assert lib.bpf_map_lookup_elem(fd, ctypes.c_uint32(22), value) == 0
        assert value.value == 1022
        assert mem.pinned_count == 3


def test_an_fd_replaced_while_its_buffers_are_pinned():
    """Another thread closes the fd and makes a map with bigger keys at that number while
    this thread's layer pins the buffers it made for the old map (the window between the
    map's lookup and the generation's): the next call must see the new map, not stay on
    buffers of the old sizes for good. Made deterministic by doing the other thread's work
    inside the pin."""
    with Emulator() as emu:
        lib, other = LibBpf(emu), LibBpf(emu)
        fd = _hash(lib)
        mem = emu.own_mem
        pin = mem.pin
        swapped = []

        def pin_then_swap(*objs, **kw):
            pin(*objs, **kw)
            if not swapped:
                swapped.append(True)
                emu.close(fd)
                assert other.bpf_map_create(c.BPF_MAP_TYPE_HASH, "big", 16, 64, 4, None) == fd
        mem.pin = pin_then_swap
        try:
            assert lib.bpf_map_update_elem(fd, bytes(4), bytes(8), 0) in (0, -errno.EINVAL)
        finally:
            del mem.pin
        assert swapped
        key, value = bytes(range(16)), bytes(range(64))
        assert lib.bpf_map_update_elem(fd, key, value, 0) == 0
        out = ctypes.create_string_buffer(64)
        assert other.bpf_map_lookup_elem(fd, key, out) == 0 and out.raw == value
