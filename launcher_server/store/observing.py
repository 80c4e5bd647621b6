"""Applying what backends observed to the stored statuses, many observations per transaction.

The scheduler's recorder hands over every observation of the last few milliseconds at once; the
batch costs two reads (the touched units and their jobs), one multi-row UPDATE per table and one
multi-row INSERT of events, so thousands of status changes a second fit in a few transactions.
"""

from __future__ import annotations

import datetime
import logging
import types
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.orm import Session

from launcher_server import aggregation
from launcher_server.jobs import JobKey, JobObservation
from launcher_server.store import conversions
from launcher_server.store.active import ActiveUnits, UnitStatus, load
from launcher_server.store.batch import Transaction, WatchUpdate
from launcher_server.store.models import EVENTS, JOBS, UNITS
from xmanager.launcher.v1 import launcher_pb2 as pb

_log = logging.getLogger(__name__)

UnitKey = tuple[int, int]
_BEFORE_CANCELLING = frozenset({pb.JOB_STATE_PENDING, pb.JOB_STATE_STARTING, pb.JOB_STATE_RUNNING})


def apply_observations(
    transaction: Transaction,
    active: ActiveUnits,
    observations: Sequence[JobObservation],
    handles: Mapping[JobKey, str],
    at: datetime.datetime,
) -> None:
    """Applies the observations in order, appending events and watch updates to the transaction.

    A job in a final state never changes again, one being cancelled only to a final state; an
    observation that changes nothing is ignored; an empty reason keeps the job's current one.
    Each change of a job appends a JOB event, each change of a work unit's aggregated state a
    WORK_UNIT event.
    """
    keys = {o.key for o in observations} | set(handles)
    if not keys:
        return
    session = transaction.session
    unit_keys = {(k.experiment_id, k.work_unit_id) for k in keys}
    units = active.copies(unit_keys)
    missing = sorted(unit_keys - units.keys())
    if missing:  # units final already (late or repeated observations), or unknown
        units.update(load(session, missing))
    changed_jobs: dict[JobKey, types.SimpleNamespace] = {}
    for key, handle in handles.items():
        job = _job(units, key)
        if job is not None and job.backend_handle != handle:
            job.backend_handle = handle
            changed_jobs[key] = job
    events: list[dict[str, Any]] = []
    touched: set[UnitKey] = set()
    for observation in observations:
        job = _job(units, observation.key)
        if job is None:
            _log.warning("observation for unknown job %s ignored", observation.key)
            continue
        old = job.state
        if old in aggregation.FINAL_STATES or not _changes(job, observation):
            continue
        if old == pb.JOB_STATE_CANCELLING and observation.state in _BEFORE_CANCELLING:
            # A start the backend reports after the cancel was asked for: still cancelling.
            continue
        _apply(job, observation, at)
        changed_jobs[observation.key] = job
        events.append(
            _event(
                at,
                subject=pb.EVENT_SUBJECT_JOB,
                experiment_id=job.experiment_id,
                work_unit_id=job.work_unit_id,
                job_name=job.name,
                old_state=old,
                new_state=job.state,
                message=job.reason if observation.reason else conversions.state_word(job.state),
            )
        )
        touched.add((job.experiment_id, job.work_unit_id))
    changed_units = []
    for unit_key in sorted(touched):
        status = units[unit_key]
        unit = status.unit
        facts = aggregation.aggregate_facts(
            [
                aggregation.JobFacts(
                    j.name,
                    j.state,
                    j.reason,
                    j.exit_code,
                    conversions.utc(j.start_time),
                    conversions.utc(j.end_time),
                )
                for j in status.jobs.values()
            ]
        )
        if facts.state == unit.state and facts.reason == unit.reason:
            continue
        old_state = unit.state
        unit.state = facts.state
        unit.reason = facts.reason
        unit.exit_code = facts.exit_code
        unit.start_time = facts.start_time
        unit.end_time = facts.end_time
        unit.update_time = at
        changed_units.append(unit)
        if old_state != facts.state:
            events.append(
                _event(
                    at,
                    subject=pb.EVENT_SUBJECT_WORK_UNIT,
                    experiment_id=unit.experiment_id,
                    work_unit_id=unit.work_unit_id,
                    job_name=None,
                    old_state=old_state,
                    new_state=facts.state,
                    message=facts.reason or conversions.state_word(facts.state),
                )
            )
    # Core executemany statements: the ORM's bulk machinery costs more than the SQL here.
    if changed_jobs:
        session.execute(_UPDATE_JOB, [_job_values(job) for job in changed_jobs.values()])
    if changed_units:
        session.execute(_UPDATE_UNIT, [_unit_values(unit) for unit in changed_units])
    for job_key in changed_jobs:
        unit_key = (job_key.experiment_id, job_key.work_unit_id)
        transaction.unit_statuses[unit_key] = units[unit_key]
    if not events:
        return
    for event in events:
        event["sequence"] = transaction.next_sequence()
    session.execute(EVENTS.insert(), events)
    statuses = {
        unit_key: conversions.unit_status_message(
            units[unit_key].unit, units[unit_key].jobs.values()
        )
        for unit_key in touched
    }
    transaction.updates.extend(
        WatchUpdate(
            conversions.event_message(types.SimpleNamespace(**event)),
            statuses[(event["experiment_id"], event["work_unit_id"])],
        )
        for event in events
    )


def _job(units: Mapping[UnitKey, UnitStatus], key: JobKey) -> types.SimpleNamespace | None:
    status = units.get((key.experiment_id, key.work_unit_id))
    return None if status is None else status.jobs.get(key.job_name)


# Bound parameters named like columns set them; the keys are matched by the k_* parameters.
_UPDATE_JOB = JOBS.update().where(
    JOBS.c.experiment_id == bindparam("k_experiment_id"),
    JOBS.c.work_unit_id == bindparam("k_work_unit_id"),
    JOBS.c.name == bindparam("k_name"),
)
_UPDATE_UNIT = UNITS.update().where(
    UNITS.c.experiment_id == bindparam("k_experiment_id"),
    UNITS.c.work_unit_id == bindparam("k_work_unit_id"),
)


def _changes(job: types.SimpleNamespace, observation: JobObservation) -> bool:
    return bool(
        job.state != observation.state
        or (observation.native_state and observation.native_state != job.native_state)
        or (observation.reason and observation.reason != job.reason)
        or (observation.exit_code is not None and observation.exit_code != job.exit_code)
    )


def _apply(job: types.SimpleNamespace, observation: JobObservation, at: datetime.datetime) -> None:
    old = job.state
    job.state = observation.state
    job.native_state = observation.native_state or job.native_state
    if observation.reason:
        if old == pb.JOB_STATE_CANCELLING and job.reason:
            # Keep why it was cancelled; add how it ended.
            job.reason = f"{job.reason} ({observation.reason})"
        else:
            job.reason = observation.reason
    if observation.exit_code is not None:
        job.exit_code = observation.exit_code
    if observation.start_time is not None and job.start_time is None:
        job.start_time = observation.start_time
    if observation.state in aggregation.FINAL_STATES:
        job.end_time = observation.end_time or at
    job.update_time = at


def _event(
    at: datetime.datetime,
    *,
    subject: int,
    experiment_id: int,
    work_unit_id: int,
    job_name: str | None,
    old_state: int,
    new_state: int,
    message: str,
) -> dict[str, Any]:
    return {
        "time": at,
        "subject": subject,
        "experiment_id": experiment_id,
        "work_unit_id": work_unit_id,
        "job_name": job_name,
        "old_state": old_state,
        "new_state": new_state,
        "message": message,
    }


def _job_values(job: types.SimpleNamespace) -> dict[str, Any]:
    return {
        "k_experiment_id": job.experiment_id,
        "k_work_unit_id": job.work_unit_id,
        "k_name": job.name,
        "state": job.state,
        "native_state": job.native_state,
        "reason": job.reason,
        "exit_code": job.exit_code,
        "start_time": job.start_time,
        "end_time": job.end_time,
        "update_time": job.update_time,
        "backend_handle": job.backend_handle,
    }


def _unit_values(unit: types.SimpleNamespace) -> dict[str, Any]:
    return {
        "k_experiment_id": unit.experiment_id,
        "k_work_unit_id": unit.work_unit_id,
        "state": unit.state,
        "reason": unit.reason,
        "exit_code": unit.exit_code,
        "start_time": unit.start_time,
        "end_time": unit.end_time,
        "update_time": unit.update_time,
    }


def load_statuses(session: Session, unit_keys: Sequence[UnitKey]) -> dict[UnitKey, pb.WorkUnit]:
    """Units' statuses with their jobs' names and statuses, as watchers get them."""
    return {
        key: conversions.unit_status_message(status.unit, status.jobs.values())
        for key, status in load(session, unit_keys).items()
    }
