"""`xm.LaunchedJob` and `xm.JobConfig`: XManager's read-only job view and platform-config base."""

from __future__ import annotations

import abc
import dataclasses


@dataclasses.dataclass(frozen=True)
class LaunchedJob:
    """A job as launched in a unit: its name, and its address and logs URL when known."""

    name: str
    address: str | None = None
    logs: str | None = None


class JobConfig(abc.ABC):  # noqa: B024  # A marker base, as in XManager.
    """A job defined in a platform's own configuration language (no launcher supports one yet:
    adding one raises TypeError)."""
