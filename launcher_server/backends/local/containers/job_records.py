"""A container job as the backend follows it, and what its job directory records about it.

Besides the records every local job has (exit.json, cancel.json: the `records` module), a
container job has container.json: the container's id and start, written once it runs, so its
absence means the container never started. The observations here follow from those records
alone, which is what lets a restarted daemon tell what happened while it was away.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path

from launcher_server.backends.local import records
from launcher_server.jobs import JobKey, JobObservation
from xmanager.launcher.v1 import launcher_pb2 as pb

CONTAINER_RECORD = "container.json"


@dataclasses.dataclass
class ContainerJob:
    """A job whose container the backend starts or follows; its handle is the container name."""

    key: JobKey
    name: str
    job_dir: Path
    container_id: str = ""
    tty: bool = False


def record_started(
    job: ContainerJob, container_id: str, image_id: str, started: datetime.datetime
) -> None:
    records.write_atomic(
        job.job_dir / CONTAINER_RECORD,
        {
            "id": container_id,
            "name": job.name,
            "image": image_id,
            "start_time": started.isoformat(),
        },
    )


def start_time(job: ContainerJob) -> datetime.datetime | None:
    try:
        record = json.loads((job.job_dir / CONTAINER_RECORD).read_text())
        return records.parse_time(record["start_time"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def cancel_grace(job: ContainerJob) -> float | None:
    """The grace period of a recorded cancel request, None if there is none."""
    return records.read_cancel_grace(job.job_dir)


def cancel_time(job: ContainerJob) -> datetime.datetime | None:
    try:
        data = json.loads((job.job_dir / records.CANCEL).read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        return records.parse_time(data["requested_at"])
    except (KeyError, TypeError, ValueError):
        return datetime.datetime.min.replace(tzinfo=datetime.UTC)  # requested, time unknown


def final_observation(job: ContainerJob, exited: records.Exited) -> JobObservation:
    observation = records.final_observation(job.key, exited, start_time=start_time(job))
    return dataclasses.replace(observation, native_state="exited")


def vanished(job: ContainerJob) -> JobObservation:
    return JobObservation(
        job.key,
        pb.JOB_STATE_LOST,
        native_state="vanished",
        reason=(
            f"its container {job.name} vanished from Docker Engine without a recorded exit "
            "(removed outside the launcher?)"
        ),
        start_time=start_time(job),
    )


def cancelled_before_start(job: ContainerJob) -> JobObservation:
    return JobObservation(
        job.key,
        pb.JOB_STATE_CANCELLED,
        native_state="not started",
        reason="cancelled before its container started",
    )


def missing(job: ContainerJob) -> JobObservation:
    """The observation of a job whose container the engine does not have (after a restart)."""
    if (job.job_dir / CONTAINER_RECORD).exists():
        return vanished(job)
    if cancel_grace(job) is not None:
        return cancelled_before_start(job)
    # Only this daemon's start workers create containers, and they died with the daemon
    # that queued the job: it never started, and starting it now cannot start it twice.
    return JobObservation(job.key, pb.JOB_STATE_PENDING, native_state="never started")
