"""Wakes watchers when new events are in the store.

Events themselves are read from the store (the source of truth, which makes watches resumable
across daemon restarts); the hub only carries the newest sequence number and a condition variable.
"""

from __future__ import annotations

import threading


class EventHub:
    def __init__(self, last_sequence: int = 0) -> None:
        self._condition = threading.Condition()
        self._last_sequence = last_sequence
        self._closed = False

    @property
    def last_sequence(self) -> int:
        with self._condition:
            return self._last_sequence

    def publish(self, sequence: int) -> None:
        """Announces that events up to `sequence` are committed."""
        with self._condition:
            if sequence > self._last_sequence:
                self._last_sequence = sequence
                self._condition.notify_all()

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
