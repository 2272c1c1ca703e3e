"""The flow key and counters shared by the examples: what a packet-counting BPF program and
its userspace tool agree on (in C these would be two structs in a shared header).

    struct flow_key   { __be32 saddr; __be16 sport; __u8 proto; __u8 pad; };   /* 8 bytes */
    struct flow_stats { __u64 packets; __u64 bytes; };                        /* 16 bytes */
"""
import ctypes
import socket
import struct
import sys

PROTO_NAMES = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp", socket.IPPROTO_ICMP: "icmp"}


class FlowKey(ctypes.Structure):
    _fields_ = [("saddr", ctypes.c_uint32),     # network byte order, as in the IP header
                ("sport", ctypes.c_uint16),     # network byte order, as in the TCP/UDP header
                ("proto", ctypes.c_uint8),
                ("pad", ctypes.c_uint8)]        # explicit padding: keys are compared bytewise

    @classmethod
    def of(cls, ip: str, port: int, proto: str = "tcp") -> "FlowKey":
        saddr = struct.unpack("<I", socket.inet_aton(ip))[0]   # keep the wire byte order
        number = {v: k for k, v in PROTO_NAMES.items()}[proto]
        return cls(saddr, socket.htons(port), number, 0)

    def __str__(self) -> str:
        ip = socket.inet_ntoa(struct.pack("<I", self.saddr))
        return f"{ip}:{socket.ntohs(self.sport)}/{PROTO_NAMES.get(self.proto, self.proto)}"


class FlowStats(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


# offsets of the two counters, for the program side's atomic adds
PACKETS = FlowStats.packets.offset
BYTES = FlowStats.bytes.offset


def backend_from_args(argv=None):
    """The Emulator, or the live kernel with --kernel (root, or CAP_BPF)."""
    argv = sys.argv[1:] if argv is None else argv
    if "--kernel" in argv:
        from bpfemu import HostKernel
        reason = HostKernel.available()
        if reason:
            sys.exit(f"cannot use the live kernel here: {reason}")
        return HostKernel()
    from bpfemu import Emulator
    return Emulator()


def dataplane_for(backend):
    """The program side for the backend: helpers emulated in Python, or tiny real BPF
    programs on the live kernel."""
    from bpfemu import Emulator
    if isinstance(backend, Emulator):
        from bpfemu.progs import DataPlane
        return DataPlane(backend)
    from bpfemu.host_progs import HostDataPlane
    return HostDataPlane(backend)
