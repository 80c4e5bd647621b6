"""The dashboard's calls to the daemon: the public gRPC API, run off the event loop.

gRPC's Python stubs block, so each call runs in a worker thread; streams are read one message
at a time in a thread and cancelled when the browser goes away.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import anyio
import grpc
from starlette.concurrency import run_in_threadpool

from xmanager.client.connection import Launcher
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.ui import rows

# ListWorkUnits' largest page.
_PAGE = 1000
# A sweep's list of work units older than this is refreshed in the background. Listing
# thousands of units takes the daemon seconds, so pages are served from the last list.
_SWEEP_TTL_SECONDS = 5.0
_MAX_STREAMS = 256
# Sweeps whose lists are kept (a 5,000-unit list takes a few MB).
_MAX_SWEEPS = 16


@dataclasses.dataclass
class Sweep:
    """An experiment's work units as last listed, with their parsed hyperparameters."""

    units: list[pb.WorkUnit]
    params: list[dict[str, rows.Scalar]]
    fetched: float = dataclasses.field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self._index = {unit.work_unit_id: i for i, unit in enumerate(self.units)}

    def apply(self, update: pb.WorkUnit) -> bool:
        """Takes a watched unit's statuses (a watch carries no args); False for a new unit."""
        at = self._index.get(update.work_unit_id)
        if at is None:
            return False
        unit = self.units[at]
        unit.status.CopyFrom(update.status)
        statuses = {job.name: job.status for job in update.jobs}
        for job in unit.jobs:
            if job.name in statuses:
                job.status.CopyFrom(statuses[job.name])
        return True


class Overlay(Protocol):
    """What a live watch of an experiment lays over a fresh list of its units."""

    def overlay(self, sweep: Sweep) -> None: ...


class Gateway:
    """The daemon, as the dashboard uses it."""

    def __init__(self, launcher: Launcher) -> None:
        self.launcher = launcher
        self._stub = launcher.stub
        # Each open stream (a watching page, a followed log) waits in a thread of its own,
        # apart from the pool of unary calls, so that open pages never starve the others.
        self._stream_threads = anyio.CapacityLimiter(_MAX_STREAMS)
        self._sweeps: dict[int, Sweep] = {}
        self._listing: dict[int, asyncio.Task[Sweep]] = {}
        # Experiments with a live watch: it keeps their lists current, no periodic relisting.
        self.watching: dict[int, Overlay] = {}

    async def _call(self, method: Any, request: Any) -> Any:
        return await run_in_threadpool(self.launcher.call, method, request)

    async def list_experiments(
        self, request: pb.ListExperimentsRequest
    ) -> pb.ListExperimentsResponse:
        response: pb.ListExperimentsResponse = await self._call(self._stub.ListExperiments, request)
        return response

    async def experiment(self, experiment_id: int) -> pb.Experiment:
        experiment: pb.Experiment = await self._call(
            self._stub.GetExperiment, pb.GetExperimentRequest(experiment_id=experiment_id)
        )
        return experiment

    async def update_experiment(self, request: pb.UpdateExperimentRequest) -> pb.Experiment:
        experiment: pb.Experiment = await self._call(self._stub.UpdateExperiment, request)
        self.forget(request.experiment_id)
        return experiment

    async def work_unit(self, experiment_id: int, work_unit_id: int) -> pb.WorkUnit:
        unit: pb.WorkUnit = await self._call(
            self._stub.GetWorkUnit,
            pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=work_unit_id),
        )
        return unit

    def cached_sweep(self, experiment_id: int) -> Sweep | None:
        """The sweep's units as last listed, if any; a stale list is refreshed in the
        background (statuses reach the browser live, over the watch, meanwhile)."""
        sweep = self._sweeps.get(experiment_id)
        if sweep is None:
            return None
        watched = experiment_id in self.watching and sweep.fetched > 0
        if not watched and time.monotonic() - sweep.fetched > _SWEEP_TTL_SECONDS:
            self._refresh(experiment_id)
        return sweep

    def peek_sweep(self, experiment_id: int) -> Sweep | None:
        """The sweep's list if there is one, without refreshing it."""
        return self._sweeps.get(experiment_id)

    async def sweep(self, experiment_id: int) -> Sweep:
        """The sweep's units, listed now unless a recent list exists (one listing at a time)."""
        sweep = self.cached_sweep(experiment_id)
        if sweep is not None:
            return sweep
        return await asyncio.shield(self._refresh(experiment_id))

    def warm(self, experiment_id: int) -> None:
        """Starts listing the sweep in the background, so its next requests find it."""
        if experiment_id not in self._sweeps:
            self._refresh(experiment_id)

    def forget(self, experiment_id: int) -> None:
        """Marks the sweep's list stale (after an action that changed it)."""
        sweep = self._sweeps.get(experiment_id)
        if sweep is not None:
            sweep.fetched = 0.0

    def _refresh(self, experiment_id: int) -> asyncio.Task[Sweep]:
        running = self._listing.get(experiment_id)
        if running is not None:
            return running

        async def list_all() -> Sweep:
            try:
                units = await run_in_threadpool(self._all_units, experiment_id)
                sweep = Sweep(units, [rows.hyperparameters(u.args_json) for u in units])
                watch = self.watching.get(experiment_id)
                if watch is not None:
                    watch.overlay(sweep)  # the watch may have seen newer statuses
                self._sweeps.pop(experiment_id, None)
                self._sweeps[experiment_id] = sweep  # the newest last
                self._evict()
                return sweep
            finally:
                self._listing.pop(experiment_id, None)

        task = asyncio.get_running_loop().create_task(list_all())
        # A background refresh that fails is retried by the next request; don't warn about it.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._listing[experiment_id] = task
        return task

    def _all_units(self, experiment_id: int) -> list[pb.WorkUnit]:
        units: list[pb.WorkUnit] = []
        token = ""
        while True:
            page: pb.ListWorkUnitsResponse = self.launcher.call(
                self._stub.ListWorkUnits,
                pb.ListWorkUnitsRequest(
                    experiment_id=experiment_id, page_size=_PAGE, page_token=token
                ),
            )
            units.extend(page.work_units)
            token = page.next_page_token
            if not token:
                return units

    def _evict(self) -> None:
        """Keeps the lists of the most recently listed sweeps, and of every watched one."""
        idle = [e for e in self._sweeps if e not in self.watching]
        for experiment_id in idle[: max(0, len(self._sweeps) - _MAX_SWEEPS)]:
            del self._sweeps[experiment_id]

    async def first_units(self, experiment_id: int, count: int) -> list[pb.WorkUnit]:
        """The first `count` work units by id: one short call, for a sweep not listed yet."""
        page: pb.ListWorkUnitsResponse = await self._call(
            self._stub.ListWorkUnits,
            pb.ListWorkUnitsRequest(experiment_id=experiment_id, page_size=count),
        )
        return list(page.work_units)

    async def cancel_work_unit(self, experiment_id: int, work_unit_id: int) -> pb.WorkUnit:
        response: pb.CancelWorkUnitResponse = await self._call(
            self._stub.CancelWorkUnit,
            pb.CancelWorkUnitRequest(
                experiment_id=experiment_id,
                work_unit_id=work_unit_id,
                reason="cancelled from the dashboard",
            ),
        )
        self.forget(experiment_id)
        return response.work_unit

    async def cancel_experiment(self, experiment_id: int) -> int:
        response: pb.CancelExperimentResponse = await self._call(
            self._stub.CancelExperiment,
            pb.CancelExperimentRequest(
                experiment_id=experiment_id, reason="cancelled from the dashboard"
            ),
        )
        self.forget(experiment_id)
        return response.cancelled_work_units

    async def read_log(self, request: pb.StreamLogsRequest, limit: int) -> tuple[int, bytes, bool]:
        """Up to `limit` bytes of a log from `request.offset`: (start offset, data, truncated)."""

        def read() -> tuple[int, bytes, bool]:
            stream = self._stub.StreamLogs(request, timeout=30)
            start: int | None = None
            data = bytearray()
            truncated = False
            try:
                for chunk in stream:
                    if start is None:
                        start = chunk.offset
                    data += chunk.data
                    truncated = truncated or chunk.truncated
                    if len(data) >= limit:
                        break
            finally:
                stream.cancel()
            return (
                (start if start is not None else max(request.offset, 0)),
                bytes(data[:limit]),
                truncated,
            )

        return await run_in_threadpool(read)

    async def stream(self, method: Any, request: Any) -> AsyncIterator[Any]:
        """The messages of a server stream; the call is cancelled when the consumer stops."""
        call = method(request)
        iterator: Iterator[Any] = iter(call)

        def next_message() -> Any:
            try:
                return next(iterator)
            except StopIteration:
                return None
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.CANCELLED:
                    return None
                raise

        try:
            while True:
                message = await anyio.to_thread.run_sync(
                    next_message, abandon_on_cancel=True, limiter=self._stream_threads
                )
                if message is None:
                    return
                yield message
        finally:
            call.cancel()
