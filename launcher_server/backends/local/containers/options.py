"""What the local container backend asks Docker Engine for: names, labels and create options.

Pure functions of a LaunchSpec, so that the mapping from the launcher contract to Docker's
options (ports, volumes, GPUs, networking) is testable without an engine. The keyword
arguments are those of docker-py's `containers.create`, which turns plain dicts into its
DeviceRequest, EndpointConfig and LogConfig types.

Naming: every container and network carries the daemon instance's label (a hash of its state
directory), so daemons with different state directories never touch each other's containers.
A job's container is `xm-<instance>-<experiment>-<work unit>-<job>`; an experiment's network is
`xm-<instance>-exp-<experiment>`. Each container joins its experiment's network with its job
name as alias, and links its work unit's peers under their job names: links on a user-defined
network are aliases only the linking container sees, resolved when looked up, so `server`
reaches the server of the caller's own work unit even when other work units have one too.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from launcher_server.jobs import JobKey, LaunchSpec
from xmanager.launcher.v1 import launcher_pb2 as pb

INSTANCE_LABEL = "xmanager.instance"
EXPERIMENT_LABEL = "xmanager.experiment"
WORK_UNIT_LABEL = "xmanager.work_unit"
JOB_LABEL = "xmanager.job"
_MAX_PORT = 65535
# The engine API's `filters` argument, as docker-py takes it.
Filters = dict[str, str | list[str] | bool]
# Files the engine's log driver keeps per container; it holds output until the daemon copies it.
_LOG_FILES = 4


def instance_id(state_root: Path) -> str:
    """A short, stable id of a daemon instance: a hash of its state directory."""
    return hashlib.sha256(str(state_root.resolve()).encode()).hexdigest()[:12]


class Naming:
    """Names and labels of one daemon instance's containers and networks."""

    def __init__(self, instance: str) -> None:
        self.instance = instance

    def container(self, key: JobKey) -> str:
        return f"xm-{self.instance}-{key.experiment_id}-{key.work_unit_id}-{key.job_name}"

    def network(self, experiment_id: int) -> str:
        return f"xm-{self.instance}-exp-{experiment_id}"

    def labels(self, key: JobKey) -> dict[str, str]:
        return {
            INSTANCE_LABEL: self.instance,
            EXPERIMENT_LABEL: str(key.experiment_id),
            WORK_UNIT_LABEL: str(key.work_unit_id),
            JOB_LABEL: key.job_name,
        }

    def network_labels(self, experiment_id: int) -> dict[str, str]:
        return {INSTANCE_LABEL: self.instance, EXPERIMENT_LABEL: str(experiment_id)}

    def instance_filter(self) -> Filters:
        """A `filters` argument selecting this instance's containers or networks."""
        return {"label": [f"{INSTANCE_LABEL}={self.instance}"]}

    def experiment_filter(self, experiment_id: int) -> Filters:
        return {
            "label": [
                f"{INSTANCE_LABEL}={self.instance}",
                f"{EXPERIMENT_LABEL}={experiment_id}",
            ]
        }

    @staticmethod
    def key_from_labels(labels: dict[str, str]) -> JobKey | None:
        try:
            return JobKey(
                int(labels[EXPERIMENT_LABEL]), int(labels[WORK_UNIT_LABEL]), labels[JOB_LABEL]
            )
        except (KeyError, ValueError):
            return None


def check_options(job: pb.Job, protected: Sequence[Path] = ()) -> None:
    """Raises ValueError naming the bad option, before anything is created.

    `protected`: host paths no volume may expose (the engine's socket, which is root on the
    host, and the daemon's state directory): neither they, nor what is in them, nor a
    directory that contains them.
    """
    if job.artifact.WhichOneof("kind") != "oci_image":
        raise ValueError("the local container backend runs OCI images (artifact.oci_image) only")
    if job.executor.WhichOneof("kind") != "local":
        raise ValueError("the local container backend runs jobs of the Local executor only")
    local = job.executor.local
    options = local.docker_options
    for container_port, host_port in options.ports.items():
        for port in (container_port, host_port):
            if not 0 < port <= _MAX_PORT:
                raise ValueError(
                    f"docker_options.ports: {container_port}: {host_port} is not a mapping of "
                    f"ports from 1 to {_MAX_PORT}"
                )
    for host_path, container_path in options.volumes.items():
        if not os.path.isabs(host_path):
            raise ValueError(
                f"docker_options.volumes: host path {host_path!r} is not absolute; give an "
                "absolute path (Docker would take a relative one for a named volume)"
            )
        _check_not_protected(host_path, protected)
        if not container_path.startswith("/"):
            raise ValueError(
                f"docker_options.volumes: container path {container_path!r} for {host_path!r} "
                "is not absolute"
            )
    if local.gpus < 0:
        raise ValueError(f"executor.local.gpus is {local.gpus}; give 0 or more")


def _check_not_protected(host_path: str, protected: Sequence[Path]) -> None:
    resolved = Path(os.path.realpath(host_path))
    for given in protected:
        path = Path(os.path.realpath(given))
        if resolved == path or resolved in path.parents or path in resolved.parents:
            raise ValueError(
                f"docker_options.volumes: host path {host_path!r} would give the container "
                f"{path} (the container engine's socket or the launcher's state directory, "
                "which control this machine and the launcher); mount a narrower directory"
            )


def protected_paths(state_root: Path, docker_host: str) -> list[Path]:
    """What no container volume may expose: the state directory and the engine's socket."""
    paths = [state_root, Path("/var/run/docker.sock"), Path("/run/docker.sock")]
    if docker_host.startswith("unix://"):
        paths.append(Path(docker_host.removeprefix("unix://")))
    return paths


def device_requests(gpus: int) -> list[dict[str, Any]]:
    """`--gpus N`: N GPUs through the engine's GPU device driver (NVIDIA Container Toolkit)."""
    if gpus <= 0:
        return []
    return [{"count": gpus, "capabilities": [["gpu"]]}]


def create_kwargs(
    spec: LaunchSpec, image_id: str, naming: Naming, *, log_cap_bytes: int
) -> dict[str, Any]:
    """docker-py `containers.create` arguments that run the job as `docker run IMAGE ARGS`."""
    key = spec.key
    local = spec.executor.local
    options: pb.DockerOptions = local.docker_options
    network = naming.network(key.experiment_id)
    peers = [peer for peer in spec.peers if peer != key.job_name]
    endpoint: dict[str, Any] = {"Aliases": [key.job_name]}
    if peers:
        endpoint["Links"] = [
            f"{naming.container(JobKey(key.experiment_id, key.work_unit_id, peer))}:{peer}"
            for peer in peers
        ]
    log_mib = max(1, -(-log_cap_bytes // (1024 * 1024)))
    kwargs: dict[str, Any] = {
        "image": image_id,
        # Appended to the image's entrypoint; none keeps the image's default command.
        "command": list(spec.args) or None,
        "name": naming.container(key),
        "labels": naming.labels(key),
        "environment": dict(spec.env),
        "network": network,
        "networking_config": {network: endpoint},
        # The `local` driver keeps output byte for byte (json-file would mangle non-UTF-8).
        "log_config": {
            "type": "local",
            "config": {"max-size": f"{log_mib}m", "max-file": str(_LOG_FILES)},
        },
    }
    if options.ports:
        # Loopback unless asked: a job's port is not for the whole network by default.
        kwargs["ports"] = {
            f"{port}/tcp": host if options.all_interfaces else ("127.0.0.1", host)
            for port, host in sorted(options.ports.items())
        }
    if options.volumes:
        kwargs["volumes"] = {
            host: {"bind": path, "mode": "rw"} for host, path in sorted(options.volumes.items())
        }
    if options.interactive:
        kwargs["stdin_open"] = True
        kwargs["tty"] = True
    requests = device_requests(local.gpus)
    if requests:
        kwargs["device_requests"] = requests
    return kwargs
