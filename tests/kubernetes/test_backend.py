"""The Kubernetes backend through a real daemon against the emulated cluster: gangs with peer
DNS, statuses and logs, a failing job stopping its gang, cancel removing everything, a daemon
killed mid-run, and clear refusals."""

from __future__ import annotations

import os
import time
from typing import Any

import grpc
import kubernetes
import pytest

from tests.kubernetes import specs
from tests.kubernetes.cluster import Cluster, wait_for
from tests.kubernetes.conftest import RegistryImages
from tests.support.daemon import FINAL, DaemonHandle, local_job
from xmanager.client import daemon_process
from xmanager.launcher.v1 import launcher_pb2 as pb

NS = "default"
# Waits for the server named in XM_JOB_PEER_HOSTS and talks to it over the headless Service.
WORKER = (
    'server=$(echo "$XM_JOB_PEER_HOSTS" | sed \'s/.*"server": \\["\\([^"]*\\)".*/\\1/\'); '
    'for i in $(seq 100); do r=$(echo ping | nc -w 2 "$server" 2222) && [ -n "$r" ] && break; '
    'sleep 0.2; done; echo "replica $XM_JOB_REPLICA_INDEX got $r from $server"; [ "$r" = pong ]'
)
SERVER = "for i in 1 2; do nc -l -p 2222 -e echo pong; done; echo served"


def _experiment(daemon: DaemonHandle) -> int:
    created = daemon.client.stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="k8s"))
    )
    return int(created.id)


def _add(daemon: DaemonHandle, experiment_id: int, *jobs: pb.Job) -> pb.WorkUnit:
    unit: pb.WorkUnit = daemon.client.stub.AddWorkUnit(
        pb.AddWorkUnitRequest(
            experiment_id=experiment_id, request_id=os.urandom(8).hex(), jobs=jobs
        )
    )
    return unit


def _unit(daemon: DaemonHandle, experiment_id: int, work_unit_id: int) -> pb.WorkUnit:
    unit: pb.WorkUnit = daemon.client.stub.GetWorkUnit(
        pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=work_unit_id)
    )
    return unit


def _final(daemon: DaemonHandle, experiment_id: int, work_unit_id: int) -> pb.WorkUnit:
    def done() -> pb.WorkUnit | None:
        unit = _unit(daemon, experiment_id, work_unit_id)
        return unit if unit.status.state in FINAL else None

    result: pb.WorkUnit = wait_for(done, 120, 0.2)
    return result


def _logs(daemon: DaemonHandle, experiment_id: int, work_unit_id: int, job: str) -> str:
    chunks = daemon.client.stub.StreamLogs(
        pb.StreamLogsRequest(
            experiment_id=experiment_id, work_unit_id=work_unit_id, job_name=job, follow=True
        ),
        timeout=60,
    )
    return b"".join(chunk.data for chunk in chunks).decode()


def _job(name: str, image: str, script: str, **kwargs: Any) -> pb.Job:
    return specs.image_job(name, reference=image, digest="", args=(script,), **kwargs)


def _objects(k8s: Cluster) -> dict[str, list[str]]:
    client = k8s.client()
    core: Any = kubernetes.client.CoreV1Api(client)
    batch: Any = kubernetes.client.BatchV1Api(client)
    return {
        "jobs": [j.metadata.name for j in batch.list_namespaced_job(NS).items],
        "pods": [p.metadata.name for p in core.list_namespaced_pod(NS).items],
        "services": [s.metadata.name for s in core.list_namespaced_service(NS).items],
        "configmaps": [c.metadata.name for c in core.list_namespaced_config_map(NS).items],
    }


def test_a_gang_talks_over_the_headless_service_and_logs_come_back(
    k8s_daemon: DaemonHandle, registry_images: RegistryImages
) -> None:
    experiment = _experiment(k8s_daemon)
    workers = _job(
        "workers",
        registry_images.sh,
        WORKER,
        requirements=pb.ResourceRequirements(replicas=2, cpu=0.5, memory_bytes=64 << 20),
    )
    unit = _add(k8s_daemon, experiment, _job("server", registry_images.sh, SERVER), workers)
    done = _final(k8s_daemon, experiment, unit.work_unit_id)
    assert done.status.state == pb.JOB_STATE_SUCCEEDED, done
    for job in done.jobs:
        assert job.status.state == pb.JOB_STATE_SUCCEEDED
        assert job.backend_handle == f"{NS}/xm-{experiment}-{unit.work_unit_id}-{job.name}"
    log = _logs(k8s_daemon, experiment, unit.work_unit_id, "workers")
    host = f"xm-{experiment}-{unit.work_unit_id}-server-0.xm-{experiment}-{unit.work_unit_id}"
    for index in (0, 1):
        assert f"[{index}] replica {index} got pong from {host}.{NS}.svc.cluster.local" in log
    assert _logs(k8s_daemon, experiment, unit.work_unit_id, "server").endswith("served\n")


def test_a_failing_job_stops_its_gang_and_says_why(
    k8s_daemon: DaemonHandle, k8s: Cluster, registry_images: RegistryImages
) -> None:
    experiment = _experiment(k8s_daemon)
    unit = _add(
        k8s_daemon,
        experiment,
        _job("server", registry_images.sh, "sleep 300"),
        _job("worker", registry_images.sh, "sleep 1; exit 3"),
    )
    done = _final(k8s_daemon, experiment, unit.work_unit_id)
    assert done.status.state == pb.JOB_STATE_FAILED
    jobs = {job.name: job.status for job in done.jobs}
    assert jobs["worker"].state == pb.JOB_STATE_FAILED
    assert jobs["worker"].reason == "exited with code 3"
    assert jobs["worker"].exit_code == 3
    assert jobs["worker"].native_state == "Failed: PodFailurePolicy"
    assert jobs["server"].state == pb.JOB_STATE_CANCELLED
    # The server's pods are gone; the failed worker's pod stays, with its logs.
    server = f"xm-{experiment}-{unit.work_unit_id}-server"
    assert not [p for p in _objects(k8s)["pods"] if p.startswith(server)]


def test_cancel_removes_everything(
    k8s_daemon: DaemonHandle, k8s: Cluster, registry_images: RegistryImages
) -> None:
    experiment = _experiment(k8s_daemon)
    unit = _add(
        k8s_daemon,
        experiment,
        _job("a", registry_images.sh, "trap 'echo bye; exit 0' TERM; sleep 300 & wait"),
        _job("b", registry_images.sh, "sleep 300"),
    )
    wait_for(
        lambda: (
            _unit(k8s_daemon, experiment, unit.work_unit_id).status.state == pb.JOB_STATE_RUNNING
        ),
        60,
    )
    k8s_daemon.client.stub.CancelWorkUnit(
        pb.CancelWorkUnitRequest(
            experiment_id=experiment, work_unit_id=unit.work_unit_id, grace_period_seconds=5
        )
    )
    done = _final(k8s_daemon, experiment, unit.work_unit_id)
    assert done.status.state == pb.JOB_STATE_CANCELLED
    assert all(job.status.state == pb.JOB_STATE_CANCELLED for job in done.jobs)
    # CANCELLED only once every pod is gone; then the parent and the Service go too.
    assert not _objects(k8s)["pods"]
    wait_for(lambda: not any(_objects(k8s).values()), 30)


def test_a_daemon_killed_mid_run_loses_nothing(
    k8s_daemon: DaemonHandle, k8s: Cluster, registry_images: RegistryImages
) -> None:
    experiment = _experiment(k8s_daemon)
    unit = _add(k8s_daemon, experiment, _job("main", registry_images.sh, "sleep 4; echo done"))
    wait_for(
        lambda: (
            _unit(k8s_daemon, experiment, unit.work_unit_id).status.state == pb.JOB_STATE_RUNNING
        ),
        60,
    )
    batch: Any = kubernetes.client.BatchV1Api(k8s.client())
    uid = batch.list_namespaced_job(NS).items[0].metadata.uid
    k8s_daemon.kill()
    time.sleep(5)  # the job ends while the daemon is away
    # A generous start timeout: loading the Kubernetes client is slow on a busy machine.
    k8s_daemon.pid = daemon_process.start_detached(k8s_daemon.state, k8s_daemon.flags, timeout=120)
    k8s_daemon.attach()
    done = _final(k8s_daemon, experiment, unit.work_unit_id)
    assert done.status.state == pb.JOB_STATE_SUCCEEDED
    jobs = batch.list_namespaced_job(NS).items
    assert [j.metadata.uid for j in jobs] == [uid]  # never created twice
    assert _logs(k8s_daemon, experiment, unit.work_unit_id, "main") == "done\n"


def test_why_a_job_waits_is_in_its_status(
    k8s_daemon: DaemonHandle, registry_images: RegistryImages
) -> None:
    experiment = _experiment(k8s_daemon)
    unit = _add(
        k8s_daemon,
        experiment,
        specs.image_job("nopull", reference=registry_images.unpullable, digest=""),
        _job(
            "nofit",
            registry_images.sh,
            "true",
            executor=pb.KubernetesExecutor(node_selector={"pool": "tpu-v5"}),
        ),
    )

    def reasons() -> dict[str, str]:
        jobs = _unit(k8s_daemon, experiment, unit.work_unit_id).jobs
        found = {job.name: job.status.reason for job in jobs}
        return found if all(found.values()) else {}

    found = wait_for(reasons, 60)
    assert found["nopull"].startswith(("ErrImagePull", "ImagePullBackOff"))
    assert found["nofit"].startswith("Unschedulable: 0/1 nodes are available")


def test_bad_input_is_refused_at_add_time(k8s_daemon: DaemonHandle) -> None:
    experiment = _experiment(k8s_daemon)
    bad = specs.image_job(executor=pb.KubernetesExecutor(namespace="Not_A_Namespace"))
    with pytest.raises(grpc.RpcError) as raised:
        _add(k8s_daemon, experiment, bad)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "jobs[0].executor.kubernetes.namespace" in str(raised.value.details())
    gpu = specs.image_job(
        requirements=pb.ResourceRequirements(accelerator=pb.Accelerator(type="LOCAL_GPU", count=1))
    )
    with pytest.raises(grpc.RpcError) as raised:
        _add(k8s_daemon, experiment, gpu)
    assert "local_gpu" in str(raised.value.details())


def test_without_a_cluster_kubernetes_jobs_are_refused_and_local_jobs_run(
    tmp_path: Any,
) -> None:
    daemon = DaemonHandle(tmp_path / "s", ["--kubeconfig=/nonexistent/kubeconfig"])
    daemon.start()
    try:
        experiment = _experiment(daemon)
        with pytest.raises(grpc.RpcError) as raised:
            _add(daemon, experiment, specs.image_job())
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "--kubeconfig" in str(raised.value.details())
        unit = _add(daemon, experiment, local_job("local", "/bin/true"))
        assert _final(daemon, experiment, unit.work_unit_id).status.state == (
            pb.JOB_STATE_SUCCEEDED
        )
    finally:
        daemon.stop()


def test_watch_disconnects_410_and_error_bursts_lose_nothing(
    k8s_daemon: DaemonHandle, k8s: Cluster, registry_images: RegistryImages
) -> None:
    experiment = _experiment(k8s_daemon)
    unit = _add(k8s_daemon, experiment, _job("main", registry_images.sh, "sleep 6; echo done"))
    wait_for(
        lambda: (
            _unit(k8s_daemon, experiment, unit.work_unit_id).status.state == pb.JOB_STATE_RUNNING
        ),
        60,
    )
    # Watches cut, history compacted (resuming gets 410 Gone: re-list), then a burst of
    # throttling and server errors on the next requests.
    k8s.fault(drop_watches=True, compact=True, errors=[503, 429, 500, 502, 503])
    done = _final(k8s_daemon, experiment, unit.work_unit_id)
    assert done.status.state == pb.JOB_STATE_SUCCEEDED, done
    assert _logs(k8s_daemon, experiment, unit.work_unit_id, "main") == "done\n"
    # After the faults, everything runs as before.
    again = _add(k8s_daemon, experiment, _job("again", registry_images.sh, "exit 4"))
    failed = _final(k8s_daemon, experiment, again.work_unit_id)
    assert failed.jobs[0].status.reason == "exited with code 4"
