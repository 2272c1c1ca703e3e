"""The bpf() entry: __sys_bpf() of kernel/bpf/syscall.c.

Order, as in the kernel: size > PAGE_SIZE is E2BIG; bytes past the union must be zero
(E2BIG, or EFAULT if unreadable); the first min(size, 168) bytes are copied into a zeroed
union (EFAULT); an unknown command is EINVAL; CHECK_ATTR (bytes after the command's last
field must be zero) is EINVAL; then the handler. BpfError becomes -errno here.

Decoded calls (fastpath.py) are a cache in front of this entry: ``Emulator.bpf`` tries them
first when they are on, and comes here for everything else.

A call is atomic (bpfemu/undo.py): what it changes is journaled, and an exception other
than BpfError rolls it back, here or, if it even stopped the rollback, at the next call.
"""
import errno
from collections import namedtuple
from sys import _getframe, gettrace as _gettrace

from . import batch_cmds, btf_cmds, map_cmds, obj_cmds, prog_cmds
from .emu_lock import wait_turn
from .errors import BpfError
from .failure import our_failure_undone
from .undo import MARK, object_state, undo_call
from .usercopy import attr_tail_zero, is_buffer
from .uapi.consts import BpfCmd as C

_E2BIG, _EFAULT, _EINVAL = errno.E2BIG, errno.EFAULT, errno.EINVAL
_EPERM = errno.EPERM
# Refused at the entry on kernels before 6.5 (profile.unpriv_eperm_at_entry).
_UNPRIV_ENTRY_CMDS = frozenset({C.BPF_MAP_CREATE, C.BPF_PROG_LOAD})


# A row of the command table: the kernel's switch in __sys_bpf() and its BPF_*_LAST_FIELD
# next to CHECK_ATTR (namedtuples, not typing.NamedTuple: typing costs start-up).
# - handler: (emu, 168-byte attr copy, caller's attr) -> result
# - last_field_end: offsetofend(union bpf_attr, <CMD>_LAST_FIELD), Linux 6.18
# - lockless: its decoded calls run without the emulator's lock: a syscall lookup changes
#   nothing (not even an LRU reference bit), and Linux runs it under rcu_read_lock() alone,
#   so a lookup that races an update sees the old value or the new one, as it can in Linux.
#   Only memoryview and dict operations touch shared state, each atomic under the GIL.
Command = namedtuple("Command", ("handler", "last_field_end", "lockless"), defaults=(False,))


COMMANDS = {
    C.BPF_MAP_CREATE: Command(map_cmds.map_create, 92),                    # excl_prog_hash_size
    C.BPF_MAP_LOOKUP_ELEM: Command(map_cmds.map_lookup_elem, 32, lockless=True),    # flags
    C.BPF_MAP_UPDATE_ELEM: Command(map_cmds.map_update_elem, 32),          # flags
    C.BPF_MAP_DELETE_ELEM: Command(map_cmds.map_delete_elem, 16),          # key
    C.BPF_MAP_GET_NEXT_KEY: Command(map_cmds.map_get_next_key, 24),        # next_key
    C.BPF_MAP_LOOKUP_AND_DELETE_ELEM: Command(map_cmds.map_lookup_and_delete_elem, 32),
    C.BPF_MAP_FREEZE: Command(obj_cmds.map_freeze, 4),                     # map_fd
    C.BPF_MAP_LOOKUP_BATCH: Command(batch_cmds.map_lookup_batch, 56),      # batch.flags
    C.BPF_MAP_LOOKUP_AND_DELETE_BATCH: Command(batch_cmds.map_lookup_and_delete_batch, 56),
    C.BPF_MAP_UPDATE_BATCH: Command(batch_cmds.map_update_batch, 56),
    C.BPF_MAP_DELETE_BATCH: Command(batch_cmds.map_delete_batch, 56),
    C.BPF_OBJ_GET_INFO_BY_FD: Command(obj_cmds.bpf_obj_get_info_by_fd, 16),   # info.info
    C.BPF_MAP_GET_NEXT_ID: Command(obj_cmds.bpf_map_get_next_id, 8),       # next_id
    C.BPF_MAP_GET_FD_BY_ID: Command(obj_cmds.bpf_map_get_fd_by_id, 12),    # open_flags
    C.BPF_OBJ_PIN: Command(obj_cmds.bpf_obj_pin, 20),                      # path_fd
    C.BPF_OBJ_GET: Command(obj_cmds.bpf_obj_get, 20),
    C.BPF_BTF_LOAD: Command(btf_cmds.bpf_btf_load, 40),                    # btf_token_fd
    C.BPF_BTF_GET_FD_BY_ID: Command(btf_cmds.bpf_btf_get_fd_by_id, 16),    # fd_by_id_token_fd
    C.BPF_BTF_GET_NEXT_ID: Command(btf_cmds.bpf_btf_get_next_id, 8),       # next_id
    C.BPF_PROG_LOAD: Command(prog_cmds.bpf_prog_load, 168),                # keyring_id
    C.BPF_PROG_GET_NEXT_ID: Command(prog_cmds.bpf_prog_get_next_id, 8),    # next_id
    C.BPF_PROG_GET_FD_BY_ID: Command(prog_cmds.bpf_prog_get_fd_by_id, 4),  # prog_id
    C.BPF_PROG_BIND_MAP: Command(prog_cmds.bpf_prog_bind_map, 12),         # prog_bind_map.flags
}

# The end of each command's last field in Linux 6.18, from the table (traces and conformance
# scenarios read it).
LINUX_6_18_LAST_FIELD_END = {cmd: row.last_field_end for cmd, row in COMMANDS.items()}


def _not_emulated(emu, raw, attr):
    # DEVIATION(commands): running programs, links, tokens and stats are not emulated; every such
    # command fails with EINVAL, the errno Linux gives for a command it does not know.
    raise BpfError(_EINVAL)


# A command's row for one profile: its handler; end, where CHECK_ATTR's zero bytes start;
# unpack, the bytes the handler unpacks (see build_dispatch); lockless, as Command's.
Dispatch = namedtuple("Dispatch", ("handler", "end", "unpack", "lockless"))


# sizeof the element-command member, the longest one cut short by its last field
_MIN_UNPACK = 32


def build_dispatch(profile) -> dict:
    """cmd -> Dispatch for one profile: the table's row, with the profile's last field where
    its kernel's differs from 6.18 (profile.last_field_end).

    Handlers unpack whole member layouts (an element command unpacks 32 bytes even when its
    last field ends at 16), so short attrs are zero-padded to at least that much:
    _MIN_UNPACK covers every layout that is longer than its last field."""
    table = {}
    for cmd in range(profile.nr_cmds):
        row = COMMANDS.get(cmd)
        handler = row.handler if row else _not_emulated
        end = profile.last_field_end.get(cmd, row.last_field_end if row else profile.attr_size)
        # Handlers unpack 6.18's layouts: on an older profile the fields it lacks read as zero.
        need = max(end, _MIN_UNPACK, row.last_field_end if row else 0)
        table[cmd] = Dispatch(handler, end, need, bool(row and row.lockless))
    return table


# The commands that change map contents only; every other command journals the object
# state (fds, ids, references, pins) before its handler runs (undo.object_state).
CONTENT_CMDS = frozenset({C.BPF_MAP_LOOKUP_ELEM, C.BPF_MAP_UPDATE_ELEM, C.BPF_MAP_DELETE_ELEM,
                          C.BPF_MAP_GET_NEXT_KEY, C.BPF_MAP_LOOKUP_AND_DELETE_ELEM,
                          C.BPF_MAP_LOOKUP_BATCH, C.BPF_MAP_LOOKUP_AND_DELETE_BATCH,
                          C.BPF_MAP_UPDATE_BATCH, C.BPF_MAP_DELETE_BATCH,
                          C.BPF_OBJ_GET_INFO_BY_FD, C.BPF_MAP_FREEZE})


def __sys_bpf(emu, cmd: int, attr, size: int) -> int:
    """__sys_bpf(): bpf(cmd, attr, size) on an emulated kernel, the fd/0 result or -errno.
    Calls run one at a time, under the emulator's lock; each is rolled back whole if
    anything but a BpfError stops it (bpfemu/undo.py)."""
    if attr is None:
        attr = 0                                # NULL
    if _gettrace() is not None:
        _getframe().f_trace = None              # no line events here: see undo.py
    undo = emu.undo
    lock = emu.lock
    try:
        if not lock.acquire(False):     # held: wait for it with the GIL (emu_lock.py)
            wait_turn(lock)
            lock.acquire()
    except BaseException:                   # see undo.py, "The lock"
        if lock._is_mine():
            lock.release()
        raise
    try:
        if undo:
            undo_call(emu)                      # a call stopped where it could not roll back
        undo.append(MARK)
        if not isinstance(size, int):
            raise BpfError(_EINVAL)             # no C caller can pass it; as HostKernel
        if not isinstance(attr, int) and not is_buffer(attr):
            raise BpfError(_EFAULT)             # not a pointer at all: as HostKernel
        size &= 0xFFFFFFFF                      # unsigned int size
        if emu.profile.unpriv_eperm_at_entry and cmd in _UNPRIV_ENTRY_CMDS and not (
                emu.profile.cap_bpf or emu.profile.cap_sys_admin):
            raise BpfError(_EPERM)              # !bpf_capable() && unprivileged_bpf_disabled
        # bpf_check_uarg_tail_zero(): past the union, only zeros (and at most a page)
        union = emu.attr_size
        if size > union:
            if size > emu.page_size:
                raise BpfError(_E2BIG)
            if not attr_tail_zero(emu, attr, union, size - union):
                raise BpfError(_E2BIG)          # bpf_check_uarg_tail_zero()
            size = union
        # copy_from_bpfptr(&attr, uattr, size) into a zeroed union. Only the first `size`
        # bytes are kept: the rest of the union is zero by definition.
        if type(attr) is int:
            raw = emu.mem.read(attr, size)
        else:
            raw = bytes(attr)
            if len(raw) != size:
                if len(raw) < size:
                    raise BpfError(_EFAULT)        # see DEVIATION(attr-buffer) in usercopy
                raw = raw[:size]
        # A cmd that is not an int (no C caller can pass one) is no command: EINVAL.
        row = emu.dispatch.get(cmd) if isinstance(cmd, int) else None
        if row is None:
            raise BpfError(_EINVAL)             # default: -EINVAL
        handler, end, unpack, _ = row
        if size > end and raw.count(0, end) != size - end:
            raise BpfError(_EINVAL)             # CHECK_ATTR: unused fields must be zero
        if size < unpack:
            raw += bytes(unpack - size)
        emu.uattr_size = size                   # the handlers' uattr_size (log_true_size)
        if cmd not in CONTENT_CMDS:
            undo.append(object_state(emu))
        ret = handler(emu, raw, attr)
        undo.clear()                            # the call is whole: keep it
        return ret
    except BpfError as e:
        undo.clear()                            # failed as the kernel fails: keep its effects
        return -e.errno
    except Exception as e:
        return our_failure_undone(emu, cmd, e)
    except BaseException:                       # noqa: B036 - an interruption: undone
        undo_call(emu)
        raise
    finally:
        lock.release()


sys_bpf = __sys_bpf
