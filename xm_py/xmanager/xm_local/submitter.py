"""Pipelined work unit submission over one AddWorkUnits stream.

`experiment.add` must not cost the launch script a round-trip per work unit: requests are
queued and streamed to the daemon while earlier ones are still being processed, and each caller
gets a future of its work unit. Whatever was queued while the stream was busy goes in the next
message, so a sweep's thousand units cost a few messages, not a thousand. Results come back in
request order, so work unit ids follow the order of `add` calls. If the stream breaks (the
daemon restarts), the requests without a result are sent again on a new stream: AddWorkUnit is
idempotent by request id, so nothing is added twice.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Iterator

import grpc

from xmanager.client.connection import Launcher, LauncherUnavailableError
from xmanager.launcher import launch_context
from xmanager.launcher.contract import MAX_MESSAGE_BYTES
from xmanager.launcher.v1 import launcher_pb2 as pb

_log = logging.getLogger(__name__)


class WorkUnitRejectedError(RuntimeError):
    """The daemon refused a work unit; `code` is the gRPC status code."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code


def _status_code(number: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code
    return grpc.StatusCode.UNKNOWN


_Pending = tuple[pb.AddWorkUnitRequest, concurrent.futures.Future[pb.WorkUnit]]
# Bounds of one AddWorkUnitsRequest: well under the daemon's message limit.
_BATCH_REQUESTS = 1000
_BATCH_BYTES = 4 * 1024 * 1024
# The largest single request: the message limit less room for the batch's framing.
_MAX_REQUEST_BYTES = MAX_MESSAGE_BYTES - 1024


class Submitter:
    """Streams AddWorkUnit requests; one background thread per experiment.

    Under one lock: `_to_send` holds requests not yet handed to a stream, `_in_flight` the
    batches sent without a response yet (in order). When a stream breaks, the in-flight requests
    move back to the front of `_to_send` and a new stream generation starts, so the old stream's
    request generator can never take (and lose) a request meant for the new one.
    """

    def __init__(self, launcher: Launcher) -> None:
        self._launcher = launcher
        self._changed = threading.Condition()
        self._to_send: collections.deque[_Pending] = collections.deque()
        self._in_flight: collections.deque[list[_Pending]] = collections.deque()
        self._generation = 0
        self._closed = False
        # Launch contexts by digest: sent whole once per stream, then by digest.
        self._contexts: dict[str, pb.LaunchContext] = {}
        self._thread = threading.Thread(target=self._run, name="xm-submitter", daemon=True)
        self._thread.start()

    def register_context(self, context: pb.LaunchContext) -> str:
        """Remembers a launch context; requests then name it by the digest returned."""
        key = launch_context.digest(context)
        with self._changed:
            self._contexts.setdefault(key, context)
        return key

    def submit(self, request: pb.AddWorkUnitRequest) -> concurrent.futures.Future[pb.WorkUnit]:
        future: concurrent.futures.Future[pb.WorkUnit] = concurrent.futures.Future()
        size = request.ByteSize()
        if size > _MAX_REQUEST_BYTES:
            # Refused here, alone: sent, it would fail the whole stream and every unit in it.
            future.set_exception(
                WorkUnitRejectedError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the work unit takes {size:,} bytes, more than the {_MAX_REQUEST_BYTES:,} "
                    "the launcher accepts: pass large data in files, not in args or env_vars",
                )
            )
            return future
        with self._changed:
            if self._closed:
                raise RuntimeError("the experiment's submitter is closed")
            self._to_send.append((request, future))
            self._changed.notify_all()
        return future

    def close(self) -> None:
        """Ends the stream once everything submitted has its result."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join()

    def _requests(self, generation: int) -> Iterator[pb.AddWorkUnitsRequest]:
        sent_contexts: set[str] = set()  # on this stream
        while True:
            with self._changed:
                self._changed.wait_for(
                    lambda: self._generation != generation or self._to_send or self._closed
                )
                if self._generation != generation or not self._to_send:
                    return  # a newer stream took over, or closed with nothing left to send
                batch = [self._to_send.popleft()]
                size = batch[0][0].ByteSize()
                while self._to_send and len(batch) < _BATCH_REQUESTS:
                    size += self._to_send[0][0].ByteSize()
                    if size > _BATCH_BYTES:
                        break
                    batch.append(self._to_send.popleft())
                self._in_flight.append(batch)
                for request, _ in batch:
                    context = request.launch_context_digest
                    if context and context not in sent_contexts:
                        request.launch_context.CopyFrom(self._contexts[context])
                        sent_contexts.add(context)
                    elif request.HasField("launch_context"):
                        request.ClearField("launch_context")  # sent whole on an earlier stream
            yield pb.AddWorkUnitsRequest(requests=[request for request, _ in batch])

    def _run(self) -> None:
        deadline: float | None = None
        delay = 0.05
        while True:
            with self._changed:
                generation = self._generation
            try:
                for response in self._launcher.stub.AddWorkUnits(self._requests(generation)):
                    deadline, delay = None, 0.05
                    self._deliver(response)
                with self._changed:
                    if self._closed and not self._to_send and not self._in_flight:
                        return
            except grpc.RpcError as error:
                now = time.monotonic()
                deadline = deadline or now + self._launcher.retry_seconds
                if error.code() != grpc.StatusCode.UNAVAILABLE or now > deadline:
                    self._fail_all(error)
                    return
                _log.info("launcher unavailable (%s); re-sending work units", error.details())
                self._restart_stream()
                try:
                    self._launcher.ensure_daemon()
                except Exception as start_error:  # the daemon cannot be restarted: give up
                    self._fail_all(start_error)
                    return
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _restart_stream(self) -> None:
        with self._changed:
            self._generation += 1
            unanswered = [item for batch in self._in_flight for item in batch]
            self._to_send.extendleft(reversed(unanswered))
            self._in_flight.clear()
            self._changed.notify_all()

    def _deliver(self, response: pb.AddWorkUnitsResponse) -> None:
        with self._changed:
            batch = self._in_flight.popleft()
        if len(response.results) != len(batch):
            error = RuntimeError(
                f"the launcher answered {len(response.results)} of {len(batch)} work units"
            )
            for _, future in batch:
                future.set_exception(error)
            return
        for (request, future), result in zip(batch, response.results, strict=True):
            if result.request_id != request.request_id:
                future.set_exception(RuntimeError("the launcher answered out of order"))
            elif result.error_code:
                future.set_exception(
                    WorkUnitRejectedError(_status_code(result.error_code), result.error_message)
                )
            else:
                future.set_result(result.work_unit)

    def _fail_all(self, error: BaseException) -> None:
        if isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.UNAVAILABLE:
            error = LauncherUnavailableError(
                f"the launcher daemon is unavailable: {error.details()}"
            )
        with self._changed:
            self._closed = True
            pending = [*(item for batch in self._in_flight for item in batch), *self._to_send]
            self._in_flight.clear()
            self._to_send.clear()
            self._changed.notify_all()
        for _, future in pending:
            if not future.done():
                future.set_exception(error)
