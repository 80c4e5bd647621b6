"""Recording new work units, many per transaction (what a sweep's pipelined adds need).

A batch costs a handful of queries whatever its size: the checks of every request are answered
by one query each (request ids, experiments, taken ids, taken identities), and the rows are
written with one multi-row INSERT per table. Requests are still decided one by one, in order,
exactly as if each were alone: a refused request writes nothing, and a later request sees the
units of the earlier ones.
"""

from __future__ import annotations

import datetime
import types
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import bindparam, select, tuple_
from sqlalchemy.orm import Session

from launcher_server.errors import AlreadyExistsError, LauncherError, NotFoundError
from launcher_server.jobs import JobKey
from launcher_server.store import conversions, reading
from launcher_server.store.active import new_unit_status
from launcher_server.store.batch import Transaction, WatchUpdate, chunks
from launcher_server.store.models import (
    EVENTS,
    EXPERIMENTS,
    JOBS,
    UNITS,
    ExperimentRow,
    WorkUnitRow,
)
from xmanager.launcher.v1 import launcher_pb2 as pb

UnitKey = tuple[int, int]
Outcome = tuple[pb.WorkUnit, bool] | LauncherError
# (the job's key, the job as added) -> where its output is kept (its backend says).
LogLocator = Callable[[JobKey, pb.Job], str]


def add_work_units(
    transaction: Transaction,
    requests: Sequence[pb.AddWorkUnitRequest],
    at: datetime.datetime,
    log_location: LogLocator,
) -> list[Outcome]:
    """Decides and writes each request; returns the outcomes in order (the transaction collects
    the watch updates). `log_location` says where a job's output goes, once its unit's id is
    decided."""
    session = transaction.session
    known = _Known.load(session, requests)
    decisions: list[tuple[UnitKey, bool] | LauncherError] = []
    created: dict[UnitKey, pb.WorkUnit] = {}
    unit_rows: list[dict[str, Any]] = []
    job_rows: list[dict[str, Any]] = []
    for request in requests:
        decision = known.decide(request)
        decisions.append(decision)
        if isinstance(decision, LauncherError) or not decision[1]:
            continue
        key = decision[0]
        experiment_id, work_unit_id = key
        unit_rows.append(
            {
                "experiment_id": experiment_id,
                "work_unit_id": work_unit_id,
                "identity": request.identity or None,
                "request_id": request.request_id,
                "args_json": request.args_json,
                "state": pb.JOB_STATE_PENDING,
                "native_state": "",
                "reason": "",
                "exit_code": None,
                "start_time": None,
                "end_time": None,
                "create_time": at,
                "update_time": at,
            }
        )
        unit_message = _new_unit_message(request, key, at)
        for job in unit_message.jobs:
            # Read-only for clients: whatever a request says is replaced.
            job.log_location = log_location(JobKey(experiment_id, work_unit_id, job.name), job)
        job_rows.extend(
            conversions.job_columns(experiment_id, work_unit_id, position, job, at)
            for position, job in enumerate(unit_message.jobs)
        )
        created[key] = unit_message
        transaction.unit_statuses[key] = new_unit_status(
            unit_rows[-1], job_rows[len(job_rows) - len(request.jobs) :]
        )
    if created:
        # Core executemany statements: the ORM's bulk machinery costs more than the SQL here.
        session.execute(UNITS.insert(), unit_rows)
        session.execute(JOBS.insert(), job_rows)
        # Empty when every new id is below an earlier one (ids out of order): no UPDATE then,
        # an executemany with no parameters is an error.
        if next_ids := known.next_ids_changed():
            session.execute(
                EXPERIMENTS.update().where(EXPERIMENTS.c.id == bindparam("k_id")),
                [{"k_id": e, "next_work_unit_id": n} for e, n in next_ids.items()],
            )
        events = [
            {
                "sequence": transaction.next_sequence(),
                "time": at,
                "subject": pb.EVENT_SUBJECT_WORK_UNIT,
                "experiment_id": key[0],
                "work_unit_id": key[1],
                "job_name": None,
                "old_state": pb.JOB_STATE_UNSPECIFIED,
                "new_state": pb.JOB_STATE_PENDING,
                "message": f"added with {len(unit.jobs)} job(s)",
            }
            for key, unit in created.items()
        ]
        session.execute(EVENTS.insert(), events)
        transaction.updates.extend(
            WatchUpdate(
                conversions.event_message(types.SimpleNamespace(**event)),
                conversions.status_only(unit),
            )
            for event, unit in zip(events, created.values(), strict=True)
        )
    repeats = reading.load_units(
        session.connection(),
        [d[0] for d in decisions if not isinstance(d, LauncherError) and d[0] not in created],
    )
    results: list[Outcome] = []
    for decision in decisions:
        if isinstance(decision, LauncherError):
            results.append(decision)
        else:
            key, is_new = decision
            results.append((created.get(key) or repeats[key], is_new))
    return results


class _Known:
    """What the database already holds about a batch, updated as the batch is decided."""

    def __init__(self) -> None:
        self.units_by_request: dict[str, UnitKey] = {}
        self.next_ids: dict[int, int] = {}
        self.original_next_ids: dict[int, int] = {}
        self.taken_ids: set[UnitKey] = set()
        self.taken_identities: dict[tuple[int, str], int] = {}

    @classmethod
    def load(cls, session: Session, requests: Sequence[pb.AddWorkUnitRequest]) -> _Known:
        known = cls()
        request_ids = sorted({r.request_id for r in requests})
        for chunk in chunks(request_ids):
            for request_id, experiment_id, work_unit_id in session.execute(
                select(
                    WorkUnitRow.request_id, WorkUnitRow.experiment_id, WorkUnitRow.work_unit_id
                ).where(WorkUnitRow.request_id.in_(chunk))
            ):
                known.units_by_request[request_id] = (experiment_id, work_unit_id)
        experiment_ids = sorted({r.experiment_id for r in requests})
        for id_chunk in chunks(experiment_ids):
            # Locked until commit on PostgreSQL: concurrent batches number units one by one.
            for experiment_id, next_id in session.execute(
                select(ExperimentRow.id, ExperimentRow.next_work_unit_id)
                .where(ExperimentRow.id.in_(id_chunk))
                .with_for_update()
            ):
                known.next_ids[experiment_id] = next_id
        known.original_next_ids = dict(known.next_ids)
        wanted = sorted({(r.experiment_id, r.work_unit_id) for r in requests if r.work_unit_id})
        for key_chunk in chunks(wanted):
            known.taken_ids.update(
                (e, w)
                for e, w in session.execute(
                    select(WorkUnitRow.experiment_id, WorkUnitRow.work_unit_id).where(
                        tuple_(WorkUnitRow.experiment_id, WorkUnitRow.work_unit_id).in_(key_chunk)
                    )
                )
            )
        identities = sorted({(r.experiment_id, r.identity) for r in requests if r.identity})
        for identity_chunk in chunks(identities):
            for experiment_id, identity, work_unit_id in session.execute(
                select(
                    WorkUnitRow.experiment_id, WorkUnitRow.identity, WorkUnitRow.work_unit_id
                ).where(tuple_(WorkUnitRow.experiment_id, WorkUnitRow.identity).in_(identity_chunk))
            ):
                if identity is not None:
                    known.taken_identities[(experiment_id, identity)] = work_unit_id
        return known

    def decide(self, request: pb.AddWorkUnitRequest) -> tuple[UnitKey, bool] | LauncherError:
        """(the unit the request gets, whether it is new), or why it cannot have one.

        A request id seen before (in the database or earlier in the batch) gets its unit again.
        """
        experiment_id = request.experiment_id
        previous = self.units_by_request.get(request.request_id)
        if previous is not None:
            if previous[0] != experiment_id:
                return AlreadyExistsError(
                    f"request_id {request.request_id!r} was used for a work unit of experiment "
                    f"{previous[0]}; use a new request_id"
                )
            return previous, False
        next_id = self.next_ids.get(experiment_id)
        if next_id is None:
            return NotFoundError(f"experiment {experiment_id} not found")
        work_unit_id = request.work_unit_id or next_id
        if (experiment_id, work_unit_id) in self.taken_ids:
            return AlreadyExistsError(f"work unit {experiment_id}/{work_unit_id} already exists")
        if request.identity:
            taken = self.taken_identities.get((experiment_id, request.identity))
            if taken is not None:
                return AlreadyExistsError(
                    f"identity {request.identity!r} is already work unit {experiment_id}/{taken}"
                )
            self.taken_identities[(experiment_id, request.identity)] = work_unit_id
        key = (experiment_id, work_unit_id)
        self.taken_ids.add(key)
        self.units_by_request[request.request_id] = key
        self.next_ids[experiment_id] = max(next_id, work_unit_id + 1)
        return key, True

    def next_ids_changed(self) -> dict[int, int]:
        return {e: n for e, n in self.next_ids.items() if n != self.original_next_ids.get(e)}


def _new_unit_message(
    request: pb.AddWorkUnitRequest, key: UnitKey, at: datetime.datetime
) -> pb.WorkUnit:
    stamp = conversions.timestamp(at)
    status = pb.JobStatus(state=pb.JOB_STATE_PENDING, update_time=stamp)
    unit = pb.WorkUnit(
        experiment_id=key[0],
        work_unit_id=key[1],
        args_json=request.args_json,
        status=status,
        identity=request.identity,
        create_time=stamp,
    )
    for job in request.jobs:
        copy = unit.jobs.add()
        copy.CopyFrom(job)
        copy.status.CopyFrom(status)
        copy.backend_handle = ""
    return unit
