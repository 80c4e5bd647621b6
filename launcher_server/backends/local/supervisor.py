"""The job supervisor: one small process per local job, as conmon is for a container.

It starts the job in a new session (so the job and everything it starts form one process group
that can be signalled as a whole), pumps its output into size-capped log files, waits for it,
kills whatever the job left behind in its group, records the outcome atomically in the job's
directory and notifies the daemon. It owes the daemon nothing: it runs in its own session and
keeps going when the daemon (or the spawner it was forked from) dies, so the outcome is always
recorded.

Cancellation: the daemon writes `cancel.json` and sends SIGTERM to the supervisor, which sends
SIGTERM to the job's group, waits for the grace period, then sends SIGKILL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import selectors
import signal
import socket
import time
from pathlib import Path
from typing import Any

from launcher_server.backends.local import records
from launcher_server.backends.local.logfiles import JobLogs

_READ_SIZE = 1 << 16
# After the job's main process ends, how long to wait for descendants to release its pipes.
_DRAIN_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class Request:
    """What the spawner receives for each job (JSON over its stdin)."""

    key: list[Any]
    argv: list[str]
    env: dict[str, str]
    job_dir: str
    log_cap: int
    notify: str

    @classmethod
    def from_json(cls, data: bytes) -> Request:
        return cls(**json.loads(data))


class _Supervisor:
    def __init__(self, request: Request) -> None:
        self.request = request
        self.job_dir = Path(request.job_dir)
        self.cancel_deadline: float | None = None
        self.cancelled = False
        self.killed = False

    def run(self) -> None:
        request = self.request
        wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(wakeup_w, False)
        signal.set_wakeup_fd(wakeup_w)
        signal.signal(signal.SIGTERM, lambda *_: None)  # handled through the wakeup fd
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # The spawner forks with SIGTERM blocked, so that a cancel arriving this early waits
        # for the handler instead of killing the supervisor.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        logs = JobLogs(self.job_dir, request.log_cap)
        workdir = self.job_dir / records.WORKDIR
        workdir.mkdir(exist_ok=True)
        os.chdir(workdir)
        devnull = os.open(os.devnull, os.O_RDONLY)
        try:
            pid = os.posix_spawn(
                request.argv[0],
                request.argv,
                request.env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, devnull, 0),
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, err_w, 2),
                ],
                setsid=True,
                setsigdef=(signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGPIPE),
                setsigmask=(),
            )
        except OSError as error:
            logs.write("stderr", f"launcher: cannot execute {request.argv[0]}: {error}\n".encode())
            logs.close()
            self._finish(
                records.Exited(127, None, records.now(), reason=f"cannot execute: {error}")
            )
            return
        finally:
            for fd in (out_w, err_w, devnull):
                os.close(fd)
        records.write_atomic(
            self.job_dir / records.STARTED,
            dataclasses.asdict(
                records.Started(
                    supervisor_pid=os.getpid(),
                    supervisor_ticks=records.process_ticks(os.getpid()) or 0,
                    pid=pid,
                    start_time=records.now(),
                    job_ticks=records.process_ticks(pid) or 0,
                )
            ),
        )
        self._notify("started")
        if records.read_cancel_grace(self.job_dir) is not None:
            self._begin_cancel(pid)  # cancelled before it even started
        status = self._pump(pid, {out_r: "stdout", err_r: "stderr"}, wakeup_r, logs)
        logs.close()
        code = os.waitstatus_to_exitcode(status)
        exited = records.Exited(
            exit_code=code if code >= 0 else None,
            signal=-code if code < 0 else None,
            end_time=records.now(),
            cancelled=self.cancelled,
            reason="",
        )
        self._finish(exited)

    def _pump(self, pid: int, pipes: dict[int, str], wakeup: int, logs: JobLogs) -> int:
        """Copies output until the job ends (and its pipes drain); returns its wait status."""
        selector = selectors.DefaultSelector()
        for fd in pipes:
            selector.register(fd, selectors.EVENT_READ)
        pidfd = os.pidfd_open(pid)
        selector.register(pidfd, selectors.EVENT_READ)
        selector.register(wakeup, selectors.EVENT_READ)
        status: int | None = None
        drain_deadline: float | None = None
        while pipes or status is None:
            timeout = None
            now = time.monotonic()
            if self.cancel_deadline is not None and status is None:
                timeout = max(0.0, self.cancel_deadline - now)
            if drain_deadline is not None:
                remaining = max(0.0, drain_deadline - now)
                timeout = remaining if timeout is None else min(timeout, remaining)
                if remaining == 0:
                    break  # something that escaped the group holds the pipes: stop copying
            for key, _ in selector.select(timeout):
                fd = key.fd
                if fd == pidfd:
                    selector.unregister(pidfd)
                    _, status = os.waitpid(pid, 0)
                    # Whatever the job started and left in its group goes with it.
                    _kill_group(pid, signal.SIGKILL)
                    drain_deadline = time.monotonic() + _DRAIN_SECONDS
                elif fd == wakeup:
                    signals = os.read(wakeup, 512)
                    if signal.SIGTERM in signals and status is None:
                        self._begin_cancel(pid)
                else:
                    data = os.read(fd, _READ_SIZE)
                    if data:
                        logs.write(pipes[fd], data)
                    else:
                        selector.unregister(fd)
                        os.close(fd)
                        del pipes[fd]
            if (
                status is None
                and self.cancel_deadline is not None
                and time.monotonic() >= self.cancel_deadline
                and not self.killed
            ):
                self.killed = True
                _kill_group(pid, signal.SIGKILL)
        os.close(pidfd)
        assert status is not None
        return status

    def _begin_cancel(self, pid: int) -> None:
        if self.cancelled:
            return
        grace = records.read_cancel_grace(self.job_dir)
        self.cancelled = True
        self.cancel_deadline = time.monotonic() + (grace if grace is not None else 10.0)
        _kill_group(pid, signal.SIGTERM)

    def _finish(self, exited: records.Exited) -> None:
        records.write_atomic(self.job_dir / records.EXITED, dataclasses.asdict(exited))
        self._notify("exited")

    def _notify(self, event: str) -> None:
        message = json.dumps({"key": self.request.key, "event": event}).encode()
        with (
            contextlib.suppress(OSError),  # no daemon listening: the records are the truth
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
        ):
            sock.sendto(message, self.request.notify)


def _kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def supervise(request: Request) -> None:
    """Runs in a freshly forked child of the spawner; never returns."""
    code = 0
    try:
        os.setsid()  # detach from the daemon's session: the supervisor outlives it
        _Supervisor(request).run()
    except BaseException:  # the child must never return into the spawner's loop
        code = 1
        with contextlib.suppress(Exception):
            import traceback  # noqa: PLC0415  # only on this rare path

            (Path(request.job_dir) / "supervisor-error.txt").write_text(traceback.format_exc())
    finally:
        os._exit(code)
