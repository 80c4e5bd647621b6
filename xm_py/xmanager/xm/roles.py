"""Experiment unit roles: an ordinary work unit, or an auxiliary unit serving the experiment."""

from __future__ import annotations

import abc
import dataclasses
import enum
import numbers


class Importance(enum.Enum):
    """How much an auxiliary unit matters to the experiment."""

    LOW = 0
    NORMAL = 1
    HIGH = 2


class ExperimentUnitRole(abc.ABC):  # noqa: B024  # A closed family of value classes.
    """The role of an experiment unit within its experiment."""


@dataclasses.dataclass(frozen=True)
class WorkUnitRole(ExperimentUnitRole):
    """A work unit: one trial of the experiment, counted and numbered."""


@dataclasses.dataclass(frozen=True)
class AuxiliaryUnitRole(ExperimentUnitRole):
    """An auxiliary unit (e.g. a TensorBoard) that lives as long as the experiment needs it.

    Attributes:
      importance: how much it matters.
      termination_delay_secs: how long it is kept after the experiment's work units finish.
    """

    importance: Importance = Importance.NORMAL
    termination_delay_secs: float = 30

    def __post_init__(self) -> None:
        if not isinstance(self.importance, Importance):
            raise TypeError(
                f"importance must be an xm.Importance member, got {self.importance!r}; valid: "
                f"{', '.join(member.name for member in Importance)}."
            )
        delay = self.termination_delay_secs
        if isinstance(delay, bool) or not isinstance(delay, numbers.Real) or delay < 0:
            raise ValueError(
                f"termination_delay_secs must be a non-negative number, got {delay!r}."
            )
