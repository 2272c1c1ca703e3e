"""Interception: unmodified programs' bpf() calls served by an Emulator (seccomp user
notification). `bpfemu run`, in-process interception and the fixtures build on this."""
