"""Reading the store: experiments and work units as the read RPCs return them.

`StoreReader` is what the daemon's store is built on, and all a process that only serves reads
needs (`launcher_server.read_process`): it opens the database without claiming it, and keeps
recently read units in a cache that whoever writes keeps exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from launcher_server import limits
from launcher_server.errors import NotFoundError
from launcher_server.store import conversions, reading
from launcher_server.store.models import ExperimentRow, WorkUnitRow
from xmanager.launcher.v1 import launcher_pb2 as pb

_DEFAULT_EXPERIMENT_PAGE = 50
_DEFAULT_WORK_UNIT_PAGE = 100
# Connections kept open, and opened beyond them at a busy moment (each call holds at most one;
# the daemon serves 64 calls at once by default).
_POOL_SIZE = 16
_POOL_OVERFLOW = 64


def connect(url: str) -> tuple[Engine, str]:
    """An engine for the store at `url` (creating a SQLite file's directory if needed), and the
    URL as messages may show it (no password)."""
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
    return engine, safe_url


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    # WAL: readers never block the writer; NORMAL: durable across a crash of the daemon (only
    # a power loss can drop the last commits), at a fraction of FULL's fsync cost.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class StoreReader:
    def __init__(self, engine: Engine, units: reading.UnitCache) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._units = units

    @classmethod
    def open_read_only(cls, url: str, units: reading.UnitCache) -> StoreReader:
        """Reads the store of a running daemon, which created and migrated it, and tells
        `units` what each of its commits changed."""
        engine, _ = connect(url)
        return cls(engine, units)

    def close(self) -> None:
        self._engine.dispose()

    def _read(self) -> Session:
        return self._sessions()

    def get_experiment(self, experiment_id: int) -> pb.Experiment:
        with self._read() as session:
            row = session.get(ExperimentRow, experiment_id)
            if row is None:
                raise NotFoundError(f"experiment {experiment_id} not found")
            return experiment_message(session, row)

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
                matching = [row for row in rows if not wanted_tags or wanted_tags <= set(row.tags)]
                counts = _state_counts(session, [row.id for row in matching])
                for row in matching:
                    message = conversions.experiment_message(row, counts[row.id])
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


def experiment_message(session: Session, row: ExperimentRow) -> pb.Experiment:
    """An experiment as the RPCs return it, its units counted in `session`."""
    return conversions.experiment_message(row, _state_counts(session, [row.id])[row.id])


def _state_counts(session: Session, experiment_ids: Sequence[int]) -> dict[int, dict[int, int]]:
    """Each experiment's work units per state, in one query for a page of experiments."""
    counts: dict[int, dict[int, int]] = {experiment_id: {} for experiment_id in experiment_ids}
    rows = session.execute(
        select(WorkUnitRow.experiment_id, WorkUnitRow.state, func.count())
        .where(WorkUnitRow.experiment_id.in_(experiment_ids))
        .group_by(WorkUnitRow.experiment_id, WorkUnitRow.state)
    )
    for experiment_id, state, count in rows:
        counts[experiment_id][state] = count
    return counts
