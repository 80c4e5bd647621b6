"""Errors raised by experiments and their units."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xmanager.xm.status import ExperimentUnitStatus

if TYPE_CHECKING:
    from xmanager.xm.core import ExperimentUnit


class ExperimentUnitError(RuntimeError):
    """Something went wrong with an experiment unit (`work_unit`, when known)."""

    def __init__(self, message: Any, *, work_unit: ExperimentUnit | None = None) -> None:
        super().__init__(message)
        self.work_unit = work_unit


def _describe(unit: ExperimentUnit | None, status: ExperimentUnitStatus | None) -> str:
    name = unit.experiment_unit_name if unit is not None else "experiment unit"
    if status is None:
        return name
    text = f"{name} ended in state {status.state.name}"
    return f"{text}: {status.message}" if status.message else text


class ExperimentUnitFailedError(ExperimentUnitError):
    """An experiment unit failed (or was lost)."""

    def __init__(
        self,
        unit: ExperimentUnit | None,
        status: ExperimentUnitStatus | None = None,
        message: str = "",
    ) -> None:
        super().__init__(message or f"Failed: {_describe(unit, status)}", work_unit=unit)
        self.unit = unit
        self.status = status


class ExperimentUnitNotCompletedError(ExperimentUnitError):
    """An experiment unit ended without completing (e.g. it was cancelled)."""

    def __init__(
        self,
        unit: ExperimentUnit | None,
        status: ExperimentUnitStatus | None = None,
        message: str = "",
    ) -> None:
        super().__init__(message or f"Not completed: {_describe(unit, status)}", work_unit=unit)
        self.unit = unit
        self.status = status


class NotFoundError(KeyError):
    """An experiment, work unit or job does not exist."""


class ReloadError(ExperimentUnitError):
    """An experiment unit could not be reloaded."""


class DebugInterrupt(BaseException):  # XManager's name.
    """Raised by a launch script to stop at a point while debugging (not an error)."""
