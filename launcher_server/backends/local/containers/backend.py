"""The local container backend: OCI images run as containers by Docker Engine, through its API.

A job's life (the other modules of this package do the parts named):
- `start` checks the job and queues it; a small pool of workers makes sure the image is in the
  engine (images.py), creates the container with the job's options (options.py) on its
  experiment's network (networks.py) and starts it.
- A follower (following.py) copies each running container's output into the job's log files
  and notices its exit; once the logs are copied it records exit.json in the job directory,
  the backend reports the final status, and only then removes the container.
- `cancel` records cancel.json (so a restarted daemon knows) and stops the container with the
  grace period: SIGTERM, then SIGKILL.
- `reattach` after a daemon restart trusts exit.json, else finds the container by name: still
  running, it is followed again (the log copy resumes from its checkpoint); exited while the
  daemon was away, its logs are copied and its real exit code reported; gone without a record,
  the job is LOST (job_records.py). Once connected, a sweep (cleanup.py) removes containers
  and networks an earlier daemon left behind.

The handle of a job is its container's name; the name and the job directory both follow from
the job's key, so nothing else needs to be remembered.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import logging
import math
import os
import threading
from collections.abc import Sequence
from typing import Any

from launcher_server.backends.base import (
    Availability,
    Backend,
    BackendContext,
    BackendUnavailableError,
)
from launcher_server.backends.local import records
from launcher_server.backends.local.containers import cleanup, job_records, options
from launcher_server.backends.local.containers.engine import (
    DEFAULT_DOCKER_HOST,
    ENGINE_OR_UNAVAILABLE,
    FINAL_STATUSES,
    APIError,
    Client,
    ConnectionFailed,
    Engine,
    ImageNotFound,
    NotFound,
    docker_time,
    explain,
    have_docker_py,
)
from launcher_server.backends.local.containers.following import Follower
from launcher_server.backends.local.containers.images import Images
from launcher_server.backends.local.containers.job_records import ContainerJob
from launcher_server.backends.local.containers.networks import Networks
from launcher_server.errors import InvalidArgumentError
from launcher_server.jobs import JobKey, JobObservation, LaunchSpec
from xmanager.launcher.v1 import launcher_pb2 as pb

_log = logging.getLogger(__name__)

_START_WORKERS = 4


class LocalContainerBackend(Backend):
    name = "local_container"
    uses_local_slots = True

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        config = context.config
        self._naming = options.Naming(options.instance_id(config.state_dir.root))
        self._log_cap = config.log_cap_bytes
        self._closed = threading.Event()
        docker_host = config.docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
        self._engine = Engine(docker_host, self._closed, on_connect=self._sweep_async)
        # What no volume may expose: the engine's socket and the state directory.
        self._protected = options.protected_paths(config.state_dir.root, docker_host)
        self._images = Images()
        self._networks = Networks(self._engine, self._naming, self._closed)
        self._follower = Follower(self._engine, self._log_cap, self._closed, self._ended)
        self._lock = threading.Lock()
        # Jobs started or followed by this daemon, until their container is gone.
        self._jobs: dict[JobKey, ContainerJob] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=_START_WORKERS, thread_name_prefix="container-start"
        )
        # Connect early, off the daemon's start path: cleans up what an earlier daemon left.
        threading.Thread(target=self.availability, name="container-connect", daemon=True).start()

    def accepts(self, job: pb.Job) -> bool:
        return bool(
            job.executor.WhichOneof("kind") == "local"
            and job.artifact.WhichOneof("kind") == "oci_image"
        )

    def check(self, job: pb.Job, field: str) -> None:
        try:
            options.check_options(job, self._protected)
        except ValueError as error:
            raise InvalidArgumentError(f"{field}.executor.local", str(error)) from None
        image = job.artifact.oci_image
        if image.WhichOneof("source") == "tarball_path" and not os.path.isfile(image.tarball_path):
            raise InvalidArgumentError(
                f"{field}.artifact.oci_image.tarball_path",
                f"{image.tarball_path} does not exist; build the image first",
            )

    def availability(self) -> Availability:
        return self._engine.availability()

    # -- the jobs this daemon follows ------------------------------------------------------------

    def _job(self, key: JobKey) -> ContainerJob:
        return ContainerJob(key, self._naming.container(key), self.context.job_dirs.path(key))

    def _track(self, job: ContainerJob) -> None:
        """The job may have a container from now on: it keeps its experiment's network."""
        with self._lock:
            self._jobs[job.key] = job
        self._networks.acquire(job.key.experiment_id)

    def _release(self, job: ContainerJob) -> None:
        """The job has no container left: forget it, and its network when it was the last."""
        with self._lock:
            if self._jobs.get(job.key) is job:
                del self._jobs[job.key]
        self._networks.release(job.key.experiment_id)

    def _ended(self, job: ContainerJob, observation: JobObservation) -> None:
        """A followed container ended (or following it failed): report it, then remove it."""
        self.report(observation)
        if observation.state != pb.JOB_STATE_LOST or observation.native_state != "unknown":
            cleanup.remove_container(self._engine, job.name)
        self._release(job)

    def _sweep_async(self) -> None:
        def followed(key: JobKey) -> bool:
            with self._lock:
                return key in self._jobs

        threading.Thread(
            target=cleanup.sweep,
            args=(self._engine, self._naming, self._networks, self.context.job_dirs, followed),
            name="container-sweep",
            daemon=True,
        ).start()

    # -- starting ----------------------------------------------------------------------------

    def start(self, specs: Sequence[LaunchSpec]) -> list[str]:
        return [self._start(spec) for spec in specs]

    def _start(self, spec: LaunchSpec) -> str:
        image = spec.artifact.oci_image
        if image.WhichOneof("source") == "tarball_path" and not os.path.isfile(image.tarball_path):
            raise ValueError(f"image tarball {image.tarball_path} does not exist; build it first")
        availability = self.availability()
        if not availability.ok:
            raise BackendUnavailableError(availability.reason)
        job = self._job(spec.key)
        job.job_dir.mkdir(parents=True, exist_ok=True)
        job.tty = spec.executor.local.docker_options.interactive
        self._track(job)
        self._pool.submit(self._launch, spec, job)
        return job.name

    def _launch(self, spec: LaunchSpec, job: ContainerJob) -> None:
        """Runs in a start worker: image, network, container; reports how it went."""
        try:
            observation = self._create_and_start(spec, job)
        except Exception as error:
            if not isinstance(error, ValueError | BackendUnavailableError):
                _log.warning("container job %s failed to start", job.key, exc_info=True)
            cleanup.remove_container(self._engine, job.name)
            if isinstance(error, ConnectionFailed):
                reason = self._engine.lost_connection(error)
            else:
                reason = explain(error)
            self.report(
                JobObservation(
                    job.key,
                    pb.JOB_STATE_FAILED,
                    native_state="start failed",
                    reason=f"could not start: {reason}",
                )
            )
            self._release(job)
            return
        if observation is not None:  # cancelled before it ran
            self.report(observation)
            cleanup.remove_container(self._engine, job.name)
            self._release(job)

    def _create_and_start(self, spec: LaunchSpec, job: ContainerJob) -> JobObservation | None:
        client = self._engine.client()
        image_id = self._images.ensure(client, spec.artifact.oci_image)
        if job_records.cancel_grace(job) is not None:
            return job_records.cancelled_before_start(job)
        kwargs = options.create_kwargs(spec, image_id, self._naming, log_cap_bytes=self._log_cap)
        with self._networks.experiment_lock(job.key.experiment_id):
            self._networks.ensure(client, job.key.experiment_id)
            container = self._create(client, kwargs)
        with self._lock:
            job.container_id = container.id or ""
        if job_records.cancel_grace(job) is not None:
            return job_records.cancelled_before_start(job)
        try:
            container.start()
        except APIError as error:
            raise ValueError(
                f"Docker Engine could not start the container: {explain(error)}"
            ) from None
        grace = job_records.cancel_grace(job)
        if grace is not None:  # a cancel that came while it started found nothing to stop
            self._stop_async(job, grace)
        self._record_started(client, job, image_id)
        return None

    @staticmethod
    def _create(client: Client, kwargs: dict[str, Any]) -> Any:
        name = kwargs["name"]
        try:
            return client.containers.create(**kwargs)
        except ImageNotFound:
            raise ValueError(
                f"image {kwargs['image']} vanished from Docker Engine while starting; retry"
            ) from None
        except APIError as error:
            if error.status_code != 409:
                raise ValueError(
                    f"Docker Engine refused to create the container: {explain(error)}"
                ) from None
        # The name is taken: a container left by an earlier life of this state directory.
        stale = client.containers.get(name)
        if stale.status not in ("created", *FINAL_STATUSES):
            raise ValueError(
                f"a container named {name} is already running (left by an earlier daemon with "
                f"this state directory?); remove it with `docker rm -f {name}` and retry"
            )
        stale.remove(force=True)
        return client.containers.create(**kwargs)

    def _record_started(self, client: Client, job: ContainerJob, image_id: str) -> None:
        """Records the running container, reports RUNNING and follows it."""
        attrs = client.api.inspect_container(job.name)
        started = docker_time(attrs["State"].get("StartedAt")) or datetime.datetime.now(
            datetime.UTC
        )
        job_records.record_started(job, attrs["Id"], image_id, started)
        self.report(
            JobObservation(
                job.key, pb.JOB_STATE_RUNNING, native_state="running", start_time=started
            )
        )
        self._follower.follow_async(job)

    # -- cancelling --------------------------------------------------------------------------

    def cancel(self, key: JobKey, handle: str, grace_period: datetime.timedelta) -> None:
        job_dir = self.context.job_dirs.path(key)
        if records.read_exited(job_dir) is not None:
            return
        job_dir.mkdir(parents=True, exist_ok=True)
        grace = grace_period.total_seconds()
        records.write_atomic(
            job_dir / records.CANCEL,
            {"grace_seconds": grace, "requested_at": records.now()},
        )
        with self._lock:
            job = self._jobs.get(key)
            started = job is None or bool(job.container_id)
        # Not started yet: the start worker sees cancel.json and does not start it.
        if started and have_docker_py():
            self._stop_async(job or self._job(key), grace)

    def _stop_async(self, job: ContainerJob, grace: float) -> None:
        threading.Thread(
            target=self._stop, args=(job, grace), name=f"stop-{job.name}", daemon=True
        ).start()

    def _stop(self, job: ContainerJob, grace: float) -> None:
        """`docker stop`: SIGTERM (or the image's stop signal), SIGKILL after the grace period."""
        for attempt in range(5):
            try:
                self._engine.client().api.stop(job.name, timeout=max(0, math.ceil(grace)))
                return
            except NotFound:
                return
            except ENGINE_OR_UNAVAILABLE as error:
                _log.warning("stopping %s failed (attempt %d): %s", job.name, attempt + 1, error)
                if self._closed.wait(2.0 * (attempt + 1)):
                    return

    # -- re-attaching --------------------------------------------------------------------------

    def reattach(self, key: JobKey, handle: str) -> JobObservation:
        job = self._job(key)
        exited = records.read_exited(job.job_dir)
        if exited is not None:
            # Recorded, but maybe not removed yet: the sweep removes the container.
            return job_records.final_observation(job, exited)
        if not have_docker_py():
            return JobObservation(
                key,
                pb.JOB_STATE_LOST,
                native_state="unknown",
                reason=f"cannot re-attach to its container: {self.availability().reason}",
            )
        self._track(job)
        try:
            # Cached: after a restart with the engine down, one probe serves every job.
            availability = self.availability()
            if not availability.ok:
                raise BackendUnavailableError(availability.reason)
            client = self._engine.client()
            attrs = client.api.inspect_container(job.name)
        except NotFound:
            self._release(job)
            return job_records.missing(job)
        except ENGINE_OR_UNAVAILABLE as error:
            self._follower.follow_async(job)  # waits for the engine to come back
            return JobObservation(
                key,
                pb.JOB_STATE_RUNNING,
                native_state="unknown",
                reason=f"re-attached after a daemon restart; {explain(error)}",
                start_time=job_records.start_time(job),
            )
        job.container_id = str(attrs["Id"])
        job.tty = bool(attrs["Config"].get("Tty"))
        status = attrs["State"].get("Status")
        if status == "created":
            return self._resume_start(client, job, str(attrs["Image"]))
        if status in FINAL_STATUSES:
            observation = self._follower.watch(job, wait_for_engine=False)
            if observation is not None:
                cleanup.remove_container(self._engine, job.name)
                self._release(job)
                return observation
        self._follower.follow_async(job)
        return JobObservation(
            key,
            pb.JOB_STATE_RUNNING,
            native_state=str(status),
            reason="re-attached after a daemon restart",
            start_time=(
                job_records.start_time(job) or docker_time(attrs["State"].get("StartedAt"))
            ),
        )

    def _resume_start(self, client: Client, job: ContainerJob, image_id: str) -> JobObservation:
        """The daemon stopped between creating the container and starting it: start it now."""
        if job_records.cancel_grace(job) is not None:
            cleanup.remove_container(self._engine, job.name)
            self._release(job)
            return job_records.cancelled_before_start(job)
        try:
            client.api.start(job.name)
            self._record_started(client, job, image_id)
        except ENGINE_OR_UNAVAILABLE as error:
            cleanup.remove_container(self._engine, job.name)
            self._release(job)
            return JobObservation(
                job.key,
                pb.JOB_STATE_FAILED,
                native_state="start failed",
                reason=f"could not start: {explain(error)}",
            )
        return JobObservation(
            job.key,
            pb.JOB_STATE_RUNNING,
            native_state="running",
            reason="started after a daemon restart",
            start_time=job_records.start_time(job),
        )

    # -- shutting down -----------------------------------------------------------------------

    def close(self) -> None:
        self._closed.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._follower.close()  # its followers stop without reporting
        self._engine.close()
