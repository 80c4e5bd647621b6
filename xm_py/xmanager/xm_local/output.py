"""Echoing local jobs' output on the launch script's terminal (`Local(experimental_stream_output)`).

XManager's local executor lets its jobs write to the launch script's terminal. Here jobs run
under the daemon, which keeps their output in log files; the echo copies new output to the
script's stdout, each line prefixed with its work unit and job (`[3/train] loss 0.12`), until
the job has ended and its log is drained.

With a daemon on this machine (the Unix socket), the echo reads the log files directly: one
thread polls the logs of the jobs it follows, so a sweep of thousands of jobs costs no call to
the daemon at all (a job that writes nothing leaves no file). With a remote daemon it follows
each job's log with StreamLogs, a few at a time.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import sys
import threading
from collections.abc import Callable
from typing import BinaryIO

import grpc

from xmanager.client.connection import Launcher
from xmanager.launcher.v1 import launcher_pb2 as pb

_POLL_SECONDS = 0.2
_READ_SIZE = 1 << 16
_REMOTE_STREAMS = 4

IsFinal = Callable[[int], bool]


@dataclasses.dataclass(eq=False)  # compared by identity: the poll drops thousands at once
class _Followed:
    work_unit_id: int
    job_name: str
    path: str
    offset: int = 0
    partial: bytes = b""

    @property
    def prefix(self) -> bytes:
        return f"[{self.work_unit_id}/{self.job_name}] ".encode()


class OutputEcho:
    """Copies followed jobs' output to `out` until each job has ended and its log is read."""

    def __init__(
        self,
        launcher: Launcher,
        experiment_id: int,
        is_final: IsFinal,
        out: BinaryIO | None = None,
    ) -> None:
        self._launcher = launcher
        self._experiment_id = experiment_id
        self._is_final = is_final
        self._out = out if out is not None else sys.stdout.buffer
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._followed: list[_Followed] = []
        self._closed = threading.Event()
        self._local = launcher.is_local
        self._remote: concurrent.futures.ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None

    def follow(self, unit: pb.WorkUnit, job_names: list[str]) -> None:
        """Starts echoing the named jobs of a unit the daemon has just recorded."""
        jobs = {job.name: job for job in unit.jobs}
        for name in job_names:
            followed = _Followed(unit.work_unit_id, name, jobs[name].log_location)
            if self._local and followed.path:
                with self._lock:
                    self._followed.append(followed)
                    if self._thread is None:
                        self._thread = threading.Thread(
                            target=self._poll, name="xm-output", daemon=True
                        )
                        self._thread.start()
            else:
                if self._remote is None:
                    self._remote = concurrent.futures.ThreadPoolExecutor(
                        _REMOTE_STREAMS, thread_name_prefix="xm-output"
                    )
                self._remote.submit(self._stream, followed)

    def close(self) -> None:
        """Echoes what is left of every followed log, then stops."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join()
        if self._remote is not None:
            self._remote.shutdown(wait=True)

    # -- local: the log files themselves ---------------------------------------------------

    def _poll(self) -> None:
        while True:
            closing = self._closed.wait(_POLL_SECONDS)
            with self._lock:
                followed = list(self._followed)
            started = _Started()
            done = [
                f
                for f in followed
                if (closing or started.has(f.path) or self._is_final(f.work_unit_id))
                and self._read(f, final=closing)
            ]
            if done:
                finished = set(done)
                with self._lock:
                    self._followed = [f for f in self._followed if f not in finished]
            if closing:
                return

    def _read(self, followed: _Followed, *, final: bool) -> bool:
        """Echoes new output; True once the job has ended and all of it was echoed."""
        # Whether it ended is asked first: output read after that is all there is.
        ended = final or self._is_final(followed.work_unit_id)
        try:
            with open(followed.path, "rb") as log:
                log.seek(followed.offset)
                while data := log.read(_READ_SIZE):
                    followed.offset += len(data)
                    self._echo(followed, data)
        except FileNotFoundError:
            pass  # nothing written yet (or ever)
        if ended:
            self._echo(followed, b"", end=True)
        return ended

    # -- remote: StreamLogs ------------------------------------------------------------------

    def _stream(self, followed: _Followed) -> None:
        request = pb.StreamLogsRequest(
            experiment_id=self._experiment_id,
            work_unit_id=followed.work_unit_id,
            job_name=followed.job_name,
            follow=True,
        )
        try:
            for chunk in self._launcher.stub.StreamLogs(request):
                self._echo(followed, chunk.data)
        except grpc.RpcError:
            pass  # the daemon went away: the output stays in its logs
        self._echo(followed, b"", end=True)

    # -- writing -----------------------------------------------------------------------------

    def _echo(self, followed: _Followed, data: bytes, *, end: bool = False) -> None:
        """Writes the complete lines of `data` (and, at the end, the unfinished one)."""
        data = followed.partial + data
        lines = data.split(b"\n")
        followed.partial = lines.pop()
        if end and followed.partial:
            lines.append(followed.partial)
            followed.partial = b""
        if not lines:
            return
        text = b"".join(followed.prefix + line + b"\n" for line in lines)
        with self._write_lock:
            self._out.write(text)
            self._out.flush()


class _Started:
    """Which jobs have started, from one listing per directory of work units.

    A job's log is `.../UNIT/JOB/output.log`, and its unit's directory exists once the unit
    started: listing the directory of units once a round spares a failed open() per job still
    waiting (most of a sweep, most of the time).
    """

    def __init__(self) -> None:
        self._listings: dict[str, set[str]] = {}

    def has(self, log_path: str) -> bool:
        unit_dir = os.path.dirname(os.path.dirname(log_path))
        parent, unit = os.path.split(unit_dir)
        names = self._listings.get(parent)
        if names is None:
            try:
                names = {entry.name for entry in os.scandir(parent)}
            except FileNotFoundError:
                names = set()
            self._listings[parent] = names
        return unit in names
