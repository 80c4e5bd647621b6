"""The job types every part of the daemon shares: the store, the scheduler and the backends.

A backend is handed `LaunchSpec`s and answers with `JobObservation`s; the store records them.
Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Mapping

from xmanager.launcher.v1 import launcher_pb2 as pb

UnitKey = tuple[int, int]


@dataclasses.dataclass(frozen=True, order=True)
class JobKey:
    """Identifies a job: its work unit and its name within it."""

    experiment_id: int
    work_unit_id: int
    job_name: str

    @property
    def unit(self) -> UnitKey:
        return (self.experiment_id, self.work_unit_id)

    def __str__(self) -> str:
        return f"{self.experiment_id}/{self.work_unit_id}/{self.job_name}"


@dataclasses.dataclass(frozen=True)
class LaunchSpec:
    """Everything a backend needs to start one job, already validated and checked."""

    key: JobKey
    # The job as it was added: artifact, executor, args, env_vars, requirements.
    job: pb.Job
    # The arguments after the program, token for token.
    args: tuple[str, ...]
    # The job's env_vars plus the launcher's XM_* variables.
    env: Mapping[str, str]
    # Names of every job of the work unit (a gang), in the order they were added.
    peers: tuple[str, ...] = ()
    experiment_title: str = ""
    # Where the launch script ran and its environment (may hold secrets: never log it); local
    # binaries run with it unless their executor asks for a clean environment.
    launch_context: pb.LaunchContext | None = None

    @property
    def artifact(self) -> pb.Artifact:
        return self.job.artifact

    @property
    def executor(self) -> pb.Executor:
        return self.job.executor

    @property
    def requirements(self) -> pb.ResourceRequirements:
        return self.job.requirements


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
