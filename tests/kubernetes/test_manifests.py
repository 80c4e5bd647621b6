"""Every object the backend sends validates against the Kubernetes OpenAPI schemas, and the
mapping of requirements, image, arguments and environment is exact."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from launcher_server.backends.kubernetes import checks, manifests
from launcher_server.errors import InvalidArgumentError
from tests.kubernetes import specs
from tests.support.daemon import TRICKY_VALUES
from xmanager.launcher.v1 import launcher_pb2 as pb

UNIT = manifests.Unit(7, 3, "team-a", "title")
PARENT = {"metadata": {"name": "xm-7-3", "uid": "0b9a4a8e-0000-4000-8000-000000000001"}}


def _job_manifest(job: pb.Job, jobs: list[pb.Job] | None = None) -> dict[str, Any]:
    requests = [specs.request(j) for j in (jobs or [job])]
    own = next(r for r in requests if r.name == job.name)
    manifest = manifests.job_manifest(UNIT, requests, own, PARENT)
    specs.validate(manifest)
    return manifest


def _container(manifest: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = manifest["spec"]["template"]["spec"]["containers"][0]
    return container


def test_parent_and_service_validate() -> None:
    requests = [specs.request(specs.image_job("a")), specs.request(specs.image_job("b"))]
    parent = manifests.parent_manifest(UNIT, requests)
    service = manifests.service_manifest(UNIT, PARENT)
    specs.validate(parent)
    specs.validate(service)
    assert service["spec"]["clusterIP"] == "None"
    assert service["metadata"]["ownerReferences"][0]["uid"] == PARENT["metadata"]["uid"]
    assert json.loads(parent["data"]["jobs"]) == {"a": "xm-7-3-a", "b": "xm-7-3-b"}


def test_a_plain_job_is_an_indexed_job_that_never_restarts() -> None:
    manifest = _job_manifest(specs.image_job(args=tuple(TRICKY_VALUES), env={"A": "1"}))
    spec = manifest["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 1
    assert spec["backoffLimit"] == 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["subdomain"] == "xm-7-3"
    container = _container(manifest)
    assert container["image"] == f"127.0.0.1:5000/trainer@{specs.DIGEST}"
    assert container["args"] == TRICKY_VALUES
    assert "command" not in container
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["A"] == "1"
    assert env["XM_JOB_HOSTS"] == "xm-7-3-trainer-0.xm-7-3.team-a.svc.cluster.local"
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "Ignore"
    assert rules[0]["onPodConditions"][0]["type"] == "DisruptionTarget"
    assert rules[1]["action"] == "FailJob"
    labels = manifest["metadata"]["labels"]
    assert labels["launcher.xmanager/experiment"] == "7"
    assert labels["launcher.xmanager/work-unit"] == "3"
    assert labels["launcher.xmanager/job"] == "trainer"
    assert spec["template"]["metadata"]["labels"] == labels


def test_peers_addresses_are_in_the_environment() -> None:
    server = specs.image_job("server")
    workers = specs.image_job("workers", requirements=pb.ResourceRequirements(replicas=2))
    manifest = _job_manifest(server, [server, workers])
    env = {e["name"]: e.get("value") for e in _container(manifest)["env"]}
    assert json.loads(env["XM_JOB_PEER_HOSTS"]) == {
        "server": ["xm-7-3-server-0.xm-7-3.team-a.svc.cluster.local"],
        "workers": [
            "xm-7-3-workers-0.xm-7-3.team-a.svc.cluster.local",
            "xm-7-3-workers-1.xm-7-3.team-a.svc.cluster.local",
        ],
    }
    replicas = _job_manifest(workers, [server, workers])
    assert replicas["spec"]["completions"] == replicas["spec"]["parallelism"] == 2


def test_image_digest_replaces_the_tag_and_keeps_the_registry_port() -> None:
    job = specs.image_job(reference="localhost:5000/a/b:v1")
    assert _container(_job_manifest(job))["image"] == f"localhost:5000/a/b@{specs.DIGEST}"
    job = specs.image_job(reference=f"r/x@{specs.DIGEST}", digest="")
    assert _container(_job_manifest(job))["image"] == f"r/x@{specs.DIGEST}"


def test_requirements_map_to_requests_limits_and_gke_selectors() -> None:
    requirements = pb.ResourceRequirements(
        cpu=1.5,
        memory_bytes=2 << 30,
        ephemeral_storage_bytes=10 << 30,
        accelerator=pb.Accelerator(type="A100", count=2),
        location="us-central1-a",
    )
    executor = pb.KubernetesExecutor(
        namespace="team-a",
        cloud_provider="GKE",
        node_selector={"pool": "big"},
        tolerations=[pb.Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
        service_account="trainer",
        priority_class="high",
        image_pull_secrets=["regcred"],
        active_deadline_seconds=3600,
    )
    manifest = _job_manifest(specs.image_job(executor=executor, requirements=requirements))
    resources = _container(manifest)["resources"]
    want = {"cpu": "1500m", "memory": str(2 << 30), "ephemeral-storage": str(10 << 30)}
    assert resources["limits"] == {**want, "nvidia.com/gpu": "2"}
    assert resources["requests"] == resources["limits"]
    pod = manifest["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {
        "pool": "big",
        "cloud.google.com/gke-accelerator": "nvidia-tesla-a100",
        "topology.kubernetes.io/zone": "us-central1-a",
    }
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod["serviceAccountName"] == "trainer"
    assert pod["priorityClassName"] == "high"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert manifest["spec"]["activeDeadlineSeconds"] == 3600


def test_tpus_with_topology_select_slices() -> None:
    requirements = pb.ResourceRequirements(
        accelerator=pb.Accelerator(type="TPU_V5E", count=16, topology="4x4"), replicas=4
    )
    executor = pb.KubernetesExecutor(cloud_provider="GKE")
    manifest = _job_manifest(specs.image_job(executor=executor, requirements=requirements))
    assert _container(manifest)["resources"]["limits"] == {"google.com/tpu": "4"}
    assert manifest["spec"]["template"]["spec"]["nodeSelector"] == {
        "cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
        "cloud.google.com/gke-tpu-topology": "4x4",
    }
    legacy = pb.ResourceRequirements(accelerator=pb.Accelerator(type="TPU_V3", count=8))
    manifest = _job_manifest(specs.image_job(executor=executor, requirements=legacy))
    assert _container(manifest)["resources"]["limits"] == {"cloud-tpus.google.com/v3": "8"}
    annotations = manifest["spec"]["template"]["metadata"]["annotations"]
    assert annotations["tf-version.cloud-tpus.google.com"] == "nightly"


def test_retries_allowed_count_non_zero_exits() -> None:
    executor = pb.KubernetesExecutor(backoff_limit=3)
    manifest = _job_manifest(specs.image_job(executor=executor))
    assert manifest["spec"]["backoffLimit"] == 3
    assert [r["action"] for r in manifest["spec"]["podFailurePolicy"]["rules"]] == ["Ignore"]


def test_the_schema_check_catches_bad_manifests() -> None:
    manifest = _job_manifest(specs.image_job())
    manifest["spec"]["template"]["spec"]["restartPolicy"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        specs.validate(manifest)


@pytest.mark.parametrize(
    ("job", "field"),
    [
        (specs.image_job(executor=pb.KubernetesExecutor(namespace="Team_A")), "namespace"),
        (
            specs.image_job(executor=pb.KubernetesExecutor(node_selector={"bad key!": "x"})),
            "node_selector",
        ),
        (
            specs.image_job(executor=pb.KubernetesExecutor(node_selector={"ok": "bad value!"})),
            "node_selector",
        ),
        (
            specs.image_job(
                executor=pb.KubernetesExecutor(tolerations=[pb.Toleration(operator="Maybe")])
            ),
            "tolerations[0].operator",
        ),
        (
            specs.image_job(executor=pb.KubernetesExecutor(service_account="Not Valid")),
            "service_account",
        ),
        (
            specs.image_job(
                requirements=pb.ResourceRequirements(
                    accelerator=pb.Accelerator(type="LOCAL_GPU", count=1)
                )
            ),
            "local_gpu",
        ),
        (
            specs.image_job(requirements=pb.ResourceRequirements(other={"local_gpu": 1})),
            "local_gpu",
        ),
    ],
)
def test_invalid_input_is_refused_naming_the_field(job: pb.Job, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        checks.check_job(job)
    assert raised.value.field.startswith(f"jobs[{job.name}]")
    assert field in raised.value.field


def test_a_tarball_cannot_run_on_a_cluster() -> None:
    job = specs.image_job()
    job.artifact.oci_image.tarball_path = "/tmp/image.tar"
    with pytest.raises(InvalidArgumentError, match="push_image_tag"):
        checks.check_job(job)


def test_valid_jobs_pass_the_checks() -> None:
    checks.check_job(
        specs.image_job(
            executor=pb.KubernetesExecutor(
                namespace="team-a",
                node_selector={"cloud.google.com/gke-nodepool": "pool-1"},
                tolerations=[pb.Toleration(key="gpu", operator="Equal", value="yes")],
            ),
            requirements=pb.ResourceRequirements(accelerator=pb.Accelerator(type="T4", count=1)),
        )
    )
