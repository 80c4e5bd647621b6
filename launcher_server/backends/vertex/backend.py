"""The Vertex AI backend: each work unit's Vertex jobs as one CustomJob, observed by one poller.

Handles are `RESOURCE_NAME#workerpoolN` (the CustomJob and the job's pool). A create that meets
an outage is retried in the background (the handle is then empty: the job is found by its
labels, as after a daemon crash between create and record), each retry first looking for the
job by its labels so that a create is never repeated. Cancelling a job cancels its unit's
CustomJob (Vertex AI cannot stop one worker pool).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime
import functools
import importlib.util
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from launcher_server.backends.base import Availability, Backend, BackendContext
from launcher_server.backends.vertex import connection, custom_job, states
from launcher_server.backends.vertex.custom_job import Target
from launcher_server.backends.vertex.logs import CloudLoggingSource, Where
from launcher_server.backends.vertex.poller import Poller
from launcher_server.errors import FailedPreconditionError, InvalidArgumentError
from launcher_server.jobs import JobKey, JobObservation, LaunchSpec, UnitKey
from launcher_server.logs import LogSource
from xmanager.cloud import vertex_machines as machines
from xmanager.cloud import vertex_names
from xmanager.launcher.v1 import launcher_pb2 as pb

_log = logging.getLogger(__name__)

CREATE_TIMEOUT_SECONDS = 10.0
# After a create met an outage, later starts go to the background at once for this long: the
# dispatcher never waits on an endpoint known to be down.
OUTAGE_HOLD_SECONDS = 30.0
AVAILABILITY_TTL_SECONDS = 30.0
RETRY_MAX_SECONDS = 120.0
CONSOLE = "https://console.cloud.google.com/vertex-ai"


def parse_handle(handle: str) -> tuple[str, int | None]:
    name, _, pool = handle.partition("#workerpool")
    return name, int(pool) if pool.isdigit() else None


def target_of_name(name: str, endpoint: str) -> Target:
    parts = name.split("/")
    return Target(parts[1], parts[3], endpoint)


class VertexBackend(Backend):
    name: ClassVar[str] = "vertex"

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        config = context.config
        self._launcher = custom_job.launcher_id(config.store_url)
        self._connections = connection.Connections()
        self._poller = Poller(
            self._connections,
            self._launcher,
            self._deliver,
            min_seconds=config.vertex_poll_min_seconds,
            max_seconds=config.vertex_poll_max_seconds,
        )
        self._lock = threading.Lock()
        self._units: dict[UnitKey, list[JobKey]] = {}  # keys of each watched unit
        self._ran: set[UnitKey] = set()  # units seen RUNNING
        self._pending: dict[UnitKey, threading.Event] = {}  # creates under way (set: cancel)
        self._retries = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="vertex")
        self._availability: tuple[float, Availability] | None = None
        self._outage_until = 0.0

    # -- where jobs go ---------------------------------------------------------------------------

    def _default_project(self) -> str:
        from xmanager.cloud import utils  # noqa: PLC0415

        return self.context.config.vertex_project or utils.get_project() or ""

    def _default_region(self) -> str:
        from xmanager.cloud import utils  # noqa: PLC0415

        return self.context.config.vertex_region or utils.get_default_region()

    def _endpoint(self, region: str, override: str = "") -> str:
        return override or connection.api_endpoint(self.context.config.vertex_endpoint, region)

    def _target(self, job: pb.Job) -> Target:
        vertex = job.executor.vertex
        region = vertex.region or self._default_region()
        return Target(
            vertex.project or self._default_project(),
            region,
            self._endpoint(region, vertex.api_endpoint),
        )

    # -- add time --------------------------------------------------------------------------------

    def accepts(self, job: pb.Job) -> bool:
        return bool(job.executor.WhichOneof("kind") == "vertex")

    def check(self, job: pb.Job, field: str) -> None:
        problem = custom_job.image_problem(job.artifact)
        if problem:
            raise InvalidArgumentError(f"{field}.artifact", problem)
        try:
            custom_job.machine_spec(job)
        except machines.MachineError as error:
            where = (
                "executor.vertex.machine_type"
                if job.executor.vertex.machine_type
                else "requirements"
            )
            raise InvalidArgumentError(f"{field}.{where}", str(error)) from None
        self._check_network(job, field)
        self._check_tensorboard(job, field)
        if not (job.executor.vertex.project or self._default_project()):
            raise FailedPreconditionError(
                f"{field}: no Google Cloud project for Vertex AI: set GOOGLE_CLOUD_PROJECT (or "
                "`gcloud config set project PROJECT`) where the daemon runs, start it with "
                "--vertex_project, or call xmanager.cloud.vertex.set_default_client("
                "vertex.Client(project=...)) in the launch script"
            )

    def _check_network(self, job: pb.Job, field: str) -> None:
        vertex = job.executor.vertex
        network = custom_job.network(job, self.context.config.vertex_network)
        problem = vertex_names.network_problem(network) if network else None
        if problem is None:
            return
        where = (
            f"{field}.executor.vertex.network"
            if vertex.network
            else f"{field}: the daemon's --vertex_network"
        )
        raise InvalidArgumentError(
            where,
            f"{problem}: Vertex AI peers a job with a VPC network named by its project number "
            "(gcloud projects describe PROJECT --format='value(projectNumber)') and network name",
        )

    def _check_tensorboard(self, job: pb.Job, field: str) -> None:
        # What Vertex AI refuses only when the CustomJob is created, refused when it is added.
        vertex = job.executor.vertex
        if not vertex.tensorboard:
            return
        problem = vertex_names.tensorboard_problem(vertex.tensorboard)
        if problem:
            raise InvalidArgumentError(
                f"{field}.executor.vertex.tensorboard",
                f"{problem}: give TensorboardCapability(name=...) the instance's resource name "
                "(xmanager.cloud.vertex.get_default_client().get_or_create_tensorboard(NAME) "
                "returns it)",
            )
        region = vertex.region or self._default_region()
        if vertex_names.tensorboard_region(vertex.tensorboard) != region:
            raise InvalidArgumentError(
                f"{field}.executor.vertex.tensorboard",
                f"the TensorBoard instance {vertex.tensorboard!r} is not in the job's region "
                f"{region!r}; Vertex AI needs both in one region: create the instance there or "
                "run the job in the instance's region (xm_local.Vertex(region=...))",
            )
        if not vertex.service_account:
            raise InvalidArgumentError(
                f"{field}.executor.vertex.service_account",
                "Vertex AI streams to a TensorBoard instance only from a job that runs as a "
                "service account: set xm_local.Vertex(service_account='NAME@PROJECT.iam."
                "gserviceaccount.com') (XManager uses xmanager@PROJECT.iam.gserviceaccount.com)",
            )
        if not vertex.output_directory:
            raise InvalidArgumentError(
                f"{field}.executor.vertex.output_directory",
                "a TensorBoard instance reads the job's logs from its base output directory: set "
                "TensorboardCapability(base_output_directory='gs://BUCKET/DIR'), or "
                "$GOOGLE_CLOUD_BUCKET_NAME where the launch script runs",
            )

    def availability(self) -> Availability:
        cached = self._availability
        if cached is not None and time.monotonic() - cached[0] < AVAILABILITY_TTL_SECONDS:
            return cached[1]
        result = self._probe()
        self._availability = (time.monotonic(), result)
        return result

    def _probe(self) -> Availability:
        # Cheap by design (GetServerInfo asks every time): no imports of the client libraries,
        # no network; the credentials are looked for where google.auth looks first.
        missing = [
            module
            for module in ("google.cloud.aiplatform_v1", "google.cloud.logging_v2")
            if importlib.util.find_spec(module) is None
        ]
        if missing:
            return Availability(
                False,
                f"the Google Cloud client libraries are missing ({', '.join(missing)}); install "
                "xmanager-bazel[vertex] (./setup.sh setup does)",
            )
        if self.context.config.vertex_endpoint.startswith(connection.INSECURE_PREFIX):
            return Availability(True)  # an emulator: no credentials
        if not connection.has_credentials():
            return Availability(
                False,
                "no Google Cloud credentials: run `gcloud auth application-default login` where "
                "the daemon runs, or set GOOGLE_APPLICATION_CREDENTIALS to a key file",
            )
        return Availability(True)

    # -- start -----------------------------------------------------------------------------------

    def start(self, specs: Sequence[LaunchSpec]) -> list[str]:
        chief = specs[0]
        unit = chief.key.unit
        target = self._target(chief.job)
        request = custom_job.build(
            specs,
            launcher=self._launcher,
            title=chief.experiment_title,
            default_network=self.context.config.vertex_network,
        )
        keys = [spec.key for spec in specs]
        # Set by a cancel that arrives while the create is under way.
        cancelled = threading.Event()
        with self._lock:
            self._units[unit] = keys
            self._pending[unit] = cancelled
        try:
            if time.monotonic() < self._outage_until:
                raise _OutageError
            name = self._create(target, request, lookup=False)
        except Exception as error:
            if not isinstance(error, _OutageError) and not connection.is_transient(error):
                with self._lock:
                    self._units.pop(unit, None)
                    self._pending.pop(unit, None)
                raise ValueError(f"Vertex AI refused the job: {_message(error)}") from error
            if not isinstance(error, _OutageError):
                _log.warning("creating the CustomJob of %s failed (%s); retrying", unit, error)
                self._outage_until = time.monotonic() + OUTAGE_HOLD_SECONDS
            self._retries.submit(self._create_later, unit, keys, target, request, cancelled)
            return ["" for _ in specs]
        with self._lock:
            self._pending.pop(unit, None)
        self._poller.watch(unit, target, name)
        if cancelled.is_set():
            self._retries.submit(self._cancel_later, chief.key, target, name)
        return [f"{name}#workerpool{i}" for i in range(len(specs))]

    def _create(self, target: Target, request: Any, *, lookup: bool) -> str:
        """Creates the CustomJob (after looking for it by its labels when `lookup`)."""
        if lookup:
            found = self._find(target, dict(request.labels))
            if found is not None:
                return str(found.name)
        client = self._connections.jobs(target.endpoint)
        created = client.create_custom_job(
            parent=target.parent, custom_job=request, retry=None, timeout=CREATE_TIMEOUT_SECONDS
        )
        return str(created.name)

    def _create_later(
        self,
        unit: UnitKey,
        keys: list[JobKey],
        target: Target,
        request: Any,
        cancelled: threading.Event,
    ) -> None:
        delay = 1.0
        while not cancelled.is_set():
            try:
                name = self._create(target, request, lookup=True)
            except Exception as error:
                if not connection.is_transient(error):
                    for key in keys:
                        self.report(
                            JobObservation(
                                key,
                                pb.JOB_STATE_FAILED,
                                native_state="create failed",
                                reason=f"Vertex AI refused the job: {_message(error)}",
                            )
                        )
                    break
                cancelled.wait(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            self._outage_until = 0.0  # Vertex AI answers again: starts create at once
            self._poller.watch(unit, target, name)
            if cancelled.is_set():
                self._cancel_name(unit, target, name)
            break
        else:
            for key in keys:
                self.report(
                    JobObservation(
                        key,
                        pb.JOB_STATE_CANCELLED,
                        native_state="not created",
                        reason="cancelled before Vertex AI accepted the job",
                    )
                )
        with self._lock:
            self._pending.pop(unit, None)

    def _find(self, target: Target, labels: dict[str, str]) -> Any | None:
        """The newest CustomJob with these labels, or None."""
        client = self._connections.jobs(target.endpoint)
        pager = client.list_custom_jobs(
            request={"parent": target.parent, "filter": custom_job.label_filter(labels)},
            retry=None,
            timeout=30,
        )
        found = list(pager)
        return max(found, key=lambda job: job.create_time) if found else None

    # -- observation -------------------------------------------------------------------------

    def _observation(self, key: JobKey, job: Any, pool: int | None = None) -> JobObservation:
        """What the CustomJob's state means for the job running pool `pool`.

        Vertex AI has one state per CustomJob; when it failed because a replica exited, its
        message names the replica: that pool's job gets the exit code, the others fail with the
        message as their reason (they were stopped).
        """
        state = int(job.state)
        message = job.error.message if "error" in job else ""
        exit_code = states.exit_code(state, message)
        failed_pool = states.failed_pool(message)
        if failed_pool is not None and pool is not None and failed_pool != pool:
            exit_code = None
            message = f"stopped: another job of the work unit failed ({message})"
        return JobObservation(
            key,
            states.contract_state(state),
            native_state=states.native_name(state),
            reason=states.reason(state, message),
            exit_code=exit_code,
            start_time=_time(job, "start_time"),
            end_time=_time(job, "end_time"),
        )

    def _deliver(self, unit: UnitKey, job: Any) -> None:
        with self._lock:
            keys = list(self._units.get(unit, ()))
            if int(job.state) in states.FINAL:
                self._units.pop(unit, None)
            ran = unit in self._ran
            if int(job.state) == 3:
                self._ran.add(unit)
            elif int(job.state) in states.FINAL:
                self._ran.discard(unit)
        final = int(job.state) in states.FINAL
        for key in keys:
            observation = self._observation(key, job, self._pool(job, key))
            if final and not ran and "start_time" in job:
                # It ran between two polls: say so, as every backend reports RUNNING first.
                running = dataclasses.replace(
                    observation,
                    state=pb.JOB_STATE_RUNNING,
                    native_state="JOB_STATE_RUNNING",
                    reason="",
                    exit_code=None,
                    end_time=None,
                )
                self.report(running)
            self.report(observation)

    @staticmethod
    def _pool(job: Any, key: JobKey) -> int | None:
        return custom_job.pool_of(job, key.job_name)

    def reattach(self, key: JobKey, handle: str) -> JobObservation:
        name, _ = parse_handle(handle)
        unit = key.unit
        if name:
            target = target_of_name(name, self._endpoint(name.split("/")[3]))
        else:
            region = self._default_region()
            target = Target(self._default_project(), region, self._endpoint(region))
        with self._lock:
            keys = self._units.setdefault(unit, [])
            if key not in keys:
                keys.append(key)
        try:
            if name:
                job = self._connections.jobs(target.endpoint).get_custom_job(
                    name=name, retry=None, timeout=30
                )
            else:
                job = self._find(target, custom_job.labels(self._launcher, key))
                if job is None:
                    with self._lock:
                        self._units.pop(unit, None)
                    return JobObservation(key, pb.JOB_STATE_PENDING)  # never created: start it
        except Exception as error:
            from google.api_core import exceptions  # noqa: PLC0415

            if isinstance(error, exceptions.NotFound):
                return JobObservation(
                    key,
                    pb.JOB_STATE_LOST,
                    native_state="not found",
                    reason=f"the CustomJob {name} no longer exists on Vertex AI",
                )
            # An outage: the poller finds the job by its labels when Vertex AI answers again.
            self._poller.watch(unit, target, name)
            return JobObservation(
                key,
                pb.JOB_STATE_STARTING,
                native_state="unknown",
                reason=f"Vertex AI unreachable on re-attach: {_message(error)}",
            )
        observation = self._observation(key, job, self._pool(job, key))
        if int(job.state) == 3:
            with self._lock:
                self._ran.add(unit)
        if int(job.state) not in states.FINAL:
            self._poller.watch(unit, target, str(job.name))
        return observation

    # -- cancel ----------------------------------------------------------------------------------

    def cancel(self, key: JobKey, handle: str, grace_period: datetime.timedelta) -> None:
        unit = key.unit
        with self._lock:
            pending = self._pending.get(unit)
        if pending is not None:
            pending.set()  # the background create stops, or cancels what it created
            return
        name, _ = parse_handle(handle)
        watched = self._poller.watching(unit)
        if not name and watched is not None:
            name = watched.name
        if name:
            target = target_of_name(
                name, watched.target.endpoint if watched else self._endpoint(name.split("/")[3])
            )
        else:
            region = self._default_region()
            target = Target(self._default_project(), region, self._endpoint(region))
        self._retries.submit(self._cancel_later, key, target, name)

    def _cancel_later(self, key: JobKey, target: Target, name: str) -> None:
        delay = 1.0
        while True:
            try:
                if not name:
                    job = self._find(target, custom_job.labels(self._launcher, key))
                    if job is None:
                        return
                    name = str(job.name)
                self._cancel_name(key.unit, target, name)
                return
            except Exception as error:
                if not connection.is_transient(error):
                    _log.warning("cancelling %s failed: %s", name or key, error)
                    return
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    def _cancel_name(self, unit: UnitKey, target: Target, name: str) -> None:
        from google.api_core import exceptions  # noqa: PLC0415

        # Already final (or gone): the poller reports what it is.
        with contextlib.suppress(exceptions.FailedPrecondition, exceptions.NotFound):
            self._connections.jobs(target.endpoint).cancel_custom_job(
                name=name, retry=None, timeout=30
            )
        self._poller.watch(unit, target, name)

    # -- logs ------------------------------------------------------------------------------------

    def logs(self, key: JobKey, handle: str) -> LogSource:
        client = self._connections.logging(self.context.config.vertex_logging_endpoint)
        return CloudLoggingSource(
            client,
            functools.partial(self._locate, key, handle),
            functools.partial(self._is_final, key.unit),
        )

    def _is_final(self, unit: UnitKey) -> bool:
        """Whether this instance no longer follows the unit (ended, or never followed here)."""
        with self._lock:
            pending = unit in self._pending
        return not pending and self._poller.watching(unit) is None

    def _locate(self, key: JobKey, handle: str) -> Where | None:
        name, pool = parse_handle(handle)
        job = None
        if not name or pool is None:
            region = self._default_region()
            target = Target(self._default_project(), region, self._endpoint(region))
            try:
                job = self._find(target, custom_job.labels(self._launcher, key))
            except Exception:
                return None
            if job is None:
                return None
            name = str(job.name)
            pool = custom_job.pool_of(job, key.job_name)
        parts = name.split("/")
        return Where(parts[1], parts[5], pool or 0)

    def log_location(self, key: JobKey, handle: str) -> str:
        name, _ = parse_handle(handle)
        if name:
            parts = name.split("/")
            return f"{CONSOLE}/locations/{parts[3]}/training/{parts[5]}/cpu?project={parts[1]}"
        project = self._default_project()
        return f"{CONSOLE}/training/custom-jobs?project={project}" if project else CONSOLE

    def close(self) -> None:
        self._poller.close()
        with self._lock:
            for pending in self._pending.values():
                pending.set()
        self._retries.shutdown(wait=False, cancel_futures=True)


class _OutageError(Exception):
    """A create not attempted now: the endpoint failed moments ago."""


def _message(error: BaseException) -> str:
    return str(getattr(error, "message", "") or error)


def _time(job: Any, field: str) -> datetime.datetime | None:
    if field not in job:
        return None
    value = getattr(job, field)
    return datetime.datetime.fromtimestamp(value.timestamp(), datetime.UTC)
