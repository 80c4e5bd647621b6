"""Following a running container: copying its output, and noticing and recording its exit.

One follower thread per running container copies its output from the engine's log stream into
the job's log files (log_stream.py). The stream ends when the container stops, so the follower
also notices the exit, and re-checks a container whose stream stays silent for half a minute in
case the stream stalls. Once the logs are copied it records exit.json in the job directory and
hands the final observation to the backend. When the engine goes away the follower waits for it
to come back and resumes the copy from its checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from launcher_server.backends.local import records
from launcher_server.backends.local.containers import job_records
from launcher_server.backends.local.containers.engine import (
    API_TIMEOUT,
    ENGINE_OR_UNAVAILABLE,
    FINAL_STATUSES,
    STREAM_ERRORS,
    Client,
    Engine,
    NotFound,
    ReadTimeout,
    docker_time,
    explain,
    url,
)
from launcher_server.backends.local.containers.job_records import ContainerJob
from launcher_server.backends.local.containers.log_stream import (
    LogCopier,
    multiplexed_messages,
    tty_messages,
)
from launcher_server.jobs import JobObservation
from xmanager.launcher.v1 import launcher_pb2 as pb

_log = logging.getLogger(__name__)

# A follower re-checks a container whose log stream stays silent this long.
_IDLE_SECONDS = 30.0
_MAX_BACKOFF = 10.0


class ClosedError(Exception):
    """The backend is closing: stop following without reporting anything."""


class _VanishedError(Exception):
    """The container is gone from the engine."""


class Follower:
    """Follows containers until they end; `on_end` gets each job's final observation."""

    def __init__(
        self,
        engine: Engine,
        log_cap: int,
        closed: threading.Event,
        on_end: Callable[[ContainerJob, JobObservation], None],
    ) -> None:
        self._engine = engine
        self._log_cap = log_cap
        self._closed = closed
        self._on_end = on_end
        self._lock = threading.Lock()
        # The open log streams, closed by close() to stop their readers.
        self._responses: set[Any] = set()

    def follow_async(self, job: ContainerJob) -> None:
        threading.Thread(
            target=self._follow, args=(job,), name=f"follow-{job.name}", daemon=True
        ).start()

    def _follow(self, job: ContainerJob) -> None:
        try:
            observation = self.watch(job, wait_for_engine=True)
        except ClosedError:
            return
        except Exception:
            _log.exception("following container job %s failed", job.key)
            observation = JobObservation(
                job.key,
                pb.JOB_STATE_LOST,
                native_state="unknown",
                reason="the daemon failed while following the container (see its log)",
            )
        if observation is not None:
            self._on_end(job, observation)

    def watch(self, job: ContainerJob, *, wait_for_engine: bool) -> JobObservation | None:
        """Copies the container's output until it ends; returns its final observation.

        Records exit.json before returning. With wait_for_engine false, returns None at the
        first engine error instead of waiting for the engine to come back. Raises ClosedError
        when the backend closes.
        """
        copier = LogCopier(job.job_dir, self._log_cap)
        try:
            backoff = 0.2
            while True:
                if self._closed.is_set():
                    raise ClosedError
                began = time.monotonic()
                try:
                    client = self._engine.client()
                    self._copy_logs(client, job, copier, follow=True)
                    state = client.api.inspect_container(job.name)["State"]
                    if state.get("Status") in FINAL_STATUSES:
                        # The stream ended with the container; read once more for stragglers.
                        self._copy_logs(client, job, copier, follow=False)
                        copier.close()
                        return self._finished(job, state)
                except (_VanishedError, NotFound):
                    copier.close()
                    return job_records.vanished(job)
                except ENGINE_OR_UNAVAILABLE as error:
                    if self._closed.is_set():
                        raise ClosedError from None
                    if not wait_for_engine:
                        return None
                    _log.info("following %s: %s; retrying", job.name, explain(error))
                if time.monotonic() - began < 1.0:  # the stream ended at once: do not spin
                    self._closed.wait(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                else:
                    backoff = 0.2
        finally:
            copier.close()

    def _copy_logs(
        self, client: Client, job: ContainerJob, copier: LogCopier, *, follow: bool
    ) -> None:
        copier.restart_read()
        params: dict[str, str | int] = {
            "stdout": 1,
            "stderr": 1,
            "timestamps": 1,
            "follow": int(follow),
            "since": copier.since(),
        }
        response = client.api.get(
            url(client, f"/containers/{job.name}/logs"),
            params=params,
            stream=True,
            timeout=(10, _IDLE_SECONDS if follow else API_TIMEOUT),
        )
        with self._lock:
            self._responses.add(response)
        try:
            if self._closed.is_set():
                raise ClosedError
            if response.status_code == 404:
                raise _VanishedError
            response.raise_for_status()
            read = response.raw.read
            copier.copy(tty_messages(read) if job.tty else multiplexed_messages(read))
        except ReadTimeout:
            pass  # silent for a while: the caller checks the container is still running
        except STREAM_ERRORS:
            if self._closed.is_set():
                raise ClosedError from None
            raise
        finally:
            with self._lock:
                self._responses.discard(response)
            response.close()

    def _finished(self, job: ContainerJob, state: dict[str, Any]) -> JobObservation:
        """Records and describes the exit of a stopped container."""
        exit_code = int(state.get("ExitCode", -1))
        end = docker_time(state.get("FinishedAt")) or datetime.datetime.now(datetime.UTC)
        cancel_time = job_records.cancel_time(job)
        # Cancelled if the cancel came before the end (a job that ended first keeps its result).
        cancelled = cancel_time is not None and cancel_time <= end
        if state.get("OOMKilled"):
            reason = f"killed: out of memory (exit code {exit_code})"
        elif state.get("Error"):
            reason = f"{state['Error']} (exit code {exit_code})"
        elif cancelled:
            reason = f"stopped on request (exit code {exit_code})"
        elif exit_code < 0:
            reason = f"the container ended {state.get('Status')} without an exit code"
        else:
            reason = ""
        exited = records.Exited(
            exit_code=exit_code if exit_code >= 0 else None,
            signal=None,
            end_time=end.isoformat(),
            cancelled=cancelled,
            reason=reason,
        )
        records.write_atomic(job.job_dir / records.EXITED, dataclasses.asdict(exited))
        return job_records.final_observation(job, exited)

    def close(self) -> None:
        """Closes the open log streams: their followers stop without reporting."""
        with self._lock:
            responses = list(self._responses)
        for response in responses:
            with contextlib.suppress(Exception):
                response.close()
