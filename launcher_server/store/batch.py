"""What the store's write operations share: the transaction, chunked IN lists, and the updates
they publish."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from launcher_server.store.active import UnitStatus

from xmanager.launcher.v1 import launcher_pb2 as pb

# Rows per IN (...) list: well under every database's limit on bound parameters.
CHUNK = 500

T = TypeVar("T")


def chunks(items: Sequence[T]) -> Iterable[list[T]]:
    for start in range(0, len(items), CHUNK):
        yield list(items[start : start + CHUNK])


@dataclasses.dataclass(frozen=True)
class WatchUpdate:
    """A committed change as watchers see it: the event, and the unit's status after it (the
    unit's status and its jobs' names and statuses; GetWorkUnit has the rest)."""

    event: pb.Event
    work_unit: pb.WorkUnit


class Transaction:
    """A write transaction: its session, the event numbers it takes, the updates it publishes."""

    def __init__(self, session: Session, last_sequence: int) -> None:
        self.session = session
        self.last_sequence = last_sequence
        self.updates: list[WatchUpdate] = []
        # Statuses of units as this transaction leaves them, for the in-memory mirror.
        self.unit_statuses: dict[tuple[int, int], UnitStatus] = {}

    def next_sequence(self) -> int:
        """The next event's number: the daemon, the only writer, numbers events in order."""
        self.last_sequence += 1
        return self.last_sequence
