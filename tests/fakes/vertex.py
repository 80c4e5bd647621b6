"""A Vertex AI emulator: `google.cloud.aiplatform.v1.JobService` and `TensorboardService` over
gRPC, plus Cloud Logging.

    python -m tests.fakes.vertex --port=8470 [--simulate]

Serves the official `google-cloud-aiplatform` client over an insecure channel (CreateCustomJob,
GetCustomJob, ListCustomJobs with filters and pages, CancelCustomJob, DeleteCustomJob), checks
requests as Vertex does (tests.fakes.vertex_checks), and runs each job (tests.fakes.vertex_runner):
QUEUED -> PENDING -> RUNNING -> SUCCEEDED | FAILED, or CANCELLING -> CANCELLED. The same port
serves `google.logging.v2.LoggingServiceV2/ListLogEntries` with the containers' output, and
TensorBoard instances (tests.fakes.vertex_tensorboards): a CustomJob may stream only to one
that exists.

Fault injection (in process): `inject(code, count, methods)` makes the next calls fail,
`fail_job` ends a job with an error, `cancel_from_outside` cancels as a console user would;
`calls` counts the calls per method.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import itertools
import threading
import time
import uuid
from concurrent import futures
from typing import Any

import grpc
from google.cloud import aiplatform_v1 as aip
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2

from tests.fakes import cloud_logging, filters, vertex_checks
from tests.fakes.vertex_runner import DockerRunner, JobRun, Runner, SimulatedRunner
from tests.fakes.vertex_tensorboards import TensorboardService

SERVICE = "google.cloud.aiplatform.v1.JobService"
State = aip.JobState
FINAL = {
    State.JOB_STATE_SUCCEEDED,
    State.JOB_STATE_FAILED,
    State.JOB_STATE_CANCELLED,
    State.JOB_STATE_EXPIRED,
    State.JOB_STATE_PARTIALLY_SUCCEEDED,
}
ACTIVE = {State.JOB_STATE_QUEUED, State.JOB_STATE_PENDING, State.JOB_STATE_RUNNING}
LIST_FIELDS = ("display_name", "state", "create_time", "update_time", "name")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _record(job: Any) -> dict[str, str]:
    """The job as filter terms see it."""
    record = {
        "name": job.name,
        "display_name": job.display_name,
        "state": State(job.state).name,
        "create_time": cloud_logging.rfc3339(job.create_time),
        "update_time": cloud_logging.rfc3339(job.update_time),
    }
    record.update({f"labels.{key}": value for key, value in job.labels.items()})
    return record


class FakeVertex:
    """The emulator: job store, services, runner, faults. `start()` then use `address`."""

    def __init__(
        self,
        *,
        port: int = 0,
        simulate: bool = False,
        queue_seconds: float = 0.05,
        host: str = "127.0.0.1",
    ) -> None:
        self.instance = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._jobs: dict[str, Any] = {}
        self._runs: dict[str, JobRun] = {}
        self._threads: list[threading.Thread] = []
        self._ids = itertools.count(int(time.time()) * 1000)
        self._faults: collections.deque[tuple[grpc.StatusCode, set[str] | None]] = (
            collections.deque()
        )
        self.calls: collections.Counter[str] = collections.Counter()
        self.queue_seconds = queue_seconds
        self.logs = cloud_logging.LogStore()
        self.runner: Runner = SimulatedRunner() if simulate else DockerRunner(self.instance)
        self.tensorboards = TensorboardService(self._before)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        self._server.add_generic_rpc_handlers(
            (
                self._handler(),
                cloud_logging.LoggingService(self.logs, self._before).handler(),
                *self.tensorboards.handlers(),
            )
        )
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        self.address = f"{host}:{self.port}"

    # ---- life cycle ----------------------------------------------------------------------------

    def start(self) -> FakeVertex:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=0.5)
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.cancelled.set()
        for thread in self._threads:
            thread.join(timeout=20)
        self.runner.close()

    def __enter__(self) -> FakeVertex:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- fault injection and inspection --------------------------------------------------------

    def inject(
        self, code: grpc.StatusCode, count: int = 1, methods: set[str] | None = None
    ) -> None:
        """The next `count` calls (of `methods`, or any) fail with `code`."""
        with self._lock:
            self._faults.extend([(code, methods)] * count)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def fail_job(self, name: str, message: str) -> None:
        """Ends a job as FAILED with `message` (e.g. a preempted or broken machine)."""
        run = self._runs[name]
        self._finish(name, message)
        run.cancelled.set()

    def cancel_from_outside(self, name: str) -> None:
        """Cancels as a user in the console would (not through this daemon)."""
        self._cancel(name)

    def jobs(self) -> list[aip.CustomJob]:
        with self._lock:
            return [aip.CustomJob(job) for job in self._jobs.values()]

    def job(self, name: str) -> aip.CustomJob:
        with self._lock:
            return aip.CustomJob(self._jobs[name])

    def _before(self, method: str, context: grpc.ServicerContext) -> None:
        with self._lock:
            self.calls[method] += 1
            fault = next((f for f in self._faults if f[1] is None or method in f[1]), None)
            if fault is None:
                return
            self._faults.remove(fault)
        context.abort(fault[0], f"injected fault: {fault[0].name}")

    # ---- state changes -------------------------------------------------------------------------

    def _set(self, name: str, state: int, **fields: Any) -> bool:
        with self._lock:
            job = self._jobs.get(name)
            if job is None or job.state in FINAL:
                return False
            if state not in FINAL and job.state == State.JOB_STATE_CANCELLING:
                return False
            now = _now()
            job.state = state
            job.update_time = now
            if state == State.JOB_STATE_RUNNING and "start_time" not in job:
                job.start_time = now
            if state in FINAL:
                job.end_time = now
            for key, value in fields.items():
                setattr(job, key, value)
            return True

    def _started(self, name: str) -> None:
        self._set(name, State.JOB_STATE_RUNNING)

    def _finish(self, name: str, message: str) -> None:
        if message:
            self._set(
                name,
                State.JOB_STATE_FAILED,
                error={"code": 13, "message": message},
            )
        else:
            self._set(name, State.JOB_STATE_SUCCEEDED)

    def _cancel(self, name: str) -> None:
        if self._set(name, State.JOB_STATE_CANCELLING):
            with self._lock:
                run = self._runs.get(name)
            if run is not None:
                run.cancelled.set()

    def _drive(self, name: str, run: JobRun) -> None:
        time.sleep(self.queue_seconds)
        self._set(name, State.JOB_STATE_PENDING)
        try:
            if not run.cancelled.is_set():
                self.runner.run(run)
        except Exception as error:  # a runner failure ends the job, as an internal error would
            self._finish(name, f"Internal error running the job: {error}")
        finally:
            time.sleep(0.05)  # CANCELLING is observable for a moment, as on Vertex
            with self._lock:
                state = self._jobs[name].state
            if state == State.JOB_STATE_CANCELLING:
                self._set(name, State.JOB_STATE_CANCELLED, error={"code": 1, "message": "CANCELED"})
            elif state not in FINAL:
                self._finish(name, "The job ended without a result")

    # ---- JobService ----------------------------------------------------------------------------

    def _get(self, name: str, context: grpc.ServicerContext) -> aip.CustomJob:
        if not vertex_checks.JOB_NAME.fullmatch(name):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"name: {name!r} is not projects/P/locations/L/customJobs/ID",
            )
        with self._lock:
            job = self._jobs.get(name)
            if job is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"CustomJob {name} does not exist")
            return aip.CustomJob(job)

    def create_custom_job(
        self, request: aip.CreateCustomJobRequest, context: grpc.ServicerContext
    ) -> aip.CustomJob:
        self._before("CreateCustomJob", context)
        problem = vertex_checks.check_custom_job(request.parent, request.custom_job)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        board = request.custom_job.job_spec.tensorboard
        if board and not self.tensorboards.exists(board):
            context.abort(grpc.StatusCode.NOT_FOUND, f"Tensorboard {board} not found")
        match = vertex_checks.PARENT.fullmatch(request.parent)
        assert match is not None
        project, location = match.groups()
        job_id = str(next(self._ids))
        name = f"{request.parent}/customJobs/{job_id}"
        job: Any = aip.CustomJob(request.custom_job)
        now = _now()
        job.name = name
        job.state = State.JOB_STATE_QUEUED
        job.create_time = now
        job.update_time = now
        run = JobRun(
            job_id=job_id,
            project=project,
            location=location,
            job=aip.CustomJob(job),
            started=lambda: self._started(name),
            finished=lambda message: self._finish(name, message),
            log=lambda task, text, stderr: self.logs.write(
                project, job_id, task, text, stderr=stderr
            ),
        )
        with self._lock:
            self._jobs[name] = job
            self._runs[name] = run
        thread = threading.Thread(target=self._drive, args=(name, run), daemon=True)
        thread.start()
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        return aip.CustomJob(job)

    def get_custom_job(
        self, request: aip.GetCustomJobRequest, context: grpc.ServicerContext
    ) -> aip.CustomJob:
        self._before("GetCustomJob", context)
        return self._get(request.name, context)

    def list_custom_jobs(
        self, request: aip.ListCustomJobsRequest, context: grpc.ServicerContext
    ) -> aip.ListCustomJobsResponse:
        self._before("ListCustomJobs", context)
        try:
            parsed = vertex_checks.list_filter(request.parent, request.filter, LIST_FIELDS)
        except ValueError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        prefix = request.parent + "/customJobs/"
        with self._lock:
            found = [
                aip.CustomJob(job)
                for name, job in self._jobs.items()
                if name.startswith(prefix) and filters.matches(parsed, _record(job))
            ]
        try:
            page, next_token = vertex_checks.page_of(found, request.page_size, request.page_token)
        except ValueError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        return aip.ListCustomJobsResponse(custom_jobs=page, next_page_token=next_token)

    def cancel_custom_job(
        self, request: aip.CancelCustomJobRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        self._before("CancelCustomJob", context)
        job = self._get(request.name, context)
        if job.state in FINAL:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Cannot cancel CustomJob {request.name} in state {State(job.state).name}",
            )
        self._cancel(request.name)
        return empty_pb2.Empty()

    def delete_custom_job(
        self, request: aip.DeleteCustomJobRequest, context: grpc.ServicerContext
    ) -> operations_pb2.Operation:
        self._before("DeleteCustomJob", context)
        job = self._get(request.name, context)
        if job.state not in FINAL:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"CustomJob {request.name} is {State(job.state).name}; cancel it first",
            )
        with self._lock:
            del self._jobs[request.name]
            self._runs.pop(request.name, None)
        operation = operations_pb2.Operation(name=f"{request.name}/operations/delete", done=True)
        operation.response.Pack(empty_pb2.Empty())
        return operation

    def _handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        def unary(method: Any, request_type: Any, response_serializer: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                method,
                request_deserializer=request_type.deserialize,
                response_serializer=response_serializer,
            )

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "CreateCustomJob": unary(
                    self.create_custom_job, aip.CreateCustomJobRequest, aip.CustomJob.serialize
                ),
                "GetCustomJob": unary(
                    self.get_custom_job, aip.GetCustomJobRequest, aip.CustomJob.serialize
                ),
                "ListCustomJobs": unary(
                    self.list_custom_jobs,
                    aip.ListCustomJobsRequest,
                    aip.ListCustomJobsResponse.serialize,
                ),
                "CancelCustomJob": unary(
                    self.cancel_custom_job,
                    aip.CancelCustomJobRequest,
                    empty_pb2.Empty.SerializeToString,
                ),
                "DeleteCustomJob": unary(
                    self.delete_custom_job,
                    aip.DeleteCustomJobRequest,
                    operations_pb2.Operation.SerializeToString,
                ),
            },
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--simulate", action="store_true", help="run no containers (see tests.fakes.vertex_runner)"
    )
    args = parser.parse_args()
    emulator = FakeVertex(port=args.port, host=args.host, simulate=args.simulate).start()
    print(f"Vertex AI emulator listening on {emulator.address}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
