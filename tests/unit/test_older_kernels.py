"""Differences of Linux 6.1 the differential runs inside its VM found, on the emulator alone
(the values are the real 6.1.176's, docs/kernels.md; scripts/differential-on-kernels
checks them against the kernel)."""
import ctypes
import errno
import struct

import pytest

from bpfemu import Emulator
from bpfemu.profile import get_profile
from bpfemu.progs import DataPlane
from bpfemu.uapi import consts as c
from tests.support import map_create_attr


@pytest.mark.parametrize("release,expected", [("6.1", -errno.EPERM), ("6.12", -errno.E2BIG),
                                              ("6.18", -errno.E2BIG)])
def test_unprivileged_map_create_is_eperm_before_the_size_check_on_6_1(release, expected):
    """Without CAP_BPF and CAP_SYS_ADMIN (unprivileged BPF disabled), 6.1's __sys_bpf refuses
    MAP_CREATE before anything else; later kernels check the attr first."""
    with Emulator(profile=get_profile(release, cap_bpf=False, cap_sys_admin=False)) as emu:
        attr = ctypes.create_string_buffer(map_create_attr(c.BPF_MAP_TYPE_HASH, 4, 8, 4), 4096)
        attr[4095] = b"\x01"                    # a non-zero tail: E2BIG where it is looked at
        assert emu.bpf(c.BPF_MAP_CREATE, attr, 4096) == expected


@pytest.mark.parametrize("release,enoent,eexist", [("6.1", 0xFFFFFFFE, 0xFFFFFFEF),
                                                   ("6.12", -errno.ENOENT, -errno.EEXIST)])
def test_program_map_helpers_return_a_32_bit_errno_on_6_1(release, enoent, eexist):
    with Emulator(profile=release) as emu:
        attr = ctypes.create_string_buffer(map_create_attr(c.BPF_MAP_TYPE_HASH, 4, 8, 4), 168)
        fd = emu.bpf(c.BPF_MAP_CREATE, attr, 168)
        dp = DataPlane(emu)
        key = struct.pack("<I", 1)
        assert dp.delete_elem(fd, key) == enoent
        assert dp.update_elem(fd, key, bytes(8), c.BPF_NOEXIST) == 0
        assert dp.update_elem(fd, key, bytes(8), c.BPF_NOEXIST) == eexist
