"""copy_to_user(), put_user() into the attr, and strncpy_from_user(), as the kernel does them.

The kernel's copy_to_user() copies up to the first byte it cannot write, then fails. A
``Memory.write`` that faults may have written that prefix (ProcessMemory: process_vm_writev
stops at the bad page) or nothing (ArenaMemory); ``copy_to_user`` here makes sure the
writable page-wise prefix is written either way, which is visible when batch keys or values
run into an unmapped page.
"""
import errno
import struct

from .errors import BpfError

_EFAULT = errno.EFAULT
_U32 = struct.Struct("<I")
PAGE_SIZE = 4096
PATH_MAX = 4096


def copy_to_user(mem, addr: int, data) -> None:
    """Write data at addr; on a fault, leave the writable page-wise prefix written, EFAULT."""
    try:
        mem.write(addr, data)
        return
    except BpfError:
        pass
    n = len(data)
    off = 0
    while off < n:
        chunk = min(n - off, PAGE_SIZE - ((addr + off) & (PAGE_SIZE - 1)))
        try:
            mem.write(addr + off, data[off:off + chunk])
        except BpfError:
            break
        off += chunk
    raise BpfError(_EFAULT)


def copy_pairs_to_user(mem, ukeys: int, key_chunks: list, uvalues: int, value_chunks: list) -> None:
    """The kernel's batch copy-out (docs/usercopy.md): for each group g (an element, or a
    hash bucket), copy key_chunks[g] to the keys area, then value_chunks[g] to the values
    area, both packed from the start; stop with EFAULT at the first fault, the faulting
    copy's prefix written.

    Fast path: two bulk writes, when the two areas do not overlap (if they do, the order of
    the copies decides which bytes are left, so they are made group by group). If a bulk
    write faults, the sequence is replayed group by group to find where the kernel stops,
    and key bytes the bulk write put beyond that point are restored from a snapshot taken
    first. The EFAULT raised carries ``group``, the index of the group whose copy faulted."""
    keys = b"".join(key_chunks)
    values = b"".join(value_chunks)
    done, snapshot = _copy_both(mem, ukeys, keys, uvalues, values)
    if not done:
        _copy_groups(mem, ukeys, key_chunks, uvalues, value_chunks, snapshot)


def copy_runs_to_user(mem, ukeys: int, keys: bytes, uvalues: int, values: bytes,
                      groups) -> None:
    """copy_pairs_to_user() of keys and values already joined: ``groups()`` gives the
    (key_chunks, value_chunks) that split them, made only when the copy has to go group by
    group (overlapping areas, a fault), so that the usual batch splits nothing."""
    done, snapshot = _copy_both(mem, ukeys, keys, uvalues, values)
    if not done:
        key_chunks, value_chunks = groups()
        _copy_groups(mem, ukeys, key_chunks, uvalues, value_chunks, snapshot)


def _copy_both(mem, ukeys: int, keys: bytes, uvalues: int, values: bytes):
    """The fast path: two bulk writes where the areas do not overlap. (True, None) when
    done; else (False, the keys area as it was before, or None): the copy must be made
    group by group."""
    snapshot = None
    if ukeys + len(keys) <= uvalues or uvalues + len(values) <= ukeys:
        try:
            snapshot = mem.read(ukeys, len(keys))
        except BpfError:
            pass
    if snapshot is not None:
        try:
            mem.write(ukeys, keys)
            mem.write(uvalues, values)
            return True, None
        except BpfError:
            pass
    return False, snapshot


def _copy_groups(mem, ukeys: int, key_chunks: list, uvalues: int, value_chunks: list,
                 snapshot) -> None:
    kpos = vpos = 0
    for group, (kc, vc) in enumerate(zip(key_chunks, value_chunks)):
        kend = kpos + len(kc)
        try:
            copy_to_user(mem, ukeys + kpos, kc)
            copy_to_user(mem, uvalues + vpos, vc)
        except BpfError as e:
            if snapshot is not None:
                _restore(mem, ukeys, snapshot, kend)
            e.group = group                 # the group whose copy faulted
            raise
        kpos = kend
        vpos += len(vc)
    # Every copy succeeded when replayed (a transient fault): the bulk result stands.


def _restore(mem, base: int, snapshot: bytes, start: int) -> None:
    """Put back snapshot[start:] at base+start, page by page, where it can be written."""
    n = len(snapshot)
    off = start
    while off < n:
        chunk = min(n - off, PAGE_SIZE - ((base + off) & (PAGE_SIZE - 1)))
        try:
            mem.write(base + off, snapshot[off:off + chunk])
        except BpfError:
            pass
        off += chunk


def get_attr(emu, attr, off: int, n: int) -> bytes:
    """copy_from_user() of bytes [off, off+n) of the caller's attr (an address or a buffer)."""
    if type(attr) is int:
        return emu.mem.read(attr + off, n)
    raw = bytes(attr)
    if len(raw) < off + n:
        # DEVIATION(attr-buffer): the kernel would read whatever memory follows a too-short
        # buffer; we treat the end of a Python buffer like the end of a mapping.
        raise BpfError(_EFAULT)
    return raw[off:off + n]


_WORD = 8


def check_zeroed_user(read, addr: int, n: int) -> bool:
    """check_zeroed_user(): True if the n bytes at addr are all zero, False at the first
    aligned word holding a non-zero byte of the range, BpfError(EFAULT) if a word faults
    first (docs/usercopy.md). ``read(addr, n)`` reads memory like Memory.read. Words never
    straddle a page, so whole pages are read at once, and word by word only in a page that
    faults somewhere."""
    end = addr + n
    pos = addr
    while pos < end:
        chunk = min(end - pos, PAGE_SIZE - (pos & (PAGE_SIZE - 1)))
        try:
            data = read(pos, chunk)
        except BpfError:
            data = None
        if data is not None:
            if any(data):
                return False
        else:
            word_end = pos
            while word_end < pos + chunk:   # the words of this page, up to the fault
                word = word_end
                word_end = min((word & ~(_WORD - 1)) + _WORD, pos + chunk)
                if any(read(word, word_end - word)):
                    return False
        pos += chunk
    return True


def attr_tail_zero(emu, attr, off: int, n: int) -> bool:
    """check_zeroed_user() on bytes [off, off+n) of the caller's attr (address or buffer)."""
    if type(attr) is int:
        return check_zeroed_user(emu.mem.read, attr + off, n)
    return check_zeroed_user(lambda o, k: get_attr(emu, attr, o, k), off, n)


def put_attr(emu, attr, off: int, data: bytes) -> None:
    """put_user()/copy_to_user() into the caller's union bpf_attr (batch.count, info_len,
    next_id). ``attr`` is the reference the caller passed to bpf(): an address or a buffer."""
    if type(attr) is int:
        put_user(emu.mem, attr + off, data)
        return
    view = memoryview(attr).cast("B")
    if view.readonly or len(view) < off + len(data):
        # DEVIATION(attr-buffer): past the end of a Python buffer is treated as unmapped.
        raise BpfError(_EFAULT)
    view[off:off + len(data)] = data


def put_attr_u32(emu, attr, off: int, value: int) -> None:
    """put_user() of a u32 into the caller's attr (batch.count): put_attr() of its 4 bytes,
    packed in place. A buffer too short or read-only is EFAULT, as in put_attr()."""
    if type(attr) is int:
        put_user(emu.mem, attr + off, _U32.pack(value))
        return
    try:
        _U32.pack_into(attr, off, value)
    except (struct.error, TypeError, BufferError):
        # DEVIATION(attr-buffer): past the end of a Python buffer is treated as unmapped.
        raise BpfError(_EFAULT) from None


def put_user(mem, addr: int, data: bytes) -> None:
    """put_user() of a small scalar: all or nothing (docs/usercopy.md). One that straddles
    two pages writes its part in the second page first, so that a fault there has written
    nothing, and puts that part back if the first page then faults."""
    split = PAGE_SIZE - (addr & (PAGE_SIZE - 1))
    if split >= len(data):
        mem.write(addr, data)
        return
    old = mem.read(addr + split, len(data) - split)
    mem.write(addr + split, data[split:])
    try:
        mem.write(addr, data[:split])
    except BpfError:
        mem.write(addr + split, old)
        raise


def strncpy_from_user(mem, addr: int, maxlen: int = PATH_MAX) -> bytes:
    """The NUL-terminated string at addr, without its NUL, as getname() reads a path.
    EFAULT if it cannot be read before its NUL; ENAMETOOLONG without a NUL in maxlen bytes."""
    out = bytearray()
    pos = addr
    while len(out) < maxlen:
        chunk = min(maxlen - len(out), PAGE_SIZE - (pos & (PAGE_SIZE - 1)))
        try:
            data = mem.read(pos, chunk)
        except BpfError:
            # A region may end inside the page (ArenaMemory): fall back to single bytes.
            data = b""
            for i in range(chunk):
                try:
                    data += mem.read(pos + i, 1)
                except BpfError:
                    break
                if data[-1:] == b"\0":
                    break
            if b"\0" not in data:
                raise BpfError(_EFAULT) from None
        nul = data.find(b"\0")
        if nul >= 0:
            out += data[:nul]
            return bytes(out)
        out += data
        pos += chunk
    raise BpfError(errno.ENAMETOOLONG)


def is_buffer(attr) -> bool:
    """attr is something a pointer could be made of (bytes-like), not any other object."""
    try:
        memoryview(attr)
        return True
    except TypeError:
        return False
