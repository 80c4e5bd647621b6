"""Recent work unit updates in memory, and the wakeups of those watching them.

Every committed change to a work unit or job is published here by the store, in commit order,
as a `WatchUpdate` (the event and the unit's status after it). Watchers read recent updates from
memory instead of querying the store for each event; the store stays the source of truth for
anything older than what the hub keeps (a watch resumed long after, or from before the daemon
started).
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Sequence

from launcher_server.store.batch import WatchUpdate
from xmanager.launcher.v1 import launcher_pb2 as pb


@dataclasses.dataclass(frozen=True, slots=True)
class Update:
    """A published update, kept serialized: a sweep's thousands of them as message objects
    would cost tens of megabytes."""

    sequence: int
    experiment_id: int
    work_unit_id: int
    # The unit's state after the update, for watchers that filter by state.
    state: int
    payload: bytes  # a serialized WorkUnitUpdate

    @classmethod
    def of(cls, update: WatchUpdate) -> Update:
        event = update.event
        message = pb.WorkUnitUpdate(event=event, work_unit=update.work_unit)
        return cls(
            event.sequence,
            event.experiment_id,
            event.work_unit_id,
            update.work_unit.status.state,
            message.SerializeToString(),
        )


def watch_response(updates: Sequence[Update]) -> pb.WatchWorkUnitsResponse:
    """One response carrying the updates, each parsed in place from its payload."""
    response = pb.WatchWorkUnitsResponse()
    for update in updates:
        response.updates.add().MergeFromString(update.payload)
    return response


class EventHub:
    def __init__(self, last_sequence: int = 0, capacity: int = 20_000) -> None:
        self._condition = threading.Condition()
        self._last_sequence = last_sequence
        self._recent: collections.deque[Update] = collections.deque()
        self._capacity = capacity
        # Every update with a sequence number above this one is in `_recent`.
        self._floor = last_sequence
        self._closed = False

    @property
    def last_sequence(self) -> int:
        with self._condition:
            return self._last_sequence

    def publish(self, updates: Sequence[WatchUpdate]) -> None:
        """Adds committed updates (in sequence order) and wakes the watchers."""
        entries = [Update.of(update) for update in updates]
        with self._condition:
            self._recent.extend(entries)
            while len(self._recent) > self._capacity:
                self._floor = self._recent.popleft().sequence
            newest = max((entry.sequence for entry in entries), default=0)
            if newest > self._last_sequence:
                self._last_sequence = newest
                self._condition.notify_all()

    def updates_after(
        self, sequence: int, experiment_id: int = 0, limit: int = 5000
    ) -> tuple[list[Update], int] | None:
        """(updates after `sequence`, oldest first, of one experiment or all for 0; the
        sequence number they bring a watcher up to), or None when they are no longer all in
        memory (read the store instead)."""
        with self._condition:
            if sequence < self._floor:
                return None
            found: list[Update] = []
            # From the newest back to the first update already seen.
            for update in reversed(self._recent):
                if update.sequence <= sequence:
                    break
                if not experiment_id or update.experiment_id == experiment_id:
                    found.append(update)
            found.reverse()
            if len(found) > limit:
                found = found[:limit]
                return found, found[-1].sequence
            return found, self._last_sequence

    def wait_beyond(self, sequence: int, timeout: float) -> bool:
        """Waits until an event after `sequence` exists; False on timeout or shutdown."""
        with self._condition:
            self._condition.wait_for(
                lambda: self._closed or self._last_sequence > sequence, timeout=timeout
            )
            return not self._closed and self._last_sequence > sequence

    def close(self) -> None:
        """Releases every waiter (the daemon is stopping)."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def closed(self) -> bool:
        with self._condition:
            return self._closed
