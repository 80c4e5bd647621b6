"""Follows an experiment's work units through one resumable WatchWorkUnits stream.

Waiting for 10,000 work units must not mean 10,000 polls: one stream per experiment keeps the
latest status of every unit, resolves the futures of those waiting for a unit to end, and
resumes from the last event it saw when the daemon restarts.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from xmanager.client.connection import Launcher
from xmanager.launcher.v1 import launcher_pb2 as pb

_log = logging.getLogger(__name__)

FINAL_STATES = frozenset(
    {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED, pb.JOB_STATE_LOST}
)


class StatusWatcher:
    """The latest known status of an experiment's units.

    With `final_only`, the daemon sends only the updates that end a unit (what waiting needs),
    a third of the traffic of a sweep; `latest()` then knows only final statuses.
    """

    def __init__(self, launcher: Launcher, experiment_id: int, *, final_only: bool = False) -> None:
        self._launcher = launcher
        self._experiment_id = experiment_id
        self.final_only = final_only
        self._lock = threading.Lock()
        self._units: dict[int, pb.WorkUnit] = {}
        self._waiters: dict[int, list[concurrent.futures.Future[pb.WorkUnit]]] = (
            collections.defaultdict(list)
        )
        self._listeners: list[Callable[[pb.WorkUnit], None]] = []
        self._sequence = 0
        self._call: Any = None  # the streaming call, cancelled on close()
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="xm-watcher", daemon=True)
        self._thread.start()

    def add_listener(self, listener: Callable[[pb.WorkUnit], None]) -> None:
        """Calls `listener(unit)` (from the watcher thread) on every change."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[pb.WorkUnit], None]) -> None:
        with self._lock:
            self._listeners.remove(listener)

    def latest(self, work_unit_id: int) -> pb.WorkUnit | None:
        with self._lock:
            return self._units.get(work_unit_id)

    def snapshot(self) -> dict[int, pb.WorkUnit]:
        with self._lock:
            return dict(self._units)

    def observe(self, unit: pb.WorkUnit) -> None:
        """Takes a unit's state seen elsewhere (e.g. AddWorkUnit's answer) into account."""
        self._update([unit])

    def wait_final(self, work_unit_id: int) -> concurrent.futures.Future[pb.WorkUnit]:
        """A future resolved with the unit once it is in a final state."""
        future: concurrent.futures.Future[pb.WorkUnit] = concurrent.futures.Future()
        with self._lock:
            unit = self._units.get(work_unit_id)
            if unit is not None and unit.status.state in FINAL_STATES:
                future.set_result(unit)
            elif self._error is not None:
                future.set_exception(self._error)
            else:
                self._waiters[work_unit_id].append(future)
        return future

    def close(self) -> None:
        with self._lock:
            self._closed = True
            call = self._call
        if call is not None:
            call.cancel()
        self._thread.join(timeout=5)

    def _update(self, units: list[pb.WorkUnit]) -> None:
        changed: list[pb.WorkUnit] = []
        waiters: list[tuple[concurrent.futures.Future[pb.WorkUnit], pb.WorkUnit]] = []
        with self._lock:
            for unit in units:
                current = self._units.get(unit.work_unit_id)
                if current is not None and current.status.state in FINAL_STATES:
                    continue  # final states never change; a late snapshot must not undo them
                self._units[unit.work_unit_id] = unit
                changed.append(unit)
                if unit.status.state in FINAL_STATES:
                    waiters.extend((w, unit) for w in self._waiters.pop(unit.work_unit_id, []))
            listeners = list(self._listeners)
        for waiter, unit in waiters:
            if not waiter.done():
                waiter.set_result(unit)
        for unit in changed:
            for listener in listeners:
                listener(unit)

    def _run(self) -> None:
        delay = 0.05
        deadline: float | None = None
        while True:
            request = pb.WatchWorkUnitsRequest(
                experiment_id=self._experiment_id,
                after_sequence=self._sequence,
                states=sorted(FINAL_STATES) if self.final_only else (),
            )
            try:
                call = self._launcher.stub.WatchWorkUnits(request)
                with self._lock:
                    if self._closed:
                        call.cancel()
                        return
                    self._call = call
                for response in call:
                    delay, deadline = 0.05, None
                    for update in response.updates:
                        self._sequence = max(self._sequence, update.event.sequence)
                    self._update([update.work_unit for update in response.updates])
                return
            except grpc.RpcError as error:
                with self._lock:
                    if self._closed:
                        return
                now = time.monotonic()
                deadline = deadline or now + self._launcher.retry_seconds
                if error.code() != grpc.StatusCode.UNAVAILABLE or now > deadline:
                    self._fail(error)
                    return
                _log.info("watch interrupted (%s); resuming", error.details())
                try:
                    self._launcher.ensure_daemon()
                except Exception as start_error:
                    self._fail(start_error)
                    return
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            self._error = error
            waiters = [w for ws in self._waiters.values() for w in ws]
            self._waiters.clear()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)
