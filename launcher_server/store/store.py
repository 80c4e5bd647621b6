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
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from launcher_server import aggregation, limits
from launcher_server.errors import InvalidArgumentError, LauncherError, NotFoundError
from launcher_server.jobs import JobKey, JobObservation
from launcher_server.store import (
    adding,
    conversions,
    deleting,
    migrate,
    observing,
    reader,
    reading,
)
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
AddOutcome = adding.Outcome


class Store(reader.StoreReader):
    def __init__(self, engine: Engine, url_for_messages: str, claim: WriterClaim) -> None:
        # Units read recently are kept: exact here, since every write goes through this store.
        super().__init__(engine, reading.UnitCache())
        self._url = url_for_messages
        self._claim = claim
        # The daemon's writes are serialized in-process: SQLite allows one writer anyway, and on
        # every database it makes commit order equal event order, so watchers never miss one.
        self._write_lock = threading.Lock()
        self._publish: Callable[[Sequence[WatchUpdate]], None] = lambda updates: None
        self._log_location: adding.LogLocator = lambda key, job: ""
        self._changed: Callable[[Collection[reading.UnitKey]], None] = lambda keys: None
        with self._read() as session:
            self._last_sequence = int(session.scalar(select(func.max(EventRow.sequence))) or 0)
            self._active = ActiveUnits.from_database(session)

    @classmethod
    def open(cls, url: str) -> Store:
        """Connects (creating a SQLite file if needed), claims the database for this process
        and migrates it to this daemon's schema."""
        engine, safe_url = reader.connect(url)
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
        super().close()

    @property
    def dialect(self) -> str:
        return str(self._engine.dialect.name)

    def set_log_locator(self, locate: adding.LogLocator) -> None:
        """Says where each new job's output is kept (recorded as the job's log_location)."""
        self._log_location = locate

    def set_publisher(self, publish: Callable[[Sequence[WatchUpdate]], None]) -> None:
        """Receives every committed batch of work unit updates, in commit order."""
        self._publish = publish

    def set_change_listener(self, listen: Callable[[Collection[reading.UnitKey]], None]) -> None:
        """Receives the units each commit changed, after the commit and before the call that
        made it returns (what a copy of the unit cache elsewhere must drop)."""
        self._changed = listen

    def _units_changed(self, keys: Collection[reading.UnitKey]) -> None:
        self._units.invalidate(keys)
        self._changed(keys)

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
                self._units_changed(transaction.unit_statuses.keys())
            if transaction.updates:
                self._publish(transaction.updates)

    # -- experiments ---------------------------------------------------------------------------

    def create_experiment(self, experiment: pb.Experiment, request_id: str = "") -> pb.Experiment:
        with self._write() as transaction:
            session = transaction.session
            if request_id:
                existing = session.scalar(
                    select(ExperimentRow).where(ExperimentRow.request_id == request_id)
                )
                if existing is not None:
                    return reader.experiment_message(session, existing)
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
            return conversions.experiment_message(row, {})

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
            return reader.experiment_message(session, row)

    def delete_experiment(self, experiment_id: int) -> int:
        """Deletes an experiment whose units are all final; returns how many units it had."""
        with self._write() as transaction:
            keys = deleting.delete_experiment(transaction, experiment_id, conversions.now())
        self._units_changed(keys)
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
