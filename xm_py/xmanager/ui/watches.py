"""One WatchWorkUnits stream per experiment, shared by every page that shows it.

The first page to subscribe starts the watch (its first responses are the daemon's snapshot of
every unit); later pages get only what changed since the table they loaded (`since`, a version
the table's answer carries), so reloading a 5,000-unit sweep costs no new snapshot. The watch
also keeps the sweep's cached list current. It stops a while after its last page has gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from typing import Any

import grpc

from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.ui import rows
from xmanager.ui.gateway import Gateway, Sweep

# How long a watch outlives its last page (a reload comes back within it).
_IDLE_SECONDS = 30.0
# Queued for subscribers when the watch ends: the reason.
Item = list[dict[str, Any]] | str


class ExperimentWatch:
    def __init__(self, gateway: Gateway, experiment_id: int, watches: Watches) -> None:
        self.gateway = gateway
        self.experiment_id = experiment_id
        self.version = 0
        self._watches = watches
        self._latest: dict[int, pb.WorkUnit] = {}
        self._changed_at: dict[int, int] = {}
        self._subscribers: set[asyncio.Queue[Item]] = set()
        self._counts: tuple[int, dict[str, int]] = (-1, {})
        self._idle: asyncio.TimerHandle | None = None
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        request = pb.WatchWorkUnitsRequest(experiment_id=self.experiment_id)
        reason = "the daemon ended the watch; reload the page"
        try:
            stub = self.gateway.launcher.stub
            async for response in self.gateway.stream(stub.WatchWorkUnits, request):
                self._take(response)
        except grpc.RpcError as error:
            reason = f"{error.details()} ({error.code().name}); reload the page"
        finally:
            self._watches.drop(self)
            for queue in self._subscribers:
                queue.put_nowait(reason)

    def _take(self, response: pb.WatchWorkUnitsResponse) -> None:
        self.version = next(self._watches.clock)
        sweep = self.gateway.peek_sweep(self.experiment_id)
        changed = []
        for update in response.updates:
            unit = update.work_unit
            self._latest[unit.work_unit_id] = unit
            self._changed_at[unit.work_unit_id] = self.version
            if sweep is not None and not sweep.apply(unit):
                self.gateway.forget(self.experiment_id)  # a new unit: list again
            changed.append(rows.status_update(unit))
        for queue in self._subscribers:
            queue.put_nowait(changed)

    def overlay(self, sweep: Sweep) -> None:
        for unit in sweep.units:
            seen = self._latest.get(unit.work_unit_id)
            if seen is not None and _newer(seen, unit):
                sweep.apply(seen)

    def counts(self) -> dict[str, int]:
        if self._counts[0] != self.version:
            counted = Counter(rows.state_name(u.status.state) for u in self._latest.values())
            self._counts = (self.version, dict(counted))
        return self._counts[1]

    def subscribe(self, since: int) -> asyncio.Queue[Item]:
        """A queue of changed rows, starting with those changed after version `since`."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        queue: asyncio.Queue[Item] = asyncio.Queue()
        replay = [
            rows.status_update(self._latest[unit_id])
            for unit_id, version in self._changed_at.items()
            if version > since
        ]
        if replay:
            queue.put_nowait(replay)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Item]) -> None:
        self._subscribers.discard(queue)
        if not self._subscribers and self._idle is None:
            self._idle = asyncio.get_running_loop().call_later(_IDLE_SECONDS, self._stop_if_idle)

    def _stop_if_idle(self) -> None:
        self._idle = None
        if not self._subscribers:
            self._task.cancel()

    def stop(self) -> None:
        self._task.cancel()


def _newer(a: pb.WorkUnit, b: pb.WorkUnit) -> bool:
    return a.status.update_time.ToNanoseconds() > b.status.update_time.ToNanoseconds()


class Watches:
    """The live watches of the dashboard, by experiment."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._watches: dict[int, ExperimentWatch] = {}
        # Versions count across watches, so a page's `since` stays meaningful after a restart.
        self.clock = itertools.count(1)

    def get(self, experiment_id: int) -> ExperimentWatch:
        watch = self._watches.get(experiment_id)
        if watch is None:
            watch = ExperimentWatch(self.gateway, experiment_id, self)
            self._watches[experiment_id] = watch
            self.gateway.watching[experiment_id] = watch
        return watch

    def version(self, experiment_id: int) -> int:
        """The version of the experiment's watch (0 without one: a page then gets everything)."""
        watch = self._watches.get(experiment_id)
        return watch.version if watch is not None else 0

    def drop(self, watch: ExperimentWatch) -> None:
        if self._watches.get(watch.experiment_id) is watch:
            del self._watches[watch.experiment_id]
            self.gateway.watching.pop(watch.experiment_id, None)

    def stop_all(self) -> None:
        for watch in list(self._watches.values()):
            with contextlib.suppress(RuntimeError):
                watch.stop()
