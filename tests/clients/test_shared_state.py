"""A Python test drives a real client and checks its maps, with no root: the client runs as
nobody, served by the test's own Emulator (intercept's bpf_run fixture), and the test reads
what it left."""
import ctypes
import errno
import os
import re

import pytest

from bpfemu import BpfError

from . import harness

u32, u64 = ctypes.c_uint32, ctypes.c_uint64


@pytest.fixture
def as_nobody():
    """The prefix that runs a client as nobody (empty when the test is not root: the user
    is then unprivileged already)."""
    if not harness.is_root():
        return []
    if harness.nobody_unavailable():
        pytest.skip(harness.nobody_unavailable())
    return list(harness.AS_NOBODY)


@pytest.mark.parametrize("client", ["go"], indirect=True)
def test_go_client_leaves_its_pinned_maps_to_the_test(client, bpf_run, as_nobody):
    """The Go client, as nobody, pins five maps and exits; the test finds each by its pin:
    four with the value the client last wrote through the pin (4242 at key 1) and frozen as
    the client left them, and the one it pinned by name, with 7 at key 1 and writable."""
    spec, argv = client
    PIN_ROOT = bpf_run.pin_root                    # a real pin directory, the test's own
    done = bpf_run.run([*harness.ON_CPU0, *as_nobody, *argv, PIN_ROOT])
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("done\n")
    by_name = bpf_run.map_by_pin(os.path.join(PIN_ROOT, "go_by_name"), u32, u64)
    assert by_name[1].value == 7
    by_name[2] = 8
    assert by_name[2].value == 8
    by_name.close()
    for name in sorted(spec.map_names - {"go_by_name"}):
        m = bpf_run.map_by_pin(os.path.join(PIN_ROOT, name), u32, u64)
        value = m[1]                               # a list of slots for a per-CPU map
        first = value[0] if isinstance(value, list) else value
        assert first.value == 4242, name
        with pytest.raises(BpfError) as e:
            m[1] = value
        assert e.value.errno == errno.EPERM, name   # frozen by the client
        m.close()
    # The client's own ids, as it printed them: the test's map ids are the same maps.
    ids = {int(i) for i in re.findall(r"id#(\d+)", done.stdout)}
    assert ids <= set(bpf_run.map_ids())
