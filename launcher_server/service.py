"""The `Launcher` gRPC service: each RPC validated, then handed to the store (reads), the
scheduler (adds and cancels), the watcher (watches) or a job's backend (logs). `ReadService`
is its part that reads the store only.

Every error leaves as one gRPC status: LauncherError subclasses carry their code; anything else
is INTERNAL with the daemon's log holding the traceback.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import message as _message
from google.protobuf import timestamp_pb2

import xmanager
from launcher_server import auth, limits, logs, parsing, validation
from launcher_server.aggregation import FINAL_STATES
from launcher_server.errors import InvalidArgumentError, LauncherError, NotFoundError
from launcher_server.event_hub import EventHub
from launcher_server.jobs import JobKey
from launcher_server.scheduler import Scheduler, SubmitResult
from launcher_server.store import conversions
from launcher_server.store.reader import StoreReader
from launcher_server.store.store import Store
from launcher_server.watch import Watcher
from xmanager.launcher import contract
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.launcher.v1 import launcher_pb2_grpc as pb_grpc

_log = logging.getLogger(__name__)

API_VERSION = "v1"
CAPABILITIES = (
    "add.idempotent",
    "watch.resume",
    "logs.follow",
    "logs.offset",
    "cancel.grace_period",
)
_LOG_CHUNK = 64 * 1024
_ADD_BATCH = 500

F = TypeVar("F", bound=Callable[..., Any])


def _translate_errors(method: F) -> F:
    """Maps LauncherError to its status code; logs and hides anything unexpected."""

    @functools.wraps(method)
    def wrapper(self: ReadService, request: Any, context: grpc.ServicerContext) -> Any:
        auth.check(context, self.token)
        try:
            parsing.check(request)
            limits.check_request(request)
            return method(self, request, context)
        except LauncherError as error:
            context.abort(error.code, str(error))
        except Exception:
            _log.exception("%s failed", method.__name__)
            context.abort(
                grpc.StatusCode.INTERNAL, f"{method.__name__}: internal error (see daemon log)"
            )

    @functools.wraps(method)
    def stream_wrapper(
        self: ReadService, request: Any, context: grpc.ServicerContext
    ) -> Iterator[Any]:
        auth.check(context, self.token)
        try:
            parsing.check(request)
            if isinstance(request, _message.Message):  # not a client stream
                limits.check_request(request)
            yield from method(self, request, context)
        except LauncherError as error:
            context.abort(error.code, str(error))
        except Exception:
            _log.exception("%s failed", method.__name__)
            context.abort(
                grpc.StatusCode.INTERNAL, f"{method.__name__}: internal error (see daemon log)"
            )

    return cast(F, stream_wrapper if inspect.isgeneratorfunction(method) else wrapper)


class ReadService(pb_grpc.LauncherServicer):
    """The plain reads, which need nothing but the store: served by the daemon, and by its read
    process (`launcher_server.read_process`) where no sweep's threads compete with them."""

    def __init__(self, reads: StoreReader, *, token: str | None = None) -> None:
        # Required from TCP callers when set; Unix-socket callers are trusted (mode 0600).
        self.token = token
        self._reads = reads

    @_translate_errors
    def GetExperiment(
        self, request: pb.GetExperimentRequest, context: grpc.ServicerContext
    ) -> pb.Experiment:
        _positive(request.experiment_id, "experiment_id")
        return self._reads.get_experiment(request.experiment_id)

    @_translate_errors
    def ListExperiments(
        self, request: pb.ListExperimentsRequest, context: grpc.ServicerContext
    ) -> pb.ListExperimentsResponse:
        validation.check_enums(request)
        _page_size(request.page_size)
        return self._reads.list_experiments(request)

    @_translate_errors
    def GetWorkUnit(
        self, request: pb.GetWorkUnitRequest, context: grpc.ServicerContext
    ) -> pb.WorkUnit:
        _positive(request.experiment_id, "experiment_id")
        _positive(request.work_unit_id, "work_unit_id")
        return self._reads.get_work_unit(request.experiment_id, request.work_unit_id)

    @_translate_errors
    def ListWorkUnits(
        self, request: pb.ListWorkUnitsRequest, context: grpc.ServicerContext
    ) -> pb.ListWorkUnitsResponse:
        validation.check_enums(request)
        _positive(request.experiment_id, "experiment_id")
        _page_size(request.page_size)
        self._reads.check_experiment(request.experiment_id)  # NOT_FOUND for an unknown one
        return self._reads.list_work_units(request)


class LauncherService(ReadService):
    def __init__(
        self,
        store: Store,
        scheduler: Scheduler,
        hub: EventHub,
        *,
        token: str | None = None,
        read_process: bool = False,
    ) -> None:
        super().__init__(store, token=token)
        self._capabilities = CAPABILITIES + (
            (contract.READ_PROCESS_CAPABILITY,) if read_process else ()
        )
        self._store = store
        self._scheduler = scheduler
        self._hub = hub
        self._watcher = Watcher(store, hub)
        self._start_time = timestamp_pb2.Timestamp()
        self._start_time.GetCurrentTime()

    # -- experiments ---------------------------------------------------------------------------

    @_translate_errors
    def CreateExperiment(
        self, request: pb.CreateExperimentRequest, context: grpc.ServicerContext
    ) -> pb.Experiment:
        validation.validate_create_experiment(request)
        return self._store.create_experiment(request.experiment, request.request_id)

    @_translate_errors
    def UpdateExperiment(
        self, request: pb.UpdateExperimentRequest, context: grpc.ServicerContext
    ) -> pb.Experiment:
        validation.validate_update_experiment(request)
        return self._store.update_experiment(request)

    # -- work units ----------------------------------------------------------------------------

    @_translate_errors
    def AddWorkUnit(
        self, request: pb.AddWorkUnitRequest, context: grpc.ServicerContext
    ) -> pb.WorkUnit:
        return self._add_work_unit(request)

    def _add_work_unit(self, request: pb.AddWorkUnitRequest) -> pb.WorkUnit:
        (result,) = self._scheduler.submit([request])
        if isinstance(result, LauncherError):
            raise result
        return result[0]

    @_translate_errors
    def AddWorkUnits(
        self, request_iterator: Iterator[pb.AddWorkUnitsRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.AddWorkUnitsResponse]:
        # Batches that arrived together are recorded in one transaction (group commit); they
        # are handled in order, so work unit ids follow the order of the requests.
        incoming: queue.SimpleQueue[pb.AddWorkUnitsRequest | parsing.Unparsable | None] = (
            queue.SimpleQueue()
        )

        def read() -> None:
            try:
                for message in request_iterator:
                    incoming.put(message)
                    if isinstance(message, parsing.Unparsable):
                        break  # answered after the batches before it
            except grpc.RpcError:
                pass  # the client went away; the results it will not read are recorded
            finally:
                incoming.put(None)

        threading.Thread(target=read, name="add-reader", daemon=True).start()
        done = False
        while not done:
            messages: list[pb.AddWorkUnitsRequest] = []
            size = 0
            item = incoming.get()
            while isinstance(item, pb.AddWorkUnitsRequest):
                messages.append(item)
                size += len(item.requests)
                if size >= _ADD_BATCH:
                    break
                try:
                    item = incoming.get_nowait()
                except queue.Empty:
                    break
            done = not isinstance(item, pb.AddWorkUnitsRequest)
            results = self._add_batch([r for m in messages for r in m.requests])
            start = 0
            for message in messages:
                end = start + len(message.requests)
                yield pb.AddWorkUnitsResponse(results=results[start:end])
                start = end
            parsing.check(item, "AddWorkUnitsRequest")

    def _add_batch(self, batch: list[pb.AddWorkUnitRequest]) -> list[pb.AddWorkUnitResult]:
        return [
            _add_result(request, result)
            for request, result in zip(batch, self._scheduler.submit(batch), strict=True)
        ]

    @_translate_errors
    def WatchWorkUnits(
        self, request: pb.WatchWorkUnitsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchWorkUnitsResponse]:
        validation.check_enums(request)
        yield from self._watcher.watch(request, context.is_active)

    # -- logs ------------------------------------------------------------------------------

    @_translate_errors
    def StreamLogs(
        self, request: pb.StreamLogsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.LogChunk]:
        validation.check_enums(request)
        _positive(request.experiment_id, "experiment_id")
        _positive(request.work_unit_id, "work_unit_id")
        unit = self._store.get_work_unit(request.experiment_id, request.work_unit_id)
        names = [job.name for job in unit.jobs]
        name = request.job_name
        if not name:
            if len(names) != 1:
                raise InvalidArgumentError(
                    "job_name", f"the work unit has several jobs; choose one of {names}"
                )
            name = names[0]
        elif name not in names:
            raise NotFoundError(
                f"job {name!r} not found in work unit {request.experiment_id}/"
                f"{request.work_unit_id}; its jobs are {names}"
            )
        key = JobKey(request.experiment_id, request.work_unit_id, name)
        job = next(job for job in unit.jobs if job.name == name)
        backend = self._scheduler.backends.find(job)
        if backend is None:
            raise NotFoundError(f"job {key}: no backend of this daemon keeps its logs")
        source = backend.logs(key, job.backend_handle)
        stream = logs.stream_name(request.stream)
        if not request.follow:
            for read in logs.read_all(source, stream, request.offset, _LOG_CHUNK):
                if not context.is_active():
                    return
                yield pb.LogChunk(offset=read.start, data=read.data, truncated=read.truncated)
            return

        def is_final() -> bool:
            return self._store.job_state(key) in FINAL_STATES or self._hub.closed

        for read in logs.follow(source, stream, request.offset, is_final):
            if not context.is_active():
                return
            yield pb.LogChunk(offset=read.start, data=read.data, truncated=read.truncated)

    # -- cancellation --------------------------------------------------------------------------

    @_translate_errors
    def CancelWorkUnit(
        self, request: pb.CancelWorkUnitRequest, context: grpc.ServicerContext
    ) -> pb.CancelWorkUnitResponse:
        _positive(request.experiment_id, "experiment_id")
        _positive(request.work_unit_id, "work_unit_id")
        limits.check_grace(request.grace_period_seconds, "grace_period_seconds")
        self._store.get_work_unit(request.experiment_id, request.work_unit_id)
        self._scheduler.cancel(
            request.experiment_id,
            request.work_unit_id,
            _grace(request.grace_period_seconds),
            request.reason,
        )
        return pb.CancelWorkUnitResponse(
            work_unit=self._store.get_work_unit(request.experiment_id, request.work_unit_id)
        )

    @_translate_errors
    def CancelExperiment(
        self, request: pb.CancelExperimentRequest, context: grpc.ServicerContext
    ) -> pb.CancelExperimentResponse:
        _positive(request.experiment_id, "experiment_id")
        limits.check_grace(request.grace_period_seconds, "grace_period_seconds")
        self._store.get_experiment(request.experiment_id)
        count = 0
        for work_unit_id in self._store.work_unit_ids(request.experiment_id, active_only=True):
            count += self._scheduler.cancel(
                request.experiment_id,
                work_unit_id,
                _grace(request.grace_period_seconds),
                request.reason,
            )
        return pb.CancelExperimentResponse(cancelled_work_units=count)

    @_translate_errors
    def DeleteExperiment(
        self, request: pb.DeleteExperimentRequest, context: grpc.ServicerContext
    ) -> pb.DeleteExperimentResponse:
        _positive(request.experiment_id, "experiment_id")
        deleted = self._store.delete_experiment(request.experiment_id)
        return pb.DeleteExperimentResponse(deleted_work_units=deleted)

    # -- server ------------------------------------------------------------------------------

    @_translate_errors
    def GetServerInfo(
        self, request: pb.GetServerInfoRequest, context: grpc.ServicerContext
    ) -> pb.ServerInfo:
        info = pb.ServerInfo(
            version=xmanager.__version__,
            api_version=API_VERSION,
            capabilities=self._capabilities,
            store=self._store.dialect,
            pid=os.getpid(),
            start_time=self._start_time,
        )
        for backend in sorted(self._scheduler.backends, key=lambda b: b.name):
            availability = backend.availability()
            info.backends.add(
                name=backend.name, available=availability.ok, reason=availability.reason
            )
        return info


def _add_result(request: pb.AddWorkUnitRequest, result: SubmitResult) -> pb.AddWorkUnitResult:
    if isinstance(result, LauncherError):
        return pb.AddWorkUnitResult(
            request_id=request.request_id,
            error_code=result.code.value[0],
            error_message=str(result),
        )
    return pb.AddWorkUnitResult(
        request_id=request.request_id, work_unit=conversions.status_only(result[0])
    )


def _positive(value: int, field: str) -> None:
    limits.check_id(value, field)


def _page_size(size: int) -> None:
    if not 0 <= size <= 1000:
        raise InvalidArgumentError("page_size", f"must be between 0 and 1000, got {size}")


def _grace(seconds: int) -> datetime.timedelta | None:
    return datetime.timedelta(seconds=seconds) if seconds else None
