"""Run commands on other Linux kernels (Debian's 6.1 and 6.12) inside a qemu VM.

    python -m bpfemu.vm 6.1 -- CMD ARGS...     (or scripts/run-on-kernel)
"""
from .images import ImageError, KernelImage, fetch
from .qemu import VmError, VmResult, run

__all__ = ["ImageError", "KernelImage", "VmError", "VmResult", "fetch", "run"]
