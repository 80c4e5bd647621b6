"""Executors of the local launcher daemon: local processes and containers, Vertex AI, Kubernetes.

Pure dataclasses (they import only `xmanager.xm`); the daemon client turns them into the
launcher contract's executor messages.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from typing import Any, ClassVar

from xmanager import xm

_MAX_PORT = 65535


def _check_requirements(owner: str, requirements: object) -> None:
    if not isinstance(requirements, xm.JobRequirements):
        raise TypeError(
            f"{owner}.requirements must be an xm.JobRequirements, got "
            f"{type(requirements).__name__}: {requirements!r}."
        )


def _check_optional_str(owner: str, field: str, value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{owner}.{field} must be a non-empty str or None, got {value!r}.")


@dataclasses.dataclass
class DockerOptions:
    """Options for running a container on the local container engine.

    Attributes:
      ports: container port -> host port.
      volumes: host path -> container path.
      mount_gcs_path: mount ~/gcs (XManager's convenience) when it exists.
      interactive: keep stdin open and allocate a TTY.
    """

    ports: dict[int, int] = dataclasses.field(default_factory=dict)
    volumes: dict[str, str] = dataclasses.field(default_factory=dict)
    mount_gcs_path: bool = True
    interactive: bool = False

    def __post_init__(self) -> None:
        for container_port, host_port in self.ports.items():
            for port in (container_port, host_port):
                if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= _MAX_PORT:
                    raise ValueError(
                        f"DockerOptions.ports maps container ports to host ports (ints from 1 "
                        f"to {_MAX_PORT}), got {container_port!r}: {host_port!r}."
                    )
        for host_path, container_path in self.volumes.items():
            if not isinstance(host_path, str) or not isinstance(container_path, str):
                raise TypeError(
                    "DockerOptions.volumes maps host paths to container paths (str), got "
                    f"{host_path!r}: {container_path!r}."
                )
        # Copies, so a dict shared between executors cannot change one of them later.
        self.ports = dict(self.ports)
        self.volumes = dict(self.volumes)


@dataclasses.dataclass
class LocalSpec(xm.ExecutorSpec):
    """Package for the daemon's machine: a binary, or an image for its container engine."""


@dataclasses.dataclass
class Local(xm.Executor):
    """Run on the daemon's machine, as a process (binaries) or a container (images).

    Attributes:
      requirements: mainly `local_gpu`, the number of GPUs to pass through.
      docker_options: options for containers.
      experimental_stream_output: echo the job's output on the client's terminal.
      clean_environment: binaries only (not in XManager): run in a private directory with a
        minimal environment, instead of the launch script's working directory and whole
        environment (XManager's behaviour, the default).
    """

    requirements: xm.JobRequirements = dataclasses.field(default_factory=xm.JobRequirements)
    docker_options: DockerOptions | None = None
    experimental_stream_output: bool = True
    clean_environment: bool = False

    Spec: ClassVar[type[xm.ExecutorSpec]] = LocalSpec

    def __post_init__(self) -> None:
        _check_requirements("Local", self.requirements)
        if self.docker_options is not None and not isinstance(self.docker_options, DockerOptions):
            raise TypeError(
                f"Local.docker_options must be DockerOptions or None, got {self.docker_options!r}."
            )


@dataclasses.dataclass
class TensorboardCapability:
    """Stream a Vertex AI job's TensorBoard logs to a TensorBoard instance.

    Attributes:
      name: the TensorBoard instance's resource name
        (projects/P/locations/L/tensorboards/ID).
      base_output_directory: the job's base output directory (gs://bucket/dir; a bare
        "bucket/dir" gets gs:// prepended); TensorBoard reads its logs/ subdirectory. None uses
        the root of $GOOGLE_CLOUD_BUCKET_NAME, as XManager does.
    """

    name: str
    base_output_directory: str | None = None

    def __post_init__(self) -> None:
        _check_optional_str("TensorboardCapability", "name", self.name)
        _check_optional_str(
            "TensorboardCapability", "base_output_directory", self.base_output_directory
        )


@dataclasses.dataclass
class TpuCapability:
    """The TPU software version an executor requests (XManager's; no backend reads it yet)."""

    tpu_runtime_version: str


@dataclasses.dataclass
class VertexSpec(xm.ExecutorSpec):
    """Package an image for Vertex AI, pushed as `push_image_tag` when given."""

    push_image_tag: str | None = None

    def __post_init__(self) -> None:
        _check_optional_str("VertexSpec", "push_image_tag", self.push_image_tag)


@dataclasses.dataclass
class Vertex(xm.Executor):
    """Run as a Vertex AI CustomJob; accelerators and replicas come from `requirements`.

    `requirements` and `tensorboard` are XManager's fields. The others are this launcher's
    additions (keyword-only in practice; None lets the daemon decide): `machine_type` pins the
    machine (it must carry the requested accelerator), `service_account`, `output_directory`
    (base output directory when no TensorBoard gives one), `endpoint` (the Vertex API endpoint),
    `region` and `network` (the VPC network to peer with,
    projects/PROJECT_NUMBER/global/networks/NAME; None uses the daemon's --vertex_network). The
    project and region default to `xmanager.cloud.vertex`'s default client when a script set
    one, else to the daemon's settings.
    """

    requirements: xm.JobRequirements = dataclasses.field(default_factory=xm.JobRequirements)
    tensorboard: TensorboardCapability | None = None
    machine_type: str | None = None
    service_account: str | None = None
    output_directory: str | None = None
    endpoint: str | None = None
    region: str | None = None
    network: str | None = None

    Spec: ClassVar[type[xm.ExecutorSpec]] = VertexSpec

    def __post_init__(self) -> None:
        _check_requirements("Vertex", self.requirements)
        if self.tensorboard is not None and not isinstance(self.tensorboard, TensorboardCapability):
            raise TypeError(
                f"Vertex.tensorboard must be TensorboardCapability or None, got "
                f"{self.tensorboard!r}."
            )
        for field in (
            "machine_type",
            "service_account",
            "output_directory",
            "endpoint",
            "region",
            "network",
        ):
            _check_optional_str("Vertex", field, getattr(self, field))
        if self.network is not None:
            from xmanager.cloud import vertex_names  # noqa: PLC0415  # pure, needed only here

            problem = vertex_names.network_problem(self.network)
            if problem:
                raise ValueError(f"Vertex.network: {problem}.")


# XManager's older names.
Caip = Vertex
CaipSpec = VertexSpec


@dataclasses.dataclass
class KubernetesSpec(xm.ExecutorSpec):
    """Package an image for Kubernetes, pushed as `push_image_tag` when given.

    The tag should look like 'registry.example/name:tag'; jobs then run the pushed image by digest.
    """

    push_image_tag: str | None = None

    def __post_init__(self) -> None:
        _check_optional_str("KubernetesSpec", "push_image_tag", self.push_image_tag)


GOOGLE_KUBERNETES_ENGINE_CLOUD_PROVIDER = "GKE"


@dataclasses.dataclass
class Kubernetes(xm.Executor):
    """Run as a Kubernetes batch/v1 Job; a work unit's jobs form a gang.

    Attributes:
      requirements: cpu, memory, ephemeral_storage, one GPU or TPU type, replicas.
      cloud_provider: 'GKE' selects accelerators with GKE's node labels; None adds none.
      tpu_capability: the TPU runtime version annotation on GKE.
      namespace: the namespace to create the Job in.
      context: the kubeconfig context; None uses the daemon's (flag, current context or
        in-cluster config).
      service_account: the pods' service account; None uses the namespace default.
      node_selector: node labels the pods must match.
      tolerations: core/v1 tolerations, e.g. {'key': 'gpu', 'operator': 'Exists'}.
      priority_class: the pods' PriorityClass name.
      image_pull_secrets: names of Secrets holding registry credentials.
      active_deadline: how long the job may run (a timedelta or seconds) before Kubernetes
        stops it; None means no limit.
      backoff_limit: pod restarts allowed after a failure; 0 (the default) fails the job on
        its first failure, as a gang needs.
    """

    # XManager's fields, in its order (they may be given by position)...
    requirements: xm.JobRequirements = dataclasses.field(default_factory=xm.JobRequirements)
    cloud_provider: str | None = GOOGLE_KUBERNETES_ENGINE_CLOUD_PROVIDER
    tpu_capability: TpuCapability | None = None
    # ...then this launcher's own, by keyword only.
    _: dataclasses.KW_ONLY
    namespace: str = "default"
    context: str | None = None
    service_account: str | None = None
    node_selector: dict[str, str] = dataclasses.field(default_factory=dict)
    tolerations: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    priority_class: str | None = None
    image_pull_secrets: list[str] = dataclasses.field(default_factory=list)
    active_deadline: datetime.timedelta | int | None = None
    backoff_limit: int = 0

    Spec: ClassVar[type[xm.ExecutorSpec]] = KubernetesSpec

    def __post_init__(self) -> None:
        _check_requirements("Kubernetes", self.requirements)
        for field in ("namespace", "context", "service_account", "cloud_provider"):
            _check_optional_str("Kubernetes", field, getattr(self, field))
        _check_optional_str("Kubernetes", "priority_class", self.priority_class)
        if self.tpu_capability is not None and not isinstance(self.tpu_capability, TpuCapability):
            raise TypeError(
                f"Kubernetes.tpu_capability must be TpuCapability or None, got "
                f"{self.tpu_capability!r}."
            )
        for key, value in self.node_selector.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(
                    f"Kubernetes.node_selector maps str to str, got {key!r}: {value!r}."
                )
        for toleration in self.tolerations:
            if not isinstance(toleration, dict):
                raise TypeError(
                    f"Kubernetes.tolerations holds dicts like {{'key': ..., 'operator': ...}}, "
                    f"got {toleration!r}."
                )
        for secret in self.image_pull_secrets:
            if not isinstance(secret, str) or not secret:
                raise TypeError(
                    f"Kubernetes.image_pull_secrets holds Secret names (str), got {secret!r}."
                )
        if self.active_deadline is not None:
            seconds = self.active_deadline_seconds
            if seconds is None or seconds <= 0:
                raise ValueError(
                    "Kubernetes.active_deadline must be a positive timedelta or number of "
                    f"seconds (at least 1 s), or None, got {self.active_deadline!r}."
                )
        if isinstance(self.backoff_limit, bool) or not isinstance(self.backoff_limit, int):
            raise TypeError(f"Kubernetes.backoff_limit must be an int, got {self.backoff_limit!r}.")
        if self.backoff_limit < 0:
            raise ValueError(f"Kubernetes.backoff_limit must be >= 0, got {self.backoff_limit}.")
        self.node_selector = dict(self.node_selector)
        self.tolerations = [dict(toleration) for toleration in self.tolerations]
        self.image_pull_secrets = list(self.image_pull_secrets)

    @property
    def active_deadline_seconds(self) -> int | None:
        """Whole seconds (rounded up), as Kubernetes takes them; None without a deadline."""
        deadline = self.active_deadline
        if deadline is None or isinstance(deadline, bool):
            return None
        if isinstance(deadline, datetime.timedelta):
            return math.ceil(deadline.total_seconds())
        if isinstance(deadline, int | float):
            return math.ceil(deadline)
        return None


__all__ = [
    "GOOGLE_KUBERNETES_ENGINE_CLOUD_PROVIDER",
    "Caip",
    "CaipSpec",
    "DockerOptions",
    "Kubernetes",
    "KubernetesSpec",
    "Local",
    "LocalSpec",
    "TensorboardCapability",
    "TpuCapability",
    "Vertex",
    "VertexSpec",
]
