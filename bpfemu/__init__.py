"""bpfemu: the Linux bpf() map syscall ABI, emulated byte for byte and errno for errno."""
from .emulator import Emulator
from .errors import ENOTSUPP, BpfError
from .host import HostKernel
from .maps_api import Map
from .memory import ArenaMemory, ProcessMemory

__all__ = ["Emulator", "HostKernel", "Map", "BpfError", "ENOTSUPP", "ArenaMemory",
           "ProcessMemory"]
__version__ = "0.1.0"
