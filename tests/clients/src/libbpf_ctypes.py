"""A client of libbpf.so.1 (Debian's libbpf1) driven through ctypes, for bpfemu's real-client tests.

Python code that loads the C library with ctypes makes the same bpf() calls as a C program on
libbpf. It runs create, update/lookup/delete, lookup_and_delete, the get_next_key walk,
lookup_batch, obj info, pin/get and get_fd_by_id on every map type bpfemu emulates and prints
a transcript that is the same on the live kernel and under `bpfemu run`: hash maps use
BPF_F_ZERO_SEED, map ids print as "id#N" (the harness renames them), fd numbers never print.

usage: python libbpf_ctypes.py PIN_DIR. With CLIENT_PAUSE set it stops once while its maps
are open and pinned, prints "PAUSE <readlink of a map fd>" on stderr and reads a line.
Only the standard library: it runs with any python3.
"""
import ctypes
import errno
import os
import sys

libbpf = ctypes.CDLL("libbpf.so.1", use_errno=True)
u32, u64, vp = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_void_p


class MapCreateOpts(ctypes.Structure):       # struct bpf_map_create_opts, libbpf 1.1
    _fields_ = [("sz", ctypes.c_size_t), ("btf_fd", u32), ("btf_key_type_id", u32),
                ("btf_value_type_id", u32), ("btf_vmlinux_value_type_id", u32),
                ("inner_map_fd", u32), ("map_flags", u32), ("map_extra", u64),
                ("numa_node", u32), ("map_ifindex", u32)]


class MapInfo(ctypes.Structure):             # struct bpf_map_info (uapi)
    _fields_ = [("type", u32), ("id", u32), ("key_size", u32), ("value_size", u32),
                ("max_entries", u32), ("map_flags", u32), ("name", ctypes.c_char * 16),
                ("ifindex", u32), ("btf_vmlinux_value_type_id", u32), ("netns_dev", u64),
                ("netns_ino", u64), ("btf_id", u32), ("btf_key_type_id", u32),
                ("btf_value_type_id", u32), ("pad", u32), ("map_extra", u64)]


libbpf.bpf_map_create.argtypes = [ctypes.c_int, ctypes.c_char_p, u32, u32, u32, vp]
for name in ("bpf_map_update_elem",):
    getattr(libbpf, name).argtypes = [ctypes.c_int, vp, vp, u64]
for name in ("bpf_map_lookup_elem", "bpf_map_lookup_and_delete_elem", "bpf_map_get_next_key"):
    getattr(libbpf, name).argtypes = [ctypes.c_int, vp, vp]
libbpf.bpf_map_delete_elem.argtypes = [ctypes.c_int, vp]
libbpf.bpf_map_lookup_batch.argtypes = [ctypes.c_int, vp, vp, vp, vp, vp, vp]
libbpf.bpf_obj_get_info_by_fd.argtypes = [ctypes.c_int, vp, vp]
libbpf.bpf_obj_pin.argtypes = [ctypes.c_int, ctypes.c_char_p]
libbpf.bpf_obj_get.argtypes = [ctypes.c_char_p]
libbpf.bpf_map_get_fd_by_id.argtypes = [u32]

HASH, ARRAY, PERCPU_HASH, PERCPU_ARRAY, LRU_HASH, LRU_PERCPU_HASH = 1, 2, 5, 6, 9, 10
PERCPU = {PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH}
ZERO_SEED, NO_COMMON_LRU = 0x40, 0x2
NCPUS = libbpf.libbpf_num_possible_cpus()


def outcome(ret: int) -> str:
    """libbpf 1.x: a negative errno on failure."""
    if ret >= 0:
        return "ok"
    return "ENOTSUPP" if -ret == 524 else errno.errorcode.get(-ret, str(-ret))


def value_type(map_type):
    return u64 * (NCPUS if map_type in PERCPU else 1)


def make_value(map_type, base):
    t = value_type(map_type)
    return t(*[base + i for i in range(len(t()))])


def info_of(fd):
    info, n = MapInfo(), u32(ctypes.sizeof(MapInfo))
    ret = libbpf.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(n))
    return ret, info, n.value


def print_info(fd, label):
    ret, i, n = info_of(fd)
    if ret < 0:
        print(f"  info({label}) -> {outcome(ret)}")
        return
    print(f"  info({label}) len={n} type={i.type} id#{i.id} key={i.key_size} "
          f"value={i.value_size} max={i.max_entries} flags={i.map_flags:#x} "
          f"name={i.name.decode()!r} btf={i.btf_id} extra={i.map_extra}")


def section(map_type, name, flags, pin_dir):
    print(f"map {name} type={map_type} flags={flags:#x}")
    opts = MapCreateOpts(sz=ctypes.sizeof(MapCreateOpts), map_flags=flags)
    fd = libbpf.bpf_map_create(map_type, name.encode(), 4, 8, 8, ctypes.byref(opts))
    print(f"  create -> {outcome(fd)}")
    if fd < 0:
        return fd
    print_info(fd, "created")
    for k in (1, 2, 3, 4, 5):
        ret = libbpf.bpf_map_update_elem(fd, ctypes.byref(u32(k)),
                                         ctypes.byref(make_value(map_type, 100 * k)), 0)
        print(f"  update {k} -> {outcome(ret)}")
    ret = libbpf.bpf_map_update_elem(fd, ctypes.byref(u32(1)),
                                     ctypes.byref(make_value(map_type, 1)), 1)  # BPF_NOEXIST
    print(f"  update 1 NOEXIST -> {outcome(ret)}")
    for k in (3, 7):
        v = value_type(map_type)()
        ret = libbpf.bpf_map_lookup_elem(fd, ctypes.byref(u32(k)), ctypes.byref(v))
        print(f"  lookup {k} -> {outcome(ret)}{' ' + str(list(v)) if ret == 0 else ''}")
    for k in (2, 2):
        print(f"  delete {k} -> {outcome(libbpf.bpf_map_delete_elem(fd, ctypes.byref(u32(k))))}")
    v = value_type(map_type)()
    ret = libbpf.bpf_map_lookup_and_delete_elem(fd, ctypes.byref(u32(4)), ctypes.byref(v))
    print(f"  lookup_and_delete 4 -> {outcome(ret)}{' ' + str(list(v)) if ret == 0 else ''}")

    walk, prev, nxt = [], None, u32()
    while (ret := libbpf.bpf_map_get_next_key(fd, prev, ctypes.byref(nxt))) == 0:
        walk.append(nxt.value)
        prev = ctypes.byref(u32(nxt.value))
    print(f"  walk {walk} -> {outcome(ret)}")

    in_batch, token = None, u32()
    for _ in range(8):
        keys, values, count = (u32 * 3)(), (value_type(map_type) * 3)(), u32(3)
        ret = libbpf.bpf_map_lookup_batch(fd, in_batch, ctypes.byref(token), keys, values,
                                          ctypes.byref(count), None)
        got = [(keys[i], list(values[i])) for i in range(count.value)]
        print(f"  lookup_batch count={count.value} {got} -> {outcome(ret)}")
        if ret < 0:
            break
        in_batch = ctypes.byref(u32(token.value))

    path = os.path.join(pin_dir, name).encode()
    print(f"  pin -> {outcome(libbpf.bpf_obj_pin(fd, path))}")
    print(f"  pin again -> {outcome(libbpf.bpf_obj_pin(fd, path))}")
    fd2 = libbpf.bpf_obj_get(path)
    print(f"  obj_get -> {outcome(fd2)}")
    if fd2 >= 0:
        print(f"  same map through the pin: {info_of(fd2)[1].id == info_of(fd)[1].id}")
        os.close(fd2)
    fd3 = libbpf.bpf_map_get_fd_by_id(info_of(fd)[1].id)
    print(f"  get_fd_by_id -> {outcome(fd3)}")
    if fd3 >= 0:
        print_info(fd3, "by id")
        os.close(fd3)
    return fd


def main(argv):
    if len(argv) != 1:
        sys.exit("usage: libbpf_ctypes.py PIN_DIR")
    pin_dir = argv[0]
    print(f"possible cpus: {NCPUS}")
    fds = [section(t, n, f, pin_dir) for t, n, f in [
        (HASH, "py_hash", ZERO_SEED), (PERCPU_HASH, "py_percpu_hash", ZERO_SEED),
        (LRU_HASH, "py_lru_hash", ZERO_SEED),
        (LRU_PERCPU_HASH, "py_lru_pcpu", ZERO_SEED | NO_COMMON_LRU),
        (ARRAY, "py_array", 0), (PERCPU_ARRAY, "py_percpu_array", 0)]]
    if os.environ.get("CLIENT_PAUSE"):
        sys.stderr.write(f"PAUSE {os.readlink(f'/proc/self/fd/{fds[0]}')}\n")
        sys.stderr.flush()
        sys.stdin.readline()
    for fd in fds:
        if fd >= 0:
            os.close(fd)
    print("done")


if __name__ == "__main__":
    main(sys.argv[1:])
