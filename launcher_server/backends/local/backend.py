"""The local process backend: binaries on the daemon's machine, each under a supervisor.

The handle of a job is its job directory, where its supervisor keeps its records. The backend
learns about starts and exits from datagrams the supervisors send to the notify socket, and
reads the records to know what happened; a slow poll over the jobs it follows catches any
datagram lost while the daemon was busy or away.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

from launcher_server.backends.base import (
    Backend,
    BackendUnavailableError,
    JobKey,
    JobObservation,
    LaunchSpec,
    ReportFn,
)
from launcher_server.backends.local import records
from launcher_server.backends.local.supervisor import Request
from xmanager.launcher.v1 import launcher_pb2 as pb

_log = logging.getLogger(__name__)

# Passed to jobs from the daemon's environment unless the job sets them itself.
INHERITED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SHELL")
_POLL_SECONDS = 1.0


@dataclasses.dataclass
class _Followed:
    job_dir: Path
    started_reported: bool = False


class LocalProcessBackend(Backend):
    name = "local"

    def __init__(
        self,
        jobs_root: Path,
        report: ReportFn,
        *,
        notify_socket: Path,
        log_cap_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._jobs_root = jobs_root
        self._report = report
        self._log_cap = log_cap_bytes
        self._notify_path = notify_socket
        self._lock = threading.Lock()
        self._spawner: subprocess.Popen[bytes] | None = None
        self._followed: dict[JobKey, _Followed] = {}
        self._digests: dict[tuple[str, int, int, int], str] = {}
        self._closed = threading.Event()
        notify_socket.parent.mkdir(parents=True, exist_ok=True)
        notify_socket.unlink(missing_ok=True)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(notify_socket))
        # Bursts of thousands of short jobs: room for their datagrams.
        with contextlib.suppress(OSError):
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        self._threads = [
            threading.Thread(target=self._listen, name="local-notify", daemon=True),
            threading.Thread(target=self._poll, name="local-poll", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def availability(self) -> tuple[bool, str]:
        return True, ""

    # -- starting ----------------------------------------------------------------------------

    def start(self, spec: LaunchSpec) -> str:
        if spec.artifact.WhichOneof("kind") != "local_binary":
            raise ValueError("the local process backend runs binaries only")
        binary = spec.artifact.local_binary
        path = binary.path
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise ValueError(f"{path} is missing or not executable")
        if binary.sha256 and self._sha256(path) != binary.sha256:
            raise ValueError(f"binary {path} changed since it was packaged; package it again")
        spec.job_dir.mkdir(parents=True, exist_ok=True)
        env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
        env.update(spec.env)
        request = Request(
            key=[spec.key.experiment_id, spec.key.work_unit_id, spec.key.job_name],
            argv=[path, *spec.args],
            env=env,
            job_dir=str(spec.job_dir),
            log_cap=self._log_cap,
            notify=str(self._notify_path),
        )
        with self._lock:
            self._followed[spec.key] = _Followed(spec.job_dir)
            self._send(json.dumps(dataclasses.asdict(request)).encode())
        return str(spec.job_dir)

    def _sha256(self, path: str) -> str:
        """The file's digest, cached by identity and modification time."""
        stat = os.stat(path)
        identity = (path, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        digest = self._digests.get(identity)
        if digest is None:
            with open(path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            self._digests[identity] = digest
        return digest

    def _send(self, body: bytes) -> None:
        """Writes a request to the spawner, (re)starting it if needed. Holds self._lock."""
        for attempt in range(2):
            spawner = self._spawner
            if spawner is None or spawner.poll() is not None:
                spawner = self._spawner = subprocess.Popen(
                    [sys.executable, "-m", "launcher_server.backends.local.spawner"],
                    stdin=subprocess.PIPE,
                    close_fds=True,
                    cwd="/",
                )
            assert spawner.stdin is not None
            try:
                spawner.stdin.write(struct.pack(">I", len(body)) + body)
                spawner.stdin.flush()
                return
            except BrokenPipeError:
                if attempt:
                    raise BackendUnavailableError("the local job spawner keeps dying") from None

    # -- observing ---------------------------------------------------------------------------

    def _listen(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._socket.recv(65536)
            except OSError:
                return
            try:
                key = JobKey(*json.loads(data)["key"])
            except (ValueError, KeyError, TypeError):
                continue
            with self._lock:
                followed = self._followed.get(key)
            if followed is not None:
                self._check(key, followed)

    def _poll(self) -> None:
        while not self._closed.wait(_POLL_SECONDS):
            with self._lock:
                followed = list(self._followed.items())
            for key, entry in followed:
                self._check(key, entry, polling=True)

    def _check(self, key: JobKey, entry: _Followed, *, polling: bool = False) -> None:
        """Reports what the records say that was not reported yet."""
        exited = records.read_exited(entry.job_dir)
        started = records.read_started(entry.job_dir)
        if exited is not None:
            with self._lock:
                if self._followed.pop(key, None) is None:
                    return  # reported already, by the other thread
            self._report(final_observation(key, exited, started))
            return
        if started is None:
            return
        if not entry.started_reported:
            entry.started_reported = True
            self._report(
                JobObservation(
                    key,
                    pb.JOB_STATE_RUNNING,
                    native_state="running",
                    start_time=records.parse_time(started.start_time),
                )
            )
        if polling and not records.supervisor_alive(started):
            # Re-read: the supervisor may have written its record just before exiting.
            exited = records.read_exited(entry.job_dir)
            with self._lock:
                if self._followed.pop(key, None) is None:
                    return
            self._report(
                final_observation(key, exited, started)
                if exited is not None
                else lost(key, started)
            )

    # -- cancelling and re-attaching -------------------------------------------------------------

    def cancel(self, key: JobKey, handle: str, grace_period: datetime.timedelta) -> None:
        job_dir = Path(handle) if handle else self._jobs_root
        if records.read_exited(job_dir) is not None:
            return
        job_dir.mkdir(parents=True, exist_ok=True)
        records.write_atomic(
            job_dir / records.CANCEL, {"grace_seconds": grace_period.total_seconds()}
        )
        started = records.read_started(job_dir)
        if started is None:
            return  # the supervisor reads cancel.json as soon as the job runs
        if records.supervisor_alive(started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(started.supervisor_pid, signal.SIGTERM)
        else:
            # No supervisor left to do it (it should not happen): stop the group directly.
            records.kill_orphaned_job(started)

    def reattach(self, key: JobKey, handle: str, job_dir: Path) -> JobObservation:
        job_dir = Path(handle) if handle else job_dir
        exited = records.read_exited(job_dir)
        started = records.read_started(job_dir)
        if exited is not None:
            return final_observation(key, exited, started)
        if started is not None and records.supervisor_alive(started):
            with self._lock:
                self._followed[key] = _Followed(job_dir, started_reported=True)
            return JobObservation(
                key,
                pb.JOB_STATE_RUNNING,
                native_state="running",
                reason="re-attached after a daemon restart",
                start_time=records.parse_time(started.start_time),
            )
        if started is not None:
            return lost(key, started)
        if job_dir.exists() and (job_dir / records.LOGS["output"]).exists():
            # A supervisor started but died before recording the start (kill -9).
            return JobObservation(
                key, pb.JOB_STATE_LOST, native_state="vanished", reason="the supervisor vanished"
            )
        return JobObservation(
            key,
            pb.JOB_STATE_LOST,
            native_state="never started",
            reason="the daemon stopped before the job's supervisor started",
        )

    def close(self) -> None:
        self._closed.set()
        # Closing a socket does not wake a thread blocked in recv() on it: a datagram does.
        with (
            contextlib.suppress(OSError),
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as waker,
        ):
            waker.sendto(b"{}", str(self._notify_path))
        self._threads[0].join(timeout=2)
        self._socket.close()
        with self._lock:
            spawner, self._spawner = self._spawner, None
        if spawner is not None and spawner.stdin is not None:
            spawner.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                spawner.wait(timeout=5)
        for thread in self._threads:
            thread.join(timeout=2)


def final_observation(
    key: JobKey, exited: records.Exited, started: records.Started | None
) -> JobObservation:
    if exited.cancelled:
        state = pb.JOB_STATE_CANCELLED
    elif exited.exit_code == 0:
        state = pb.JOB_STATE_SUCCEEDED
    else:
        state = pb.JOB_STATE_FAILED
    return JobObservation(
        key,
        state,
        native_state="signaled" if exited.signal else "exited",
        reason=exited.describe() if state != pb.JOB_STATE_SUCCEEDED else "",
        exit_code=exited.shell_exit_code,
        start_time=records.parse_time(started.start_time) if started else None,
        end_time=records.parse_time(exited.end_time),
    )


def lost(key: JobKey, started: records.Started) -> JobObservation:
    records.kill_orphaned_job(started)
    return JobObservation(
        key,
        pb.JOB_STATE_LOST,
        native_state="vanished",
        reason=(
            "the job's supervisor vanished without recording an exit (machine restart or "
            "kill -9 of the supervisor); whatever the job left running was stopped"
        ),
        start_time=records.parse_time(started.start_time),
    )
