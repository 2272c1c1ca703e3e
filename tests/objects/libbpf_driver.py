"""Load a BPF object with libbpf 1.x (libbpf.so.1, through ctypes), use its maps and global
data the way a loader does, and print what it saw as JSON.

    python -m tests.objects.libbpf_driver OBJECT.o kernel
    LD_PRELOAD=bpf_hook.so python -m tests.objects.libbpf_driver OBJECT.o emulator

With "emulator", every bpf() libbpf makes goes to an in-process bpfemu.Emulator through the
LD_PRELOAD shim (tests/objects/bpf_hook.c); mmap(), close() and the rest of the fd work go
to the real kernel, on the emulator's memfds. Ids differ between the two and are left out.
"""
import ctypes
import json
import mmap
import os
import struct
import sys

BPF_ANY, BPF_NOEXIST, BPF_F_LOCK = 0, 1, 4
PAGE = mmap.PAGESIZE


def main(path: str, backend: str) -> dict:
    os.sched_setaffinity(0, {0})
    keep = []
    if backend == "emulator":
        from bpfemu import Emulator
        from bpfemu.profile import host_possible_cpus
        emu = Emulator(nr_cpus=host_possible_cpus())
        emu.cpu = 0
        shim = ctypes.CDLL(None)
        hook_t = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long, ctypes.c_ulong, ctypes.c_ulong)
        hook = hook_t(lambda cmd, attr, size: emu.bpf(cmd, attr, size))
        keep.append(hook)
        shim.bpfemu_set_bpf_hook(hook)
    lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    lib.bpf_object__open_file.restype = ctypes.c_void_p
    lib.bpf_object__open_file.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    lib.bpf_object__load.argtypes = [ctypes.c_void_p]
    lib.bpf_object__next_map.restype = ctypes.c_void_p
    lib.bpf_object__next_map.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.bpf_object__next_program.restype = ctypes.c_void_p
    lib.bpf_object__next_program.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.bpf_map__name.restype = ctypes.c_char_p
    lib.bpf_map__name.argtypes = [ctypes.c_void_p]
    lib.bpf_map__fd.argtypes = [ctypes.c_void_p]
    lib.bpf_program__name.restype = ctypes.c_char_p
    lib.bpf_program__name.argtypes = [ctypes.c_void_p]
    lib.bpf_program__fd.argtypes = [ctypes.c_void_p]
    lib.bpf_object__close.argtypes = [ctypes.c_void_p]
    for fn in ("bpf_map_lookup_elem", "bpf_map_update_elem", "bpf_map_get_next_key",
               "bpf_map_lookup_elem_flags"):
        getattr(lib, fn).argtypes = ([ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
                                     + ([ctypes.c_uint64] if "update" in fn or "flags" in fn
                                        else []))
    lib.bpf_obj_get_info_by_fd.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    lib.bpf_map_freeze.argtypes = [ctypes.c_int]

    obj = lib.bpf_object__open_file(path.encode(), None)
    if not obj:
        return {"open": -ctypes.get_errno()}
    out = {"load": lib.bpf_object__load(obj)}
    if out["load"]:
        return out
    maps, ids = {}, {}
    m = lib.bpf_object__next_map(obj, None)
    while m:
        maps[lib.bpf_map__name(m).decode()] = lib.bpf_map__fd(m)
        m = lib.bpf_object__next_map(obj, m)
    progs = {}
    p = lib.bpf_object__next_program(obj, None)
    while p:
        progs[lib.bpf_program__name(p).decode()] = lib.bpf_program__fd(p)
        p = lib.bpf_object__next_program(obj, p)

    def info(fd, size):
        buf = ctypes.create_string_buffer(size)
        n = ctypes.c_uint32(size)
        r = lib.bpf_obj_get_info_by_fd(fd, buf, ctypes.byref(n))
        return r, buf.raw[:n.value]

    out["maps"] = {}
    for name, fd in sorted(maps.items()):
        r, raw = info(fd, 104)
        (mtype, mid, ks, vs, n, flags, mname) = struct.unpack_from("<IIIIII16s", raw)
        btf_id, kid, vid = struct.unpack_from("<III", raw, 64)
        ids[mid] = name
        out["maps"][name] = dict(r=r, type=mtype, key_size=ks, value_size=vs, max_entries=n,
                                 flags=flags, name=mname.rstrip(b"\0").decode(),
                                 has_btf=btf_id != 0, key_type=kid, value_type=vid)
    out["progs"] = {}
    for name, fd in sorted(progs.items()):
        r, raw = info(fd, 232)
        ptype, pid = struct.unpack_from("<II", raw)
        ids[pid] = name
        nr_map_ids = struct.unpack_from("<I", raw, 52)[0]
        out["progs"][name] = dict(r=r, type=ptype, tag=raw[8:16].hex(),
                                  name=raw[64:80].rstrip(b"\0").decode(),
                                  gpl=struct.unpack_from("<I", raw, 84)[0] & 1,
                                  nr_map_ids=nr_map_ids)

    def lookup(fd, key, size, flags=0):
        v = ctypes.create_string_buffer(size)
        k = ctypes.create_string_buffer(key, len(key))
        r = lib.bpf_map_lookup_elem_flags(fd, k, v, flags)
        return (r if r >= 0 else -ctypes.get_errno()), v.raw if r == 0 else None

    def update(fd, key, value, flags=0):
        k = ctypes.create_string_buffer(key, len(key))
        v = ctypes.create_string_buffer(value, len(value))
        r = lib.bpf_map_update_elem(fd, k, v, flags)
        return r if r >= 0 else -ctypes.get_errno()

    def keys(fd, ks):
        found, cur = [], None
        nxt = ctypes.create_string_buffer(ks)
        while True:
            k = ctypes.create_string_buffer(cur, ks) if cur is not None else None
            if lib.bpf_map_get_next_key(fd, k, nxt) != 0:
                return found
            cur = nxt.raw
            found.append(cur.hex())

    u32, u64 = (lambda v: struct.pack("<I", v)), (lambda v: struct.pack("<Q", v))
    ops = out["ops"] = {}
    f = maps["flows"]
    ops["flows"] = [update(f, u32(i), u64(i * 10)) for i in range(1, 6)]
    ops["flows"] += [update(f, u32(1), u64(1), BPF_NOEXIST), lookup(f, u32(3), 8)[1].hex(),
                     sorted(keys(f, 4))]
    r = maps["recent"]
    ops["recent"] = [update(r, u64(i), u32(i)) for i in range(24)] + [sorted(keys(r, 8))]
    s = maps["stats"]
    per = lookup(s, u32(1), 8 * 64)
    ops["stats"] = [per[0], update(s, u32(1), bytes(range(8)) * 64), lookup(s, u32(9), 8 * 64)[0]]
    lk = maps["locked"]
    ops["locked"] = [update(lk, u32(0), struct.pack("<IIQ", 5, 0xFFFFFFFF, 9), BPF_F_LOCK),
                     lookup(lk, u32(0), 16, BPF_F_LOCK)[1].hex(),
                     update(lk, u32(1), struct.pack("<IIQ", 6, 0x12345678, 10)),
                     lookup(lk, u32(1), 16)[1].hex(), lib.bpf_map_freeze(lk)]
    j = maps["jumps"]
    ops["jumps"] = [(rr, ids.get(struct.unpack("<I", v)[0]) if v else None)
                    for rr, v in (lookup(j, u32(i), 4) for i in range(4))]
    o = maps["outer"]
    ops["outer"] = [(rr, ids.get(struct.unpack("<I", v)[0]) if v else None)
                    for rr, v in (lookup(o, u32(i), 4) for i in range(4))]
    ops["outer"].append(update(o, u32(0), u32(maps["inner_one"])))
    ops["outer"].append(sorted(keys(o, 4)))

    # Global data: what libbpf put there, through mmap() and through bpf().
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

    def mapping(fd, prot):
        a = libc.mmap(None, PAGE, prot, mmap.MAP_SHARED, fd, 0)
        return -ctypes.get_errno() if a == ctypes.c_void_p(-1).value else a

    g = ops["global"] = {}
    for sec in ("bss", "data", "rodata"):
        name = next(n for n in maps if n.endswith("." + sec))
        fd = maps[name]
        vs = out["maps"][name]["value_size"]
        g[sec] = [lookup(fd, u32(0), vs)[1].hex()]
        a = mapping(fd, mmap.PROT_READ | mmap.PROT_WRITE)
        g[sec].append(a if a < 0 else "mapped rw")
        if a > 0:
            ctypes.memmove(a, b"\x2a", 1)              # the first byte, through the mapping
            g[sec].append(lookup(fd, u32(0), vs)[1].hex())
            g[sec].append(lib.bpf_map_freeze(fd))      # EBUSY while mapped writable
            update(fd, u32(0), b"\x07" * vs)
            g[sec].append(ctypes.string_at(a, vs).hex())
            libc.munmap(a, PAGE)
        ro = mapping(fd, mmap.PROT_READ)
        g[sec].append(ctypes.string_at(ro, vs).hex() if ro > 0 else ro)
        if ro > 0:
            libc.munmap(ro, PAGE)
    lib.bpf_object__close(obj)
    return out


if __name__ == "__main__":
    result = main(sys.argv[1], sys.argv[2])
    print(json.dumps(result, sort_keys=True))
