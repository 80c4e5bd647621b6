"""The `Launcher` gRPC service: validation, then the store, then the scheduler.

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
from launcher_server.backends.base import JobKey
from launcher_server.errors import (
    InvalidArgumentError,
    LauncherError,
    NotFoundError,
    OutOfRangeError,
    UnavailableError,
)
from launcher_server.event_hub import EventHub, Update, watch_response
from launcher_server.scheduler import Scheduler
from launcher_server.store import conversions
from launcher_server.store.batch import WatchUpdate
from launcher_server.store.store import Store
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.launcher.v1 import launcher_pb2_grpc as pb_grpc
from xmanager.state_dir import StateDir

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
_WATCH_POLL_SECONDS = 1.0
_SNAPSHOT_PAGE = 1000

F = TypeVar("F", bound=Callable[..., Any])


def _translate_errors(method: F) -> F:
    """Maps LauncherError to its status code; logs and hides anything unexpected."""

    @functools.wraps(method)
    def wrapper(self: LauncherService, request: Any, context: grpc.ServicerContext) -> Any:
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
        self: LauncherService, request: Any, context: grpc.ServicerContext
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


class LauncherService(pb_grpc.LauncherServicer):
    def __init__(
        self,
        store: Store,
        scheduler: Scheduler,
        hub: EventHub,
        state_dir: StateDir,
        *,
        token: str | None = None,
    ) -> None:
        # Required from TCP callers when set; Unix-socket callers are trusted (mode 0600).
        self.token = token
        self._store = store
        self._scheduler = scheduler
        self._hub = hub
        self._state_dir = state_dir
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
    def GetExperiment(
        self, request: pb.GetExperimentRequest, context: grpc.ServicerContext
    ) -> pb.Experiment:
        _positive(request.experiment_id, "experiment_id")
        return self._store.get_experiment(request.experiment_id)

    @_translate_errors
    def ListExperiments(
        self, request: pb.ListExperimentsRequest, context: grpc.ServicerContext
    ) -> pb.ListExperimentsResponse:
        validation.check_enums(request)
        _page_size(request.page_size)
        return self._store.list_experiments(request)

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
        validation.validate_add_work_unit(request)
        self._scheduler.check_backends(request.jobs)
        work_unit, created = self._store.add_work_unit(request)
        if created:
            self._scheduler.enqueue(work_unit)
        return work_unit

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
        results = [pb.AddWorkUnitResult(request_id=r.request_id) for r in batch]
        if not batch:
            return results
        valid: list[int] = []
        for i, request in enumerate(batch):
            try:
                validation.validate_add_work_unit(request)
                self._scheduler.check_backends(request.jobs)
                valid.append(i)
            except LauncherError as error:
                _set_error(results[i], error)
        outcomes, _ = self._store.add_work_units([batch[i] for i in valid])
        for i, outcome in zip(valid, outcomes, strict=True):
            if isinstance(outcome, LauncherError):
                _set_error(results[i], outcome)
            else:
                unit, created = outcome
                if created:
                    self._scheduler.enqueue(unit)
                results[i].work_unit.CopyFrom(conversions.status_only(unit))
        return results

    @_translate_errors
    def GetWorkUnit(
        self, request: pb.GetWorkUnitRequest, context: grpc.ServicerContext
    ) -> pb.WorkUnit:
        _positive(request.experiment_id, "experiment_id")
        _positive(request.work_unit_id, "work_unit_id")
        return self._store.get_work_unit(request.experiment_id, request.work_unit_id)

    @_translate_errors
    def ListWorkUnits(
        self, request: pb.ListWorkUnitsRequest, context: grpc.ServicerContext
    ) -> pb.ListWorkUnitsResponse:
        validation.check_enums(request)
        _positive(request.experiment_id, "experiment_id")
        _page_size(request.page_size)
        self._store.get_experiment(request.experiment_id)  # NOT_FOUND for an unknown one
        return self._store.list_work_units(request)

    @_translate_errors
    def WatchWorkUnits(
        self, request: pb.WatchWorkUnitsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchWorkUnitsResponse]:
        validation.check_enums(request)
        if request.experiment_id < 0:
            raise InvalidArgumentError("experiment_id", "must not be negative")
        if request.experiment_id:
            self._store.get_experiment(request.experiment_id)
        elif request.until_all_final:
            raise InvalidArgumentError("until_all_final", "needs an experiment_id")
        if request.after_sequence > self._hub.last_sequence:
            raise OutOfRangeError(
                f"after_sequence {request.after_sequence} is beyond the last event "
                f"({self._hub.last_sequence}); resume from a sequence this daemon sent, or 0"
            )
        wanted = frozenset(request.states)

        def selected(unit: pb.WorkUnit) -> bool:
            return not wanted or unit.status.state in wanted

        sequence = request.after_sequence
        if sequence == 0:
            # Updates after this point come from the hub; the snapshot may repeat some of them,
            # which is harmless (an update is the unit's whole status).
            sequence = self._hub.last_sequence
            for units in self._snapshot(request.experiment_id):
                selected_units = [unit for unit in units if selected(unit)]
                if selected_units:
                    yield pb.WatchWorkUnitsResponse(
                        updates=[pb.WorkUnitUpdate(work_unit=unit) for unit in selected_units]
                    )
        while context.is_active():
            # Asked before reading the updates: the ones that made every unit final are sent
            # before the stream ends.
            finished = request.until_all_final and self._all_final(request.experiment_id)
            updates, up_to = self._updates_after(sequence, request.experiment_id)
            if up_to == sequence:
                if finished:
                    return
                if self._hub.closed:
                    raise UnavailableError("the daemon is stopping; resume")
                self._hub.wait_beyond(sequence, _WATCH_POLL_SECONDS)
                continue
            sequence = up_to
            # Each unit once, with its newest status and the event that led to it.
            newest = {(u.experiment_id, u.work_unit_id): u for u in updates}
            send = [
                update
                for update in sorted(newest.values(), key=lambda u: u.sequence)
                if not wanted or update.state in wanted
            ]
            if send:
                yield watch_response(send)

    def _updates_after(self, sequence: int, experiment_id: int) -> tuple[list[Update], int]:
        """Updates after `sequence` and how far they go: recent ones from memory, older ones
        rebuilt from the store's event log."""
        recent = self._hub.updates_after(sequence, experiment_id)
        if recent is not None:
            return recent
        events = self._store.events_after(sequence, experiment_id)
        if not events:
            return [], sequence
        unit_events = [
            e for e in events if e.subject in (pb.EVENT_SUBJECT_WORK_UNIT, pb.EVENT_SUBJECT_JOB)
        ]
        statuses = self._store.unit_statuses(
            [(e.experiment_id, e.work_unit_id) for e in unit_events]
        )
        updates = [
            Update.of(WatchUpdate(event, statuses[(event.experiment_id, event.work_unit_id)]))
            for event in unit_events
        ]
        return updates, events[-1].sequence

    def _snapshot(self, experiment_id: int) -> Iterator[list[pb.WorkUnit]]:
        """Every unit (of one experiment, or of those with active units) as it is, in pages."""
        experiments = (
            [experiment_id] if experiment_id else self._store.experiment_ids_with_active_work()
        )
        for exp_id in experiments:
            ids = self._store.work_unit_ids(exp_id)
            for start in range(0, len(ids), _SNAPSHOT_PAGE):
                keys = [
                    (exp_id, work_unit_id) for work_unit_id in ids[start : start + _SNAPSHOT_PAGE]
                ]
                statuses = self._store.unit_statuses(keys)
                yield [statuses[key] for key in keys]

    def _all_final(self, experiment_id: int) -> bool:
        experiment = self._store.get_experiment(experiment_id)
        finished = sum(
            count
            for state, count in experiment.work_unit_state_counts.items()
            if state in FINAL_STATES
        )
        return finished == experiment.work_unit_count

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
        job_dir = self._state_dir.job_dir(key.experiment_id, key.work_unit_id, key.job_name)
        if not request.follow:
            offset = request.offset
            while context.is_active():
                start, data, truncated = logs.read_log(job_dir, request.stream, offset, _LOG_CHUNK)
                if not data:
                    return
                yield pb.LogChunk(offset=start, data=data, truncated=truncated)
                offset = start + len(data)
            return

        def is_final() -> bool:
            return self._store.job_state(key) in FINAL_STATES or self._hub.closed

        for start, data in logs.follow_log(job_dir, request.stream, request.offset, is_final):
            if not context.is_active():
                return
            yield pb.LogChunk(offset=start, data=data)

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
            capabilities=CAPABILITIES,
            store=self._store.dialect,
            pid=os.getpid(),
            start_time=self._start_time,
        )
        for name, backend in sorted(self._scheduler.backends.items()):
            available, reason = backend.availability()
            info.backends.add(name=name, available=available, reason=reason)
        return info


def _set_error(result: pb.AddWorkUnitResult, error: LauncherError) -> None:
    result.error_code = error.code.value[0]
    result.error_message = str(error)


def _positive(value: int, field: str) -> None:
    limits.check_id(value, field)


def _page_size(size: int) -> None:
    if not 0 <= size <= 1000:
        raise InvalidArgumentError("page_size", f"must be between 0 and 1000, got {size}")


def _grace(seconds: int) -> datetime.timedelta | None:
    return datetime.timedelta(seconds=seconds) if seconds else None
