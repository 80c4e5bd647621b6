"""Deleting an experiment whose work units are all final, with its jobs and events.

One event stays: "deleted", numbered after every other, so event numbers are never reused (the
next daemon numbers from the highest one stored) and watchers see the deletion.
"""

from __future__ import annotations

import datetime

from sqlalchemy import delete, func, select

from launcher_server.aggregation import FINAL_STATES
from launcher_server.errors import FailedPreconditionError, NotFoundError
from launcher_server.store.batch import Transaction
from launcher_server.store.models import EVENTS, JOBS, UNITS, EventRow, ExperimentRow, WorkUnitRow
from xmanager.launcher.v1 import launcher_pb2 as pb

UnitKey = tuple[int, int]


def delete_experiment(
    transaction: Transaction, experiment_id: int, at: datetime.datetime
) -> list[UnitKey]:
    """Deletes the experiment; returns the keys of the work units deleted with it."""
    session = transaction.session
    # Locked (PostgreSQL): no unit can be added while it is checked and deleted.
    row = session.scalar(
        select(ExperimentRow).where(ExperimentRow.id == experiment_id).with_for_update()
    )
    if row is None:
        raise NotFoundError(f"experiment {experiment_id} not found")
    active = session.scalar(
        select(func.count())
        .select_from(WorkUnitRow)
        .where(WorkUnitRow.experiment_id == experiment_id)
        .where(WorkUnitRow.state.not_in(list(FINAL_STATES)))
    )
    if active:
        raise FailedPreconditionError(
            f"experiment {experiment_id} has {active} work unit(s) not final yet; cancel them "
            f"(`xmanager cancel {experiment_id}`), wait until they end, then delete"
        )
    keys = [
        (experiment_id, int(work_unit_id))
        for work_unit_id in session.scalars(
            select(WorkUnitRow.work_unit_id).where(WorkUnitRow.experiment_id == experiment_id)
        )
    ]
    session.execute(delete(JOBS).where(JOBS.c.experiment_id == experiment_id))
    session.execute(delete(UNITS).where(UNITS.c.experiment_id == experiment_id))
    session.execute(delete(EVENTS).where(EVENTS.c.experiment_id == experiment_id))
    session.delete(row)
    session.add(
        EventRow(
            sequence=transaction.next_sequence(),
            time=at,
            subject=pb.EVENT_SUBJECT_EXPERIMENT,
            experiment_id=experiment_id,
            old_state=pb.JOB_STATE_UNSPECIFIED,
            new_state=pb.JOB_STATE_UNSPECIFIED,
            message=f"deleted with {len(keys)} work unit(s)",
        )
    )
    return keys
