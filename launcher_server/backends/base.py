"""The one small interface every execution backend implements.

The daemon's scheduler owns the store and the life cycle; a backend only starts jobs, stops them,
and reports what it observes. Reports flow through a callback so that backends with push
notifications (supervisor sockets, Kubernetes watches) and polling backends look the same.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from xmanager.launcher.v1 import launcher_pb2 as pb


@dataclasses.dataclass(frozen=True, order=True)
class JobKey:
    """Identifies a job: its work unit and its name within it."""

    experiment_id: int
    work_unit_id: int
    job_name: str

    def __str__(self) -> str:
        return f"{self.experiment_id}/{self.work_unit_id}/{self.job_name}"


@dataclasses.dataclass(frozen=True)
class LaunchSpec:
    """Everything a backend needs to start one job, already validated by the daemon."""

    key: JobKey
    # The program (a LocalBinary path or an image) and its arguments, token for token.
    artifact: pb.Artifact
    args: Sequence[str]
    # The complete environment of the job: the job's env_vars plus the XM_* variables.
    env: Mapping[str, str]
    executor: pb.Executor
    requirements: pb.ResourceRequirements
    # A directory owned by this job for the backend's records and the job's logs.
    job_dir: Path
    # Names of the other jobs of the same work unit (for peer discovery).
    peers: Sequence[str] = ()


@dataclasses.dataclass(frozen=True)
class JobObservation:
    """What a backend observed about a job. Only `state` is required."""

    key: JobKey
    state: int  # a pb.JobState value
    native_state: str = ""
    reason: str = ""
    exit_code: int | None = None
    start_time: datetime.datetime | None = None
    end_time: datetime.datetime | None = None


ReportFn = Callable[[JobObservation], None]


class BackendUnavailableError(Exception):
    """The backend cannot run jobs here; the message says why and what to do."""


class Backend(abc.ABC):
    """Starts, stops and observes jobs of one kind.

    Implementations must be thread-safe: the scheduler calls them from several threads.
    Observations are delivered through the `report` function given at construction, from any
    thread, possibly more than once for the same state (the scheduler ignores repeats).
    """

    #: Short name, as in ServerInfo.backends ("local", "vertex", ...).
    name: str
    #: Whether a job passes through STARTING (image loading, scheduling...). A backend whose
    #: jobs run the moment they are handed over (a local process) reports RUNNING at once.
    reports_starting: bool = True

    @abc.abstractmethod
    def availability(self) -> tuple[bool, str]:
        """(True, "") when jobs can run now, else (False, reason with what to do)."""

    @abc.abstractmethod
    def start(self, spec: LaunchSpec) -> str:
        """Starts a job and returns its handle, to be stored and given back later.

        Raises BackendUnavailableError, or ValueError for a job this backend cannot run.
        Must return promptly: waiting for the job happens through `report`.
        """

    @abc.abstractmethod
    def cancel(self, key: JobKey, handle: str, grace_period: datetime.timedelta) -> None:
        """Asks the job to stop: a graceful stop, then a forced one after the grace period.

        Returns at once; the final CANCELLED (or SUCCEEDED/FAILED, if the job ended first) is
        reported through `report`. Cancelling a finished job is a no-op.
        """

    @abc.abstractmethod
    def reattach(self, key: JobKey, handle: str, job_dir: Path) -> JobObservation:
        """After a daemon restart: the job's current state, resuming its observation.

        Returns a final observation when the job ended while the daemon was away, RUNNING when
        it still runs (further changes then come through `report`), and LOST with a reason when
        the job vanished without a record.
        """

    def close(self) -> None:  # noqa: B027  # optional: most backends hold nothing to release
        """Stops observing (the daemon shuts down); running jobs keep running."""
