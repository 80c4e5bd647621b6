"""The Kubernetes objects of a work unit, as the JSON the API server takes.

A work unit (a gang) becomes: a parent ConfigMap owning everything else (deleting it removes the
unit), a headless Service giving every replica a stable DNS name, and one batch/v1 Indexed Job per
launcher job. Plain dicts: they are what is sent, what the tests validate against the OpenAPI
schemas, and what the emulator stores.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from xmanager.launcher import kubernetes_names as names
from xmanager.launcher.v1 import launcher_pb2 as pb

GKE = "GKE"
GKE_ACCELERATOR = "cloud.google.com/gke-accelerator"
GKE_TPU_ACCELERATOR = "cloud.google.com/gke-tpu-accelerator"
GKE_TPU_TOPOLOGY = "cloud.google.com/gke-tpu-topology"
# GKE's annotation selecting the runtime of TPU v2/v3 pods (XManager's TpuCapability).
GKE_TPU_RUNTIME_ANNOTATION = "tf-version.cloud-tpus.google.com"
NVIDIA_GPU = "nvidia.com/gpu"
GOOGLE_TPU = "google.com/tpu"
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"

# TPU generations that GKE exposes only as per-version resources with a runtime annotation.
_LEGACY_TPUS = {"TPU_V2": "cloud-tpus.google.com/v2", "TPU_V3": "cloud-tpus.google.com/v3"}
# GPU type -> GKE's accelerator label value; TPU type -> GKE's TPU accelerator label value.
_GKE_GPUS = {
    "P4": "nvidia-tesla-p4",
    "T4": "nvidia-tesla-t4",
    "L4": "nvidia-l4",
    "P100": "nvidia-tesla-p100",
    "V100": "nvidia-tesla-v100",
    "A100": "nvidia-tesla-a100",
    "A100_80GIB": "nvidia-a100-80gb",
    "H100": "nvidia-h100-80gb",
    "H200": "nvidia-h200-141gb",
    "B200": "nvidia-b200",
    "K80": "nvidia-tesla-k80",
}
_GKE_TPUS = {
    "TPU_V4": "tpu-v4-podslice",
    "TPU_V4_LITE": "tpu-v4-lite-device",
    "TPU_V5E": "tpu-v5-lite-podslice",
    "TPU_V5P": "tpu-v5p-slice",
    "TPU_V6E": "tpu-v6e-slice",
}
TPU_TYPES = frozenset(_GKE_TPUS) | frozenset(_LEGACY_TPUS)
GPU_TYPES = frozenset(_GKE_GPUS)
_ZONE = re.compile(r".+-[a-z]")


@dataclasses.dataclass(frozen=True)
class JobRequest:
    """One launcher job of the unit, as the daemon hands it over (already validated)."""

    name: str
    job: pb.Job
    args: Sequence[str]
    env: Mapping[str, str]

    @property
    def kubernetes(self) -> pb.KubernetesExecutor:
        return self.job.executor.kubernetes

    @property
    def replicas(self) -> int:
        return max(1, self.job.requirements.replicas)


@dataclasses.dataclass(frozen=True)
class Unit:
    """Identity of a work unit on the cluster."""

    experiment_id: int
    work_unit_id: int
    namespace: str
    experiment_title: str = ""

    @property
    def name(self) -> str:
        return names.unit_name(self.experiment_id, self.work_unit_id)

    @property
    def labels(self) -> dict[str, str]:
        return names.unit_labels(self.experiment_id, self.work_unit_id)

    def job_name(self, job: str) -> str:
        return names.job_name(self.experiment_id, self.work_unit_id, job)

    def hosts(self, job: str, replicas: int) -> list[str]:
        return [
            names.pod_domain(
                self.job_name(job), index, self.experiment_id, self.work_unit_id, self.namespace
            )
            for index in range(replicas)
        ]


def owner_reference(parent: Mapping[str, Any]) -> dict[str, Any]:
    """Makes `parent` (as returned by the API server, with its uid) own an object."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": parent["metadata"]["name"],
        "uid": parent["metadata"]["uid"],
        # Foreground deletion of the parent waits for its children.
        "blockOwnerDeletion": True,
    }


def parent_manifest(unit: Unit, jobs: Sequence[JobRequest]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": unit.name, "namespace": unit.namespace, "labels": unit.labels},
        "data": {
            "experiment-title": unit.experiment_title,
            "jobs": json.dumps({job.name: unit.job_name(job.name) for job in jobs}),
        },
    }


def service_manifest(unit: Unit, owner: Mapping[str, Any] | None) -> dict[str, Any]:
    """Headless: no virtual IP, one DNS record per pod, published before pods are ready."""
    metadata: dict[str, Any] = {
        "name": unit.name,
        "namespace": unit.namespace,
        "labels": unit.labels,
    }
    if owner is not None:
        metadata["ownerReferences"] = [owner_reference(owner)]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {"clusterIP": "None", "selector": unit.labels, "publishNotReadyAddresses": True},
    }


def image_reference(artifact: pb.Artifact) -> str:
    """The image by digest when the digest is known: 'registry/repo@sha256:...'."""
    image = artifact.oci_image
    reference = image.reference
    if "@" in reference or not image.digest:
        return reference
    # Drop a tag (a ':' after the last '/'), keep a registry port.
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:
        reference = reference[:colon]
    return f"{reference}@{image.digest}"


def _quantity_cpu(cpu: float) -> str:
    millis = round(cpu * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def resources(requirements: pb.ResourceRequirements, replicas: int) -> dict[str, Any]:
    """Requests equal to limits (Guaranteed QoS for cpu/memory); accelerators as limits."""
    amounts: dict[str, str] = {}
    if requirements.cpu > 0:
        amounts["cpu"] = _quantity_cpu(requirements.cpu)
    if requirements.memory_bytes > 0:
        amounts["memory"] = str(requirements.memory_bytes)
    if requirements.ephemeral_storage_bytes > 0:
        amounts["ephemeral-storage"] = str(requirements.ephemeral_storage_bytes)
    for name, value in sorted(requirements.other.items()):
        amounts[name] = f"{value:g}"
    accelerator = requirements.accelerator
    if accelerator.count > 0:
        if accelerator.type in GPU_TYPES:
            amounts[NVIDIA_GPU] = str(accelerator.count)
        elif accelerator.type in _LEGACY_TPUS:
            amounts[_LEGACY_TPUS[accelerator.type]] = str(accelerator.count)
        elif accelerator.type in _GKE_TPUS:
            # A topology's chips spread over the replicas (one pod per TPU VM host).
            per_pod = accelerator.count // replicas if accelerator.topology else accelerator.count
            amounts[GOOGLE_TPU] = str(max(1, per_pod))
    if not amounts:
        return {}
    return {"requests": dict(amounts), "limits": dict(amounts)}


def node_selector(
    executor: pb.KubernetesExecutor, requirements: pb.ResourceRequirements
) -> dict[str, str]:
    selector = dict(executor.node_selector)
    accelerator = requirements.accelerator
    if executor.cloud_provider == GKE and accelerator.count > 0:
        if accelerator.type in _GKE_GPUS:
            selector.setdefault(GKE_ACCELERATOR, _GKE_GPUS[accelerator.type])
        elif accelerator.type in _GKE_TPUS:
            selector.setdefault(GKE_TPU_ACCELERATOR, _GKE_TPUS[accelerator.type])
            if accelerator.topology:
                selector.setdefault(GKE_TPU_TOPOLOGY, accelerator.topology)
    location = requirements.location
    if location:
        selector.setdefault(ZONE_LABEL if _ZONE.fullmatch(location) else REGION_LABEL, location)
    return selector


def _tolerations(executor: pb.KubernetesExecutor) -> list[dict[str, Any]]:
    result = []
    for toleration in executor.tolerations:
        item: dict[str, Any] = {}
        for field in ("key", "operator", "value", "effect"):
            value = getattr(toleration, field)
            if value:
                item[field] = value
        if toleration.toleration_seconds:
            item["tolerationSeconds"] = toleration.toleration_seconds
        result.append(item)
    return result


def peer_env(unit: Unit, jobs: Sequence[JobRequest], own: JobRequest) -> dict[str, str]:
    """XM_* variables telling each replica where its gang is (documented in docs/kubernetes.md)."""
    return {
        "XM_K8S_NAMESPACE": unit.namespace,
        "XM_K8S_SERVICE": unit.name,
        "XM_JOB_REPLICAS": str(own.replicas),
        "XM_JOB_HOSTS": ",".join(unit.hosts(own.name, own.replicas)),
        "XM_JOB_PEER_HOSTS": json.dumps(
            {job.name: unit.hosts(job.name, job.replicas) for job in jobs}, sort_keys=True
        ),
    }


def _env(variables: Mapping[str, str]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(variables.items())]
    # The replica's index, from the annotation the Job controller puts on Indexed Job pods.
    env.append(
        {
            "name": "XM_JOB_REPLICA_INDEX",
            "valueFrom": {
                "fieldRef": {
                    "fieldPath": f"metadata.annotations['{names.COMPLETION_INDEX_ANNOTATION}']"
                }
            },
        }
    )
    return env


def _pod_failure_policy(backoff_limit: int) -> dict[str, Any]:
    # A disruption (preemption, eviction, node drain) is the infrastructure's doing: retry the
    # pod without counting it. A non-zero exit is the program's: fail at once when no retries.
    rules: list[dict[str, Any]] = [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    ]
    if backoff_limit == 0:
        rules.append(
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": names.CONTAINER_NAME,
                    "operator": "NotIn",
                    "values": [0],
                },
            }
        )
    return {"rules": rules}


def job_manifest(
    unit: Unit,
    jobs: Sequence[JobRequest],
    request: JobRequest,
    owner: Mapping[str, Any] | None,
) -> dict[str, Any]:
    executor = request.kubernetes
    requirements = request.job.requirements
    replicas = request.replicas
    labels = names.job_labels(unit.experiment_id, unit.work_unit_id, request.name)
    annotations = {names.JOB_NAME_ANNOTATION: request.name}
    backoff_limit = executor.backoff_limit if executor.HasField("backoff_limit") else 0

    container: dict[str, Any] = {
        "name": names.CONTAINER_NAME,
        "image": image_reference(request.job.artifact),
        # Kubernetes' args replace the image's CMD and keep its ENTRYPOINT, as Docker's do.
        "args": list(request.args),
        "env": _env({**request.env, **peer_env(unit, jobs, request)}),
        "imagePullPolicy": "IfNotPresent",
    }
    container_resources = resources(requirements, replicas)
    if container_resources:
        container["resources"] = container_resources

    pod_annotations = dict(annotations)
    accelerator = requirements.accelerator
    if executor.cloud_provider == GKE and accelerator.type in _LEGACY_TPUS:
        pod_annotations[GKE_TPU_RUNTIME_ANNOTATION] = executor.tpu_runtime_version or "nightly"
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "subdomain": unit.name,
        "enableServiceLinks": False,
        "containers": [container],
    }
    selector = node_selector(executor, requirements)
    if selector:
        pod_spec["nodeSelector"] = selector
    tolerations = _tolerations(executor)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if executor.service_account:
        pod_spec["serviceAccountName"] = executor.service_account
    if executor.priority_class:
        pod_spec["priorityClassName"] = executor.priority_class
    if executor.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in executor.image_pull_secrets]

    spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": replicas,
        "parallelism": replicas,
        "backoffLimit": backoff_limit,
        "podFailurePolicy": _pod_failure_policy(backoff_limit),
        # A replacement pod starts only once the failed one is gone: no two replicas alike.
        "podReplacementPolicy": "Failed",
        "template": {
            "metadata": {"labels": labels, "annotations": pod_annotations},
            "spec": pod_spec,
        },
    }
    if executor.active_deadline_seconds > 0:
        spec["activeDeadlineSeconds"] = executor.active_deadline_seconds
    metadata: dict[str, Any] = {
        "name": unit.job_name(request.name),
        "namespace": unit.namespace,
        "labels": labels,
        "annotations": annotations,
    }
    if owner is not None:
        metadata["ownerReferences"] = [owner_reference(owner)]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}
