"""The durable store of experiments, work units, jobs and events (SQLAlchemy 2).

Every mutating method is one transaction: it commits completely or not at all. The daemon is
the only writer of its database; on SQLite its writes are serialized by a lock in this process
(SQLite allows one writer anyway, and this avoids lock-upgrade failures), on PostgreSQL by row
locks. Reads never wait for writes (SQLite in WAL mode, PostgreSQL's MVCC).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from launcher_server import aggregation, limits
from launcher_server.errors import InvalidArgumentError, LauncherError, NotFoundError
from launcher_server.jobs import JobKey, JobObservation
from launcher_server.store import adding, conversions, deleting, migrate, observing, reading
from launcher_server.store.active import ActiveUnits
from launcher_server.store.batch import Transaction, WatchUpdate
from launcher_server.store.claim import WriterClaim
from launcher_server.store.models import (
    EVENTS,
    JOBS,
    EventRow,
    ExperimentRow,
    JobRow,
    LaunchContextRow,
    WorkUnitRow,
)
from xmanager.launcher.v1 import launcher_pb2 as pb

_log = logging.getLogger(__name__)

FINAL_STATES = aggregation.FINAL_STATES
_DEFAULT_EXPERIMENT_PAGE = 50
# Connections kept open, and opened beyond them at a busy moment (each call holds at most one;
# the daemon serves 64 calls at once by default).
_POOL_SIZE = 16
_POOL_OVERFLOW = 64
_DEFAULT_WORK_UNIT_PAGE = 100

AddOutcome = adding.Outcome


class Store:
    def __init__(self, engine: Engine, url_for_messages: str, claim: WriterClaim) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._url = url_for_messages
        self._claim = claim
        # The daemon's writes are serialized in-process: SQLite allows one writer anyway, and on
        # every database it makes commit order equal event order, so watchers never miss one.
        self._write_lock = threading.Lock()
        self._publish: Callable[[Sequence[WatchUpdate]], None] = lambda updates: None
        self._log_location: adding.LogLocator = lambda key, job: ""
        self._units = reading.UnitCache()
        with self._read() as session:
            self._last_sequence = int(session.scalar(select(func.max(EventRow.sequence))) or 0)
            self._active = ActiveUnits.from_database(session)

    @classmethod
    def open(cls, url: str) -> Store:
        """Connects (creating a SQLite file if needed), claims the database for this process
        and migrates it to this daemon's schema."""
        parsed = make_url(url)
        safe_url = parsed.render_as_string(hide_password=True)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            # A connection per concurrent call (WAL: readers never wait for the writer), so
            # that no read waits for a pooled connection while a sweep is written.
            engine = create_engine(
                parsed,
                connect_args={"check_same_thread": False, "timeout": 10},
                pool_size=_POOL_SIZE,
                max_overflow=_POOL_OVERFLOW,
            )
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(
                parsed, pool_pre_ping=True, pool_size=_POOL_SIZE, max_overflow=_POOL_OVERFLOW
            )
        try:
            claim = WriterClaim.take(engine, safe_url)
        except Exception:
            engine.dispose()
            raise
        try:
            migrate.upgrade(engine, safe_url)
            return cls(engine, safe_url, claim)
        except Exception:
            claim.release()
            engine.dispose()
            raise

    def close(self) -> None:
        self._claim.release()
        self._engine.dispose()

    @property
    def dialect(self) -> str:
        return str(self._engine.dialect.name)

    def set_log_locator(self, locate: adding.LogLocator) -> None:
        """Says where each new job's output is kept (recorded as the job's log_location)."""
        self._log_location = locate

    def set_publisher(self, publish: Callable[[Sequence[WatchUpdate]], None]) -> None:
        """Receives every committed batch of work unit updates, in commit order."""
        self._publish = publish

    @contextlib.contextmanager
    def _write(self) -> Iterator[Transaction]:
        """One write transaction; its updates are published after the commit, in order."""
        with self._write_lock:
            with self._sessions() as session, session.begin():
                transaction = Transaction(session, self._last_sequence)
                yield transaction
            # Committed: the event numbers are taken, the statuses are the database's.
            self._last_sequence = transaction.last_sequence
            self._active.commit(transaction.unit_statuses)
            if transaction.unit_statuses:
                self._units.invalidate(transaction.unit_statuses)
            if transaction.updates:
                self._publish(transaction.updates)

    def _read(self) -> Session:
        return self._sessions()

    # -- experiments ---------------------------------------------------------------------------

    def create_experiment(self, experiment: pb.Experiment, request_id: str = "") -> pb.Experiment:
        with self._write() as transaction:
            session = transaction.session
            if request_id:
                existing = session.scalar(
                    select(ExperimentRow).where(ExperimentRow.request_id == request_id)
                )
                if existing is not None:
                    return self._experiment_message(session, existing)
            now = conversions.now()
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
                    sequence=transaction.next_sequence(),
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
        after = conversions.parse_page_token(request.page_token)
        query = select(ExperimentRow).order_by(ExperimentRow.id.desc())
        if after is not None:
            query = query.where(ExperimentRow.id < after)
        if request.title_contains:
            query = query.where(
                func.lower(ExperimentRow.title).contains(
                    request.title_contains.lower(),
                    autoescape=True,  # % and _ are literal
                )
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
        budget = limits.MAX_RESPONSE_BYTES
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
                    message = self._experiment_message(session, row)
                    budget -= message.ByteSize()
                    # A page ends at its size, or at its bytes (never empty).
                    if len(response.experiments) == size or (budget < 0 and response.experiments):
                        response.next_page_token = conversions.page_token(
                            response.experiments[-1].id
                        )
                        return response
                    response.experiments.append(message)
                batch_after = rows[-1].id
                if not wanted_tags and len(rows) <= size:
                    break
        return response

    def update_experiment(self, request: pb.UpdateExperimentRequest) -> pb.Experiment:
        with self._write() as transaction:
            session = transaction.session
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
            row.update_time = conversions.now()
            session.add(
                EventRow(
                    sequence=transaction.next_sequence(),
                    time=row.update_time,
                    subject=pb.EVENT_SUBJECT_EXPERIMENT,
                    experiment_id=row.id,
                    old_state=pb.JOB_STATE_UNSPECIFIED,
                    new_state=pb.JOB_STATE_UNSPECIFIED,
                    message=f"updated {', '.join(changed)}",
                )
            )
            return self._experiment_message(session, row)

    def delete_experiment(self, experiment_id: int) -> int:
        """Deletes an experiment whose units are all final; returns how many units it had."""
        with self._write() as transaction:
            keys = deleting.delete_experiment(transaction, experiment_id, conversions.now())
        self._units.invalidate(keys)
        return len(keys)

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
            create_time=conversions.timestamp(row.create_time),
            update_time=conversions.timestamp(row.update_time),
            launch_script_path=row.launch_script_path,
            launch_script_sha256=row.launch_script_sha256,
            source_revision=row.source_revision,
            work_unit_count=sum(counts.values()),
            work_unit_state_counts=counts,
        )

    # -- work units ----------------------------------------------------------------------------

    def add_work_unit(self, request: pb.AddWorkUnitRequest) -> tuple[pb.WorkUnit, bool]:
        """Records a work unit with its jobs, all PENDING; (unit, False) for a repeated request."""
        (outcome,), _ = self.add_work_units([request])
        if isinstance(outcome, LauncherError):
            raise outcome
        return outcome

    def add_work_units(
        self, requests: Sequence[pb.AddWorkUnitRequest]
    ) -> tuple[list[AddOutcome], list[WatchUpdate]]:
        """Records many work units in one transaction (group commit for sweeps).

        Each request gets its own outcome: (its unit, whether it is new), or the error that
        refused it (nothing of a refused request is written). Also returns the updates to
        publish to watchers once committed.
        """
        try:
            with self._write() as transaction:
                outcomes = adding.add_work_units(
                    transaction, requests, conversions.now(), self._log_location
                )
            return outcomes, transaction.updates
        except IntegrityError:
            if len(requests) == 1:
                raise
            # A race with another writer (PostgreSQL): each on its own, to pin the outcome.
            each: list[AddOutcome] = []
            each_updates: list[WatchUpdate] = []
            for request in requests:
                (outcome,), published = self.add_work_units([request])
                each.append(outcome)
                each_updates.extend(published)
            return each, each_updates

    def get_work_unit(self, experiment_id: int, work_unit_id: int) -> pb.WorkUnit:
        key = (experiment_id, work_unit_id)
        unit = self._units.get(key)
        if unit is not None:
            return unit
        generation = self._units.generation
        with self._engine.connect() as connection:
            unit = reading.get_unit(connection, key)
        if unit is not None:
            self._units.put(key, unit, generation)
            return unit
        with self._read() as session:
            if session.get(ExperimentRow, experiment_id) is None:
                raise NotFoundError(f"experiment {experiment_id} not found")
        raise NotFoundError(f"work unit {experiment_id}/{work_unit_id} not found")

    def list_work_units(self, request: pb.ListWorkUnitsRequest) -> pb.ListWorkUnitsResponse:
        size = request.page_size or _DEFAULT_WORK_UNIT_PAGE
        after = conversions.parse_page_token(request.page_token)
        query = (
            select(WorkUnitRow.experiment_id, WorkUnitRow.work_unit_id)
            .where(WorkUnitRow.experiment_id == request.experiment_id)
            .order_by(WorkUnitRow.work_unit_id)
            .limit(size + 1)
        )
        if after is not None:
            query = query.where(WorkUnitRow.work_unit_id > after)
        if request.states:
            query = query.where(WorkUnitRow.state.in_(list(request.states)))
        generation = self._units.generation
        with self._engine.connect() as connection:
            keys = [(e, w) for e, w in connection.execute(query)]
            more = len(keys) > size
            keys = keys[:size]
            # Units read recently come from memory: a dashboard listing a sweep while it runs
            # costs a conversion only for the units that changed.
            serialized = {
                key: data for key in keys if (data := self._units.get_serialized(key)) is not None
            }
            units = reading.load_units(connection, [key for key in keys if key not in serialized])
        for key, unit in units.items():
            self._units.put(key, unit, generation)
            serialized[key] = unit.SerializeToString()
        page: list[bytes] = []
        budget = limits.MAX_RESPONSE_BYTES
        for key in keys:
            budget -= len(serialized[key])
            if budget < 0 and page:  # a page ends at its bytes too
                more = True
                break
            page.append(serialized[key])
        response = pb.ListWorkUnitsResponse.FromString(reading.repeated_field(1, page))
        if more:
            response.next_page_token = conversions.page_token(response.work_units[-1].work_unit_id)
        return response

    def check_experiment(self, experiment_id: int) -> None:
        """Raises NotFoundError for an unknown experiment (cheaper than get_experiment)."""
        with self._engine.connect() as connection:
            found = connection.scalar(
                select(ExperimentRow.id).where(ExperimentRow.id == experiment_id)
            )
        if found is None:
            raise NotFoundError(f"experiment {experiment_id} not found")

    def work_unit_ids(self, experiment_id: int, *, active_only: bool = False) -> list[int]:
        """An experiment's work unit ids, ascending; only those not final with `active_only`."""
        query = (
            select(WorkUnitRow.work_unit_id)
            .where(WorkUnitRow.experiment_id == experiment_id)
            .order_by(WorkUnitRow.work_unit_id)
        )
        if active_only:
            query = query.where(WorkUnitRow.state.not_in(list(FINAL_STATES)))
        with self._engine.connect() as connection:
            return [int(work_unit_id) for work_unit_id in connection.scalars(query)]

    def unit_statuses(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], pb.WorkUnit]:
        """Units' statuses and their jobs' statuses (what watchers get), by unit."""
        with self._read() as session:
            return observing.load_statuses(session, sorted(set(keys)))

    # -- jobs ----------------------------------------------------------------------------------

    def job_state(self, key: JobKey) -> int | None:
        """A job's current state number, or None if there is no such job."""
        with self._read() as session:
            state = session.scalar(
                select(JobRow.state).where(
                    JobRow.experiment_id == key.experiment_id,
                    JobRow.work_unit_id == key.work_unit_id,
                    JobRow.name == key.job_name,
                )
            )
            return None if state is None else int(state)

    def non_final_jobs(self) -> list[tuple[JobKey, pb.Job]]:
        with self._read() as session:
            rows = session.execute(
                select(JOBS)
                .where(JobRow.state.not_in(list(FINAL_STATES)))
                .order_by(JobRow.experiment_id, JobRow.work_unit_id, JobRow.position)
            )
            return [
                (
                    JobKey(row.experiment_id, row.work_unit_id, row.name),
                    conversions.job_message(row),
                )
                for row in rows
            ]

    def apply_observations(
        self, observations: Sequence[JobObservation], handles: Mapping[JobKey, str] | None = None
    ) -> list[WatchUpdate]:
        """Applies backend observations in one transaction; returns the events appended, each
        with its unit's status after the batch (see `observing.apply_observations`)."""
        # Backends' text (a process's reason, a container engine's message) may hold
        # anything; what is stored must be storable on every database.
        observations = [
            dataclasses.replace(
                o,
                reason=limits.clean_text(o.reason),
                native_state=limits.clean_text(o.native_state),
            )
            for o in observations
        ]
        with self._write() as transaction:
            observing.apply_observations(
                transaction, self._active, observations, handles or {}, conversions.now()
            )
        return transaction.updates

    # -- launch contexts -----------------------------------------------------------------------

    def save_launch_contexts(self, contexts: Mapping[str, pb.LaunchContext]) -> None:
        """Records launch contexts by digest (those already known are left as they are)."""
        with self._write() as transaction:
            session = transaction.session
            known = set(
                session.scalars(
                    select(LaunchContextRow.digest).where(
                        LaunchContextRow.digest.in_(list(contexts))
                    )
                )
            )
            for digest, context in contexts.items():
                if digest not in known:
                    session.add(
                        LaunchContextRow(
                            digest=digest,
                            working_directory=context.working_directory,
                            env=dict(context.env),
                        )
                    )

    def known_launch_contexts(self, digests: Iterable[str]) -> set[str]:
        with self._read() as session:
            return set(
                session.scalars(
                    select(LaunchContextRow.digest).where(
                        LaunchContextRow.digest.in_(list(digests))
                    )
                )
            )

    def launch_context(self, digest: str) -> pb.LaunchContext | None:
        with self._read() as session:
            row = session.get(LaunchContextRow, digest)
            if row is None:
                return None
            return pb.LaunchContext(working_directory=row.working_directory, env=row.env)

    # -- events --------------------------------------------------------------------------------

    def events_after(
        self, sequence: int, experiment_id: int = 0, limit: int = 1000
    ) -> list[pb.Event]:
        query = (
            select(EVENTS)
            .where(EventRow.sequence > sequence)
            .order_by(EventRow.sequence)
            .limit(limit)
        )
        if experiment_id:
            query = query.where(EventRow.experiment_id == experiment_id)
        with self._read() as session:
            return [conversions.event_message(row) for row in session.execute(query)]

    def last_event_sequence(self) -> int:
        with self._write_lock:
            return self._last_sequence


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    # WAL: readers never block the writer; NORMAL: durable across a crash of the daemon (only
    # a power loss can drop the last commits), at a fraction of FULL's fsync cost.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
