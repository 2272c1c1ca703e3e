"""Python mirror of include/uapi/linux/bpf.h (Linux 6.18): data only, no behaviour."""
from .consts import *  # noqa: F401,F403
