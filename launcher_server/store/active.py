"""The statuses of the work units not final yet, mirrored in memory.

Applying a batch of observations needs the current status of the jobs observed and of their
units. The daemon is its database's only writer (see `claim`), so a mirror it updates after each
commit is exact, and the hot path needs no query to read them. Final units leave the mirror
(their statuses never change again); what is missing is read from the database.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from launcher_server import aggregation
from launcher_server.store.batch import chunks
from launcher_server.store.models import JobRow, WorkUnitRow

UnitKey = tuple[int, int]

JOB_STATUS_COLUMNS = (
    JobRow.experiment_id,
    JobRow.work_unit_id,
    JobRow.name,
    JobRow.position,
    JobRow.state,
    JobRow.native_state,
    JobRow.reason,
    JobRow.exit_code,
    JobRow.start_time,
    JobRow.end_time,
    JobRow.update_time,
    JobRow.backend_handle,
    JobRow.log_location,
)
UNIT_STATUS_COLUMNS = (
    WorkUnitRow.experiment_id,
    WorkUnitRow.work_unit_id,
    WorkUnitRow.state,
    WorkUnitRow.native_state,
    WorkUnitRow.reason,
    WorkUnitRow.exit_code,
    WorkUnitRow.start_time,
    WorkUnitRow.end_time,
    WorkUnitRow.update_time,
)


@dataclasses.dataclass
class UnitStatus:
    """A work unit's status columns and its jobs', by job name in the launch script's order."""

    unit: types.SimpleNamespace
    jobs: dict[str, types.SimpleNamespace]

    def copy(self) -> UnitStatus:
        return UnitStatus(
            copy.copy(self.unit), {name: copy.copy(job) for name, job in self.jobs.items()}
        )

    @property
    def final(self) -> bool:
        return bool(self.unit.state in aggregation.FINAL_STATES)


def new_unit_status(
    unit_row: Mapping[str, Any], job_rows: Iterable[Mapping[str, Any]]
) -> UnitStatus:
    """The status of a unit just added, from the rows written."""
    unit = types.SimpleNamespace(**{c.key: unit_row[c.key] for c in UNIT_STATUS_COLUMNS})
    jobs = {
        row["name"]: types.SimpleNamespace(**{c.key: row[c.key] for c in JOB_STATUS_COLUMNS})
        for row in sorted(job_rows, key=lambda r: r["position"])
    }
    return UnitStatus(unit, jobs)


def load(session: Session, unit_keys: Sequence[UnitKey]) -> dict[UnitKey, UnitStatus]:
    """Reads units' statuses from the database."""
    found: dict[UnitKey, UnitStatus] = {}
    for chunk in chunks(list(unit_keys)):
        for row in session.execute(
            select(*UNIT_STATUS_COLUMNS).where(
                tuple_(WorkUnitRow.experiment_id, WorkUnitRow.work_unit_id).in_(chunk)
            )
        ):
            unit = types.SimpleNamespace(**row._asdict())
            found[(unit.experiment_id, unit.work_unit_id)] = UnitStatus(unit, {})
        for job_row in session.execute(
            select(*JOB_STATUS_COLUMNS)
            .where(tuple_(JobRow.experiment_id, JobRow.work_unit_id).in_(chunk))
            .order_by(JobRow.experiment_id, JobRow.work_unit_id, JobRow.position)
        ):
            job = types.SimpleNamespace(**job_row._asdict())
            status = found.get((job.experiment_id, job.work_unit_id))
            if status is not None:
                status.jobs[job.name] = job
    return found


class ActiveUnits:
    """The mirror: thread-safe; changed only with what a committed transaction wrote."""

    def __init__(self, units: Mapping[UnitKey, UnitStatus] | None = None) -> None:
        self._lock = threading.Lock()
        self._units = dict(units or {})

    @classmethod
    def from_database(cls, session: Session) -> ActiveUnits:
        keys = [
            (e, w)
            for e, w in session.execute(
                select(WorkUnitRow.experiment_id, WorkUnitRow.work_unit_id).where(
                    WorkUnitRow.state.not_in(list(aggregation.FINAL_STATES))
                )
            )
        ]
        return cls(load(session, keys))

    def copies(self, keys: Iterable[UnitKey]) -> dict[UnitKey, UnitStatus]:
        """Private copies of the units known here, to change within a transaction."""
        with self._lock:
            return {key: self._units[key].copy() for key in keys if key in self._units}

    def commit(self, changed: Mapping[UnitKey, UnitStatus]) -> None:
        """Takes in what a transaction committed; final units leave."""
        with self._lock:
            for key, status in changed.items():
                if status.final:
                    self._units.pop(key, None)
                else:
                    self._units[key] = status

    def __len__(self) -> int:
        with self._lock:
            return len(self._units)
