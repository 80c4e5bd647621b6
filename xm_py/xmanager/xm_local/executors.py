"""Executors of the local launcher daemon: local processes and containers, Vertex AI, Kubernetes.

Pure dataclasses (they import only `xmanager.xm`); the daemon client turns them into the
launcher contract's executor messages.
"""

from __future__ import annotations

import dataclasses
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
    (base output directory when no TensorBoard gives one), `endpoint` (the Vertex API endpoint)
    and `region`. The project and region default to `xmanager.cloud.vertex`'s default client
    when a script set one, else to the daemon's settings.
    """

    requirements: xm.JobRequirements = dataclasses.field(default_factory=xm.JobRequirements)
    tensorboard: TensorboardCapability | None = None
    machine_type: str | None = None
    service_account: str | None = None
    output_directory: str | None = None
    endpoint: str | None = None
    region: str | None = None

    Spec: ClassVar[type[xm.ExecutorSpec]] = VertexSpec

    def __post_init__(self) -> None:
        _check_requirements("Vertex", self.requirements)
        if self.tensorboard is not None and not isinstance(self.tensorboard, TensorboardCapability):
            raise TypeError(
                f"Vertex.tensorboard must be TensorboardCapability or None, got "
                f"{self.tensorboard!r}."
            )
        for field in ("machine_type", "service_account", "output_directory", "endpoint", "region"):
            _check_optional_str("Vertex", field, getattr(self, field))


# XManager's older names.
Caip = Vertex
CaipSpec = VertexSpec


@dataclasses.dataclass
class KubernetesSpec(xm.ExecutorSpec):
    """Package an image for Kubernetes, pushed as `push_image_tag` when given."""

    push_image_tag: str | None = None

    def __post_init__(self) -> None:
        _check_optional_str("KubernetesSpec", "push_image_tag", self.push_image_tag)


@dataclasses.dataclass
class Kubernetes(xm.Executor):
    """Run as a Kubernetes batch/v1 Job.

    Attributes:
      namespace: the namespace to create the Job in.
      context: the kubeconfig context; None uses the current one (or in-cluster config).
      tolerations: core/v1 tolerations, e.g. {'key': 'gpu', 'operator': 'Exists'}.
      cloud_provider: 'GKE' selects accelerators with GKE's node labels.
      tpu_capability: the TPU software version (XManager's; not read by the backend yet).
    """

    # XManager's fields, in its order (they may be given by position)...
    requirements: xm.JobRequirements = dataclasses.field(default_factory=xm.JobRequirements)
    cloud_provider: str = "GKE"
    tpu_capability: TpuCapability | None = None
    # ...then this launcher's own, by keyword only.
    _: dataclasses.KW_ONLY
    namespace: str = "default"
    context: str | None = None
    service_account: str | None = None
    node_selector: dict[str, str] = dataclasses.field(default_factory=dict)
    tolerations: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    Spec: ClassVar[type[xm.ExecutorSpec]] = KubernetesSpec

    def __post_init__(self) -> None:
        _check_requirements("Kubernetes", self.requirements)
        _check_optional_str("Kubernetes", "namespace", self.namespace)
        _check_optional_str("Kubernetes", "context", self.context)
        _check_optional_str("Kubernetes", "service_account", self.service_account)
        _check_optional_str("Kubernetes", "cloud_provider", self.cloud_provider)
        if self.tpu_capability is not None and not isinstance(self.tpu_capability, TpuCapability):
            raise TypeError(
                f"Kubernetes.tpu_capability must be a TpuCapability or None, got "
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
        self.node_selector = dict(self.node_selector)
        self.tolerations = [dict(toleration) for toleration in self.tolerations]


__all__ = [
    "Caip",
    "CaipSpec",
    "DockerOptions",
    "Kubernetes",
    "KubernetesSpec",
    "Local",
    "LocalSpec",
    "TensorboardCapability",
    "Vertex",
    "VertexSpec",
]
