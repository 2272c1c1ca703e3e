"""The bpf() entry: __sys_bpf() of kernel/bpf/syscall.c.

Order, as in the kernel: size > PAGE_SIZE is E2BIG; bytes past the union must be zero
(E2BIG, or EFAULT if unreadable); the first min(size, 168) bytes are copied into a zeroed
union (EFAULT); an unknown command is EINVAL; CHECK_ATTR (bytes after the command's last
field must be zero) is EINVAL; then the handler. BpfError becomes -errno here and only here.
"""
import ctypes
import errno
import traceback
import warnings

from . import batch_cmds, btf_cmds, map_cmds, obj_cmds, prog_cmds
from .errors import BpfError, EmulatorFault
from .fastpath import LOCKLESS_COMMANDS, MAX_DECODED_CALLS, NO_CALL
from .profile import LINUX_6_18_LAST_FIELD_END
from .usercopy import attr_tail_zero
from .uapi.consts import BpfCmd as C

_E2BIG, _EFAULT, _EINVAL, _ENOMEM = errno.E2BIG, errno.EFAULT, errno.EINVAL, errno.ENOMEM

# cmd -> handler(emu, raw_attr, attr_ref). Commands that exist in Linux but are not emulated
# are listed in UNSUPPORTED_COMMANDS with the errno they give.
COMMANDS = {
    C.BPF_MAP_CREATE: map_cmds.map_create,
    C.BPF_MAP_LOOKUP_ELEM: map_cmds.map_lookup_elem,
    C.BPF_MAP_UPDATE_ELEM: map_cmds.map_update_elem,
    C.BPF_MAP_DELETE_ELEM: map_cmds.map_delete_elem,
    C.BPF_MAP_GET_NEXT_KEY: map_cmds.map_get_next_key,
    C.BPF_MAP_LOOKUP_AND_DELETE_ELEM: map_cmds.map_lookup_and_delete_elem,
    C.BPF_MAP_FREEZE: obj_cmds.map_freeze,
    C.BPF_MAP_LOOKUP_BATCH: batch_cmds.map_lookup_batch,
    C.BPF_MAP_LOOKUP_AND_DELETE_BATCH: batch_cmds.map_lookup_and_delete_batch,
    C.BPF_MAP_UPDATE_BATCH: batch_cmds.map_update_batch,
    C.BPF_MAP_DELETE_BATCH: batch_cmds.map_delete_batch,
    C.BPF_OBJ_GET_INFO_BY_FD: obj_cmds.bpf_obj_get_info_by_fd,
    C.BPF_MAP_GET_NEXT_ID: obj_cmds.bpf_map_get_next_id,
    C.BPF_MAP_GET_FD_BY_ID: obj_cmds.bpf_map_get_fd_by_id,
    C.BPF_OBJ_PIN: obj_cmds.bpf_obj_pin,
    C.BPF_OBJ_GET: obj_cmds.bpf_obj_get,
    C.BPF_BTF_LOAD: btf_cmds.bpf_btf_load,
    C.BPF_BTF_GET_FD_BY_ID: btf_cmds.bpf_btf_get_fd_by_id,
    C.BPF_BTF_GET_NEXT_ID: btf_cmds.bpf_btf_get_next_id,
    C.BPF_PROG_LOAD: prog_cmds.bpf_prog_load,
    C.BPF_PROG_GET_NEXT_ID: prog_cmds.bpf_prog_get_next_id,
    C.BPF_PROG_GET_FD_BY_ID: prog_cmds.bpf_prog_get_fd_by_id,
    C.BPF_PROG_BIND_MAP: prog_cmds.bpf_prog_bind_map,
}


def _not_emulated(emu, raw, attr):
    # DEVIATION(commands): running programs, links, tokens and stats are not emulated; every such
    # command fails with EINVAL, the errno Linux gives for a command it does not know.
    raise BpfError(_EINVAL)


def build_dispatch(profile) -> dict:
    """cmd -> (handler, end of its last field, bytes the handler unpacks) for one profile.

    The end bounds CHECK_ATTR. Handlers unpack whole member layouts (an element command
    unpacks 32 bytes even when its last field ends at 16), so short attrs are zero-padded
    to at least that much: _MIN_UNPACK covers every layout that is longer than its last field.
    """
    table = {}
    for cmd in range(profile.nr_cmds):
        handler = COMMANDS.get(cmd, _not_emulated)
        end = profile.last_field_end.get(cmd, profile.attr_size)
        # Handlers unpack 6.18's layouts: on an older profile the fields it lacks read as zero.
        table[cmd] = (handler, end, max(end, _MIN_UNPACK, LINUX_6_18_LAST_FIELD_END.get(cmd, 0)))
    return table


_MIN_UNPACK = 32    # sizeof the element-command member, the longest one cut short by its last field


def sys_bpf(emu, cmd: int, attr, size: int) -> int:
    """bpf(cmd, attr, size) on an emulated kernel: the fd/0 result, or -errno."""
    last_attr, last_cmd, last_size, last_raw, rest, lockless = emu.last_call
    if (last_attr is attr and (last_cmd is cmd or last_cmd == cmd) and last_size == size
            and attr.raw == last_raw):
        # The call made last, again: same command, size and attr object, the same bytes in
        # it (a caller's loop). Only the rest of it runs (fastpath.py).
        if lockless:
            # A lookup (or a walk step that locks where it must): no lock, as Linux holds
            # only rcu_read_lock() there.
            try:
                return rest()
            except BpfError as e:
                return -e.errno
            except Exception as e:
                return _our_failure(cmd, e)
        lock = emu.lock
        lock.acquire()
        try:
            return rest()
        except BpfError as e:
            return -e.errno
        except Exception as e:
            return _our_failure(cmd, e)
        finally:
            lock.release()
    return _sys_bpf_slow(emu, cmd, attr, size)


def _sys_bpf_slow(emu, cmd: int, attr, size: int) -> int:
    """sys_bpf past the call made last: a decoded call, or the whole entry. A function of its
    own so that sys_bpf's frame, which every call pays for, holds only the fast path's locals."""
    generation = emu.decoded_generation
    try:
        call = emu.decoded_calls.get(id(attr) << 6 | cmd)
    except TypeError:
        # cmd is not an int: no command has that number (EINVAL, in the entry's order).
        cmd, call = -1, None
    if call is not None and call[0] == cmd and call[1] == size:
        # The same command on the same attr bytes as a call already decoded (fastpath.py):
        # every check before the key copy would pass again, so only the rest runs.
        if (attr.raw if call[3] else bytes(attr)) == call[2]:
            rest = call[4]
            if rest is not None and call[7]:
                _make_last(emu, call, generation)
                try:
                    return rest()
                except BpfError as e:
                    return -e.errno
                except Exception as e:
                    return _our_failure(cmd, e)
            lock = emu.lock
            lock.acquire()
            try:
                rest = call[4]
                if rest is None:                # first reuse: build it now
                    make, *args = call[6]
                    rest = make(*args)
                    # Lookups, and calls that take the lock themselves where they must
                    # (htab_fastpath.py's walk step), run without it.
                    call[7] = call[7] or getattr(rest, "lockless", False)
                    call[4] = rest
                _make_last(emu, call, generation)
                return rest()
            except BpfError as e:
                return -e.errno
            except Exception as e:
                return _our_failure(cmd, e)
            finally:
                lock.release()
    if attr is None:
        attr = 0                                # NULL
    with emu.lock:
        try:
            asked = size
            if not isinstance(size, int):
                raise BpfError(_EINVAL)         # no C caller can pass it; as HostKernel
            if not isinstance(attr, int) and not _is_buffer(attr):
                raise BpfError(_EFAULT)         # not a pointer at all: as HostKernel
            size &= 0xFFFFFFFF                  # unsigned int size
            union = emu.attr_size
            if size > union:
                if size > emu.page_size:
                    raise BpfError(_E2BIG)
                if not attr_tail_zero(emu, attr, union, size - union):
                    raise BpfError(_E2BIG)      # bpf_check_uarg_tail_zero()
                size = union
            # copy_from_user(&attr, uattr, size) into a zeroed union. Only the first `size`
            # bytes are kept: the rest of the union is zero by definition.
            if type(attr) is int:
                raw = emu.mem.read(attr, size)
                whole = None
            else:
                raw = whole = bytes(attr)
                if len(raw) != size:
                    if len(raw) < size:
                        raise BpfError(_EFAULT)    # see DEVIATION(attr-buffer) in usercopy
                    raw = raw[:size]
            entry = emu.dispatch.get(cmd)
            if entry is None:
                raise BpfError(_EINVAL)
            handler, end, need = entry
            if size > end and raw.count(0, end) != size - end:
                raise BpfError(_EINVAL)         # CHECK_ATTR: unused fields must be zero
            if size < need:
                raw += bytes(need - size)
            # An element command that passes its checks leaves in emu.decoded how to build
            # the rest of it (a fastpath.*_call and its arguments).
            emu.decoded = None
            emu.uattr_size = size               # the handlers' uattr_size (log_true_size)
            try:
                return handler(emu, raw, attr)
            finally:
                decoded = emu.decoded
                if decoded is not None:
                    emu.decoded = None
                    if whole is not None:
                        _remember(emu, cmd, attr, asked, whole, decoded)
        except BpfError as e:
            return -e.errno
        except Exception as e:
            return _our_failure(cmd, e)


def _our_failure(cmd: int, exc: Exception) -> int:
    """The one place where a failure of the emulator itself (anything but a BpfError)
    becomes an errno: ENOMEM for Python running out of memory, as the kernel's allocators
    answer; EFAULT for anything else (a bug of ours), an errno every command can give since
    every one copies its attr from the caller. Never silent: an EmulatorFault warning
    carries the traceback."""
    # DEVIATION(memory): keys and index entries are made on insert, so even a preallocated
    # map, which never fails an update for memory in Linux, gets ENOMEM here.
    err = _ENOMEM if isinstance(exc, MemoryError) else _EFAULT
    try:
        warnings.warn(EmulatorFault(
            f"bpf({cmd}) failed inside the emulator; answered -{errno.errorcode[err]}:\n"
            + "".join(traceback.format_exception(exc))), stacklevel=3)
    except MemoryError:
        pass                                    # no memory left even to say so
    return -err


def _is_buffer(attr) -> bool:
    try:
        memoryview(attr)
        return True
    except TypeError:
        return False


def _make_last(emu, call: list, generation: int) -> None:
    """Make a decoded call the one sys_bpf tries first. The generation, read before the call
    was found, is checked after the store: a forget_decoded_calls() in between (which
    counts a generation before it empties last_call) cannot leave a stale call there."""
    if call[3]:                                 # .raw: only char arrays take the first branch
        emu.last_call = (call[5], call[0], call[1], call[2], call[4], call[7])
        if emu.decoded_generation != generation:
            emu.last_call = NO_CALL


def _remember(emu, cmd: int, attr, size: int, whole: bytes, decoded: tuple) -> None:
    """Keep a decoded call under the attr object and the command (one attr may serve lookups
    and updates in turn): [cmd, size, attr bytes, has .raw, rest (built on first reuse, so
    a caller that never reuses its attr never pays for it), attr, (builder, *its
    arguments), runs without the lock]. Element commands are below 64."""
    calls = emu.decoded_calls
    if len(calls) >= MAX_DECODED_CALLS:
        calls.clear()
    # .raw is a char array's bytes at a third of the cost of bytes(attr).
    has_raw = isinstance(attr, ctypes.Array) and attr._type_ is ctypes.c_char
    # The attr object is kept so that its id() cannot be reused while the entry exists.
    calls[id(attr) << 6 | cmd] = [cmd, size, whole, has_raw, None, attr, decoded,
                                  cmd in LOCKLESS_COMMANDS]
