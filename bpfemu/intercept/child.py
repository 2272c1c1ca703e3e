"""The exec helper: the first process of a supervised tree.

    python -s -S child.py SOCKFD STATFS CMD [ARGS...]

It installs the seccomp filter on itself (NO_NEW_PRIVS, a listener that waits killably),
sends the listener fd to the supervisor over the socket SOCKFD, closes its own copies and
execs CMD, which inherits the filter. A helper process instead of fork()+preexec_fn: the
supervisor may have threads (a pytest process), and only an exec'd program may run after a
fork in a threaded process. It runs as a script, not as bpfemu.intercept.child, so that it
starts without importing the emulator.
"""
import os
import socket
import sys

if __package__:
    from . import seccomp
else:
    import seccomp          # the script's directory is on sys.path

# A shell's codes for "could not run the command".
EXIT_CANNOT_EXEC, EXIT_NOT_FOUND = 126, 127


def main(argv: list) -> int:
    sock_fd, statfs, cmd = int(argv[0]), argv[1] == "1", argv[2:]
    # DEVIATION(eintr): a signal that arrives before the supervisor has received the call
    # (the wait is interruptible until then) restarts it under SA_RESTART and fails it with
    # EINTR otherwise, having done nothing; Linux never returns EINTR from these commands.
    flags = seccomp.SECCOMP_FILTER_FLAG_NEW_LISTENER | seccomp.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
    sock = socket.socket(fileno=sock_fd)
    try:
        listener = seccomp.install_filter(flags, statfs)
    except OSError as e:
        sys.stderr.write(f"bpfemu: cannot install the seccomp filter: {e.strerror}\n")
        sock.sendall(b"E")
        return EXIT_CANNOT_EXEC
    socket.send_fds(sock, [b"L"], [listener])
    os.close(listener)
    sock.close()
    try:
        os.execvp(cmd[0], cmd)
    except FileNotFoundError:
        sys.stderr.write(f"bpfemu: {cmd[0]}: command not found\n")
        return EXIT_NOT_FOUND
    except OSError as e:
        sys.stderr.write(f"bpfemu: {cmd[0]}: {e.strerror}\n")
        return EXIT_CANNOT_EXEC


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
