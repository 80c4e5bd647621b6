"""One CustomJob per work unit: each of its Vertex jobs a worker pool, the first the chief.

Pure construction (plus the proto-plus types, imported lazily): where the job goes (`Target`),
its labels, its display name, each pool's machine, replicas, image, args and env, and the
chief's service account, output directory, TensorBoard and VPC network for the whole job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from launcher_server.jobs import JobKey, LaunchSpec
from xmanager.cloud import vertex_machines as machines
from xmanager.launcher.v1 import launcher_pb2 as pb

MAX_POOLS = 4
MAX_DISPLAY_NAME = 128
LABEL_LAUNCHER = "xm-launcher"
LABEL_EXPERIMENT = "xm-experiment"
LABEL_WORK_UNIT = "xm-work-unit"
_IMAGE_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True, order=True)
class Target:
    """Where a CustomJob lives: project, region, and the API endpoint serving them."""

    project: str
    region: str
    endpoint: str

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"


def launcher_id(store_url: str) -> str:
    """A label value naming this daemon's store: its jobs among others in one project."""
    return "s" + hashlib.sha256(store_url.encode()).hexdigest()[:16]


def labels(launcher: str, key: JobKey) -> dict[str, str]:
    return {
        LABEL_LAUNCHER: launcher,
        LABEL_EXPERIMENT: str(key.experiment_id),
        LABEL_WORK_UNIT: str(key.work_unit_id),
    }


def label_filter(values: Mapping[str, str]) -> str:
    return " AND ".join(f'labels.{key}="{value}"' for key, value in sorted(values.items()))


def display_name(title: str, key: JobKey) -> str:
    """`TITLE_WORKUNIT` as XManager names its CustomJobs, cut to Vertex's 128 characters."""
    suffix = f"_{key.work_unit_id}"
    base = (title or f"experiment {key.experiment_id}").replace("\n", " ")
    return base[: MAX_DISPLAY_NAME - len(suffix)] + suffix


def image_uri(artifact: pb.Artifact) -> str:
    """The image by digest when the digest is known: `registry/repo@sha256:...`."""
    image = artifact.oci_image
    reference = image.reference
    if "@" in reference or not image.digest:
        return reference
    repository = reference
    last = reference.rsplit("/", 1)[-1]
    if ":" in last:  # drop the tag: the digest names the image exactly
        repository = reference[: len(reference) - len(last)] + last.split(":", 1)[0]
    return f"{repository}@{image.digest}"


def image_problem(artifact: pb.Artifact) -> str | None:
    """Why Vertex AI cannot pull this artifact, or None."""
    kind = artifact.WhichOneof("kind")
    if kind != "oci_image":
        return (
            "Vertex AI runs container images; package the job as an image "
            "(xm.python_container, xm.bazel_container or xm.Container)"
        )
    if artifact.oci_image.WhichOneof("source") != "reference":
        return (
            "Vertex AI pulls images from a registry, but this image is a local tarball: push it "
            "with xm_local.Vertex.Spec(push_image_tag='REGISTRY/REPOSITORY:TAG')"
        )
    digest = artifact.oci_image.digest
    if digest and not _IMAGE_DIGEST.fullmatch(digest):
        return f"image digest {digest!r} is not sha256:<64 hex digits>"
    return None


def machine_spec(job: pb.Job) -> machines.MachineSpec:
    """The pool's machine for `job`'s requirements (raises machines.MachineError)."""
    requirements = job.requirements
    accelerator = requirements.accelerator
    return machines.machine_spec(
        cpu=requirements.cpu,
        memory_bytes=requirements.memory_bytes,
        accelerator=accelerator.type,
        count=accelerator.count,
        topology=accelerator.topology,
        machine_type=job.executor.vertex.machine_type,
    )


def replicas(job: pb.Job) -> int:
    return job.requirements.replicas or job.executor.vertex.replica_count or 1


def network(job: pb.Job, default: str) -> str:
    """The VPC network the job is peered with: its own, else the daemon's (may be empty)."""
    return job.executor.vertex.network or default


def build(
    specs: Sequence[LaunchSpec], *, launcher: str, title: str, default_network: str = ""
) -> Any:
    """The CustomJob of one work unit's Vertex jobs (specs[0] is the chief).

    Raises ValueError for what Vertex cannot run as one CustomJob.
    """
    from google.cloud import aiplatform_v1 as aip  # noqa: PLC0415

    if len(specs) > MAX_POOLS:
        raise ValueError(
            f"a work unit runs on Vertex AI as one CustomJob of at most {MAX_POOLS} worker pools; "
            f"it has {len(specs)} Vertex jobs ({', '.join(s.key.job_name for s in specs)})"
        )
    for spec in specs:
        problem = image_problem(spec.artifact)
        if problem:
            raise ValueError(f"job {spec.key.job_name!r}: {problem}")
    chief = specs[0]
    if replicas(chief.job) != 1:
        raise ValueError(
            f"job {chief.key.job_name!r} is the chief (first) worker pool, which Vertex AI runs "
            f"with exactly 1 replica; it asks for {replicas(chief.job)}: add the replicas as "
            "another job of the work unit"
        )
    accelerator_types: Any = aip.AcceleratorType
    pools = []
    for spec in specs:
        machine = machine_spec(spec.job)
        machine_fields: dict[str, Any] = {"machine_type": machine.machine_type}
        if machine.accelerator_type:
            machine_fields["accelerator_type"] = accelerator_types[machine.accelerator_type]
            machine_fields["accelerator_count"] = machine.accelerator_count
        if machine.tpu_topology:
            machine_fields["tpu_topology"] = machine.tpu_topology
        pool: dict[str, Any] = {
            "machine_spec": aip.MachineSpec(**machine_fields),
            "replica_count": replicas(spec.job),
            "container_spec": aip.ContainerSpec(
                image_uri=image_uri(spec.artifact),
                args=list(spec.args),
                env=[aip.EnvVar(name=k, value=v) for k, v in sorted(spec.env.items())],
            ),
        }
        storage = spec.requirements.ephemeral_storage_bytes
        if storage:
            pool["disk_spec"] = aip.DiskSpec(
                boot_disk_type="pd-ssd", boot_disk_size_gb=max(100, -(-storage // 2**30))
            )
        pools.append(aip.WorkerPoolSpec(**pool))
    vertex = chief.executor.vertex
    job_spec: dict[str, Any] = {"worker_pool_specs": pools}
    if vertex.service_account:
        job_spec["service_account"] = vertex.service_account
    if vertex.output_directory:
        job_spec["base_output_directory"] = aip.GcsDestination(
            output_uri_prefix=vertex.output_directory
        )
    if vertex.tensorboard:
        job_spec["tensorboard"] = vertex.tensorboard
    peered = network(chief.job, default_network)
    if peered:
        job_spec["network"] = peered
    return aip.CustomJob(
        display_name=display_name(title, chief.key),
        labels=labels(launcher, chief.key),
        job_spec=aip.CustomJobSpec(**job_spec),
    )


def pool_of(job: Any, job_name: str) -> int | None:
    """The index of the worker pool running `job_name` (from its XM_JOB_NAME), or None."""
    for index, pool in enumerate(job.job_spec.worker_pool_specs):
        for variable in pool.container_spec.env:
            if variable.name == "XM_JOB_NAME" and variable.value == job_name:
                return index
    return None
