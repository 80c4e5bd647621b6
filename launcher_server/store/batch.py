"""What the store's batch operations share: chunked IN lists and the updates they publish."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TypeVar

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
