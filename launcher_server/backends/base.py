"""The one small interface every execution backend implements.

The scheduler owns the store and the life cycle; a backend says which jobs it runs, checks them
when they are added, starts and stops them, and reports what it observes through the context's
`report` function. Backends with push notifications (supervisor sockets, Kubernetes watches)
and polling backends (Vertex AI) look the same from outside.

To add a backend: a package under `launcher_server/backends/`, a `Backend` subclass, one entry
in `registry.BACKENDS`, and a fixture in `tests/backends/` (docs/daemon.md, "Writing a
backend").
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
from collections.abc import Sequence
from typing import ClassVar

from launcher_server.config import DaemonConfig
from launcher_server.job_dirs import JobDirs
from launcher_server.jobs import JobKey, JobObservation, LaunchSpec, ReportFn
from launcher_server.logs import JobDirLogSource, LogSource
from xmanager.launcher.v1 import launcher_pb2 as pb


@dataclasses.dataclass(frozen=True)
class Availability:
    """Whether a backend can run jobs now; when not, what is missing and what to do."""

    ok: bool
    reason: str = ""


AVAILABLE = Availability(True)


@dataclasses.dataclass(frozen=True)
class BackendContext:
    """What the daemon gives every backend at construction."""

    # Delivers observations to the scheduler, from any thread; repeats are harmless.
    report: ReportFn
    job_dirs: JobDirs
    config: DaemonConfig


class BackendUnavailableError(Exception):
    """The backend cannot run jobs here; the message says why and what to do."""


class Backend(abc.ABC):
    """Starts, stops and observes jobs of one kind. Must be thread-safe."""

    #: The registry's name for it (GetServerInfo, logs, errors).
    name: ClassVar[str]
    #: Whether a job passes through STARTING (image loading, scheduling). A backend whose jobs
    #: run the moment they are handed over (a local process) reports RUNNING at once.
    reports_starting: ClassVar[bool] = True
    #: Whether its jobs run on this machine and count against --max_running_jobs.
    uses_local_slots: ClassVar[bool] = False

    def __init__(self, context: BackendContext) -> None:
        self.context = context

    def report(self, observation: JobObservation) -> None:
        self.context.report(observation)

    @abc.abstractmethod
    def accepts(self, job: pb.Job) -> bool:
        """Whether this backend is the one that runs `job` (by its executor and artifact)."""

    def check(self, job: pb.Job, field: str) -> None:  # noqa: B027  # most need no more checks
        """Checks a job this backend accepts, when it is added, before anything is written.

        Raises errors.InvalidArgumentError naming the field (under `field`, e.g. "jobs[0]")
        for what this backend cannot run: a missing binary, a bad port, an unknown machine.
        """

    @abc.abstractmethod
    def availability(self) -> Availability:
        """Whether jobs can run now (cheap: called on every add)."""

    @abc.abstractmethod
    def start(self, specs: Sequence[LaunchSpec]) -> list[str]:
        """Starts this backend's jobs of one work unit; returns a handle for each spec.

        Handles are stored and given back to cancel, reattach and logs. Must return promptly:
        states come later through `report`. Raises BackendUnavailableError or ValueError when
        the jobs cannot start (they are then recorded FAILED with the message).
        """

    @abc.abstractmethod
    def cancel(self, key: JobKey, handle: str, grace_period: datetime.timedelta) -> None:
        """Asks the job to stop: gracefully, then forcibly after the grace period.

        Returns at once; the final CANCELLED (or SUCCEEDED/FAILED when the job ended first) is
        reported later. Cancelling a finished job does nothing. An empty handle means the start
        is still under way: the backend must still make sure the job stops.
        """

    @abc.abstractmethod
    def reattach(self, key: JobKey, handle: str) -> JobObservation:
        """After a daemon restart: the job's state now, resuming its observation.

        A final observation when it ended while the daemon was away, RUNNING (or STARTING) when
        it still runs, LOST with a reason when it vanished. PENDING means it was never started
        (the daemon stopped between recording the unit and starting it): the scheduler starts
        it. An empty handle means the daemon stopped before recording the start: find the job
        by what identifies it, never start it twice.
        """

    def logs(self, key: JobKey, handle: str) -> LogSource:
        """The job's output; by default the log files in its job directory."""
        return JobDirLogSource(self.context.job_dirs.path(key))

    def log_location(self, key: JobKey, handle: str) -> str:
        """Where a person finds the logs (shown by `xmanager show`)."""
        return str(self.context.job_dirs.log_path(key))

    def close(self) -> None:  # noqa: B027  # optional: most backends hold nothing to release
        """Stops observing (the daemon shuts down); running jobs keep running."""
