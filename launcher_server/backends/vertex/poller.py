"""One poller observes every active Vertex AI job of this daemon, whatever their number.

Each round is one `ListCustomJobs` per project and region (more only past 1,000 changed jobs,
one page each), filtered to this daemon's label and to jobs updated since the previous round
(less a margin for clock skew): a job that does not change costs nothing, so the API calls per
minute do not grow with the number of jobs. Jobs are matched to work units by their labels,
so a job created just before a daemon crash (no resource name recorded) is observed too.

The interval adapts: short while jobs are starting, changing or cancelling, growing to the
maximum while all is quiet; quota errors (429) and outages back off exponentially and never
change a job's state.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from launcher_server.backends.vertex import connection, states
from launcher_server.backends.vertex.custom_job import (
    LABEL_EXPERIMENT,
    LABEL_LAUNCHER,
    LABEL_WORK_UNIT,
    Target,
    label_filter,
)
from launcher_server.jobs import UnitKey

_log = logging.getLogger(__name__)

MARGIN = datetime.timedelta(seconds=120)  # clock skew between this machine and Vertex AI
PAGE_SIZE = 1000
MAX_BACKOFF_SECONDS = 300.0


@dataclasses.dataclass
class Watched:
    """A work unit's CustomJob under observation."""

    target: Target
    name: str = ""  # resource name, once known
    signature: tuple[Any, ...] = ()  # what was last delivered (state, error, times)
    active: bool = True  # starting or cancelling: poll soon


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Poller:
    """Watches units' CustomJobs; `deliver(unit, job)` gets each change (from this thread)."""

    def __init__(
        self,
        connections: connection.Connections,
        launcher: str,
        deliver: Callable[[UnitKey, Any], None],
        *,
        min_seconds: float,
        max_seconds: float,
    ) -> None:
        self._connections = connections
        self._launcher = launcher
        self._deliver = deliver
        self.min_seconds = min_seconds
        self.max_seconds = max(max_seconds, min_seconds)
        self._lock = threading.Lock()
        self._watched: dict[UnitKey, Watched] = {}
        self._since: dict[Target, datetime.datetime] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._interval = min_seconds
        self._soon = False
        self._last_round = 0.0
        self._backoff = 0.0
        self.rounds = 0
        self.calls = 0
        self._thread: threading.Thread | None = None

    def watch(self, unit: UnitKey, target: Target, name: str = "") -> None:
        now = datetime.datetime.now(datetime.UTC)
        with self._lock:
            watched = self._watched.get(unit)
            if watched is None:
                self._watched[unit] = Watched(target, name)
            elif name:
                watched.name = name
            since = self._since.get(target)
            if since is None or since > now - MARGIN:
                self._since[target] = now - MARGIN
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="vertex-poller", daemon=True)
                self._thread.start()
        self.wake()

    def forget(self, unit: UnitKey) -> None:
        with self._lock:
            self._watched.pop(unit, None)

    def watching(self, unit: UnitKey) -> Watched | None:
        with self._lock:
            return self._watched.get(unit)

    def wake(self) -> None:
        """Polls within the shortest interval (after a create or a cancel); many wakes in a
        burst (a sweep being created) make one round, and a backoff still applies."""
        self._soon = True
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10)

    # -- the loop ----------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._backoff:
                # An outage or a quota error: no early wake-up until the backoff has passed.
                self._stop.wait(self._backoff * random.uniform(0.8, 1.2))
            else:
                while not self._stop.is_set():
                    interval = self.min_seconds if self._soon else self._interval
                    remaining = self._last_round + interval - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake.wait(remaining)
                    self._wake.clear()
            if self._stop.is_set():
                return
            self._soon = False
            self._last_round = time.monotonic()
            self._round()

    def _round(self) -> None:
        with self._lock:
            targets = {watched.target for watched in self._watched.values()}
        if not targets:
            self._interval = self.max_seconds
            return
        self.rounds += 1
        changed = False
        for target in sorted(targets):
            try:
                changed |= self._poll(target)
            except Exception as error:
                self._failed(target, error)
                return
        self._backoff = 0.0
        with self._lock:
            busy = any(watched.active for watched in self._watched.values())
        if changed or busy:
            self._interval = self.min_seconds
        else:
            self._interval = min(self._interval * 1.5, self.max_seconds)

    def _failed(self, target: Target, error: Exception) -> None:
        transient = connection.is_transient(error)
        floor = 10.0 if connection.is_quota(error) else self.min_seconds
        self._backoff = min(max(self._backoff * 2, floor), MAX_BACKOFF_SECONDS)
        _log.log(
            logging.INFO if transient else logging.WARNING,
            "Vertex AI poll of %s failed (%s); next try in about %.0f s",
            target.parent,
            error,
            self._backoff,
        )

    def _poll(self, target: Target) -> bool:
        started = datetime.datetime.now(datetime.UTC)
        with self._lock:
            since = self._since.get(target, started - MARGIN)
        query = label_filter({LABEL_LAUNCHER: self._launcher}) + (
            f' AND update_time>="{rfc3339(since)}"'
        )
        client = self._connections.jobs(target.endpoint)
        changed = False
        pager = client.list_custom_jobs(
            request={"parent": target.parent, "filter": query, "page_size": PAGE_SIZE},
            retry=None,  # this loop's backoff decides when to try again
            timeout=30,
        )
        for page in pager.pages:  # one call per page
            self.calls += 1
            for job in page.custom_jobs:
                changed |= self._seen(job)
        with self._lock:
            self._since[target] = started - MARGIN
        return changed

    def _seen(self, job: Any) -> bool:
        try:
            unit = (int(job.labels[LABEL_EXPERIMENT]), int(job.labels[LABEL_WORK_UNIT]))
        except (KeyError, ValueError):
            return False
        state = int(job.state)
        signature = (job.name, state, job.error.message, job.start_time, job.end_time)
        with self._lock:
            watched = self._watched.get(unit)
            if watched is None or watched.signature == signature:
                return False
            if watched.name and watched.name != job.name:
                return False  # an older CustomJob of the same unit (a restarted unit)
            watched.name = job.name
            watched.signature = signature
            watched.active = state in (0, 1, 2, 6)
            if state in states.FINAL:
                del self._watched[unit]
        self._deliver(unit, job)
        return True
