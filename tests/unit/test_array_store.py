"""ArrayValues, the contiguous value area of ARRAY and PERCPU_ARRAY: its interface."""
from bpfemu.maps.array_store import ArrayValues


def test_elements_start_zero_and_out_of_range_is_none():
    v = ArrayValues(3, 8, 5)
    assert bytes(v.get(2)) == bytes(5)
    assert v.get(3) is None


def test_a_write_lands_at_its_stride_and_leaves_padding_and_neighbours_alone():
    v = ArrayValues(3, 8, 5)
    v[1] = b"abcde"
    assert bytes(v[1]) == b"abcde"
    assert v.area() == bytes(8) + b"abcde\0\0\0" + bytes(8)


def test_a_view_handed_out_sees_later_writes():
    v = ArrayValues(2, 16, 16)
    live = v.get(0)
    v[0] = bytes(range(16))
    assert bytes(live) == bytes(range(16))
