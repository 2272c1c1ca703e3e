"""A process tree that passes one map's fd around: dup(), fd-number reuse, fork() and
SCM_RIGHTS, with raw bpf() calls (ctypes, no libbpf). Prints what each step got, so its
runs on the kernel and under `bpfemu run` compare; its traces must replay (a file token per
open file, abi/README.md). Used by tests/intercept/test_fd_tree.py."""
import ctypes
import os
import socket
import struct
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR_BPF = 321
MAP_CREATE, LOOKUP, UPDATE, GET_NEXT_ID, GET_FD_BY_ID, GET_INFO = 0, 1, 2, 12, 14, 15


def bpf(cmd, attr):
    r = libc.syscall(NR_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    return r if r >= 0 else -ctypes.get_errno()


def create(map_type, name):
    attr = ctypes.create_string_buffer(72)
    struct.pack_into("<IIIII", attr, 0, map_type, 4, 8, 4, 0)
    attr[28:28 + len(name)] = name                # map_name
    return bpf(MAP_CREATE, attr)


def update(fd, k, v):
    key, val = ctypes.c_uint32(k), ctypes.c_uint64(v)
    attr = ctypes.create_string_buffer(32)
    struct.pack_into("<IIQQQ", attr, 0, fd, 0, ctypes.addressof(key), ctypes.addressof(val), 0)
    return bpf(UPDATE, attr)


def lookup(fd, k):
    key, val = ctypes.c_uint32(k), ctypes.c_uint64(0)
    attr = ctypes.create_string_buffer(32)
    struct.pack_into("<IIQQQ", attr, 0, fd, 0, ctypes.addressof(key), ctypes.addressof(val), 0)
    r = bpf(LOOKUP, attr)
    return r if r < 0 else val.value


def map_id(fd):
    info = ctypes.create_string_buffer(88)
    attr = ctypes.create_string_buffer(16)
    struct.pack_into("<IIQ", attr, 0, fd, 88, ctypes.addressof(info))
    r = bpf(GET_INFO, attr)
    return r if r < 0 else struct.unpack_from("<I", info, 4)[0]


def by_id(i):
    attr = ctypes.create_string_buffer(12)
    struct.pack_into("<I", attr, 0, i)
    return bpf(GET_FD_BY_ID, attr)


def say(*what):
    print(*what, flush=True)


def main():
    a = create(1, b"tree_a")                       # HASH
    say("create a", a >= 0, "update", update(a, 1, 11))
    a_id = map_id(a)
    d = os.dup(a)
    os.close(a)
    b = create(2, b"tree_b")                       # ARRAY: takes a's old number
    say("b reuses a's number", b == a, "update b", update(b, 0, 22), "lookup b", lookup(b, 0))
    say("lookup through the dup", lookup(d, 1))
    parent, child = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        parent.close()
        _, fds, _, _ = socket.recv_fds(child, 1, 1)
        r = fds[0]
        say("child: update through the received fd", update(r, 2, 33), "its own b",
            lookup(b, 0))
        os.close(r)
        os._exit(0)
    child.close()
    socket.send_fds(parent, [b"x"], [d])
    os.waitpid(pid, 0)
    say("parent: the child's update", lookup(d, 2))
    os.close(d)                                    # a's last fd: a is freed
    say("a by id after its last close", by_id(a_id))
    say("b still there", lookup(b, 0))


if __name__ == "__main__":
    sys.exit(main())
