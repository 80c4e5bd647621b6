"""A work unit's status from its jobs' statuses (pure functions)."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence

from xmanager.launcher.v1 import launcher_pb2 as pb

FINAL_STATES = frozenset(
    {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED, pb.JOB_STATE_LOST}
)
FAILED_STATES = frozenset({pb.JOB_STATE_FAILED, pb.JOB_STATE_LOST})
# For a unit still active, the most advanced state any job has reached wins.
_ACTIVE_ORDER = (
    pb.JOB_STATE_CANCELLING,
    pb.JOB_STATE_RUNNING,
    pb.JOB_STATE_STARTING,
    pb.JOB_STATE_PENDING,
)


def aggregate(states: Sequence[int]) -> int:
    """All succeeded: SUCCEEDED. Any failed or lost: FAILED. Cancelled (the rest final):
    CANCELLED. Otherwise the most advanced active state."""
    present = set(states)
    if not present:
        return pb.JOB_STATE_PENDING
    if present == {pb.JOB_STATE_SUCCEEDED}:
        return pb.JOB_STATE_SUCCEEDED
    if present & FAILED_STATES:
        # Final once every job is; until then the unit is stopping its other jobs.
        return pb.JOB_STATE_FAILED if present <= FINAL_STATES else pb.JOB_STATE_CANCELLING
    if present <= FINAL_STATES:
        return pb.JOB_STATE_CANCELLED
    for state in _ACTIVE_ORDER:
        if state in present:
            return state
    return pb.JOB_STATE_PENDING


@dataclasses.dataclass
class JobFacts:
    """What aggregation needs of a job."""

    name: str
    state: int
    reason: str = ""
    exit_code: int | None = None
    start_time: datetime.datetime | None = None
    end_time: datetime.datetime | None = None


def aggregate_facts(jobs: Sequence[JobFacts]) -> JobFacts:
    """The unit's state, reason, exit code and times from its jobs."""
    state = aggregate([job.state for job in jobs])
    starts = [job.start_time for job in jobs if job.start_time is not None]
    ends = [job.end_time for job in jobs if job.end_time is not None]
    unit = JobFacts(
        "",
        state,
        start_time=min(starts) if starts else None,
        end_time=max(ends) if ends and state in FINAL_STATES else None,
    )
    culprit = next((job for job in jobs if job.state in FAILED_STATES), None)
    if culprit is None and state == pb.JOB_STATE_CANCELLED:
        culprit = next((job for job in jobs if job.state == pb.JOB_STATE_CANCELLED), None)
    if culprit is not None:
        state_name = pb.JobState.Name(culprit.state)
        what = culprit.reason or state_name.removeprefix("JOB_STATE_").lower()
        unit.reason = f"job {culprit.name!r}: {what}" if len(jobs) > 1 else what
        unit.exit_code = culprit.exit_code
    elif state == pb.JOB_STATE_SUCCEEDED:
        unit.exit_code = 0
    return unit
