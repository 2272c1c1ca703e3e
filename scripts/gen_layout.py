#!/usr/bin/env python3
"""Write abi/linux-6.18/layout.json from the running kernel's BTF.

The json is the ground truth tests/unit/test_layout.py holds bpfemu/uapi/attr.py to, so the
layout test runs without BTF access. For each of our LAYOUTS it records every field of the
matching kernel member (kernel names, flattened as C names them), and which unmodelled names
share a modelled field's slot (e.g. next_key is value).

    python scripts/gen_layout.py [--btf /sys/kernel/btf/vmlinux] [--out abi/linux-6.18/layout.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:               # run as a script from a checkout, not installed
    sys.path.insert(0, ROOT)

from bpfemu.btf import KIND_STRUCT, KIND_UNION, VMLINUX_PATH, Btf  # noqa: E402
from bpfemu.uapi.attr import LAYOUTS, field_offsets  # noqa: E402

DEFAULT_OUT = os.path.join(ROOT, "abi", "linux-6.18", "layout.json")
ENUMS = ("bpf_cmd", "bpf_map_type")

# Where each layout lives in the kernel: a named union member by its name, an anonymous one by
# fields that only it has (and that Linux 6.1 already had, so older kernels' BTF matches too),
# or a whole struct.
SELECT = {
    "map_create": ("union bpf_attr", None, {"map_type", "map_extra"}),
    "map_elem": ("union bpf_attr", None, {"map_fd", "key", "next_key", "flags"}),
    "batch": ("union bpf_attr", "batch", None),
    "info": ("union bpf_attr", "info", None),
    "get_id": ("union bpf_attr", None, {"start_id", "next_id", "open_flags"}),
    "obj": ("union bpf_attr", None, {"pathname", "bpf_fd", "file_flags"}),
    "bpf_map_info": ("struct bpf_map_info", None, None),
}


def kernel_member(btf: Btf, name: str):
    """(description, sizeof, [(Field, type_id)]) of the kernel member our layout ``name`` models."""
    where, member, marker = SELECT[name]
    kind, cname = where.split()
    tid = btf.find(cname, kind)
    if kind == "struct":
        return where, btf.sizeof(tid), btf.typed_members(tid)
    hits = []
    for i, m in enumerate(btf.type(tid).members):
        if member is not None:
            if m.name != member:
                continue
        elif m.name or btf.type(btf.resolve(m.type_id)).kind not in (KIND_STRUCT, KIND_UNION):
            continue                          # markers select among anonymous struct/unions
        typed = btf.typed_members(m.type_id)
        if marker is None or marker <= {f.name for f, _ in typed}:
            desc = f"{where} .{m.name}" if m.name else f"{where} anonymous member #{i}"
            hits.append((desc, btf.sizeof(m.type_id), typed))
    if len(hits) != 1:
        raise LookupError(f"{name}: {len(hits)} members of {where} match {member or sorted(marker)}")
    return hits[0]


def layout_entry(btf: Btf, name: str) -> dict:
    desc, size, typed = kernel_member(btf, name)
    fields = {}
    for f, tid in typed:
        rec = {"offset": f.offset, "size": f.size}
        signed = btf.int_signed(tid)
        if signed is not None:
            rec["signed"] = signed
        fields[f.name] = rec
    # Kernel names we do not model that sit exactly on a modelled field (anonymous unions).
    ours = field_offsets(LAYOUTS[name])
    slots = {v: k for k, v in ours.items()}
    aliases = {n: slots[(r["offset"], r["size"])] for n, r in fields.items()
               if n not in ours and (r["offset"], r["size"]) in slots}
    return {
        "kernel_type": desc,
        "sizeof": size,
        "end": max(r["offset"] + r["size"] for r in fields.values()),
        "fields": fields,
        "aliases": aliases,
    }


def compute(btf: Btf, release: str, source: str = VMLINUX_PATH) -> dict:
    """The whole layout.json document, as plain data."""
    return {
        "header": {
            "kernel_release": release,
            "source": source,
            "generator": "scripts/gen_layout.py",
        },
        "sizeof": {
            "union bpf_attr": btf.sizeof(btf.find("bpf_attr", "union")),
            "struct bpf_map_info": btf.sizeof(btf.find("bpf_map_info", "struct")),
        },
        "layouts": {name: layout_entry(btf, name) for name in LAYOUTS},
        "enums": {e: btf.enum_values(e) for e in ENUMS},
    }


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--btf", default=VMLINUX_PATH)
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    doc = compute(Btf.load(args.btf), os.uname().release, args.btf)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(dumps(doc))
    print(f"wrote {args.out} ({doc['header']['kernel_release']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
