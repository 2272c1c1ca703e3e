"""bpfemu: the Linux bpf() map syscall ABI, emulated byte for byte and errno for errno.

The public names are imported on first use (PEP 562), so that ``import bpfemu`` costs about
what ``import ctypes`` does: the command handlers, the construct layouts and the map types
load when an Emulator, a HostKernel or a Map is first asked for.
"""
import importlib

__all__ = ["Emulator", "HostKernel", "Map", "BpfError", "ENOTSUPP", "ArenaMemory",
           "ProcessMemory"]
__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "Emulator": ".emulator",
    "HostKernel": ".host",
    "Map": ".maps_api",
    "BpfError": ".errors",
    "ENOTSUPP": ".errors",
    "ArenaMemory": ".memory",
    "ProcessMemory": ".memory",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bpfemu' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value             # the next access is a plain module attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
