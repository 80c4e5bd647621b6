"""Add-time checks of a Kubernetes job: what the API server would refuse, refused before it."""

from __future__ import annotations

from launcher_server.backends.kubernetes import manifests
from launcher_server.errors import InvalidArgumentError
from xmanager.launcher import kubernetes_names as names
from xmanager.launcher.v1 import launcher_pb2 as pb

_OPERATORS = ("", "Exists", "Equal")
_EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")


def _require(condition: bool, field: str, problem: str) -> None:
    if not condition:
        raise InvalidArgumentError(field, problem)


def check_job(job: pb.Job, field: str = "") -> None:
    """Raises InvalidArgumentError naming the field (under `field`, e.g. "jobs[0]")."""
    field = field or f"jobs[{job.name}]"
    _check_artifact(job.artifact, f"{field}.artifact")
    _check_executor(job.executor.kubernetes, f"{field}.executor.kubernetes")
    _check_requirements(job.requirements, f"{field}.requirements")


def _check_artifact(artifact: pb.Artifact, field: str) -> None:
    _require(
        artifact.WhichOneof("kind") == "oci_image",
        field,
        "Kubernetes runs container images: package an xm.Container or xm.PythonContainer, not "
        "a binary",
    )
    _require(
        artifact.oci_image.WhichOneof("source") == "reference",
        f"{field}.oci_image",
        "is an image tarball on this machine, which a cluster cannot pull: push it with "
        "xm_local.Kubernetes.Spec(push_image_tag='registry/repository:tag'), or give "
        "xm.Container(image_path='registry/repository@sha256:...')",
    )


def _check_executor(executor: pb.KubernetesExecutor, field: str) -> None:
    namespace = executor.namespace or "default"
    _require(
        names.is_dns_label(namespace),
        f"{field}.namespace",
        f"{namespace!r} is not a valid namespace: lower-case letters, digits and '-', starting "
        "and ending with a letter or digit, at most 63 characters",
    )
    for name, value in (
        ("service_account", executor.service_account),
        ("priority_class", executor.priority_class),
    ):
        _require(
            not value or names.is_dns_subdomain(value),
            f"{field}.{name}",
            f"{value!r} is not a valid object name: lower-case letters, digits, '-' and '.'",
        )
    for i, secret in enumerate(executor.image_pull_secrets):
        _require(
            names.is_dns_subdomain(secret),
            f"{field}.image_pull_secrets[{i}]",
            f"{secret!r} is not a valid Secret name: lower-case letters, digits, '-' and '.'",
        )
    for key, value in executor.node_selector.items():
        problem = names.label_key_problem(key)
        _require(not problem, f"{field}.node_selector[{key!r}]", f"is not a label key: {problem}")
        _require(
            names.is_label_value(value),
            f"{field}.node_selector[{key!r}]",
            f"value {value!r} is not a label value: at most 63 letters, digits, '-', '_', '.', "
            "starting and ending with a letter or digit",
        )
    for i, toleration in enumerate(executor.tolerations):
        path = f"{field}.tolerations[{i}]"
        if toleration.key:
            problem = names.label_key_problem(toleration.key)
            _require(
                not problem, f"{path}.key", f"{toleration.key!r} is not a taint key: {problem}"
            )
        _require(
            toleration.operator in _OPERATORS,
            f"{path}.operator",
            f"{toleration.operator!r} is not an operator: use 'Exists' or 'Equal'",
        )
        _require(
            not (toleration.operator == "Exists" and toleration.value),
            f"{path}.value",
            "must be empty with operator 'Exists'",
        )
        _require(
            bool(toleration.key) or toleration.operator == "Exists",
            f"{path}.operator",
            "an empty key matches all taints only with operator 'Exists'",
        )
        _require(
            toleration.effect in _EFFECTS,
            f"{path}.effect",
            f"{toleration.effect!r} is not an effect: use NoSchedule, PreferNoSchedule or "
            "NoExecute",
        )
        _require(
            not toleration.toleration_seconds or toleration.effect == "NoExecute",
            f"{path}.toleration_seconds",
            "applies only to effect 'NoExecute'",
        )
    _require(
        executor.active_deadline_seconds >= 0,
        f"{field}.active_deadline_seconds",
        "is negative; give a positive number of seconds, or 0 for no deadline",
    )
    _require(
        not executor.HasField("backoff_limit") or executor.backoff_limit >= 0,
        f"{field}.backoff_limit",
        "is negative",
    )


def _check_requirements(requirements: pb.ResourceRequirements, field: str) -> None:
    _require(
        requirements.replicas <= names.MAX_REPLICAS,
        f"{field}.replicas",
        f"is {requirements.replicas}; an Indexed Job has at most {names.MAX_REPLICAS}",
    )
    accelerator = requirements.accelerator
    local_gpu = accelerator.type.upper() == "LOCAL_GPU" or any(
        name.upper() == "LOCAL_GPU" for name in requirements.other
    )
    _require(
        not local_gpu,
        f"{field}.local_gpu",
        "local_gpu is for xm_local.Local only; on Kubernetes request a GPU type, e.g. "
        "xm.JobRequirements(t4=1)",
    )
    if accelerator.count > 0:
        known = sorted(manifests.GPU_TYPES | manifests.TPU_TYPES)
        _require(
            accelerator.type in known,
            f"{field}.accelerator.type",
            f"{accelerator.type!r} cannot run on Kubernetes; supported: {', '.join(known)}",
        )
    for name in requirements.other:
        _require(
            "/" in name and not names.label_key_problem(name),
            f"{field}.other[{name!r}]",
            "is not a Kubernetes resource name; extended resources look like 'example.com/device'",
        )
