"""Between stored rows and the contract's messages (pure functions)."""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterable
from typing import Any, Protocol

from google.protobuf import timestamp_pb2

from launcher_server import limits
from launcher_server.errors import InvalidArgumentError
from xmanager.launcher.v1 import launcher_pb2 as pb


class StatusColumns(Protocol):
    """What a job or work unit row (ORM object or Core row) has of a status."""

    state: int
    native_state: str
    reason: str
    exit_code: int | None
    start_time: datetime.datetime | None
    end_time: datetime.datetime | None
    update_time: datetime.datetime


def utc(value: datetime.datetime | None) -> datetime.datetime | None:
    """SQLite returns naive datetimes: they are UTC, as everything the store writes."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=datetime.UTC)
    return value


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def timestamp(value: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    value = utc(value)
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def page_token(value: int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode()


def parse_page_token(token: str) -> int | None:
    if not token:
        return None
    try:
        value = int(base64.urlsafe_b64decode(token.encode()).decode())
    except (ValueError, UnicodeDecodeError):
        value = -1
    if not 0 <= value <= limits.MAX_ID:
        raise InvalidArgumentError(
            "page_token", "is not a token this daemon issued; start from an empty token"
        )
    return value


def state_word(state: int) -> str:
    """JOB_STATE_RUNNING -> 'running'."""
    return str(pb.JobState.Name(state)).removeprefix("JOB_STATE_").lower()


def status(row: StatusColumns) -> pb.JobStatus:
    return pb.JobStatus(
        state=row.state,  # type: ignore[arg-type]
        native_state=row.native_state,
        reason=row.reason,
        has_exit_code=row.exit_code is not None,
        exit_code=row.exit_code or 0,
        start_time=timestamp(row.start_time),
        end_time=timestamp(row.end_time),
        update_time=timestamp(row.update_time),
    )


def job_columns(
    experiment_id: int, work_unit_id: int, position: int, job: pb.Job, at: datetime.datetime
) -> dict[str, Any]:
    """A new job's row: PENDING, with the artifact fields worth querying copied out."""
    artifact = job.artifact
    kind = artifact.WhichOneof("kind") or ""
    image = artifact.oci_image
    return {
        "experiment_id": experiment_id,
        "work_unit_id": work_unit_id,
        "name": job.name,
        "position": position,
        "executor_kind": job.executor.WhichOneof("kind") or "",
        "executor": job.executor.SerializeToString(),
        "artifact_kind": kind,
        "artifact_path": (
            artifact.local_binary.path if kind == "local_binary" else image.tarball_path
        ),
        "artifact_reference": image.reference,
        "artifact_digest": (
            artifact.local_binary.sha256 if kind == "local_binary" else image.digest
        ),
        "artifact": artifact.SerializeToString(),
        "args": list(job.args),
        "env": dict(job.env),
        "requirements": job.requirements.SerializeToString(),
        "backend_handle": "",
        "state": pb.JOB_STATE_PENDING,
        "native_state": "",
        "reason": "",
        "exit_code": None,
        "start_time": None,
        "end_time": None,
        "update_time": at,
        "log_location": job.log_location,
        "launch_context_digest": job.launch_context_digest,
    }


def experiment_message(row: Any, state_counts: dict[int, int]) -> pb.Experiment:
    """An experiment, with the number of its work units in each state."""
    return pb.Experiment(
        id=row.id,
        title=row.title,
        tags=row.tags,
        notes=row.notes,
        creator=row.creator,
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        launch_script_path=row.launch_script_path,
        launch_script_sha256=row.launch_script_sha256,
        source_revision=row.source_revision,
        work_unit_count=sum(state_counts.values()),
        work_unit_state_counts=state_counts,
    )


def job_message(row: Any) -> pb.Job:
    """The whole job from a full jobs row."""
    return pb.Job(
        name=row.name,
        artifact=pb.Artifact.FromString(row.artifact),
        args=row.args,
        env=row.env,
        executor=pb.Executor.FromString(row.executor),
        requirements=pb.ResourceRequirements.FromString(row.requirements),
        status=status(row),
        backend_handle=row.backend_handle,
        log_location=row.log_location,
        launch_context_digest=row.launch_context_digest,
    )


def unit_message(row: Any, jobs: Iterable[Any]) -> pb.WorkUnit:
    """The whole work unit from its row and its jobs' full rows."""
    return pb.WorkUnit(
        experiment_id=row.experiment_id,
        work_unit_id=row.work_unit_id,
        args_json=row.args_json,
        jobs=[job_message(job) for job in sorted(jobs, key=lambda j: j.position)],
        status=status(row),
        identity=row.identity or "",
        create_time=timestamp(row.create_time),
    )


def unit_status_message(row: Any, jobs: Iterable[Any]) -> pb.WorkUnit:
    """A work unit's status and its jobs' names, statuses and log locations (what watchers
    get)."""
    return pb.WorkUnit(
        experiment_id=row.experiment_id,
        work_unit_id=row.work_unit_id,
        status=status(row),
        jobs=[
            pb.Job(name=job.name, status=status(job), log_location=job.log_location)
            for job in sorted(jobs, key=lambda j: j.position)
        ],
    )


def event_message(row: Any) -> pb.Event:
    return pb.Event(
        sequence=row.sequence,
        time=timestamp(row.time),
        subject=row.subject,
        experiment_id=row.experiment_id,
        work_unit_id=row.work_unit_id or 0,
        job_name=row.job_name or "",
        old_state=row.old_state,
        new_state=row.new_state,
        message=row.message,
    )


def status_only(unit: pb.WorkUnit) -> pb.WorkUnit:
    """What watchers and a sweep's adds get of a whole unit: its ids, identity, creation time,
    status and its jobs' names, statuses and log locations."""
    return pb.WorkUnit(
        experiment_id=unit.experiment_id,
        work_unit_id=unit.work_unit_id,
        identity=unit.identity,
        create_time=unit.create_time,
        status=unit.status,
        jobs=[
            pb.Job(name=job.name, status=job.status, log_location=job.log_location)
            for job in unit.jobs
        ],
    )
