"""The durable store of experiments, work units, jobs and events (SQLAlchemy 2).

Every mutating method is one transaction: it commits completely or not at all. The daemon is
the only writer of its database; on SQLite its writes are serialized by a lock in this process
(SQLite allows one writer anyway, and this avoids lock-upgrade failures), on PostgreSQL by row
locks. Reads never wait for writes (SQLite in WAL mode, PostgreSQL's MVCC).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from google.protobuf import timestamp_pb2
from sqlalchemy import Engine, create_engine, event, func, select, tuple_
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from launcher_server import aggregation
from launcher_server.backends.base import JobKey, JobObservation
from launcher_server.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from launcher_server.store import migrate
from launcher_server.store.models import EventRow, ExperimentRow, JobRow, WorkUnitRow
from xmanager.launcher.v1 import launcher_pb2 as pb

_log = logging.getLogger(__name__)

FINAL_STATES = aggregation.FINAL_STATES
_DEFAULT_EXPERIMENT_PAGE = 50
_DEFAULT_WORK_UNIT_PAGE = 100


def _utc(value: datetime.datetime | None) -> datetime.datetime | None:
    """SQLite returns naive datetimes: they are UTC, as everything the store writes."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=datetime.UTC)
    return value


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _timestamp(value: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    value = _utc(value)
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _page_token(value: int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode()


def _parse_page_token(token: str) -> int | None:
    if not token:
        return None
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgumentError(
            "page_token", "is not a token this daemon issued; start from an empty token"
        ) from None


class Store:
    def __init__(self, engine: Engine, url_for_messages: str) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._url = url_for_messages
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    @classmethod
    def open(cls, url: str) -> Store:
        """Connects (creating a SQLite file if needed) and migrates to this daemon's schema."""
        parsed = make_url(url)
        safe_url = parsed.render_as_string(hide_password=True)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 10})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
        migrate.upgrade(engine, safe_url)
        return cls(engine, safe_url)

    def close(self) -> None:
        self._engine.dispose()

    @property
    def dialect(self) -> str:
        return str(self._engine.dialect.name)

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        lock = self._write_lock or contextlib.nullcontext()
        with lock, self._sessions() as session, session.begin():
            yield session

    def _read(self) -> Session:
        return self._sessions()

    # -- experiments ---------------------------------------------------------------------------

    def create_experiment(self, experiment: pb.Experiment, request_id: str = "") -> pb.Experiment:
        with self._write() as session:
            if request_id:
                existing = session.scalar(
                    select(ExperimentRow).where(ExperimentRow.request_id == request_id)
                )
                if existing is not None:
                    return self._experiment_message(session, existing)
            now = _now()
            row = ExperimentRow(
                title=experiment.title,
                tags=list(dict.fromkeys(experiment.tags)),
                notes=experiment.notes,
                creator=experiment.creator,
                launch_script_path=experiment.launch_script_path,
                launch_script_sha256=experiment.launch_script_sha256,
                source_revision=experiment.source_revision,
                create_time=now,
                update_time=now,
                next_work_unit_id=1,
                request_id=request_id or None,
            )
            session.add(row)
            session.flush()
            session.add(
                EventRow(
                    time=now,
                    subject=pb.EVENT_SUBJECT_EXPERIMENT,
                    experiment_id=row.id,
                    old_state=pb.JOB_STATE_UNSPECIFIED,
                    new_state=pb.JOB_STATE_UNSPECIFIED,
                    message=f"created {experiment.title!r}",
                )
            )
            return self._experiment_message(session, row, counts={})

    def get_experiment(self, experiment_id: int) -> pb.Experiment:
        with self._read() as session:
            row = session.get(ExperimentRow, experiment_id)
            if row is None:
                raise NotFoundError(f"experiment {experiment_id} not found")
            return self._experiment_message(session, row)

    def list_experiments(self, request: pb.ListExperimentsRequest) -> pb.ListExperimentsResponse:
        size = request.page_size or _DEFAULT_EXPERIMENT_PAGE
        after = _parse_page_token(request.page_token)
        query = select(ExperimentRow).order_by(ExperimentRow.id.desc())
        if after is not None:
            query = query.where(ExperimentRow.id < after)
        if request.title_contains:
            query = query.where(
                func.lower(ExperimentRow.title).contains(request.title_contains.lower())
            )
        if request.creator:
            query = query.where(ExperimentRow.creator == request.creator)
        if request.has_work_unit_in_state:
            query = query.where(
                ExperimentRow.id.in_(
                    select(WorkUnitRow.experiment_id).where(
                        WorkUnitRow.state.in_(list(request.has_work_unit_in_state))
                    )
                )
            )
        wanted_tags = set(request.tags)
        response = pb.ListExperimentsResponse()
        with self._read() as session:
            # Tags are JSON lists: filtered here, scanning pages until enough match.
            batch_after = after
            while len(response.experiments) < size:
                page_query = query.limit(size * 4 if wanted_tags else size + 1)
                if batch_after is not None:
                    page_query = page_query.where(ExperimentRow.id < batch_after)
                rows = list(session.scalars(page_query))
                if not rows:
                    break
                for row in rows:
                    if wanted_tags and not wanted_tags <= set(row.tags):
                        continue
                    if len(response.experiments) == size:
                        response.next_page_token = _page_token(response.experiments[-1].id)
                        return response
                    response.experiments.append(self._experiment_message(session, row))
                batch_after = rows[-1].id
                if not wanted_tags and len(rows) <= size:
                    break
        return response

    def update_experiment(self, request: pb.UpdateExperimentRequest) -> pb.Experiment:
        with self._write() as session:
            row = session.get(ExperimentRow, request.experiment_id)
            if row is None:
                raise NotFoundError(f"experiment {request.experiment_id} not found")
            changed = []
            for field in request.update_mask:
                if field == "title":
                    row.title = request.title
                elif field == "tags":
                    row.tags = list(dict.fromkeys(request.tags))
                elif field == "notes":
                    row.notes = request.notes
                else:
                    raise InvalidArgumentError("update_mask", f"{field!r} cannot be updated")
                changed.append(field)
            row.update_time = _now()
            session.add(
                EventRow(
                    time=row.update_time,
                    subject=pb.EVENT_SUBJECT_EXPERIMENT,
                    experiment_id=row.id,
                    old_state=pb.JOB_STATE_UNSPECIFIED,
                    new_state=pb.JOB_STATE_UNSPECIFIED,
                    message=f"updated {', '.join(changed)}",
                )
            )
            return self._experiment_message(session, row)

    def experiment_ids_with_active_work(self) -> list[int]:
        with self._read() as session:
            return list(
                session.scalars(
                    select(WorkUnitRow.experiment_id)
                    .where(WorkUnitRow.state.not_in(list(FINAL_STATES)))
                    .distinct()
                    .order_by(WorkUnitRow.experiment_id)
                )
            )

    def _experiment_message(
        self, session: Session, row: ExperimentRow, counts: dict[int, int] | None = None
    ) -> pb.Experiment:
        if counts is None:
            rows = session.execute(
                select(WorkUnitRow.state, func.count())
                .where(WorkUnitRow.experiment_id == row.id)
                .group_by(WorkUnitRow.state)
            )
            counts = dict(rows.all())  # a Result has keys(): dict() would take it for a mapping
        return pb.Experiment(
            id=row.id,
            title=row.title,
            tags=row.tags,
            notes=row.notes,
            creator=row.creator,
            create_time=_timestamp(row.create_time),
            update_time=_timestamp(row.update_time),
            launch_script_path=row.launch_script_path,
            launch_script_sha256=row.launch_script_sha256,
            source_revision=row.source_revision,
            work_unit_count=sum(counts.values()),
            work_unit_state_counts=counts,
        )

    # -- work units ----------------------------------------------------------------------------

    def add_work_unit(self, request: pb.AddWorkUnitRequest) -> tuple[pb.WorkUnit, bool]:
        """Records a work unit with its jobs, all PENDING; (unit, False) for a repeated request."""
        (outcome,) = self.add_work_units([request])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def add_work_units(
        self, requests: Sequence[pb.AddWorkUnitRequest]
    ) -> list[tuple[pb.WorkUnit, bool] | Exception]:
        """Records many work units in one transaction (group commit for sweeps).

        Each request gets its own outcome: its unit, or the error that refused it (nothing of a
        refused request is written). All checks of a request come before any of its writes.
        """
        try:
            with self._write() as session:
                return [self._add(session, request) for request in requests]
        except IntegrityError:
            if len(requests) == 1:
                raise
            # A race with another writer (PostgreSQL): each on its own, to pin the outcome.
            return [self._add_alone(request) for request in requests]

    def _add_alone(self, request: pb.AddWorkUnitRequest) -> tuple[pb.WorkUnit, bool] | Exception:
        try:
            return self.add_work_unit(request)
        except (AlreadyExistsError, NotFoundError) as error:
            return error

    def _add(
        self, session: Session, request: pb.AddWorkUnitRequest
    ) -> tuple[pb.WorkUnit, bool] | Exception:
        existing = session.scalar(
            select(WorkUnitRow).where(WorkUnitRow.request_id == request.request_id)
        )
        if existing is not None:
            if existing.experiment_id != request.experiment_id:
                return AlreadyExistsError(
                    f"request_id {request.request_id!r} was used for a work unit of experiment "
                    f"{existing.experiment_id}; use a new request_id"
                )
            return self._unit_message(session, existing), False
        experiment = session.get(ExperimentRow, request.experiment_id, with_for_update=True)
        if experiment is None:
            return NotFoundError(f"experiment {request.experiment_id} not found")
        work_unit_id = request.work_unit_id or experiment.next_work_unit_id
        taken_id = (
            session.get(WorkUnitRow, (request.experiment_id, request.work_unit_id))
            if request.work_unit_id
            else None
        )
        if taken_id is not None:
            return AlreadyExistsError(
                f"work unit {request.experiment_id}/{request.work_unit_id} already exists"
            )
        if request.identity:
            taken = session.scalar(
                select(WorkUnitRow.work_unit_id).where(
                    WorkUnitRow.experiment_id == request.experiment_id,
                    WorkUnitRow.identity == request.identity,
                )
            )
            if taken is not None:
                return AlreadyExistsError(
                    f"identity {request.identity!r} is already work unit "
                    f"{request.experiment_id}/{taken}"
                )
        experiment.next_work_unit_id = max(experiment.next_work_unit_id, work_unit_id + 1)
        now = _now()
        unit = WorkUnitRow(
            experiment_id=request.experiment_id,
            work_unit_id=work_unit_id,
            identity=request.identity or None,
            request_id=request.request_id,
            args_json=request.args_json,
            state=pb.JOB_STATE_PENDING,
            native_state="",
            reason="",
            exit_code=None,
            start_time=None,
            end_time=None,
            create_time=now,
            update_time=now,
        )
        jobs = [
            _job_row(request.experiment_id, work_unit_id, i, job, now)
            for i, job in enumerate(request.jobs)
        ]
        session.add(unit)
        session.flush()  # the unit's row first: the jobs' foreign key refers to it
        session.add_all(jobs)
        session.add(
            EventRow(
                time=now,
                subject=pb.EVENT_SUBJECT_WORK_UNIT,
                experiment_id=request.experiment_id,
                work_unit_id=work_unit_id,
                old_state=pb.JOB_STATE_UNSPECIFIED,
                new_state=pb.JOB_STATE_PENDING,
                message=f"added with {len(jobs)} job(s)",
            )
        )
        return _unit_message(unit, jobs), True

    def get_work_unit(self, experiment_id: int, work_unit_id: int) -> pb.WorkUnit:
        with self._read() as session:
            row = session.get(WorkUnitRow, (experiment_id, work_unit_id))
            if row is None:
                if session.get(ExperimentRow, experiment_id) is None:
                    raise NotFoundError(f"experiment {experiment_id} not found")
                raise NotFoundError(f"work unit {experiment_id}/{work_unit_id} not found")
            return self._unit_message(session, row)

    def list_work_units(self, request: pb.ListWorkUnitsRequest) -> pb.ListWorkUnitsResponse:
        size = request.page_size or _DEFAULT_WORK_UNIT_PAGE
        after = _parse_page_token(request.page_token)
        query = (
            select(WorkUnitRow)
            .where(WorkUnitRow.experiment_id == request.experiment_id)
            .order_by(WorkUnitRow.work_unit_id)
            .limit(size + 1)
        )
        if after is not None:
            query = query.where(WorkUnitRow.work_unit_id > after)
        if request.states:
            query = query.where(WorkUnitRow.state.in_(list(request.states)))
        with self._read() as session:
            units = list(session.scalars(query))
            more = len(units) > size
            units = units[:size]
            jobs = _jobs_of(session, [(u.experiment_id, u.work_unit_id) for u in units])
        response = pb.ListWorkUnitsResponse(
            work_units=[
                _unit_message(u, jobs.get((u.experiment_id, u.work_unit_id), [])) for u in units
            ]
        )
        if more:
            response.next_page_token = _page_token(units[-1].work_unit_id)
        return response

    def _unit_message(self, session: Session, row: WorkUnitRow) -> pb.WorkUnit:
        key = (row.experiment_id, row.work_unit_id)
        return _unit_message(row, _jobs_of(session, [key]).get(key, []))

    # -- jobs ----------------------------------------------------------------------------------

    def get_job(self, key: JobKey) -> pb.Job:
        with self._read() as session:
            row = session.get(JobRow, (key.experiment_id, key.work_unit_id, key.job_name))
            if row is None:
                raise NotFoundError(f"job {key} not found")
            return _job_message(row)

    def non_final_jobs(self) -> list[tuple[JobKey, pb.Job]]:
        with self._read() as session:
            rows = session.scalars(
                select(JobRow)
                .where(JobRow.state.not_in(list(FINAL_STATES)))
                .order_by(JobRow.experiment_id, JobRow.work_unit_id, JobRow.position)
            )
            return [
                (JobKey(row.experiment_id, row.work_unit_id, row.name), _job_message(row))
                for row in rows
            ]

    def apply_observations(
        self, observations: Sequence[JobObservation], handles: Mapping[JobKey, str] | None = None
    ) -> list[tuple[pb.Event, pb.WorkUnit | None]]:
        """Applies backend observations in one transaction; returns the events appended.

        A job in a final state never changes again; an observation that changes nothing is
        ignored; an empty reason keeps the job's current one (e.g. a cancel's "why"). Each
        change of a job appends a JOB event, and each change of a work unit's aggregated status
        a WORK_UNIT event (paired with the unit after the batch).
        """
        handles = handles or {}
        keys = {o.key for o in observations} | set(handles)
        if not keys:
            return []
        units = {(k.experiment_id, k.work_unit_id) for k in keys}
        with self._write() as session:
            jobs_by_unit = _jobs_of(session, list(units))
            jobs = {
                JobKey(row.experiment_id, row.work_unit_id, row.name): row
                for rows in jobs_by_unit.values()
                for row in rows
            }
            for key, handle in handles.items():
                if key in jobs:
                    jobs[key].backend_handle = handle
            now = _now()
            events: list[EventRow] = []
            touched: set[tuple[int, int]] = set()
            for observation in observations:
                row = jobs.get(observation.key)
                if row is None:
                    _log.warning("observation for unknown job %s ignored", observation.key)
                    continue
                old = row.state
                if old in FINAL_STATES or not _changes(row, observation):
                    continue
                row.state = observation.state
                row.native_state = observation.native_state or row.native_state
                if observation.reason:
                    if old == pb.JOB_STATE_CANCELLING and row.reason:
                        # Keep why it was cancelled; add how it ended.
                        row.reason = f"{row.reason} ({observation.reason})"
                    else:
                        row.reason = observation.reason
                if observation.exit_code is not None:
                    row.exit_code = observation.exit_code
                if observation.start_time is not None and row.start_time is None:
                    row.start_time = observation.start_time
                if observation.state in FINAL_STATES:
                    row.end_time = observation.end_time or now
                row.update_time = now
                events.append(
                    EventRow(
                        time=now,
                        subject=pb.EVENT_SUBJECT_JOB,
                        experiment_id=row.experiment_id,
                        work_unit_id=row.work_unit_id,
                        job_name=row.name,
                        old_state=old,
                        new_state=row.state,
                        message=row.reason if observation.reason else _state_word(row.state),
                    )
                )
                touched.add((row.experiment_id, row.work_unit_id))
            unit_rows = _unit_rows(session, sorted(touched))
            changed_units: list[tuple[WorkUnitRow, list[JobRow]]] = []
            for unit_key in sorted(touched):
                unit = unit_rows[unit_key]
                unit_jobs = jobs_by_unit[unit_key]
                facts = aggregation.aggregate_facts(
                    [
                        aggregation.JobFacts(
                            j.name,
                            j.state,
                            j.reason,
                            j.exit_code,
                            _utc(j.start_time),
                            _utc(j.end_time),
                        )
                        for j in unit_jobs
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
                unit.update_time = now
                if old_state != facts.state:
                    events.append(
                        EventRow(
                            time=now,
                            subject=pb.EVENT_SUBJECT_WORK_UNIT,
                            experiment_id=unit.experiment_id,
                            work_unit_id=unit.work_unit_id,
                            old_state=old_state,
                            new_state=facts.state,
                            message=facts.reason or _state_word(facts.state),
                        )
                    )
                changed_units.append((unit, unit_jobs))
            session.add_all(events)
            session.flush()
            unit_messages = {
                (u.experiment_id, u.work_unit_id): _unit_message(u, js) for u, js in changed_units
            }
            return [
                (
                    _event_message(e),
                    unit_messages.get((e.experiment_id, e.work_unit_id or 0))
                    if e.subject == pb.EVENT_SUBJECT_WORK_UNIT
                    else None,
                )
                for e in events
            ]

    # -- events --------------------------------------------------------------------------------

    def events_after(
        self, sequence: int, experiment_id: int = 0, limit: int = 1000
    ) -> list[pb.Event]:
        query = (
            select(EventRow)
            .where(EventRow.sequence > sequence)
            .order_by(EventRow.sequence)
            .limit(limit)
        )
        if experiment_id:
            query = query.where(EventRow.experiment_id == experiment_id)
        with self._read() as session:
            return [_event_message(row) for row in session.scalars(query)]

    def last_event_sequence(self) -> int:
        with self._read() as session:
            return int(session.scalar(select(func.max(EventRow.sequence))) or 0)


# -- conversions --------------------------------------------------------------------------------


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    # WAL: readers never block the writer; NORMAL: durable across a crash of the daemon (only
    # a power loss can drop the last commits), at a fraction of FULL's fsync cost.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _changes(row: JobRow, observation: JobObservation) -> bool:
    return (
        row.state != observation.state
        or (observation.native_state and observation.native_state != row.native_state)
        or (observation.reason and observation.reason != row.reason)
        or (observation.exit_code is not None and observation.exit_code != row.exit_code)
    )


def _state_word(state: int) -> str:
    return str(pb.JobState.Name(state)).removeprefix("JOB_STATE_").lower()


def _job_row(
    experiment_id: int, work_unit_id: int, position: int, job: pb.Job, now: datetime.datetime
) -> JobRow:
    artifact = job.artifact
    kind = artifact.WhichOneof("kind") or ""
    image = artifact.oci_image
    return JobRow(
        experiment_id=experiment_id,
        work_unit_id=work_unit_id,
        name=job.name,
        position=position,
        executor_kind=job.executor.WhichOneof("kind") or "",
        executor=job.executor.SerializeToString(),
        artifact_kind=kind,
        artifact_path=artifact.local_binary.path if kind == "local_binary" else image.tarball_path,
        artifact_reference=image.reference,
        artifact_digest=artifact.local_binary.sha256 if kind == "local_binary" else image.digest,
        artifact=artifact.SerializeToString(),
        args=list(job.args),
        env=dict(job.env),
        requirements=job.requirements.SerializeToString(),
        backend_handle="",
        state=pb.JOB_STATE_PENDING,
        native_state="",
        reason="",
        exit_code=None,
        start_time=None,
        end_time=None,
        update_time=now,
        log_location=job.log_location,
    )


def _status(row: JobRow | WorkUnitRow) -> pb.JobStatus:
    return pb.JobStatus(
        state=row.state,  # type: ignore[arg-type]
        native_state=row.native_state,
        reason=row.reason,
        has_exit_code=row.exit_code is not None,
        exit_code=row.exit_code or 0,
        start_time=_timestamp(row.start_time),
        end_time=_timestamp(row.end_time),
        update_time=_timestamp(row.update_time),
    )


def _job_message(row: JobRow) -> pb.Job:
    return pb.Job(
        name=row.name,
        artifact=pb.Artifact.FromString(row.artifact),
        args=row.args,
        env=row.env,
        executor=pb.Executor.FromString(row.executor),
        requirements=pb.ResourceRequirements.FromString(row.requirements),
        status=_status(row),
        backend_handle=row.backend_handle,
        log_location=row.log_location,
    )


def _unit_message(row: WorkUnitRow, jobs: Sequence[JobRow]) -> pb.WorkUnit:
    return pb.WorkUnit(
        experiment_id=row.experiment_id,
        work_unit_id=row.work_unit_id,
        args_json=row.args_json,
        jobs=[_job_message(job) for job in sorted(jobs, key=lambda j: j.position)],
        status=_status(row),
        identity=row.identity or "",
        create_time=_timestamp(row.create_time),
    )


def _event_message(row: EventRow) -> pb.Event:
    return pb.Event(
        sequence=row.sequence,
        time=_timestamp(row.time),
        subject=row.subject,  # type: ignore[arg-type]
        experiment_id=row.experiment_id,
        work_unit_id=row.work_unit_id or 0,
        job_name=row.job_name or "",
        old_state=row.old_state,  # type: ignore[arg-type]
        new_state=row.new_state,  # type: ignore[arg-type]
        message=row.message,
    )


def _jobs_of(
    session: Session, units: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], list[JobRow]]:
    """The jobs of the given work units, grouped by unit, in one query per 500 units."""
    grouped: dict[tuple[int, int], list[JobRow]] = {unit: [] for unit in units}
    for start in range(0, len(units), 500):
        chunk = list(units[start : start + 500])
        query = select(JobRow).where(tuple_(JobRow.experiment_id, JobRow.work_unit_id).in_(chunk))
        for row in session.scalars(query):
            grouped[(row.experiment_id, row.work_unit_id)].append(row)
    return grouped


def _unit_rows(
    session: Session, units: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], WorkUnitRow]:
    found: dict[tuple[int, int], WorkUnitRow] = {}
    for start in range(0, len(units), 500):
        chunk = list(units[start : start + 500])
        query = select(WorkUnitRow).where(
            tuple_(WorkUnitRow.experiment_id, WorkUnitRow.work_unit_id).in_(chunk)
        )
        for row in session.scalars(query):
            found[(row.experiment_id, row.work_unit_id)] = row
    return found
