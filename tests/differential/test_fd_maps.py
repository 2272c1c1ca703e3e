"""PROG_ARRAY, ARRAY_OF_MAPS and HASH_OF_MAPS on the emulator and the live kernel: creation
checks (the inner map template), fds in and ids out, element commands, errnos and walk
order. Facts: docs/fd_maps.md."""
import struct

import pytest

from bpfemu.uapi import consts as c
from tests.differential.abi_support import (ALL_TYPES, ARRAY, HASH, PERCPU_ARRAY,
                                            TYPE_IDS, batch, freeze, get_info, map_ids,
                                            wait_gone)
from tests.differential.prog_support import RET0, RET1, SOCKET_FILTER, XDP, prog_load
from tests.support import Buf

PROG_ARRAY, ARRAY_OF_MAPS, HASH_OF_MAPS = 3, 12, 13
FD_TYPES = [PROG_ARRAY, ARRAY_OF_MAPS, HASH_OF_MAPS]
FD_IDS = {PROG_ARRAY: "prog_array", ARRAY_OF_MAPS: "array_of_maps",
          HASH_OF_MAPS: "hash_of_maps"}


def same(a, b):
    return (a >= 0, min(a, 0)) == (b >= 0, min(b, 0))


def k(i):
    return struct.pack("<I", i)


def obj_id(backend, fd):
    return struct.unpack_from("<I", get_info(backend, fd, 232, init=bytes(232))[2], 4)[0]


def norm(x):
    return x if x < 0 else 0


# --- creation ------------------------------------------------------------------------------

CREATE = {
    # name: (map type, key size, value size, max entries, flags, inner template or None)
    "prog_array": (PROG_ARRAY, 4, 4, 4, 0, None),
    "prog_array_value_8": (PROG_ARRAY, 4, 8, 4, 0, None),
    "prog_array_key_8": (PROG_ARRAY, 8, 4, 4, 0, None),
    "prog_array_rdonly_prog": (PROG_ARRAY, 4, 4, 4, c.BPF_F_RDONLY_PROG, None),
    "prog_array_mmapable": (PROG_ARRAY, 4, 4, 4, c.BPF_F_MMAPABLE, None),
    "prog_array_inner_map_flag": (PROG_ARRAY, 4, 4, 4, c.BPF_F_INNER_MAP, None),
    "prog_array_rdonly": (PROG_ARRAY, 4, 4, 4, c.BPF_F_RDONLY, None),
    "aom_no_inner": (ARRAY_OF_MAPS, 4, 4, 4, 0, "none"),
    "aom_inner_closed": (ARRAY_OF_MAPS, 4, 4, 4, 0, "closed"),
    "hom_no_inner": (HASH_OF_MAPS, 4, 4, 4, 0, "none"),
    "aom_value_8": (ARRAY_OF_MAPS, 4, 8, 4, 0, (HASH, 4, 8, 4, 0)),
    "hom_value_8": (HASH_OF_MAPS, 4, 8, 4, 0, (HASH, 4, 8, 4, 0)),
    "hom_key_8": (HASH_OF_MAPS, 8, 4, 4, 0, (HASH, 4, 8, 4, 0)),
    "hom_no_prealloc": (HASH_OF_MAPS, 4, 4, 4, c.BPF_F_NO_PREALLOC, (HASH, 4, 8, 4, 0)),
    "hom_rdonly_prog": (HASH_OF_MAPS, 4, 4, 4, c.BPF_F_RDONLY_PROG, (HASH, 4, 8, 4, 0)),
    "aom_rdonly_prog": (ARRAY_OF_MAPS, 4, 4, 4, c.BPF_F_RDONLY_PROG, (HASH, 4, 8, 4, 0)),
    "aom_inner_prog_array": (ARRAY_OF_MAPS, 4, 4, 4, 0, (PROG_ARRAY, 4, 4, 2, 0)),
    "aom_inner_aom": (ARRAY_OF_MAPS, 4, 4, 4, 0, "aom"),
    "aom_inner_prog_fd": (ARRAY_OF_MAPS, 4, 4, 4, 0, "prog"),
}
for t in ALL_TYPES:
    CREATE[f"aom_inner_{TYPE_IDS[t]}"] = (ARRAY_OF_MAPS, 4, 4, 4, 0, (t, 4, 8, 4, 0))
    CREATE[f"hom_inner_{TYPE_IDS[t]}"] = (HASH_OF_MAPS, 4, 4, 4, 0, (t, 4, 8, 4, 0))


def make_inner(cl, spec):
    if spec is None:
        return 0
    if spec == "none":
        return 0
    if spec == "closed":
        return 0x7FFF0000
    if spec == "aom":
        inner = cl.create(HASH, 4, 4, 2)
        return cl.create(ARRAY_OF_MAPS, 4, 4, 2, inner_map_fd=inner)
    if spec == "prog":
        fd = prog_load(cl.b)
        cl.fds.append(fd)
        return fd
    return cl.create(*spec)


@pytest.mark.parametrize("name", list(CREATE))
def test_create(both, name):
    map_type, ks, vs, n, flags, inner = CREATE[name]
    out = []
    for cl in both:
        inner_fd = make_inner(cl, inner)
        fd = cl.create(map_type, ks, vs, n, flags, inner_map_fd=inner_fd)
        out.append(norm(fd))
    assert out[0] == out[1]


# --- PROG_ARRAY ------------------------------------------------------------------------------

def test_prog_array_elements(both):
    out = []
    for cl in both:
        pa = cl.create(PROG_ARRAY, 4, 4, 3)
        p1 = prog_load(cl.b, SOCKET_FILTER, RET0)
        p2 = prog_load(cl.b, SOCKET_FILTER, RET1)
        px = prog_load(cl.b, XDP, RET0)
        cl.fds += [p1, p2, px]
        ids = {obj_id(cl.b, p): name for p, name in ((p1, "p1"), (p2, "p2"), (px, "px"))}
        m = cl.create(HASH, 4, 4, 2)
        steps = [
            cl.lookup(pa, k(0), 4),                       # empty: ENOENT
            cl.update(pa, k(0), k(p1)),
            cl.update(pa, k(1), k(p2)),
            cl.update(pa, k(2), k(px)),                   # another type: EINVAL
            cl.update(pa, k(3), k(p1)),                   # out of range: E2BIG
            cl.update(pa, k(0), k(p1), c.BPF_NOEXIST),    # flags other than ANY: EINVAL
            cl.update(pa, k(0), k(p1), c.BPF_EXIST),
            cl.update(pa, k(2), k(m)),                    # a map fd: EINVAL
            cl.update(pa, k(2), k(0x7FFF0000)),           # closed: EBADF
            cl.update(pa, k(3), k(0x7FFF0000)),           # E2BIG before the fd
            cl.delete(pa, k(2)),                          # empty: ENOENT
            cl.delete(pa, k(5)),                          # out of range: E2BIG
            cl.lookup_and_delete(pa, k(0), 4),
        ]
        looked = [cl.lookup(pa, k(i), 4) for i in range(4)]
        steps.append([(r, ids.get(struct.unpack("<I", v)[0]) if v else None) for r, v in looked])
        steps.append(cl.keys(pa, 4))
        steps.append(cl.delete(pa, k(1)))
        steps.append(cl.lookup(pa, k(1), 4))
        out.append(steps)
    assert out[0] == out[1]


def test_prog_array_first_program_sets_the_owner(both):
    """Once an XDP program went in, a socket filter cannot, even after the slot is emptied."""
    out = []
    for cl in both:
        pa = cl.create(PROG_ARRAY, 4, 4, 2)
        px = prog_load(cl.b, XDP, RET0)
        ps = prog_load(cl.b, SOCKET_FILTER, RET0)
        cl.fds += [px, ps]
        out.append([cl.update(pa, k(0), k(px)), cl.delete(pa, k(0)),
                    cl.update(pa, k(0), k(ps)), cl.update(pa, k(1), k(px))])
    assert out[0] == out[1]


# --- maps in maps ---------------------------------------------------------------------------

@pytest.mark.parametrize("outer", [ARRAY_OF_MAPS, HASH_OF_MAPS], ids=["aom", "hom"])
def test_inner_maps_must_match_the_template(both, outer):
    out = []
    for cl in both:
        tmpl = cl.create(ARRAY, 4, 8, 4)
        mm = cl.create(outer, 4, 4, 4, inner_map_fd=tmpl)
        cand = {
            "same": cl.create(ARRAY, 4, 8, 4),
            "other_max_entries": cl.create(ARRAY, 4, 8, 5),
            "other_value_size": cl.create(ARRAY, 4, 16, 4),
            "other_flags": cl.create(ARRAY, 4, 8, 4, c.BPF_F_RDONLY_PROG),
            "other_type": cl.create(PERCPU_ARRAY, 4, 8, 4),
            "hash": cl.create(HASH, 4, 8, 4),
        }
        out.append({n: cl.update(mm, k(i), k(fd)) for i, (n, fd) in enumerate(cand.items())})
    assert out[0] == out[1]
    assert out[0]["same"] == 0 and out[0]["other_value_size"] < 0


def test_inner_map_flag_lets_array_sizes_differ(both):
    out = []
    for cl in both:
        tmpl = cl.create(ARRAY, 4, 8, 4, c.BPF_F_INNER_MAP)
        mm = cl.create(ARRAY_OF_MAPS, 4, 4, 2, inner_map_fd=tmpl)
        a = cl.create(ARRAY, 4, 8, 100, c.BPF_F_INNER_MAP)
        b = cl.create(ARRAY, 4, 8, 100)
        out.append((cl.update(mm, k(0), k(a)), cl.update(mm, k(1), k(b))))
    assert out[0] == out[1]


def test_array_of_maps_elements(both):
    out = []
    for cl in both:
        tmpl = cl.create(HASH, 4, 8, 4)
        aom = cl.create(ARRAY_OF_MAPS, 4, 4, 3, inner_map_fd=tmpl)
        inner = [cl.create(HASH, 4, 8, 4) for _ in range(2)]
        ids = {obj_id(cl.b, fd): i for i, fd in enumerate(inner)}
        p = prog_load(cl.b)
        cl.fds.append(p)
        steps = [cl.lookup(aom, k(0), 4), cl.update(aom, k(0), k(inner[0])),
                 cl.update(aom, k(2), k(inner[1])), cl.update(aom, k(1), k(p)),
                 cl.update(aom, k(1), k(inner[0]), c.BPF_NOEXIST), cl.update(aom, k(3), k(inner[0])),
                 cl.update(aom, k(1), k(0x7FFF0000)), cl.delete(aom, k(1)), cl.delete(aom, k(9))]
        looked = [cl.lookup(aom, k(i), 4) for i in range(4)]
        steps.append([(r, ids.get(struct.unpack("<I", v)[0]) if v else None) for r, v in looked])
        steps.append(cl.keys(aom, 4))
        steps.append(freeze(cl.b, aom))
        steps.append(cl.update(aom, k(1), k(inner[1])))
        out.append(steps)
    assert out[0] == out[1]


def test_hash_of_maps_elements_and_walk(both):
    out = []
    for cl in both:
        tmpl = cl.create(ARRAY, 4, 4, 1)
        hom = cl.create(HASH_OF_MAPS, 4, 4, 8, c.BPF_F_ZERO_SEED, inner_map_fd=tmpl)
        inner = [cl.create(ARRAY, 4, 4, 1) for _ in range(3)]
        ids = {obj_id(cl.b, fd): i for i, fd in enumerate(inner)}

        def look(key):
            r, v = cl.lookup(hom, key, 4)
            return r, ids.get(struct.unpack("<I", v)[0]) if v else None
        steps = []
        for i in range(6):
            steps.append(cl.update(hom, k(i * 7), k(inner[i % 3])))
        walk1 = cl.keys(hom, 4)
        steps += [cl.update(hom, k(7), k(inner[2])),               # in place
                  cl.update(hom, k(7), k(inner[0]), c.BPF_NOEXIST),
                  cl.update(hom, k(99), k(inner[0]), c.BPF_EXIST),
                  cl.update(hom, k(99), k(0x7FFF0000), 4),          # the fd before the flags
                  cl.update(hom, k(99), k(inner[0]), 4),
                  cl.update(hom, k(99), k(inner[0]), c.BPF_F_LOCK),
                  look(k(7)), look(k(0)), look(k(5)),
                  cl.delete(hom, k(14)), cl.delete(hom, k(14)),
                  cl.lookup_and_delete(hom, k(0), 4)]
        for i in range(6, 12):
            steps.append(cl.update(hom, k(i * 7), k(inner[0])))   # past max_entries: E2BIG
        out.append((steps, walk1, cl.keys(hom, 4)))
    assert out[0] == out[1]


def test_maps_hold_what_they_store(both):
    """An inner map (or a program) lives on in the outer map after its fds are closed; the
    outer map's end lets it go."""
    out = []
    for cl in both:
        tmpl = cl.create(HASH, 4, 4, 2)
        aom = cl.create(ARRAY_OF_MAPS, 4, 4, 2, inner_map_fd=tmpl)
        inner = cl.create(HASH, 4, 4, 2)
        inner_id = obj_id(cl.b, inner)
        assert cl.update(aom, k(0), k(inner)) == 0
        cl.close(inner)
        alive = inner_id in map_ids(cl.b)
        cl.close(aom)
        out.append((alive, wait_gone(cl.b, map_ids, inner_id)))
    assert out[0] == out[1] == (True, True)


@pytest.mark.parametrize("map_type", FD_TYPES, ids=[FD_IDS[t] for t in FD_TYPES])
@pytest.mark.parametrize("cmd", [c.BPF_MAP_LOOKUP_BATCH, c.BPF_MAP_LOOKUP_AND_DELETE_BATCH,
                                 c.BPF_MAP_UPDATE_BATCH, c.BPF_MAP_DELETE_BATCH],
                         ids=["lookup", "lookup_and_delete", "update", "delete"])
def test_batches(both, map_type, cmd):
    out = []
    for cl in both:
        tmpl = cl.create(HASH, 4, 4, 2) if map_type != PROG_ARRAY else 0
        m = cl.create(map_type, 4, 4, 4, inner_map_fd=tmpl)
        if map_type == PROG_ARRAY:
            obj = prog_load(cl.b)
            cl.fds.append(obj)
        else:
            obj = cl.create(HASH, 4, 4, 2)
        cl.update(m, k(1), k(obj))
        keys, values, token = Buf(k(1) + k(2)), Buf(k(obj) * 2), Buf(size=4)
        r = batch(cl.b, cmd, m, out_batch=token.addr, keys=keys.addr, values=values.addr,
                  count=2)
        out.append((norm(r[0]), r[1]))
    assert out[0] == out[1]


@pytest.mark.parametrize("map_type", FD_TYPES, ids=[FD_IDS[t] for t in FD_TYPES])
def test_btf_value_is_refused(both, map_type):
    from tests.differential.btf_support import load_ok, spin_lock_btf
    out = []
    for cl in both:
        btf = load_ok(cl.b, spin_lock_btf().blob())
        cl.fds.append(btf)
        tmpl = cl.create(HASH, 4, 4, 2) if map_type != PROG_ARRAY else 0
        out.append(norm(cl.create(map_type, 4, 4, 2, inner_map_fd=tmpl, btf_fd=btf,
                                  btf_key_type_id=1, btf_value_type_id=1)))
    assert out[0] == out[1]
