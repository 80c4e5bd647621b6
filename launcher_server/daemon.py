"""The daemon process: wires store, scheduler, backends and the gRPC server, and runs until told
to stop (SIGTERM or SIGINT). Running jobs survive the daemon: they belong to their supervisors.

    python -m launcher_server [--state_dir=DIR] [--db_url=URL] [--listen=127.0.0.1:PORT]
"""

from __future__ import annotations

import concurrent.futures
import datetime
import fcntl
import gc
import ipaddress
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import IO

import grpc
from absl import app, flags

import xmanager
from launcher_server import auth, limits, parsing, private_dir
from launcher_server.backends.base import BackendContext
from launcher_server.backends.registry import BackendRegistry
from launcher_server.config import DaemonConfig
from launcher_server.event_hub import EventHub
from launcher_server.job_dirs import JobDirs
from launcher_server.jobs import JobKey
from launcher_server.observations import ObservationQueue
from launcher_server.read_process import ReadProcess
from launcher_server.scheduler import Scheduler
from launcher_server.service import LauncherService
from launcher_server.store.store import Store
from xmanager.client import daemon_process
from xmanager.cloud import vertex_names
from xmanager.launcher.contract import MAX_MESSAGE_BYTES
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.state_dir import StateDir

_log = logging.getLogger("launcher_server")

SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
    # Small calls from scripts and dashboards: favour their latency over batching in gRPC core.
    ("grpc.optimization_target", "latency"),
]
READY_LINE = "xmanager launcher ready"
# The longest a stop takes (`xmanager daemon stop` waits twice as long).
STOP_SECONDS = 15.0
_SIGNAL_CHECK_SECONDS = 0.5
# In-flight calls get this long to finish when the daemon stops; then they are cancelled.
_CALLS_GRACE_SECONDS = 2.0


class DaemonAlreadyRunningError(RuntimeError):
    pass


def acquire_lock(state_dir: StateDir) -> IO[str]:
    """Holds the state directory's lock for the life of the process: one daemon per directory."""
    handle = private_dir.open_private(state_dir.lock, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        pid = state_dir.pid.read_text().strip() if state_dir.pid.exists() else "?"
        raise DaemonAlreadyRunningError(
            f"a launcher daemon (pid {pid}) already runs for {state_dir.root}; "
            "stop it with `xmanager daemon stop` or choose another --state_dir"
        ) from None
    return handle


def _daemon_alive(state_dir: StateDir) -> bool:
    try:
        pid = int(state_dir.pid.read_text().strip())
    except (OSError, ValueError):
        return False
    return pid != os.getpid() and daemon_process.alive(pid)


def check_listen_address(listen: str, allow_remote: bool) -> None:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen={listen!r}: expected HOST:PORT, e.g. 127.0.0.1:7878")
    host = host.strip("[]")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not allow_remote:
        raise ValueError(
            f"--listen={listen!r} is not a loopback address; anyone who can reach it and holds "
            "the token can run programs as you. Pass --allow_remote to do it anyway."
        )


class Daemon:
    """One running launcher: start() brings it up, stop() brings it down in order."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self._stopped = threading.Event()
        self._server: grpc.Server | None = None
        self._lock: IO[str] | None = None
        self._reads: ReadProcess | None = None

    def start(self) -> None:
        config = self.config
        state = config.state_dir
        if config.listen:
            check_listen_address(config.listen, config.allow_remote)
        limits.check_grace(config.grace_period.total_seconds(), "--grace_period_seconds")
        exposed = private_dir.secure(state)
        if not _daemon_alive(state):
            # Lock files others could open until now: they may hold them open (and locked)
            # to keep every daemon out. Fresh ones leave them holding nothing.
            for path in sorted(exposed):
                if path.name.endswith(".lock"):
                    _log.warning("replacing %s, which other users could open", path)
                    private_dir.replace_private(path)
        if config.read_process:
            # First: the read process is forked before this one has threads or locks.
            self._reads = ReadProcess.fork(state.reads_socket, SERVER_OPTIONS)
        self._lock = acquire_lock(state)
        private_dir.create_private_file(state.pid)
        state.pid.write_text(f"{os.getpid()}\n")
        if not config.db_url:
            # SQLite gives its WAL and shared-memory files the database file's mode.
            private_dir.create_private_file(state.database)
        self.store = Store.open(config.store_url)
        if self._reads is not None:
            self.store.set_change_listener(self._reads.units_changed)
        self.hub = EventHub(self.store.last_event_sequence())
        self.store.set_publisher(self.hub.publish)
        observations = ObservationQueue()
        self.backends = BackendRegistry.from_context(
            BackendContext(report=observations.put, job_dirs=JobDirs(state.jobs), config=config)
        )

        def log_location(key: JobKey, job: pb.Job) -> str:
            backend = self.backends.find(job)
            return backend.log_location(key, "") if backend is not None else ""

        self.store.set_log_locator(log_location)
        self.scheduler = Scheduler(
            self.store,
            self.backends,
            observations,
            max_running_jobs=config.running_job_limit,
            grace_period=config.grace_period,
        )
        self.scheduler.start()
        self.scheduler.recover()
        token = None
        if config.listen:
            if state.token in exposed:
                state.token.unlink()  # others could read it: a new one
            token = auth.load_or_create_token(state.token)
        service = LauncherService(
            self.store, self.scheduler, self.hub, token=token, read_process=self._reads is not None
        )
        self._server = self._build_server(service)
        # What exists now (imported modules, the store's metadata, recovered state) lives as
        # long as the daemon: out of the cyclic collector's reach, a full collection during a
        # sweep scans only what came later. Before, each one paused every RPC for about 100 ms
        # (bench/README.md, "Reads during a sweep"). Only the young generations are collected
        # first: a full collection here would delay the daemon's start by as much.
        gc.collect(1)
        gc.freeze()
        self._server.start()
        os.chmod(state.socket, 0o600)
        if self._reads is not None:
            self._reads.serve(config.store_url)
        _log.info(
            "%s %s: socket %s, store %s, up to %d running jobs",
            READY_LINE,
            xmanager.__version__,
            state.socket,
            self.store.dialect,
            config.running_job_limit,
        )

    def _build_server(self, service: LauncherService) -> grpc.Server:
        config = self.config
        server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(
                max_workers=config.rpc_threads, thread_name_prefix="rpc"
            ),
            options=SERVER_OPTIONS,
        )
        parsing.add_to_server(service, server)
        socket_path = config.state_dir.socket
        socket_path.unlink(missing_ok=True)  # stale: we hold the lock, nobody else serves it
        old_umask = os.umask(0o177)  # the socket is created 0600: only this user may connect
        try:
            server.add_insecure_port(f"unix:{socket_path}")
        finally:
            os.umask(old_umask)
        if config.listen:
            port = server.add_insecure_port(config.listen)
            host = config.listen.rpartition(":")[0]
            config.state_dir.tcp_address.write_text(f"{host}:{port}\n")
        return server

    def wait(self) -> None:
        # In slices: a signal the kernel hands to another thread only sets a flag, which the
        # main thread reads when it runs again; blocked for good, it would never stop.
        while not self._stopped.wait(_SIGNAL_CHECK_SECONDS):
            pass

    def request_stop(self) -> None:
        self._stopped.set()

    def abandon_start(self) -> None:
        """After a failed start: leaves no pid file or lock claiming a daemon runs."""
        if self._reads is not None:
            self._reads.stop()
        if self._lock is None:
            return  # another daemon holds the directory: its files are not ours to remove
        self.config.state_dir.pid.unlink(missing_ok=True)
        self._lock.close()
        self._lock = None

    def stop(self) -> None:
        """Stops serving; jobs keep running and are re-attached by the next daemon."""
        self.hub.close()
        if self._server is not None:
            self._server.stop(grace=_CALLS_GRACE_SECONDS).wait(_CALLS_GRACE_SECONDS + 3)
        if self._reads is not None:
            self._reads.stop()
            self.config.state_dir.reads_socket.unlink(missing_ok=True)
        self.scheduler.stop()
        self.backends.close()
        self.store.close()
        self.config.state_dir.socket.unlink(missing_ok=True)
        self.config.state_dir.tcp_address.unlink(missing_ok=True)
        self.config.state_dir.pid.unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.close()
        _log.info("launcher stopped")


FLAGS = flags.FLAGS
flags.DEFINE_string("state_dir", None, "State directory (default $XM_STATE_DIR or ~/.xmanager).")
flags.DEFINE_string("db_url", "", "SQLAlchemy URL of the store (default SQLite in the state dir).")
flags.DEFINE_string("listen", "", "Also listen on this TCP HOST:PORT (bearer token required).")
flags.DEFINE_bool("allow_remote", False, "Allow --listen on a non-loopback address.")
flags.DEFINE_integer("max_running_jobs", 0, "Local jobs running at once (0: 8 per core).")
flags.DEFINE_float("grace_period_seconds", 10.0, "Default SIGTERM-to-SIGKILL delay on cancel.")
flags.register_validator(
    "grace_period_seconds",
    lambda value: math.isfinite(value) and 0 <= value <= limits.MAX_GRACE_SECONDS,
    f"must be between 0 and {limits.MAX_GRACE_SECONDS} seconds (one day)",
)
flags.DEFINE_integer("log_cap_mb", 64, "Per-job log size cap in MiB.")
flags.DEFINE_integer(
    "rpc_threads", 64, "Calls served at once; each watch or log follow holds one while open."
)
flags.DEFINE_bool(
    "read_process",
    True,
    "Serve the plain reads (Get/List of experiments and work units) from a second process too, "
    "so that they do not wait for the daemon's threads during a sweep.",
)
flags.DEFINE_string(
    "docker_host", "", "Docker Engine for container jobs (default $DOCKER_HOST or its socket)."
)

flags.DEFINE_string("vertex_project", "", "Vertex AI project (default: the environment).")
flags.DEFINE_string("vertex_region", "", "Vertex AI region (default: the environment).")
flags.DEFINE_string(
    "vertex_endpoint",
    "",
    "Vertex AI API endpoint (default REGION-aiplatform.googleapis.com; http://HOST:PORT: an "
    "insecure emulator).",
)
flags.DEFINE_string(
    "vertex_logging_endpoint",
    "",
    "Cloud Logging endpoint for Vertex AI jobs' logs (default logging.googleapis.com; "
    "http://HOST:PORT: an insecure emulator).",
)
flags.DEFINE_string(
    "vertex_network",
    "",
    "VPC network Vertex AI jobs naming none are peered with: "
    "projects/PROJECT_NUMBER/global/networks/NAME (default: not peered).",
)
flags.register_validator(
    "vertex_network",
    lambda value: not value or vertex_names.network_problem(value) is None,
    "must be projects/PROJECT_NUMBER/global/networks/NAME, as Vertex AI names a network",
)
flags.DEFINE_float("vertex_poll_min_seconds", 2.0, "Vertex AI poller's shortest interval.")
flags.DEFINE_float("vertex_poll_max_seconds", 30.0, "Vertex AI poller's longest quiet interval.")


flags.DEFINE_string(
    "kubeconfig", "", "kubeconfig for Kubernetes jobs (default $KUBECONFIG or ~/.kube/config)."
)
flags.DEFINE_string(
    "kubernetes_context",
    "",
    "kubeconfig context for Kubernetes jobs naming none (default current).",
)


def config_from_flags() -> DaemonConfig:
    return DaemonConfig(
        state_dir=StateDir.resolve(FLAGS.state_dir),
        db_url=FLAGS.db_url,
        listen=FLAGS.listen,
        allow_remote=FLAGS.allow_remote,
        max_running_jobs=FLAGS.max_running_jobs,
        grace_period=datetime.timedelta(seconds=FLAGS.grace_period_seconds),
        log_cap_bytes=FLAGS.log_cap_mb * 1024 * 1024,
        rpc_threads=FLAGS.rpc_threads,
        read_process=FLAGS.read_process,
        docker_host=FLAGS.docker_host,
        kubeconfig=FLAGS.kubeconfig,
        kubernetes_context=FLAGS.kubernetes_context,
        vertex_project=FLAGS.vertex_project,
        vertex_region=FLAGS.vertex_region,
        vertex_endpoint=FLAGS.vertex_endpoint,
        vertex_logging_endpoint=FLAGS.vertex_logging_endpoint,
        vertex_network=FLAGS.vertex_network,
        vertex_poll_min_seconds=FLAGS.vertex_poll_min_seconds,
        vertex_poll_max_seconds=FLAGS.vertex_poll_max_seconds,
    )


def serve(config: DaemonConfig) -> int:
    """Runs a daemon in this process until SIGTERM or SIGINT."""
    daemon = Daemon(config)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: daemon.request_stop())
    try:
        daemon.start()
    except Exception as error:  # a clear one-line reason, the traceback in the log
        _log.debug("start failed", exc_info=True)
        daemon.abandon_start()
        print(f"xmanager daemon: cannot start: {error}", file=sys.stderr)
        return 1
    daemon.wait()
    # Whatever hangs (a call stuck in a handler, a backend that does not answer), the process
    # ends within STOP_SECONDS: a daemon that cannot be stopped is worse than a hasty stop
    # (jobs keep running under their supervisors either way).
    watchdog = threading.Timer(STOP_SECONDS, _exit_now, args=(2,))
    watchdog.daemon = True
    watchdog.start()
    try:
        daemon.stop()
    except Exception:
        _log.exception("stopping failed")
        _exit_now(1)
    # Not sys.exit: the gRPC server's worker threads are joined at exit, and a stuck one would
    # hold the process forever.
    _exit_now(0)
    return 0


def _exit_now(code: int) -> None:
    if code == 2:
        _log.error("stopping took more than %.0f s; exiting now", STOP_SECONDS)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(serve(config_from_flags()))


def run() -> None:
    app.run(main)
