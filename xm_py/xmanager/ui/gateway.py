"""The dashboard's calls to the daemon: the public gRPC API, run off the event loop.

gRPC's Python stubs block, so each call runs in a worker thread; streams are read one message
at a time in a thread and cancelled when the browser goes away.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import grpc
from starlette.concurrency import run_in_threadpool

from xmanager.client.connection import Launcher
from xmanager.launcher.v1 import launcher_pb2 as pb

# ListWorkUnits' largest page.
_PAGE = 1000
# How long a sweep's list of work units is reused between requests (a table page, its chart
# and its timeline are usually asked for together).
_UNITS_TTL_SECONDS = 2.0


class Gateway:
    """The daemon, as the dashboard uses it."""

    def __init__(self, launcher: Launcher) -> None:
        self.launcher = launcher
        self._stub = launcher.stub
        self._units: dict[int, tuple[float, list[pb.WorkUnit]]] = {}

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
        self._units.pop(request.experiment_id, None)
        return experiment

    async def work_unit(self, experiment_id: int, work_unit_id: int) -> pb.WorkUnit:
        unit: pb.WorkUnit = await self._call(
            self._stub.GetWorkUnit,
            pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=work_unit_id),
        )
        return unit

    async def work_units(self, experiment_id: int, *, fresh: bool = False) -> list[pb.WorkUnit]:
        """Every work unit of an experiment, in id order (reused for a moment)."""
        cached = self._units.get(experiment_id)
        if cached is not None and not fresh and time.monotonic() - cached[0] < _UNITS_TTL_SECONDS:
            return cached[1]
        units = await run_in_threadpool(self._all_units, experiment_id)
        self._units[experiment_id] = (time.monotonic(), units)
        return units

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

    async def cancel_work_unit(self, experiment_id: int, work_unit_id: int) -> pb.WorkUnit:
        response: pb.CancelWorkUnitResponse = await self._call(
            self._stub.CancelWorkUnit,
            pb.CancelWorkUnitRequest(
                experiment_id=experiment_id,
                work_unit_id=work_unit_id,
                reason="cancelled from the dashboard",
            ),
        )
        self._units.pop(experiment_id, None)
        return response.work_unit

    async def cancel_experiment(self, experiment_id: int) -> int:
        response: pb.CancelExperimentResponse = await self._call(
            self._stub.CancelExperiment,
            pb.CancelExperimentRequest(
                experiment_id=experiment_id, reason="cancelled from the dashboard"
            ),
        )
        self._units.pop(experiment_id, None)
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
                message = await anyio.to_thread.run_sync(next_message, abandon_on_cancel=True)
                if message is None:
                    return
                yield message
        finally:
            call.cancel()
