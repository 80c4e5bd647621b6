"""The emulated cluster through the official client: Jobs run on Docker via the node agent,
statuses, logs, watches (resume, 410 Gone), deletion with propagation, failure reasons."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from launcher_server.backends.kubernetes import manifests
from tests.kubernetes import specs
from tests.kubernetes.cluster import Cluster, wait_for
from tests.kubernetes.conftest import RegistryImages
from tests.support.daemon import TRICKY_VALUES

NS = "default"


def _job(name: str, image: str, args: list[str], **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"test": name}},
        "spec": {
            "completionMode": "Indexed",
            "completions": 1,
            "parallelism": 1,
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"test": name}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "job", "image": image, "args": args}],
                },
            },
        },
    }
    for key, value in spec.items():
        body["spec"][key] = value
    return body


def _pod(core: Any, job: str) -> Any:
    pods = core.list_namespaced_pod(NS, label_selector=f"batch.kubernetes.io/job-name={job}").items
    return pods[0] if pods else None


def _condition(batch: Any, name: str) -> str:
    status = batch.read_namespaced_job_status(name, NS).status
    for condition in (status.conditions if status else None) or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return f"{condition.type}:{condition.reason}"
    return ""


def test_a_job_runs_on_docker_and_reports_its_exit(
    k8s: Cluster, registry_images: RegistryImages
) -> None:
    client = k8s.client()
    batch: Any = kubernetes.client.BatchV1Api(client)
    core: Any = kubernetes.client.CoreV1Api(client)
    batch.create_namespaced_job(
        NS, _job("ok", registry_images.sh, ["echo out; sleep 0.2; echo err >&2"])
    )
    assert wait_for(lambda: _condition(batch, "ok"), 60) == "Complete:CompletionsReached"
    pod = _pod(core, "ok")
    assert pod.status.phase == "Succeeded"
    assert pod.spec.hostname == "ok-0"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert core.read_namespaced_pod_log(pod.metadata.name, NS) == "out\nerr\n"


def test_a_non_zero_exit_fails_the_job_by_the_failure_policy(
    k8s: Cluster, registry_images: RegistryImages
) -> None:
    batch: Any = kubernetes.client.BatchV1Api(k8s.client())
    policy = {
        "rules": [
            {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [0]}},
        ]
    }
    batch.create_namespaced_job(
        NS, _job("bad", registry_images.sh, ["exit 3"], podFailurePolicy=policy)
    )
    assert wait_for(lambda: _condition(batch, "bad"), 60) == "Failed:PodFailurePolicy"


def test_the_backends_manifests_run_with_args_env_and_peer_dns_intact(
    k8s: Cluster, registry_images: RegistryImages
) -> None:
    client = k8s.client()
    batch: Any = kubernetes.client.BatchV1Api(client)
    core: Any = kubernetes.client.CoreV1Api(client)
    unit = manifests.Unit(5, 1, NS, "e2e")
    server = specs.image_job(
        "server",
        reference=registry_images.sh,
        digest="",
        args=("nc -l -p 2222 -e echo pong",),
    )
    client_job = specs.image_job(
        "client",
        reference=registry_images.sh,
        digest="",
        args=(
            # Until the server listens, nc's complaints are not the client's output.
            'for i in $(seq 50); do r=$(echo ping | nc -w 2 "$SERVER" 2222 2>/dev/null) '
            '&& [ -n "$r" ] && break; '
            'sleep 0.2; done; echo "got $r"; printf "%s\\n" "$0" "$1"; echo "$TRICKY"',
            TRICKY_VALUES[0],
            TRICKY_VALUES[3],
        ),
        env={"TRICKY": TRICKY_VALUES[4]},
    )
    requests = [specs.request(server), specs.request(client_job)]
    parent = core.create_namespaced_config_map(NS, manifests.parent_manifest(unit, requests))
    owner = core.api_client.sanitize_for_serialization(parent)
    core.create_namespaced_service(NS, manifests.service_manifest(unit, owner))
    peer = unit.hosts("server", 1)[0]
    for request in requests:
        body = manifests.job_manifest(unit, requests, request, owner)
        if request.name == "client":
            body["spec"]["template"]["spec"]["containers"][0]["env"].append(
                {"name": "SERVER", "value": peer}
            )
        batch.create_namespaced_job(NS, body)
    client_name = unit.job_name("client")
    assert wait_for(lambda: _condition(batch, client_name), 90) == "Complete:CompletionsReached"
    log = core.read_namespaced_pod_log(_pod(core, client_name).metadata.name, NS)
    assert log == (f"got pong\n{TRICKY_VALUES[0]}\n{TRICKY_VALUES[3]}\n{TRICKY_VALUES[4]}\n")
    # Deleting the parent in the foreground removes the Jobs, the Service and the pods.
    core.delete_namespaced_config_map(unit.name, NS, propagation_policy="Foreground")
    wait_for(lambda: not core.list_namespaced_pod(NS).items, 60)
    assert not batch.list_namespaced_job(NS).items
    assert not core.list_namespaced_service(NS).items


def test_unpullable_and_unschedulable_pods_say_why(
    k8s: Cluster, registry_images: RegistryImages
) -> None:
    client = k8s.client()
    batch: Any = kubernetes.client.BatchV1Api(client)
    core: Any = kubernetes.client.CoreV1Api(client)
    batch.create_namespaced_job(NS, _job("nopull", registry_images.unpullable, []))

    def waiting_reason() -> str:
        pod = _pod(core, "nopull")
        statuses = pod.status.container_statuses if pod is not None else None
        waiting = statuses[0].state.waiting if statuses else None
        return waiting.reason if waiting is not None else ""

    assert wait_for(lambda: waiting_reason() in ("ErrImagePull", "ImagePullBackOff"), 60)
    body = _job("nofit", registry_images.sh, ["true"])
    body["spec"]["template"]["spec"]["nodeSelector"] = {"pool": "gpu-a100"}
    batch.create_namespaced_job(NS, body)

    def unschedulable() -> str:
        pod = _pod(core, "nofit")
        for condition in (pod.status.conditions or []) if pod else []:
            if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
                return str(condition.message)
        return ""

    assert "didn't match Pod's node affinity/selector" in wait_for(unschedulable, 30)


def test_out_of_memory_is_reported_as_oomkilled(
    k8s: Cluster, registry_images: RegistryImages
) -> None:
    client = k8s.client()
    batch: Any = kubernetes.client.BatchV1Api(client)
    core: Any = kubernetes.client.CoreV1Api(client)
    body = _job("oom", registry_images.sh, ["tail /dev/zero"])
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["resources"] = {"limits": {"memory": "16Mi"}, "requests": {"memory": "16Mi"}}
    batch.create_namespaced_job(NS, body)
    wait_for(lambda: _condition(batch, "oom"), 60)
    terminated = _pod(core, "oom").status.container_statuses[0].state.terminated
    assert terminated.reason == "OOMKilled"


def test_watches_resume_and_get_410_gone_after_compaction(k8s: Cluster) -> None:
    core: Any = kubernetes.client.CoreV1Api(k8s.client())
    rv = core.list_namespaced_config_map(NS).metadata.resource_version
    core.create_namespaced_config_map(NS, {"metadata": {"name": "a"}})
    response = core.list_namespaced_config_map(
        NS, watch=True, resource_version=rv, timeout_seconds=1, _preload_content=False
    )
    events = [json.loads(line) for line in response.data.splitlines() if line.strip()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "a")]
    k8s.fault(compact=True)
    response = core.list_namespaced_config_map(
        NS, watch=True, resource_version=rv, timeout_seconds=1, _preload_content=False
    )
    event = json.loads(response.data.splitlines()[0])
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410


def test_injected_errors_reach_the_client(k8s: Cluster) -> None:
    core: Any = kubernetes.client.CoreV1Api(k8s.client())
    before = k8s.requests().get("GET", 0)
    # 429 with Retry-After: the client's HTTP layer waits and retries by itself.
    k8s.fault(errors=[429])
    core.list_namespaced_config_map(NS)
    assert k8s.requests()["GET"] - before >= 2
    k8s.fault(errors=[500])
    with pytest.raises(ApiException) as raised:
        core.list_namespaced_config_map(NS)
    assert raised.value.status == 500
    core.list_namespaced_config_map(NS)


def test_schema_invalid_objects_are_refused(k8s: Cluster) -> None:
    # Raw HTTP: the official client already refuses ill-typed bodies before sending.
    body = {"metadata": {"name": "s"}, "spec": {"ports": [{"port": "not-a-port"}]}}
    request = urllib.request.Request(
        f"{k8s.emulator.url}/api/v1/namespaces/{NS}/services",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=5)
    assert raised.value.code == 422
    assert "spec.ports.0.port" in json.loads(raised.value.read())["message"]
