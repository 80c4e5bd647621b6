"""The daemon's settings, from its flags: one immutable object every part is built from."""

from __future__ import annotations

import dataclasses
import datetime
import os

from xmanager.state_dir import StateDir


@dataclasses.dataclass(frozen=True)
class DaemonConfig:
    state_dir: StateDir
    # SQLAlchemy URL; empty means SQLite in the state directory.
    db_url: str = ""
    # Optional "host:port" TCP listener (bearer token required).
    listen: str = ""
    allow_remote: bool = False
    max_running_jobs: int = 0  # 0: 8 per CPU core
    grace_period: datetime.timedelta = datetime.timedelta(seconds=10)
    log_cap_bytes: int = 64 * 1024 * 1024
    # Each streaming call (a watch, a follow of logs, a sweep's adds) holds a thread.
    rpc_threads: int = 64
    # Serve the plain reads from a second process as well (launcher_server/read_process.py).
    read_process: bool = True
    # Docker Engine's address; empty means $DOCKER_HOST, else unix:///var/run/docker.sock.
    docker_host: str = ""
    # Kubernetes: the kubeconfig (empty: $KUBECONFIG, ~/.kube/config, or in-cluster config)
    # and its context for jobs whose executor names none (empty: the current context).
    kubeconfig: str = ""
    kubernetes_context: str = ""
    # Vertex AI: default project and region of jobs that name none (empty: the environment's,
    # see xmanager.cloud.utils), the API endpoints ("http://HOST:PORT" is an insecure emulator
    # without credentials; empty: REGION-aiplatform.googleapis.com and logging.googleapis.com),
    # the poller's interval bounds in seconds, and the VPC network jobs naming none are peered
    # with (projects/NUMBER/global/networks/NAME; empty: not peered).
    vertex_project: str = ""
    vertex_region: str = ""
    vertex_endpoint: str = ""
    vertex_logging_endpoint: str = ""
    vertex_network: str = ""
    vertex_poll_min_seconds: float = 2.0
    vertex_poll_max_seconds: float = 30.0

    @property
    def store_url(self) -> str:
        return self.db_url or f"sqlite:///{self.state_dir.database}"

    @property
    def running_job_limit(self) -> int:
        return self.max_running_jobs or 8 * (os.cpu_count() or 1)
