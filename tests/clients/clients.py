"""The four real clients: how each is built, what its maps are called, how its transcript is
normalised and what it prints when the kernel refuses it.
"""
import re
from dataclasses import dataclass
from typing import Callable

from . import build
from .harness import normalise, rename_ids


@dataclass(frozen=True)
class ClientSpec:
    name: str
    builder: Callable[[str], list]
    map_names: frozenset        # the names its maps carry (found in the kernel's map list)
    normalise: Callable[[str, str], str]
    refused: str                # how a line starts when its first map create gets EPERM


def _bpftool_show_all_ours(text: str) -> str:
    """In the output of a plain `bpftool map show` keep only the script's own maps, those
    whose ids its `show pinned` commands printed: the live kernel lists every map on the
    machine, other processes' too (another run of this script's among them); the emulator
    only those of the supervised tree."""
    lines = text.split("\n")
    ours, out, i = set(), [], 0
    while i < len(lines):
        out.append(lines[i])
        if lines[i].startswith("$ bpftool map show pinned"):
            m = re.match(r"(\d+): ", lines[i + 1]) if i + 1 < len(lines) else None
            if m:
                ours.add(m.group(1))
        if lines[i] == "$ bpftool map show":
            i += 1
            while i < len(lines) and not lines[i].startswith("[exit"):
                entry = [lines[i]]
                i += 1
                while i < len(lines) and lines[i].startswith("\t"):
                    entry.append(lines[i])
                    i += 1
                if entry[0].split(":")[0] in ours:
                    out.extend(entry)
            continue
        i += 1
    return "\n".join(out)


def normalise_bpftool(text: str, pin_dir: str) -> str:
    """bpftool's transcript: the pin directory reads PIN; other processes' maps leave `map
    show`; map ids (the "N:" heading of show, "id":N in JSON, `id N` on command lines) are
    renamed by first appearance (harness.rename_ids). Two things bpftool reads from
    /proc/PID/fdinfo of a map fd are dropped, because the emulator's map fds are memfds whose
    fdinfo the kernel writes (README, "Real clients"): memlock, the kernel's estimate of a
    map's kernel memory, and the "frozen" line of a plain `show` (freezing itself is checked
    by the update that fails after it)."""
    text = _bpftool_show_all_ours(text.replace(pin_dir, "PIN"))
    text = re.sub(r"  memlock \d+B", "", text)
    text = re.sub(r"^\tfrozen\n", "", text, flags=re.M)
    text = re.sub(r'^ *"bytes_memlock": \d+,\n', "", text, flags=re.M)     # -p
    text = re.sub(r'"bytes_memlock":\d+,', "", text)                      # -j
    return rename_ids(text, [r"^(\d+): ", r'"id": ?(\d+)', r"\bid ([1-9]\d*)\b"])


CLIENTS = {
    "bpftool": ClientSpec(
        "bpftool", build.bpftool_client,
        frozenset({"bt_hash", "bt_lru", "bt_pcpu", "bt_array"}), normalise_bpftool,
        "Error: map create failed: Operation not permitted"),
    "c": ClientSpec(
        "c", build.c_client,
        frozenset({"c_hash", "c_percpu_hash", "c_lru_hash", "c_lru_pcpu", "c_array",
                   "c_percpu_array"}), normalise,
        "  create -> EPERM"),
    "go": ClientSpec(
        "go", build.go_client,
        frozenset({"go_hash", "go_percpu_hash", "go_lru_hash", "go_array", "go_by_name"}), normalise,
        "  NewMap -> EPERM"),
    "ctypes": ClientSpec(
        "ctypes", build.ctypes_client,
        frozenset({"py_hash", "py_percpu_hash", "py_lru_hash", "py_lru_pcpu", "py_array",
                   "py_percpu_array"}), normalise,
        "  create -> EPERM"),
}
