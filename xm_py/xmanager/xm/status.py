"""Work unit states and statuses."""

from __future__ import annotations

import dataclasses
import enum


class WorkUnitState(enum.IntEnum):
    """The life cycle of a job or work unit.

    The numbers are the launcher contract's `JobState` values: never renumber them.
    """

    UNSPECIFIED = 0
    PENDING = 1
    STARTING = 2
    RUNNING = 3
    SUCCEEDED = 4
    FAILED = 5
    CANCELLING = 6
    CANCELLED = 7
    LOST = 8


_ACTIVE = frozenset(
    {
        WorkUnitState.PENDING,
        WorkUnitState.STARTING,
        WorkUnitState.RUNNING,
        WorkUnitState.CANCELLING,
    }
)
_FINAL = frozenset(
    {
        WorkUnitState.SUCCEEDED,
        WorkUnitState.FAILED,
        WorkUnitState.CANCELLED,
        WorkUnitState.LOST,
    }
)


@dataclasses.dataclass(frozen=True, init=False)
class ExperimentUnitStatus:
    """The status of an experiment unit: its state and a human-readable message."""

    state: WorkUnitState
    message: str

    def __init__(self, state: WorkUnitState | int, message: str = "") -> None:
        # Plain ints come from the wire (the contract's JobState); only known values pass.
        object.__setattr__(self, "state", WorkUnitState(state))
        object.__setattr__(self, "message", message)

    @property
    def is_active(self) -> bool:
        """Not final yet: pending, starting, running or cancelling."""
        return self.state in _ACTIVE

    @property
    def is_completed(self) -> bool:
        """Finished successfully."""
        return self.state is WorkUnitState.SUCCEEDED

    @property
    def is_failed(self) -> bool:
        """Finished unsuccessfully: failed, or lost by its backend."""
        return self.state in (WorkUnitState.FAILED, WorkUnitState.LOST)

    @property
    def is_cancelled(self) -> bool:
        return self.state is WorkUnitState.CANCELLED

    @property
    def is_final(self) -> bool:
        """Will not change any more."""
        return self.state in _FINAL


# XManager's name for the same thing.
WorkUnitStatus = ExperimentUnitStatus
