"""Docker Engine through docker-py: the connection, whether the engine is reachable, its errors.

The only module of the backend that imports docker-py; the others take the error types they
catch from here. Without docker-py, or without a reachable engine, the backend reports itself
unavailable saying what to do, and the daemon still runs binaries.
"""

from __future__ import annotations

import contextlib
import datetime
import threading
import time
from collections.abc import Callable
from typing import Any, TypeAlias

from launcher_server.backends.base import AVAILABLE, Availability, BackendUnavailableError
from launcher_server.backends.local.containers.log_stream import parse_timestamp

try:
    import docker
    import docker.errors
    import requests.exceptions
    import urllib3.exceptions
except ImportError:  # the daemon runs binaries without docker-py
    docker = None  # type: ignore[assignment]

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# Long: loading a large image tarball takes a while.
API_TIMEOUT = 300
# Container statuses after which it never runs again.
FINAL_STATUSES = ("exited", "dead")
_AVAILABLE_TTL = 30.0
_UNAVAILABLE_TTL = 2.0
_PING_TIMEOUT = 3.0

# docker-py is untyped: its client is Any to mypy.
Client: TypeAlias = Any


class _NeverRaisedError(Exception):
    """Stands for docker-py's error types when it is not installed: nothing raises them."""


# docker-py's (and its HTTP stack's) error types, usable in `except` with or without it.
NotFound: Any = _NeverRaisedError
ImageNotFound: Any = _NeverRaisedError
APIError: Any = _NeverRaisedError
DockerException: Any = _NeverRaisedError
ConnectionFailed: Any = _NeverRaisedError  # the engine's socket refused or dropped the connection
ReadTimeout: Any = _NeverRaisedError  # a streamed response stayed silent past its read timeout
if docker is not None:
    NotFound = docker.errors.NotFound
    ImageNotFound = docker.errors.ImageNotFound
    APIError = docker.errors.APIError
    DockerException = docker.errors.DockerException
    ConnectionFailed = requests.exceptions.ConnectionError
    ReadTimeout = urllib3.exceptions.ReadTimeoutError

# Errors that mean the engine could not be reached or refused a request.
ENGINE_ERRORS: tuple[type[Exception], ...] = (
    (
        docker.errors.DockerException,
        requests.exceptions.RequestException,
        urllib3.exceptions.HTTPError,
        OSError,
    )
    if docker is not None
    else (OSError,)
)
ENGINE_OR_UNAVAILABLE: tuple[type[Exception], ...] = (*ENGINE_ERRORS, BackendUnavailableError)
# What reading a log stream raises when close() closes it under the reader.
STREAM_ERRORS: tuple[type[Exception], ...] = (*ENGINE_ERRORS, ValueError, AttributeError)


def have_docker_py() -> bool:
    return docker is not None


def explain(error: BaseException) -> str:
    """The engine's own explanation of an API error, else the error itself."""
    explanation = getattr(error, "explanation", None)
    return str(explanation or error)


def docker_time(text: object) -> datetime.datetime | None:
    """A timestamp of the engine's API; None for the zero time it reports when unset."""
    if not isinstance(text, str):
        return None
    time_ns = parse_timestamp(text.encode())
    if time_ns is None or time_ns <= 0:
        return None
    return datetime.datetime.fromtimestamp(time_ns / 1e9, datetime.UTC)


def url(client: Client, path: str) -> str:
    """The full URL of an engine API path (for requests docker-py has no method for)."""
    return f"{client.api.base_url}/v{client.api.api_version}{path}"


class Engine:
    """One daemon's connection to Docker Engine, made on first use, and its cached availability.

    `on_connect` runs (in the connecting thread, so it must return promptly) each time a
    client is made; `closed` is the backend's shutting-down flag.
    """

    def __init__(
        self, docker_host: str, closed: threading.Event, on_connect: Callable[[], None]
    ) -> None:
        self.docker_host = docker_host
        self._closed = closed
        self._on_connect = on_connect
        self._lock = threading.Lock()
        self._client_lock = threading.Lock()
        self._docker: Client | None = None
        self._availability = Availability(False)
        self._availability_expires = 0.0

    def unreachable(self, error: BaseException | None) -> str:
        detail = f" ({explain(error)})" if error is not None else ""
        return (
            f"Docker Engine is not reachable at {self.docker_host}: start it (e.g. `dockerd &` "
            "or `./setup.sh setup`), or point the daemon at it with --docker_host or "
            f"DOCKER_HOST{detail}"
        )

    def client(self) -> Client:
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
                # A short timeout while negotiating the API version, a long one afterwards.
                client = docker.DockerClient(
                    base_url=self.docker_host, version="auto", timeout=5, max_pool_size=128
                )
            except ENGINE_ERRORS as error:
                raise BackendUnavailableError(self.unreachable(error)) from None
            client.api.timeout = API_TIMEOUT
            self._docker = client
        self._on_connect()
        return client

    def availability(self) -> Availability:
        # Cached: AddWorkUnit asks for every container job, the engine need not be pinged each time.
        now = time.monotonic()
        with self._lock:
            if now < self._availability_expires:
                return self._availability
        try:
            client = self.client()
            client.api.get(url(client, "/_ping"), timeout=_PING_TIMEOUT).raise_for_status()
            result = AVAILABLE
        except BackendUnavailableError as error:
            result = Availability(False, str(error))
        except ENGINE_ERRORS as error:
            result = Availability(False, self.unreachable(error))
        with self._lock:
            self._availability = result
            self._availability_expires = now + (_AVAILABLE_TTL if result.ok else _UNAVAILABLE_TTL)
        return result

    def lost_connection(self, error: BaseException) -> str:
        """What to say of a request the engine dropped; the next availability asks it again
        (refusing further jobs at once rather than after the cache's time to live)."""
        with self._lock:
            self._availability_expires = 0.0
        return self.unreachable(error)

    def close(self) -> None:
        with self._client_lock:
            client, self._docker = self._docker, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
