"""A connection to the launcher daemon, started on demand.

`connect()` finds the daemon of the state directory (its Unix socket), starts one in the
background when none runs, and checks that it speaks this client's version. `Launcher.call`
retries UNAVAILABLE with backoff — safe because the mutating RPCs are idempotent by request id —
and restarts the daemon if it went away, so a launch script survives a daemon restart.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import grpc

import xmanager
from xmanager.client import daemon_process
from xmanager.launcher.contract import MAX_MESSAGE_BYTES, READ_PROCESS_CAPABILITY
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.launcher.v1 import launcher_pb2_grpc as pb_grpc
from xmanager.state_dir import StateDir

ADDRESS_ENV = "XM_LAUNCHER_ADDRESS"
TOKEN_ENV = "XM_LAUNCHER_TOKEN"
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Reconnect quickly after a daemon restart (the default backoff grows to two minutes).
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),
    ("grpc.optimization_target", "latency"),
]

# Served by the daemon's read process too (launcher_server/read_process.py).
READ_METHODS = ("GetExperiment", "ListExperiments", "GetWorkUnit", "ListWorkUnits")

Metadata = tuple[tuple[str, str | bytes], ...]
Request = TypeVar("Request")
Response = TypeVar("Response")


class LauncherUnavailableError(RuntimeError):
    """No daemon could be reached or started."""


class VersionMismatchError(RuntimeError):
    """The daemon runs another version of xmanager than this client."""


class _BearerToken(grpc.AuthMetadataPlugin):
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(
        self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback
    ) -> None:
        callback((("authorization", f"Bearer {self._token}"),), None)


class _ReadsFirst(grpc.UnaryUnaryMultiCallable):  # type: ignore[type-arg]
    """A read sent to the daemon's read process, and to the daemon itself when that process
    does not answer (not started yet, or ended)."""

    def __init__(
        self,
        reads: grpc.UnaryUnaryMultiCallable[Any, Any],
        daemon: grpc.UnaryUnaryMultiCallable[Any, Any],
    ) -> None:
        self._reads = reads
        self._daemon = daemon

    def __call__(  # noqa: PLR0917  # grpc's signature
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        options = {"metadata": metadata, "credentials": credentials, "compression": compression}
        return self._first("__call__", request, timeout, wait_for_ready, options)

    def with_call(  # noqa: PLR0917  # grpc's signature
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> tuple[Any, grpc.Call]:
        options = {"metadata": metadata, "credentials": credentials, "compression": compression}
        return cast(
            tuple[Any, grpc.Call],
            self._first("with_call", request, timeout, wait_for_ready, options),
        )

    def future(  # noqa: PLR0917  # grpc's signature
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        # Its failure comes too late to ask the daemon instead: it goes to the daemon.
        return self._daemon.future(
            request,
            timeout,
            metadata=metadata,
            credentials=credentials,
            wait_for_ready=wait_for_ready,
            compression=compression,
        )

    def _first(
        self,
        call: str,
        request: Any,
        timeout: float | None,
        wait_for_ready: bool | None,
        options: dict[str, Any],
    ) -> Any:
        try:
            return getattr(self._reads, call)(request, timeout, wait_for_ready=False, **options)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
        daemon = getattr(self._daemon, call)
        return daemon(request, timeout, wait_for_ready=wait_for_ready, **options)


class Launcher:
    """A client of one daemon; thread-safe."""

    def __init__(
        self,
        state: StateDir,
        *,
        address: str | None = None,
        token: str | None = None,
        autostart: bool = True,
        retry_seconds: float = 120.0,
    ) -> None:
        self.state = state
        self._address = address
        self._token = token
        self._autostart = autostart and address is None
        self.retry_seconds = retry_seconds
        self._restart_lock = threading.Lock()
        self._channel = self._open_channel()
        self.stub = pb_grpc.LauncherStub(self._channel)
        self._reads_channel: grpc.Channel | None = None
        self.server_info = self._handshake()
        if self.is_local and READ_PROCESS_CAPABILITY in self.server_info.capabilities:
            # The plain reads go to the daemon's read process, which no sweep keeps busy.
            self._reads_channel = grpc.insecure_channel(
                f"unix:{state.reads_socket}", options=_CHANNEL_OPTIONS
            )
            reads = pb_grpc.LauncherStub(self._reads_channel)
            for name in READ_METHODS:
                routed = _ReadsFirst(getattr(reads, name), getattr(self.stub, name))
                setattr(self.stub, name, routed)

    @property
    def is_local(self) -> bool:
        """Whether the daemon is on this machine (its Unix socket): its files are ours to read."""
        return self._address is None

    @property
    def target(self) -> str:
        return self._address or f"unix:{self.state.socket}"

    def _open_channel(self) -> grpc.Channel:
        if self._address is None:
            return grpc.insecure_channel(self.target, options=_CHANNEL_OPTIONS)
        if self._token is None:
            return grpc.insecure_channel(self.target, options=_CHANNEL_OPTIONS)
        # Bearer tokens over plaintext TCP are only for loopback (the daemon refuses others).
        credentials = grpc.composite_channel_credentials(
            grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP),
            grpc.metadata_call_credentials(_BearerToken(self._token)),
        )
        return grpc.secure_channel(self.target, credentials, options=_CHANNEL_OPTIONS)

    def _handshake(self) -> pb.ServerInfo:
        self.ensure_daemon()
        info: pb.ServerInfo = self.call(
            self.stub.GetServerInfo, pb.GetServerInfoRequest(), timeout=10
        )
        if info.version != xmanager.__version__ or info.api_version != "v1":
            raise VersionMismatchError(
                f"the launcher daemon at {self.target} runs xmanager {info.version} "
                f"(API {info.api_version}) but this client is {xmanager.__version__} (API v1): "
                "stop it with `xmanager daemon stop`; the next launch starts a matching one"
            )
        return info

    def ensure_daemon(self) -> None:
        """Starts the daemon when none runs (if this client may start one)."""
        if self._autostart and daemon_process.read_pid(self.state) is None:
            self._start_daemon()

    def _start_daemon(self) -> None:
        with self._restart_lock:
            if daemon_process.read_pid(self.state) is not None:
                return
            try:
                daemon_process.start_detached(self.state)
            except daemon_process.DaemonStartError:
                # Another client may have won the race to start it; that one is fine too.
                if daemon_process.read_pid(self.state) is None:
                    raise

    def call(
        self,
        method: Callable[..., Response],
        request: Any,
        *,
        timeout: float = 30.0,
    ) -> Response:
        """Calls a unary RPC, retrying UNAVAILABLE (restarting the daemon) with backoff."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        while True:
            try:
                return method(request, timeout=timeout, wait_for_ready=False)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    if error.code() == grpc.StatusCode.UNAVAILABLE:
                        raise LauncherUnavailableError(
                            f"the launcher daemon at {self.target} is unavailable: "
                            f"{error.details()}; see {self.state.log}"
                        ) from error
                    raise
            self.ensure_daemon()
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)

    def close(self) -> None:
        self._channel.close()
        if self._reads_channel is not None:
            self._reads_channel.close()


def connect(state_dir: str | os.PathLike[str] | None = None, *, autostart: bool = True) -> Launcher:
    """Connects to the daemon of `state_dir` (or $XM_LAUNCHER_ADDRESS), starting it if needed."""
    state = StateDir.resolve(os.fspath(state_dir) if state_dir is not None else None)
    address = os.environ.get(ADDRESS_ENV) or None
    token = os.environ.get(TOKEN_ENV) or None
    if address and token is None and state.token.exists():
        token = state.token.read_text().strip()
    return Launcher(state, address=address, token=token, autostart=autostart)
