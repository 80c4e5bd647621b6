"""The local container backend: OCI images run as containers by Docker Engine, through its API.

This is the only module that imports docker-py; without it, or without a reachable engine, the
backend reports itself unavailable with what to do, and the daemon still runs binaries.

A job's life:
- `start` checks the job and queues it; a small pool of workers makes sure the image is in the
  engine (an image tarball is loaded once per image ID, concurrent loads of one image wait for
  the first), creates the container on its experiment's network and starts it.
- One follower thread per running container copies its output from the engine's log stream
  into the job's log files; the stream ends when the container stops, so the follower also
  notices the exit (and re-checks an idle container every half minute in case the stream
  stalls). Once the logs are copied it records exit.json in the job directory, reports the
  final status, and only then removes the container.
- `cancel` records cancel.json (so a restarted daemon knows) and stops the container with the
  grace period: SIGTERM, then SIGKILL.
- `reattach` after a daemon restart trusts exit.json, else finds the container by name: still
  running, it is followed again (the log copy resumes from its checkpoint); exited while the
  daemon was away, its logs are copied and its real exit code reported; gone without a record,
  the job is LOST.

The handle of a job is its container's name; the name and the job directory both follow from
the job's key, so nothing else needs to be remembered.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import datetime
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from launcher_server.backends.base import (
    AVAILABLE,
    Availability,
    Backend,
    BackendContext,
    BackendUnavailableError,
)
from launcher_server.backends.local import container_config, image_tarball, records
from launcher_server.backends.local.container_logs import (
    LogCopier,
    multiplexed_messages,
    parse_timestamp,
    tty_messages,
)
from launcher_server.errors import InvalidArgumentError
from launcher_server.jobs import JobKey, JobObservation, LaunchSpec
from xmanager.launcher.v1 import launcher_pb2 as pb

try:
    import docker
    import docker.errors
    import requests.exceptions
    import urllib3.exceptions
except ImportError:  # the daemon runs binaries without docker-py
    docker = None  # type: ignore[assignment]

_log = logging.getLogger(__name__)

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# The container's id and start, written once it runs (its absence: it never started).
CONTAINER_RECORD = "container.json"
_AVAILABLE_TTL = 30.0
_UNAVAILABLE_TTL = 2.0
_PING_TIMEOUT = 3.0
_API_TIMEOUT = 300
_START_WORKERS = 4
# A follower re-checks a container whose log stream stays silent this long.
_IDLE_SECONDS = 30.0
_MAX_BACKOFF = 10.0
_FINAL_STATUSES = ("exited", "dead")


# Errors that mean the engine could not be reached or refused a request.
_ENGINE_ERRORS: tuple[type[Exception], ...] = (
    (
        docker.errors.DockerException,
        requests.exceptions.RequestException,
        urllib3.exceptions.HTTPError,
        OSError,
    )
    if docker is not None
    else (OSError,)
)
_ENGINE_OR_UNAVAILABLE: tuple[type[Exception], ...] = (*_ENGINE_ERRORS, BackendUnavailableError)
# What reading a log stream raises when close() closes it under the reader.
_STREAM_ERRORS: tuple[type[Exception], ...] = (*_ENGINE_ERRORS, ValueError, AttributeError)


def _explain(error: BaseException) -> str:
    """The engine's own explanation of an API error, else the error itself."""
    explanation = getattr(error, "explanation", None)
    return str(explanation or error)


def _docker_time(text: object) -> datetime.datetime | None:
    """A timestamp of the engine's API; None for the zero time it reports when unset."""
    if not isinstance(text, str):
        return None
    time_ns = parse_timestamp(text.encode())
    if time_ns is None or time_ns <= 0:
        return None
    return datetime.datetime.fromtimestamp(time_ns / 1e9, datetime.UTC)


class _ClosedError(Exception):
    """The backend is closing: stop following without reporting anything."""


class _VanishedError(Exception):
    """The container is gone from the engine."""


@dataclasses.dataclass
class _Job:
    key: JobKey
    name: str
    job_dir: Path
    container_id: str = ""
    tty: bool = False
    # The open log stream, closed by close() to stop the follower.
    response: Any = None


class _ChunkReader:
    """A file-like view of an iterator of byte chunks, streamed as a chunked HTTP body."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._current = b""
        self._offset = 0

    def read(self, size: int = -1) -> bytes:
        # The HTTP client reads small blocks of large chunks: slice, never re-copy the rest.
        pieces: list[bytes] = []
        wanted = size if size >= 0 else float("inf")
        while wanted > 0:
            if self._offset >= len(self._current):
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._current, self._offset = chunk, 0
                continue
            end = len(self._current) if size < 0 else self._offset + int(wanted)
            piece = self._current[self._offset : end]
            self._offset += len(piece)
            wanted -= len(piece)
            pieces.append(piece)
        return b"".join(pieces)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(1 << 20):
            yield chunk


class LocalContainerBackend(Backend):
    name = "local_container"
    uses_local_slots = True

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        config = context.config
        self._naming = container_config.Naming(container_config.instance_id(config.state_dir.root))
        self._docker_host = (
            config.docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
        )
        self._log_cap = config.log_cap_bytes
        # What no volume may expose: the engine's socket and the state directory.
        self._protected = container_config.protected_paths(config.state_dir.root, self._docker_host)
        self._lock = threading.Lock()
        self._client_lock = threading.Lock()
        self._docker: docker.DockerClient | None = None
        self._availability = Availability(False)
        self._availability_expires = 0.0
        self._jobs: dict[JobKey, _Job] = {}
        # Jobs per experiment that may still have a container: its network stays while > 0.
        self._active: collections.Counter[int] = collections.Counter()
        self._experiment_locks: collections.defaultdict[int, threading.Lock] = (
            collections.defaultdict(threading.Lock)
        )
        self._image_locks: collections.defaultdict[str, threading.Lock] = collections.defaultdict(
            threading.Lock
        )
        self._tarballs: dict[tuple[str, int, int, int], image_tarball.TarballImage] = {}
        self._image_chain_ids: dict[str, list[str]] = {}
        self._closed = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=_START_WORKERS, thread_name_prefix="container-start"
        )
        # Connect early, off the daemon's start path: cleans up what an earlier daemon left.
        threading.Thread(target=self.availability, name="container-connect", daemon=True).start()

    # -- the engine ------------------------------------------------------------------------------

    def _unreachable(self, error: BaseException | None) -> str:
        detail = f" ({_explain(error)})" if error is not None else ""
        return (
            f"Docker Engine is not reachable at {self._docker_host}: start it (e.g. `dockerd &` "
            "or `./setup.sh setup`), or point the daemon at it with --docker_host or "
            f"DOCKER_HOST{detail}"
        )

    def _client(self) -> docker.DockerClient:
        """The engine's client, connecting on first use; raises BackendUnavailableError."""
        if docker is None:
            raise BackendUnavailableError(
                "docker-py is not installed in the daemon's environment: pip install "
                "'xmanager-bazel[docker]' (or ./setup.sh setup), then restart the daemon"
            )
        if self._closed.is_set():
            raise BackendUnavailableError("the daemon is shutting down")
        with self._client_lock:
            if self._docker is not None:
                return self._docker
            try:
                # A short timeout while negotiating the API version, a long one afterwards
                # (loading a large image tarball takes a while).
                client = docker.DockerClient(
                    base_url=self._docker_host, version="auto", timeout=5, max_pool_size=128
                )
            except _ENGINE_ERRORS as error:
                raise BackendUnavailableError(self._unreachable(error)) from None
            client.api.timeout = _API_TIMEOUT
            self._docker = client
        threading.Thread(target=self._sweep, name="container-sweep", daemon=True).start()
        return client

    def _url(self, client: docker.DockerClient, path: str) -> str:
        return f"{client.api.base_url}/v{client.api.api_version}{path}"

    def accepts(self, job: pb.Job) -> bool:
        return bool(
            job.executor.WhichOneof("kind") == "local"
            and job.artifact.WhichOneof("kind") == "oci_image"
        )

    def check(self, job: pb.Job, field: str) -> None:
        try:
            container_config.check_options(job, self._protected)
        except ValueError as error:
            raise InvalidArgumentError(f"{field}.executor.local", str(error)) from None
        image = job.artifact.oci_image
        if image.WhichOneof("source") == "tarball_path" and not os.path.isfile(image.tarball_path):
            raise InvalidArgumentError(
                f"{field}.artifact.oci_image.tarball_path",
                f"{image.tarball_path} does not exist; build the image first",
            )

    def availability(self) -> Availability:
        # Cached: AddWorkUnit asks for every container job, the engine need not be pinged each time.
        now = time.monotonic()
        with self._lock:
            if now < self._availability_expires:
                return self._availability
        try:
            client = self._client()
            client.api.get(self._url(client, "/_ping"), timeout=_PING_TIMEOUT).raise_for_status()
            result = AVAILABLE
        except BackendUnavailableError as error:
            result = Availability(False, str(error))
        except _ENGINE_ERRORS as error:
            result = Availability(False, self._unreachable(error))
        with self._lock:
            self._availability = result
            self._availability_expires = now + (_AVAILABLE_TTL if result.ok else _UNAVAILABLE_TTL)
        return result

    # -- starting ----------------------------------------------------------------------------

    def _experiment_lock(self, experiment_id: int) -> threading.Lock:
        with self._lock:
            return self._experiment_locks[experiment_id]

    def _image_lock(self, image_id: str) -> threading.Lock:
        with self._lock:
            return self._image_locks[image_id]

    def _job_dir(self, key: JobKey) -> Path:
        return self.context.job_dirs.path(key)

    def start(self, specs: Sequence[LaunchSpec]) -> list[str]:
        return [self._start(spec) for spec in specs]

    def _start(self, spec: LaunchSpec) -> str:
        image = spec.artifact.oci_image
        if image.WhichOneof("source") == "tarball_path" and not os.path.isfile(image.tarball_path):
            raise ValueError(f"image tarball {image.tarball_path} does not exist; build it first")
        availability = self.availability()
        if not availability.ok:
            raise BackendUnavailableError(availability.reason)
        job_dir = self._job_dir(spec.key)
        job_dir.mkdir(parents=True, exist_ok=True)
        job = _Job(
            spec.key,
            self._naming.container(spec.key),
            job_dir,
            tty=spec.executor.local.docker_options.interactive,
        )
        with self._lock:
            self._jobs[spec.key] = job
            self._active[spec.key.experiment_id] += 1
        self._pool.submit(self._launch, spec, job)
        return job.name

    def _launch(self, spec: LaunchSpec, job: _Job) -> None:
        """Runs in a start worker: image, network, container; reports how it went."""
        try:
            observation = self._create_and_start(spec, job)
        except Exception as error:
            if not isinstance(error, ValueError | BackendUnavailableError):
                _log.warning("container job %s failed to start", job.key, exc_info=True)
            self._remove_container(job)
            if isinstance(error, requests.exceptions.ConnectionError):
                reason = self._unreachable(error)
                with self._lock:  # refuse further jobs at once rather than after the TTL
                    self._availability_expires = 0.0
            else:
                reason = _explain(error)
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
            self._remove_container(job)
            self._release(job)

    def _create_and_start(self, spec: LaunchSpec, job: _Job) -> JobObservation | None:
        client = self._client()
        image_id = self._ensure_image(client, spec.artifact.oci_image)
        if self._cancel_requested(job) is not None:
            return self._cancelled_before_start(job)
        kwargs = container_config.create_kwargs(
            spec, image_id, self._naming, log_cap_bytes=self._log_cap
        )
        with self._experiment_lock(job.key.experiment_id):
            self._ensure_network(client, job.key.experiment_id)
            container = self._create(client, kwargs)
        with self._lock:
            job.container_id = container.id or ""
        if self._cancel_requested(job) is not None:
            return self._cancelled_before_start(job)
        try:
            container.start()
        except docker.errors.APIError as error:
            raise ValueError(
                f"Docker Engine could not start the container: {_explain(error)}"
            ) from None
        grace = self._cancel_requested(job)
        if grace is not None:  # a cancel that came while it started found nothing to stop
            self._stop_async(job, grace)
        self._record_started(client, job, image_id)
        return None

    def _create(self, client: docker.DockerClient, kwargs: dict[str, Any]) -> Any:
        name = kwargs["name"]
        try:
            return client.containers.create(**kwargs)
        except docker.errors.ImageNotFound:
            raise ValueError(
                f"image {kwargs['image']} vanished from Docker Engine while starting; retry"
            ) from None
        except docker.errors.APIError as error:
            if error.status_code != 409:
                raise ValueError(
                    f"Docker Engine refused to create the container: {_explain(error)}"
                ) from None
        # The name is taken: a container left by an earlier life of this state directory.
        stale = client.containers.get(name)
        if stale.status not in ("created", *_FINAL_STATUSES):
            raise ValueError(
                f"a container named {name} is already running (left by an earlier daemon with "
                f"this state directory?); remove it with `docker rm -f {name}` and retry"
            )
        stale.remove(force=True)
        return client.containers.create(**kwargs)

    def _record_started(self, client: docker.DockerClient, job: _Job, image_id: str) -> None:
        """Records the running container, reports RUNNING and follows it."""
        attrs = client.api.inspect_container(job.name)
        started = _docker_time(attrs["State"].get("StartedAt")) or datetime.datetime.now(
            datetime.UTC
        )
        records.write_atomic(
            job.job_dir / CONTAINER_RECORD,
            {
                "id": attrs["Id"],
                "name": job.name,
                "image": image_id,
                "start_time": started.isoformat(),
            },
        )
        self.report(
            JobObservation(
                job.key, pb.JOB_STATE_RUNNING, native_state="running", start_time=started
            )
        )
        self._follow_async(job)

    # -- images ----------------------------------------------------------------------------------

    def _ensure_image(self, client: docker.DockerClient, image: pb.OciImage) -> str:
        """The image ID of the job's image, loading its tarball into the engine if needed."""
        if image.WhichOneof("source") == "reference":
            return self._reference_image(client, image)
        info = self._tarball(Path(image.tarball_path))
        if image.digest and image.digest not in info.digests:
            found = info.manifest_digest or info.config_digest
            raise ValueError(
                f"image tarball {info.path} holds image {found}, not {image.digest}: it changed "
                "since it was packaged; package it again"
            )
        with self._image_lock(info.config_digest):  # one load per image, however many jobs
            if not self._has_image(client, info.config_digest):
                self._load(client, info)
        return info.config_digest

    def _tarball(self, path: Path) -> image_tarball.TarballImage:
        """The tarball's image identity, cached by file identity and modification time."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise ValueError(f"image tarball {path} does not exist; build it first") from None
        identity = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            info = self._tarballs.get(identity)
        if info is None:
            info = image_tarball.read(path)
            with self._lock:
                self._tarballs[identity] = info
        return info

    def _has_image(self, client: docker.DockerClient, image_id: str) -> bool:
        try:
            client.images.get(image_id)
        except docker.errors.NotFound:
            return False
        return True

    def _load(self, client: docker.DockerClient, info: image_tarball.TarballImage) -> None:
        skip = image_tarball.skippable_layers(info, self._engine_chain_ids(client))
        started = time.monotonic()
        try:
            client.images.load(_ChunkReader(image_tarball.load_stream(info, skip)))
        except docker.errors.DockerException as error:
            if not skip:
                raise ValueError(
                    f"Docker Engine could not load image tarball {info.path}: {_explain(error)}"
                ) from None
            # The engine dropped a layer it had (an image removed meanwhile): send them all.
            _log.info("loading %s again with all its layers: %s", info.path, error)
            skip = set()
            client.images.load(_ChunkReader(image_tarball.load_stream(info)))
        if not self._has_image(client, info.config_digest):
            raise ValueError(
                f"loading image tarball {info.path} did not produce image {info.config_digest}; "
                "the tarball may be corrupt, build it again"
            )
        _log.info(
            "loaded image %s from %s in %.1fs (%d of %d layers sent)",
            info.config_digest,
            info.path,
            time.monotonic() - started,
            len(set(info.layer_members) - skip),
            len(set(info.layer_members)),
        )

    def _engine_chain_ids(self, client: docker.DockerClient) -> set[str]:
        """The chain IDs of every layer the engine has (images are immutable: cached)."""
        result: set[str] = set()
        try:
            image_ids = client.api.images(quiet=True)
        except _ENGINE_ERRORS:
            return result
        for image_id in image_ids:
            chain = self._image_chain_ids.get(image_id)
            if chain is None:
                try:
                    layers = client.images.get(image_id).attrs["RootFS"].get("Layers") or []
                except (*_ENGINE_ERRORS, KeyError):  # type: ignore[misc]
                    continue
                chain = self._image_chain_ids[image_id] = image_tarball.chain_ids(layers)
            result.update(chain)
        return result

    def _reference_image(self, client: docker.DockerClient, image: pb.OciImage) -> str:
        reference = image.reference
        try:
            attrs = client.images.get(reference).attrs
        except docker.errors.NotFound:
            raise ValueError(
                f"image {reference} is not in Docker Engine; docker load it or build it with "
                "Bazel (images are never pulled from a registry here)"
            ) from None
        except docker.errors.APIError as error:
            raise ValueError(f"image reference {reference!r}: {_explain(error)}") from None
        image_id = str(attrs["Id"])
        repo_digests = [str(d).rpartition("@")[2] for d in attrs.get("RepoDigests") or []]
        if image.digest and image.digest != image_id and image.digest not in repo_digests:
            raise ValueError(
                f"image {reference} in Docker Engine is {image_id}, not {image.digest}: it "
                "changed since it was packaged; package it again"
            )
        return image_id

    # -- networks --------------------------------------------------------------------------------

    def _ensure_network(self, client: docker.DockerClient, experiment_id: int) -> None:
        """Creates the experiment's network unless it exists. Holds the experiment's lock."""
        name = self._naming.network(experiment_id)
        if any(n.name == name for n in client.networks.list(names=[name])):
            return
        try:
            client.networks.create(
                name,
                driver="bridge",
                check_duplicate=True,
                labels=self._naming.network_labels(experiment_id),
            )
        except docker.errors.APIError as error:
            if error.status_code != 409:  # 409: it exists after all
                raise ValueError(
                    f"Docker Engine could not create network {name}: {_explain(error)}"
                ) from None

    def _remove_network_if_unused(self, experiment_id: int) -> None:
        with self._lock:
            if self._active[experiment_id] > 0:
                return
        try:
            client = self._client()
            with self._experiment_lock(experiment_id):
                with self._lock:
                    if self._active[experiment_id] > 0:
                        return  # a job of the experiment started meanwhile
                filters = self._naming.experiment_filter(experiment_id)
                if client.api.containers(all=True, quiet=True, filters=filters):
                    return
                name = self._naming.network(experiment_id)
                for network in client.networks.list(names=[name]):
                    if network.name == name:
                        network.remove()
        except docker.errors.APIError as error:
            # 404: already gone; 403/409: a container still uses it (a race with `docker run`).
            _log.debug("network of experiment %d kept: %s", experiment_id, error)
        except _ENGINE_OR_UNAVAILABLE as error:
            _log.info("could not remove the network of experiment %d: %s", experiment_id, error)

    def _release(self, job: _Job) -> None:
        """The job has no container left: forget it, and its network when it was the last."""
        with self._lock:
            if self._jobs.get(job.key) is job:
                del self._jobs[job.key]
            self._active[job.key.experiment_id] -= 1
            last = self._active[job.key.experiment_id] <= 0
            if last:
                del self._active[job.key.experiment_id]
        if last and not self._closed.is_set():
            self._remove_network_if_unused(job.key.experiment_id)

    def _sweep(self) -> None:
        """Once connected: removes containers whose outcome is recorded, and unused networks.

        They are left behind when the daemon dies between recording a job's exit and removing
        its container.
        """
        try:
            client = self._client()
            # One listing (docker-py's containers.list inspects each: racy with removals).
            containers = client.api.containers(all=True, filters=self._naming.instance_filter())
            used: set[int] = set()
            for container in containers:
                key = self._naming.key_from_labels(container.get("Labels") or {})
                if key is None:
                    continue
                with self._lock:
                    followed = key in self._jobs
                if (
                    not followed
                    and container.get("State") in _FINAL_STATUSES
                    and (self._job_dir(key) / records.EXITED).exists()
                ):
                    with contextlib.suppress(docker.errors.NotFound):
                        client.api.remove_container(container["Id"], force=True)
                    continue
                used.add(key.experiment_id)
            for network in client.networks.list(filters=self._naming.instance_filter()):
                labels = network.attrs.get("Labels") or {}
                try:
                    experiment_id = int(labels[container_config.EXPERIMENT_LABEL])
                except (KeyError, ValueError):
                    continue
                if experiment_id not in used:
                    self._remove_network_if_unused(experiment_id)
        except _ENGINE_OR_UNAVAILABLE as error:
            _log.info("could not clean up old containers: %s", error)

    # -- following -------------------------------------------------------------------------------

    def _follow_async(self, job: _Job) -> None:
        threading.Thread(
            target=self._follow, args=(job,), name=f"follow-{job.name}", daemon=True
        ).start()

    def _follow(self, job: _Job) -> None:
        try:
            observation = self._watch(job, wait_for_engine=True)
        except _ClosedError:
            return
        except Exception:
            _log.exception("following container job %s failed", job.key)
            observation = JobObservation(
                job.key,
                pb.JOB_STATE_LOST,
                native_state="unknown",
                reason="the daemon failed while following the container (see its log)",
            )
        if observation is None:
            return
        self.report(observation)
        if observation.state != pb.JOB_STATE_LOST or observation.native_state != "unknown":
            self._remove_container(job)
        self._release(job)

    def _watch(self, job: _Job, *, wait_for_engine: bool) -> JobObservation | None:
        """Copies the container's output until it ends; returns its final observation.

        Records exit.json before returning. With wait_for_engine false, returns None at the
        first engine error instead of waiting for the engine to come back.
        """
        copier = LogCopier(job.job_dir, self._log_cap)
        try:
            backoff = 0.2
            while True:
                if self._closed.is_set():
                    raise _ClosedError
                began = time.monotonic()
                try:
                    client = self._client()
                    self._copy_logs(client, job, copier, follow=True)
                    state = client.api.inspect_container(job.name)["State"]
                    if state.get("Status") in _FINAL_STATUSES:
                        # The stream ended with the container; read once more for stragglers.
                        self._copy_logs(client, job, copier, follow=False)
                        copier.close()
                        return self._finished(job, state)
                except (_VanishedError, docker.errors.NotFound):
                    copier.close()
                    return self._vanished(job)
                except _ENGINE_OR_UNAVAILABLE as error:
                    if self._closed.is_set():
                        raise _ClosedError from None
                    if not wait_for_engine:
                        return None
                    _log.info("following %s: %s; retrying", job.name, _explain(error))
                if time.monotonic() - began < 1.0:  # the stream ended at once: do not spin
                    self._closed.wait(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                else:
                    backoff = 0.2
        finally:
            copier.close()

    def _copy_logs(
        self, client: docker.DockerClient, job: _Job, copier: LogCopier, *, follow: bool
    ) -> None:
        copier.restart_read()
        params: dict[str, str | int] = {
            "stdout": 1,
            "stderr": 1,
            "timestamps": 1,
            "follow": int(follow),
            "since": copier.since(),
        }
        response = client.api.get(
            self._url(client, f"/containers/{job.name}/logs"),
            params=params,
            stream=True,
            timeout=(10, _IDLE_SECONDS if follow else _API_TIMEOUT),
        )
        with self._lock:
            job.response = response
        try:
            if self._closed.is_set():
                raise _ClosedError
            if response.status_code == 404:
                raise _VanishedError
            response.raise_for_status()
            read = response.raw.read
            copier.copy(tty_messages(read) if job.tty else multiplexed_messages(read))
        except urllib3.exceptions.ReadTimeoutError:
            pass  # silent for a while: the caller checks the container is still running
        except _STREAM_ERRORS:
            if self._closed.is_set():
                raise _ClosedError from None
            raise
        finally:
            with self._lock:
                job.response = None
            response.close()

    def _finished(self, job: _Job, state: dict[str, Any]) -> JobObservation:
        """Records and describes the exit of a stopped container."""
        exit_code = int(state.get("ExitCode", -1))
        end = _docker_time(state.get("FinishedAt")) or datetime.datetime.now(datetime.UTC)
        cancel_time = self._cancel_time(job)
        # Cancelled if the cancel came before the end (a job that ended first keeps its result).
        cancelled = cancel_time is not None and cancel_time <= end
        if state.get("OOMKilled"):
            reason = f"killed: out of memory (exit code {exit_code})"
        elif state.get("Error"):
            reason = f"{state['Error']} (exit code {exit_code})"
        elif cancelled:
            reason = f"stopped on request (exit code {exit_code})"
        elif exit_code < 0:
            reason = f"the container ended {state.get('Status')} without an exit code"
        else:
            reason = ""
        exited = records.Exited(
            exit_code=exit_code if exit_code >= 0 else None,
            signal=None,
            end_time=end.isoformat(),
            cancelled=cancelled,
            reason=reason,
        )
        records.write_atomic(job.job_dir / records.EXITED, dataclasses.asdict(exited))
        return self._final_observation(job, exited)

    def _final_observation(self, job: _Job, exited: records.Exited) -> JobObservation:
        observation = records.final_observation(job.key, exited, start_time=self._start_time(job))
        return dataclasses.replace(observation, native_state="exited")

    def _vanished(self, job: _Job) -> JobObservation:
        return JobObservation(
            job.key,
            pb.JOB_STATE_LOST,
            native_state="vanished",
            reason=(
                f"its container {job.name} vanished from Docker Engine without a recorded exit "
                "(removed outside the launcher?)"
            ),
            start_time=self._start_time(job),
        )

    def _start_time(self, job: _Job) -> datetime.datetime | None:
        try:
            record = json.loads((job.job_dir / CONTAINER_RECORD).read_text())
            return records.parse_time(record["start_time"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def _remove_container(self, job: _Job) -> None:
        try:
            client = self._client()
            client.api.remove_container(job.name, force=True)
        except docker.errors.NotFound:
            pass
        except _ENGINE_OR_UNAVAILABLE as error:
            _log.warning("could not remove container %s: %s", job.name, error)

    # -- cancelling --------------------------------------------------------------------------

    def _cancel_requested(self, job: _Job) -> float | None:
        """The grace period of a recorded cancel request, None if there is none."""
        return records.read_cancel_grace(job.job_dir)

    def _cancel_time(self, job: _Job) -> datetime.datetime | None:
        try:
            data = json.loads((job.job_dir / records.CANCEL).read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            return records.parse_time(data["requested_at"])
        except (KeyError, TypeError, ValueError):
            return datetime.datetime.min.replace(tzinfo=datetime.UTC)  # requested, time unknown

    def _cancelled_before_start(self, job: _Job) -> JobObservation:
        return JobObservation(
            job.key,
            pb.JOB_STATE_CANCELLED,
            native_state="not started",
            reason="cancelled before its container started",
        )

    def cancel(self, key: JobKey, handle: str, grace_period: datetime.timedelta) -> None:
        job_dir = self._job_dir(key)
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
        if started and docker is not None:
            self._stop_async(job or _Job(key, self._naming.container(key), job_dir), grace)

    def _stop_async(self, job: _Job, grace: float) -> None:
        threading.Thread(
            target=self._stop, args=(job, grace), name=f"stop-{job.name}", daemon=True
        ).start()

    def _stop(self, job: _Job, grace: float) -> None:
        """`docker stop`: SIGTERM (or the image's stop signal), SIGKILL after the grace period."""
        for attempt in range(5):
            try:
                self._client().api.stop(job.name, timeout=max(0, math.ceil(grace)))
                return
            except docker.errors.NotFound:
                return
            except _ENGINE_OR_UNAVAILABLE as error:
                _log.warning("stopping %s failed (attempt %d): %s", job.name, attempt + 1, error)
                if self._closed.wait(2.0 * (attempt + 1)):
                    return

    # -- re-attaching --------------------------------------------------------------------------

    def reattach(self, key: JobKey, handle: str) -> JobObservation:
        job = _Job(key, self._naming.container(key), self._job_dir(key))
        exited = records.read_exited(job.job_dir)
        if exited is not None:
            # Recorded, but maybe not removed yet: the sweep removes the container.
            return self._final_observation(job, exited)
        if docker is None:
            return JobObservation(
                key,
                pb.JOB_STATE_LOST,
                native_state="unknown",
                reason=f"cannot re-attach to its container: {self.availability().reason}",
            )
        with self._lock:
            self._jobs[key] = job
            self._active[key.experiment_id] += 1
        try:
            # Cached: after a restart with the engine down, one probe serves every job.
            availability = self.availability()
            if not availability.ok:
                raise BackendUnavailableError(availability.reason)
            client = self._client()
            attrs = client.api.inspect_container(job.name)
        except docker.errors.NotFound:
            self._release(job)
            return self._missing(job)
        except _ENGINE_OR_UNAVAILABLE as error:
            self._follow_async(job)  # waits for the engine to come back
            return JobObservation(
                key,
                pb.JOB_STATE_RUNNING,
                native_state="unknown",
                reason=f"re-attached after a daemon restart; {_explain(error)}",
                start_time=self._start_time(job),
            )
        job.container_id = str(attrs["Id"])
        job.tty = bool(attrs["Config"].get("Tty"))
        status = attrs["State"].get("Status")
        if status == "created":
            return self._resume_start(client, job, str(attrs["Image"]))
        if status in _FINAL_STATUSES:
            observation = self._watch(job, wait_for_engine=False)
            if observation is not None:
                self._remove_container(job)
                self._release(job)
                return observation
        self._follow_async(job)
        return JobObservation(
            key,
            pb.JOB_STATE_RUNNING,
            native_state=str(status),
            reason="re-attached after a daemon restart",
            start_time=self._start_time(job) or _docker_time(attrs["State"].get("StartedAt")),
        )

    def _missing(self, job: _Job) -> JobObservation:
        if (job.job_dir / CONTAINER_RECORD).exists():
            return self._vanished(job)
        if self._cancel_requested(job) is not None:
            return self._cancelled_before_start(job)
        # Only this daemon's start workers create containers, and they died with the daemon
        # that queued the job: it never started, and starting it now cannot start it twice.
        return JobObservation(job.key, pb.JOB_STATE_PENDING, native_state="never started")

    def _resume_start(
        self, client: docker.DockerClient, job: _Job, image_id: str
    ) -> JobObservation:
        """The daemon stopped between creating the container and starting it: start it now."""
        if self._cancel_requested(job) is not None:
            self._remove_container(job)
            self._release(job)
            return self._cancelled_before_start(job)
        try:
            client.api.start(job.name)
            self._record_started(client, job, image_id)
        except _ENGINE_OR_UNAVAILABLE as error:
            self._remove_container(job)
            self._release(job)
            return JobObservation(
                job.key,
                pb.JOB_STATE_FAILED,
                native_state="start failed",
                reason=f"could not start: {_explain(error)}",
            )
        return JobObservation(
            job.key,
            pb.JOB_STATE_RUNNING,
            native_state="running",
            reason="started after a daemon restart",
            start_time=self._start_time(job),
        )

    # -- shutting down -----------------------------------------------------------------------

    def close(self) -> None:
        self._closed.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            responses = [job.response for job in self._jobs.values() if job.response is not None]
        for response in responses:
            with contextlib.suppress(Exception):
                response.close()
        with self._client_lock:
            client, self._docker = self._docker, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
