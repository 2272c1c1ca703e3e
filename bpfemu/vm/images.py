"""Debian kernel images for the VM runner: find, fetch, unpack and cache them.

A kernel is named by its version line ("6.1", "6.12") or by an exact Debian package name.
The package is fetched once with ``apt-get download`` (never installed on the host), unpacked
with ``dpkg -x`` and reduced to what a boot needs: the kernel (an uncompressed vmlinux where
we can extract one, so qemu boots it directly through the PVH entry, else the bzImage), the
few modules the guest loads (virtio, 9p, overlay; decompressed, since busybox's insmod reads
plain ELF) and the config. Nothing built from the package goes into the repository.
"""
import lzma
import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The modules the guest's init loads, in an order that satisfies their dependencies once each
# module's own "depends=" (read from its .modinfo) has been loaded first. Built-in ones are absent.
GUEST_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")

# Debian's flavour of a version line: the generic amd64 kernel, unsigned (the same binary
# as the signed one without the Secure Boot signature).
PACKAGE_PATTERNS = {
    "6.1": r"linux-image-6\.1\.0-[0-9]+-amd64-unsigned",
    "6.12": r"linux-image-6\.12\.[0-9]+\+deb[0-9]+-amd64-unsigned",
}


class ImageError(Exception):
    """What is missing to boot the kernel asked for, in words a user can act on."""


def cache_root() -> Path:
    base = os.environ.get("BPFEMU_KERNEL_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "bpfemu" / "kernels"


@dataclass
class KernelImage:
    package: str          # the Debian package it came from
    release: str          # uname -r of the kernel
    directory: Path       # the cache directory holding it
    kernel: Path          # vmlinux (PVH entry) or bzImage
    modules: list         # [Path], in load order

    @property
    def pvh(self) -> bool:
        return self.kernel.name == "vmlinux"


def _version_key(name: str):
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", name)]


def resolve_package(version: str) -> str:
    """The newest package of a version line known to apt, or the package name given."""
    if version.startswith("linux-image-"):
        return version
    pattern = PACKAGE_PATTERNS.get(version)
    if pattern is None:
        raise ImageError(f"unknown kernel {version!r}: give one of {', '.join(PACKAGE_PATTERNS)} "
                         "or a Debian package name (linux-image-...-unsigned)")
    cached = sorted((p.name for p in cache_root().glob("linux-image-*")
                     if re.fullmatch(pattern, p.name) and (p / "ready").exists()), key=_version_key)
    if shutil.which("apt-cache") is None:
        if cached:
            return cached[-1]
        raise ImageError(f"no cached image for {version} under {cache_root()} and no apt-cache "
                         "to find one (this needs a Debian or Ubuntu host with Debian's archive)")
    out = subprocess.run(["apt-cache", "search", "--names-only", f"^{pattern}$"],
                         capture_output=True, text=True).stdout
    names = sorted({line.split(" ", 1)[0] for line in out.splitlines() if line.strip()},
                   key=_version_key)
    if not names:
        if cached:
            return cached[-1]
        raise ImageError(f"apt knows no package matching {pattern}: the archive that carries "
                         f"Linux {version} is not in this host's apt sources (apt-cache policy)")
    return names[-1]


def _read_modinfo_depends(data: bytes) -> list:
    m = re.search(rb"depends=([^\0]*)\0", data)
    return [d for d in m.group(1).decode().split(",") if d] if m else []


def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".zst":
        return subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True).stdout
    return data


def _module_order(tree: Path, release: str) -> list:
    """(name, bytes) of GUEST_MODULES and their dependencies, each after what it depends on."""
    found = {}
    for p in (tree / "lib" / "modules" / release / "kernel").rglob("*.ko*"):
        name = p.name.split(".ko")[0].replace("-", "_")
        found[name] = p
    order, seen = [], set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        if name not in found:
            return                                  # built in (=y): nothing to load
        data = _read_module(found[name])
        for dep in _read_modinfo_depends(data):
            visit(dep)
        order.append((name, data))

    for name in GUEST_MODULES:
        visit(name)
    return order


def extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The uncompressed ELF inside a bzImage (payload_offset/length of its setup header), or None."""
    setup_sects = bzimage[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = bzimage[start:start + payload_length]
    try:
        if payload.startswith(b"\xfd7zXZ\x00"):
            out = lzma.LZMADecompressor().decompress(payload)
        elif payload.startswith(b"\x28\xb5\x2f\xfd") and shutil.which("zstd"):
            # Kbuild appends the uncompressed size (4 bytes) after the zstd frame.
            out = subprocess.run(["zstd", "-dc"], input=payload[:-4], capture_output=True,
                                 check=True).stdout
        elif payload.startswith(b"\x1f\x8b"):
            import zlib
            out = zlib.decompressobj(31).decompress(payload)
        else:
            return None
    except (lzma.LZMAError, subprocess.CalledProcessError, OSError):
        return None
    return out if out.startswith(b"\x7fELF") else None


def fetch(version: str, log=None) -> KernelImage:
    """The cached image of a kernel, fetching and unpacking it first if needed."""
    package = resolve_package(version)
    directory = cache_root() / package
    if not (directory / "ready").exists():
        _populate(package, directory, log)
    return load(directory)


def load(directory: Path) -> KernelImage:
    release = (directory / "release").read_text().strip()
    order = (directory / "modules.order").read_text().split()
    kernel = directory / "vmlinux"
    if not kernel.exists():
        kernel = directory / "bzImage"
    return KernelImage(directory.name, release, directory, kernel,
                       [directory / "modules" / f"{m}.ko" for m in order])


def _populate(package: str, directory: Path, log) -> None:
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise ImageError(f"fetching {package} needs {tool} (a Debian or Ubuntu host)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent) as tmp:
        tmp = Path(tmp)
        if log:
            log(f"fetching {package} from the Debian archive (apt-get download)")
        r = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
        debs = list(tmp.glob("*.deb"))
        if r.returncode or not debs:
            raise ImageError(f"apt-get download {package} failed: {r.stderr.strip()[-500:]}")
        tree = tmp / "tree"
        subprocess.run(["dpkg", "-x", str(debs[0]), str(tree)], check=True)
        vmlinuz = sorted((tree / "boot").glob("vmlinuz-*"))
        if not vmlinuz:
            raise ImageError(f"{package} holds no /boot/vmlinuz-*")
        release = vmlinuz[0].name[len("vmlinuz-"):]
        staging = tmp / "image"
        (staging / "modules").mkdir(parents=True)
        bz = vmlinuz[0].read_bytes()
        elf = extract_vmlinux(bz)
        if elf is not None:
            (staging / "vmlinux").write_bytes(elf)
        else:
            (staging / "bzImage").write_bytes(bz)
        order = _module_order(tree, release)
        for name, data in order:
            (staging / "modules" / f"{name}.ko").write_bytes(data)
        (staging / "modules.order").write_text("".join(f"{n}\n" for n, _ in order))
        shutil.copy(tree / "boot" / f"config-{release}", staging / "config")
        (staging / "release").write_text(release + "\n")
        (staging / "ready").write_text(debs[0].name + "\n")
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
