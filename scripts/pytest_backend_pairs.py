"""pytest plugin for running the differential suite on another kernel (scripts/differential-on-kernels).

Many differential tests run one body on each backend ([emu-...] and [host-...]) and assert
Linux 6.18's answer. On 6.1 or 6.12 the kernel's answer may be another one: then the host
variant fails, and the emulator on that kernel's profile must fail in exactly the same way.
So here a pair agrees when both variants pass, or both fail with the same assertion message
(the test's 6.18 expectation differs from what this kernel and its profile both answer). A
pair that does not agree, and any failing test without a pair, fails the run.

    python -m pytest -p pytest_backend_pairs ...   (with scripts/ on PYTHONPATH)
"""
import re
from collections import defaultdict

import pytest

_results = {}
_BACKEND = re.compile(r"(?<=[\[-])(emu|host)(?=[\]-])")


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome == "failed":
        message = ""
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = crash.message if crash is not None else str(report.longrepr)[-300:]
            # The assertion itself: pytest's explanation lines name the backend's objects.
            message = re.sub(r"0x[0-9a-f]+|\b\d{9,}\b", "?", message.split("\n")[0])
        prev = _results.get(report.nodeid)
        if prev is None or prev[0] != "failed":
            _results[report.nodeid] = (report.outcome, message)


def classify(results):
    """(agreeing pairs, of which failing alike, [disagreeing or unpaired failures])."""
    groups = defaultdict(dict)
    for nodeid, res in results.items():
        m = _BACKEND.search(nodeid)
        if m:
            groups[_BACKEND.sub("*", nodeid, count=1)][m.group(1)] = (nodeid, res)
        else:
            groups[nodeid]["single"] = (nodeid, res)
    agree = alike = 0
    bad = []
    for key, sides in groups.items():
        if set(sides) == {"emu", "host"}:
            (_, e), (_, h) = sides["emu"], sides["host"]
            if "skipped" in (e[0], h[0]):
                continue                        # e.g. a kernel-only check skipped on the emulator
            if e == h:
                agree += 1
                alike += e[0] == "failed"
            else:
                bad.append(f"{key}: emulator {e[0]} {e[1]!r}, kernel {h[0]} {h[1]!r}")
        else:
            for nodeid, (outcome, message) in sides.values():
                if outcome == "failed":
                    bad.append(f"{nodeid}: {message}")
    return agree, alike, bad


@pytest.hookimpl(hookwrapper=True)
def pytest_sessionfinish(session, exitstatus):
    yield
    agree, alike, bad = classify(_results)
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    write = tr.write_line if tr else print
    write("")
    write(f"backend pairs: {agree} agree ({alike} of them fail alike: the kernel and its "
          f"profile give the same answer, not 6.18's); {len(bad)} disagree or fail alone")
    for line in bad:
        write(f"  DIFFERENT: {line}")
    if exitstatus in (0, 1):
        session.exitstatus = 1 if bad else 0
