"""The one queue every backend reports into, and the scheduler records from.

Created before the backends and the scheduler, and given to both: backends `put`, the
scheduler's recorder `get`s in batches. A final observation also frees its job's slot at once
(`take_finished`), before it is recorded, so the next queued work unit need not wait for the
recorder's commit.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import queue
import threading

from launcher_server.aggregation import FINAL_STATES
from launcher_server.jobs import JobKey, JobObservation


@dataclasses.dataclass(frozen=True)
class Flush:
    """A marker: `done` is set once everything queued before it is recorded."""

    done: concurrent.futures.Future[None]


@dataclasses.dataclass(frozen=True)
class HandleAssigned:
    """A job's backend handle, recorded in order with its observations."""

    key: JobKey
    handle: str


class Stop:
    """The marker that ends the recorder."""


Item = JobObservation | HandleAssigned | Flush | Stop


class ObservationQueue:
    def __init__(self) -> None:
        self._items: queue.SimpleQueue[Item] = queue.SimpleQueue()
        # The scheduler's lock: waiters for free slots are woken by final observations.
        self.condition = threading.Condition()
        self._finished: list[JobKey] = []

    def put(self, item: Item) -> None:
        """Thread-safe; the `report` function of every backend."""
        if isinstance(item, JobObservation) and item.state in FINAL_STATES:
            with self.condition:
                self._finished.append(item.key)
                self.condition.notify_all()
        self._items.put(item)

    def take_finished(self) -> list[JobKey]:
        """Jobs reported final since the last call (call with `condition` held)."""
        finished, self._finished = self._finished, []
        return finished

    def get(self, timeout: float | None = None) -> Item:
        return self._items.get(timeout=timeout)

    def get_nowait(self) -> Item:
        return self._items.get_nowait()
