"""Map ids as idr_alloc_cyclic(1, INT_MAX) hands them out (docs: #info-ids-freeze-and-pins):
from the last one given, freed ids not reused until the counter wraps, live ids skipped after
the wrap. The wrap itself needs 2^31 maps on a real kernel, so a small range stands in."""
import errno

import pytest

from bpfemu.errors import BpfError
from bpfemu.fdtable import INT_MAX, IdrCyclic


def test_ids_start_at_1_and_freed_ids_are_not_reused():
    idr = IdrCyclic()
    assert [idr.alloc(o) for o in "abc"] == [1, 2, 3]
    idr.remove(2)
    idr.remove(3)
    assert idr.alloc("d") == 4              # create+close three times, then create: 4, not 2
    assert idr.end == INT_MAX


def test_wrap_skips_live_ids_and_a_full_range_is_enospc():
    idr = IdrCyclic(start=1, end=5)         # ids 1..4
    assert [idr.alloc(o) for o in "abcd"] == [1, 2, 3, 4]
    idr.remove(1)
    idr.remove(3)
    assert idr.alloc("e") == 1              # wrapped
    assert idr.alloc("f") == 3              # 2 is still live
    with pytest.raises(BpfError) as e:
        idr.alloc("g")
    assert e.value.errno == errno.ENOSPC


def test_get_next_is_the_smallest_live_id_above():
    idr = IdrCyclic()
    for o in "abcde":
        idr.alloc(o)
    idr.remove(3)
    assert idr.get_next(0) == 1
    assert idr.get_next(2) == 4
    assert idr.get_next(5) is None
