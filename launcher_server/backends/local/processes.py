"""The local process backend: binaries on the daemon's machine, run by a job supervisor.

The handle of a job is its job directory, where the supervisor keeps its records. The backend
learns about starts and exits from the datagrams supervisors send to the notify socket (each
carries the record it announces), and a slow poll over the jobs it follows reads the records
themselves, which catches any datagram lost while the daemon was busy or away.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from launcher_server.backends.base import (
    AVAILABLE,
    Availability,
    Backend,
    BackendContext,
    BackendUnavailableError,
)
from launcher_server.backends.local import records, supervisor
from launcher_server.errors import InvalidArgumentError
from launcher_server.jobs import JobKey, JobObservation, LaunchSpec
from xmanager.launcher.v1 import launcher_pb2 as pb

_log = logging.getLogger(__name__)

# Passed to jobs from the daemon's environment unless the job sets them itself.
INHERITED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SHELL")
_POLL_SECONDS = 1.0


# How long a restarted daemon waits for the previous daemon's supervisors to start what was
# left in their input (they read it at once: the daemon's death closed their stdin).
_DRAIN_WAIT_SECONDS = 10.0


# Launch contexts a supervisor keeps (the most recently used): a long-lived daemon sees a new
# one each time a launch script runs with another environment or directory.
_SUPERVISOR_CONTEXTS = 64


@dataclasses.dataclass(frozen=True)
class _Context:
    """A launch context's environment as supervisors get it: defined once, then by digest."""

    digest: str
    env: dict[str, str]


@dataclasses.dataclass
class _Followed:
    job_dir: Path
    started_reported: bool = False
    # Until the job's start is recorded: its request, and the supervisor it was sent to, so a
    # request that died with its supervisor unread is sent again.
    frame: bytes | None = None
    supervisor: subprocess.Popen[bytes] | None = None
    context: _Context | None = None


class LocalProcessBackend(Backend):
    name = "local"
    reports_starting = False  # a process runs as soon as its supervisor gets it
    uses_local_slots = True

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        run_dir = context.config.state_dir.run
        self._log_cap = context.config.log_cap_bytes
        self._run_dir = run_dir
        self._notify_path = supervisor.notify_path(run_dir)
        self._lock = threading.Lock()
        self._supervisor: subprocess.Popen[bytes] | None = None
        # The launch contexts the current supervisor has, least recently used first.
        self._defined: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._contexts: collections.OrderedDict[str, _Context] = collections.OrderedDict()
        self._followed: dict[JobKey, _Followed] = {}
        self._digests: dict[tuple[str, int, int, int], str] = {}
        self._closed = threading.Event()
        self._drained = False
        run_dir.mkdir(parents=True, exist_ok=True)
        self._notify_path.unlink(missing_ok=True)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(self._notify_path))
        # Bursts of thousands of short jobs: room for their datagrams.
        with contextlib.suppress(OSError):
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        self._threads = [
            threading.Thread(target=self._listen, name="local-notify", daemon=True),
            threading.Thread(target=self._poll, name="local-poll", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def accepts(self, job: pb.Job) -> bool:
        return bool(
            job.executor.WhichOneof("kind") == "local"
            and job.artifact.WhichOneof("kind") == "local_binary"
        )

    def check(self, job: pb.Job, field: str) -> None:
        path = job.artifact.local_binary.path
        field = f"{field}.artifact.local_binary.path"
        if not os.path.isabs(path):
            raise InvalidArgumentError(
                field, f"{path!r} is not absolute (the client resolves paths before submitting)"
            )
        if not os.path.isfile(path):
            raise InvalidArgumentError(
                field, f"{path} does not exist or is not a file; build it or fix the path"
            )
        if not os.access(path, os.X_OK):
            raise InvalidArgumentError(field, f"{path} is not executable; chmod +x it")

    def availability(self) -> Availability:
        return AVAILABLE

    # -- starting ----------------------------------------------------------------------------

    def start(self, specs: Sequence[LaunchSpec]) -> list[str]:
        return [self._start(spec) for spec in specs]

    def _start(self, spec: LaunchSpec) -> str:
        job_dir = self.context.job_dirs.path(spec.key)
        binary = spec.artifact.local_binary
        path = binary.path
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise ValueError(f"{path} is missing or not executable")
        if binary.sha256 and self._sha256(path) != binary.sha256:
            raise ValueError(f"binary {path} changed since it was packaged; package it again")
        launch_context = spec.launch_context
        context: _Context | None = None
        if launch_context is not None and not spec.executor.local.clean_environment:
            # XManager's local semantics: where the launch script ran, with its environment,
            # then the executable's and the job's env_vars (both in spec.env), unbuffered. The
            # supervisor gets the launch script's environment once, not with every job.
            context = self._context(spec.job.launch_context_digest, launch_context)
            env = {**spec.env, "PYTHONUNBUFFERED": "1"}
            cwd = launch_context.working_directory
            if not os.path.isdir(cwd):
                raise ValueError(
                    f"the launch script's working directory {cwd} no longer exists; run the "
                    "job with Local(clean_environment=True) or recreate the directory"
                )
        else:
            env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
            env.update(spec.env)
            cwd = ""
        request = supervisor.Request(
            key=[spec.key.experiment_id, spec.key.work_unit_id, spec.key.job_name],
            argv=[path, *spec.args],
            env=env,
            job_dir=str(job_dir),
            log_cap=self._log_cap,
            cwd=cwd,
            context=context.digest if context else "",
        )
        frame = supervisor.frame(request.to_json())
        with self._lock:
            entry = self._followed[spec.key] = _Followed(job_dir, frame=frame, context=context)
            entry.supervisor = self._send(frame, context)
        return str(job_dir)

    def _context(self, digest: str, launch_context: pb.LaunchContext) -> _Context:
        """The launch context's environment as a dict, converted once per context."""
        with self._lock:
            context = self._contexts.get(digest)
            if context is None:
                context = self._contexts[digest] = _Context(digest, dict(launch_context.env))
                if len(self._contexts) > _SUPERVISOR_CONTEXTS:
                    self._contexts.popitem(last=False)
            self._contexts.move_to_end(digest)
            return context

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

    def _send(self, frame: bytes, context: _Context | None) -> subprocess.Popen[bytes]:
        """Writes a request to this daemon's supervisor, (re)starting it if needed, after the
        definition of its launch context if that supervisor does not have it; returns the
        supervisor that got it.

        Holds self._lock. A supervisor that died (it should not) is replaced; the jobs it had
        are found LOST by the poll, and the requests it had not read are sent again.
        """
        for attempt in range(2):
            process = self._supervisor
            if process is None or process.poll() is not None:
                process = self._supervisor = self._start_supervisor()
                self._defined.clear()
            assert process.stdin is not None
            try:
                if context is not None:
                    process.stdin.write(self._definitions(context))
                process.stdin.write(frame)
                process.stdin.flush()
                return process
            except BrokenPipeError:
                if attempt:
                    raise BackendUnavailableError("the local job supervisor keeps dying") from None
        raise AssertionError("unreachable")

    def _definitions(self, context: _Context) -> bytes:
        """What the supervisor must read before a request naming `context` (holds self._lock):
        its definition unless sent already, and the forgetting of the least recently used."""
        if context.digest in self._defined:
            self._defined.move_to_end(context.digest)
            return b""
        self._defined[context.digest] = None
        messages = [supervisor.frame(supervisor.define_context(context.digest, context.env))]
        if len(self._defined) > _SUPERVISOR_CONTEXTS:
            forgotten, _ = self._defined.popitem(last=False)
            messages.append(supervisor.frame(supervisor.forget_context(forgotten)))
        return b"".join(messages)

    def _start_supervisor(self) -> subprocess.Popen[bytes]:
        log: IO[bytes]
        with open(self._run_dir / "supervisor.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", supervisor.__name__, f"--run_dir={self._run_dir}"],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                close_fds=True,
                start_new_session=True,  # not in the daemon's process group: it outlives it
                cwd="/",
            )

    # -- observing ---------------------------------------------------------------------------

    def _listen(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._socket.recv(65536)
            except OSError:
                return
            try:
                messages = json.loads(data)
            except ValueError:
                continue
            for message in messages if isinstance(messages, list) else []:
                try:
                    key = JobKey(*message["key"])
                    event, record = message["event"], message["record"]
                    if event == "started":
                        self._on_started(key, records.Started(**record))
                    elif event == "exited":
                        self._on_exited(key, records.Exited(**record))
                except (KeyError, TypeError):
                    _log.warning("malformed notification ignored: %r", message)

    def _on_started(self, key: JobKey, started: records.Started) -> None:
        with self._lock:
            entry = self._followed.get(key)
            if entry is None or entry.started_reported:
                return
            entry.started_reported = True
            entry.frame = entry.supervisor = None
        self.report(
            JobObservation(
                key,
                pb.JOB_STATE_RUNNING,
                native_state="running",
                start_time=records.parse_time(started.start_time),
            )
        )

    def _on_exited(self, key: JobKey, exited: records.Exited) -> None:
        with self._lock:
            if self._followed.pop(key, None) is None:
                return  # reported already (by the poll)
        self.report(records.final_observation(key, exited))

    def _poll(self) -> None:
        while not self._closed.wait(_POLL_SECONDS):
            with self._lock:
                followed = list(self._followed.items())
            alive: dict[tuple[int, int], bool] = {}
            for key, entry in followed:
                self._check(key, entry, alive)

    def _check(self, key: JobKey, entry: _Followed, alive: dict[tuple[int, int], bool]) -> None:
        """Reports what the records say that was not reported yet."""
        exited = records.read_exited(entry.job_dir)
        if exited is not None:
            self._on_exited(key, exited)
            return
        started = records.read_started(entry.job_dir)
        if started is None:
            self._resend_if_unread(key, entry)
            return
        self._on_started(key, started)
        identity = (started.supervisor_pid, started.supervisor_ticks)
        if identity not in alive:
            alive[identity] = records.supervisor_alive(started)
        if not alive[identity]:
            # Re-read: the supervisor may have written its record just before exiting.
            exited = records.read_exited(entry.job_dir)
            with self._lock:
                if self._followed.pop(key, None) is None:
                    return
            self.report(records.final_observation(key, exited) if exited else lost(key, started))

    def _resend_if_unread(self, key: JobKey, entry: _Followed) -> None:
        """A request whose supervisor died before starting it (no started.json, written before
        the spawn) never ran: it goes to the new supervisor."""
        with self._lock:
            process = entry.supervisor
            if entry.frame is None or process is None or process.poll() is None:
                return
            if records.read_started(entry.job_dir) is not None:
                return
            _log.warning("job %s: its supervisor died before starting it; sent again", key)
            entry.supervisor = self._send(entry.frame, entry.context)

    # -- cancelling and re-attaching -------------------------------------------------------------

    def cancel(self, key: JobKey, handle: str, grace_period: datetime.timedelta) -> None:
        job_dir = Path(handle) if handle else self.context.job_dirs.path(key)
        if records.read_exited(job_dir) is not None:
            return
        job_dir.mkdir(parents=True, exist_ok=True)
        # The intent is recorded first: a supervisor that starts the job later stops it at once.
        records.write_atomic(
            job_dir / records.CANCEL,
            {"grace_seconds": grace_period.total_seconds(), "requested_at": records.now()},
        )
        started = records.read_started(job_dir)
        if started is None:
            return
        if records.supervisor_alive(started):
            message = json.dumps({"cancel": str(job_dir)}).encode()
            with (
                contextlib.suppress(OSError),
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
            ):
                sock.sendto(message, started.control)
        else:
            # No supervisor left to do it (it should not happen): stop the group directly.
            records.kill_orphaned_job(started)

    def reattach(self, key: JobKey, handle: str) -> JobObservation:
        self._wait_for_old_supervisors()
        job_dir = Path(handle) if handle else self.context.job_dirs.path(key)
        exited = records.read_exited(job_dir)
        started = records.read_started(job_dir)
        if exited is not None:
            return records.final_observation(key, exited)
        if started is not None and records.supervisor_alive(started):
            with self._lock:
                self._followed[key] = _Followed(job_dir, started_reported=started.pid > 0)
            return JobObservation(
                key,
                pb.JOB_STATE_RUNNING,
                native_state="running",
                reason="re-attached after a daemon restart",
                start_time=records.parse_time(started.start_time),
            )
        if started is not None:
            exited = records.read_exited(job_dir)  # written just before its supervisor exited?
            return records.final_observation(key, exited) if exited else lost(key, started)
        # No supervisor took it (the old ones have read all their input by now): it never ran.
        if records.read_cancel_grace(job_dir) is not None:
            return JobObservation(
                key,
                pb.JOB_STATE_CANCELLED,
                native_state="not started",
                reason="cancelled by request before it started",
            )
        return JobObservation(key, pb.JOB_STATE_PENDING, native_state="never started")

    def _wait_for_old_supervisors(self) -> None:
        """Waits (once) until the supervisors of earlier daemons have started every request
        they had been sent: only then does a job without records mean "never started"."""
        with self._lock:
            if self._drained:
                return
            self._drained = True
        deadline = time.monotonic() + _DRAIN_WAIT_SECONDS
        for marker in self._run_dir.glob("supervisor-*.accepting"):
            pid = int(marker.name.split("-")[1].split(".")[0])
            try:
                ticks = int(marker.read_text())
            except (OSError, ValueError):
                continue
            while marker.exists() and records.process_ticks(pid) == ticks:
                if time.monotonic() > deadline:
                    _log.warning("supervisor %d still has unread requests; not waiting", pid)
                    break
                time.sleep(0.01)
            if records.process_ticks(pid) != ticks:
                marker.unlink(missing_ok=True)  # died: its unread requests died with it

    def close(self) -> None:
        """Stops observing. The supervisor keeps running its jobs, then exits by itself."""
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
            process, self._supervisor = self._supervisor, None
        if process is not None and process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()  # end of requests: it finishes its jobs and exits
        for thread in self._threads[1:]:
            thread.join(timeout=2)


def lost(key: JobKey, started: records.Started) -> JobObservation:
    if started.pid <= 0:
        records.kill_unrecorded_job(key, started)
        return JobObservation(
            key,
            pb.JOB_STATE_LOST,
            native_state="vanished",
            reason=(
                "the job's supervisor died while starting it (kill -9 of the supervisor); "
                "whatever of it had started was stopped"
            ),
        )
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
