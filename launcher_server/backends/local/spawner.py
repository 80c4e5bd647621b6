"""The spawner: a lean, single-threaded process that forks one supervisor per job.

Starting a fresh interpreter per supervisor costs tens of milliseconds; forking this small
process costs well under one, which is what lets the daemon start thousands of jobs a second.
It also keeps fork() away from the daemon itself, whose gRPC threads make forking unsafe.

Protocol: the daemon writes requests to the spawner's stdin, each a 4-byte big-endian length
followed by a JSON `supervisor.Request`. The spawner exits when its stdin closes (the daemon
stopped or died); supervisors already running are unaffected.

    python -m launcher_server.backends.local.spawner
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import sys

from launcher_server.backends.local.supervisor import Request, supervise

_HEADER = struct.Struct(">I")


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _reap() -> None:
    """Collects finished supervisors, so that no zombies accumulate."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def serve(fd: int) -> None:
    # Children inherit the mask: a supervisor unblocks SIGTERM once it can handle it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, lambda *_: _reap())
    while True:
        header = _read_exact(fd, _HEADER.size)
        if header is None:
            return
        body = _read_exact(fd, _HEADER.unpack(header)[0])
        if body is None:
            return
        request = Request.from_json(body)
        if os.fork() == 0:
            os.close(fd)
            supervise(request)  # never returns


def main() -> None:
    serve(sys.stdin.fileno())
    _reap()


if __name__ == "__main__":
    main()
