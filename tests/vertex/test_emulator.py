"""The Vertex AI emulator, through the official google-cloud-aiplatform and logging clients."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.api_core import exceptions
from google.cloud import aiplatform_v1 as aip

from tests.fakes.vertex import FakeVertex
from tests.vertex.conftest import job_client, logging_client

PARENT = "projects/test-project/locations/us-central1"
State = aip.JobState


def custom_job(
    image: str = "127.0.0.1:1/x@sha256:" + "0" * 64,
    *,
    labels: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
    args: list[str] | None = None,
    workers: int = 0,
    machine: dict[str, Any] | None = None,
) -> aip.CustomJob:
    container = aip.ContainerSpec(
        image_uri=image,
        command=command or [],
        args=args or [],
        env=[aip.EnvVar(name=k, value=v) for k, v in (env or {}).items()],
    )
    machine_spec = aip.MachineSpec(**(machine or {"machine_type": "n1-standard-4"}))
    pools = [
        aip.WorkerPoolSpec(container_spec=container, machine_spec=machine_spec, replica_count=1)
    ]
    if workers:
        pools.append(
            aip.WorkerPoolSpec(
                container_spec=container, machine_spec=machine_spec, replica_count=workers
            )
        )
    return aip.CustomJob(
        display_name="test job",
        labels=labels or {"xm-experiment": "1"},
        job_spec=aip.CustomJobSpec(worker_pool_specs=pools),
    )


def wait_for(get: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last value {value}")
        time.sleep(0.05)


def test_life_cycle_and_list_filters(simulated_vertex: FakeVertex) -> None:
    client = job_client(simulated_vertex.address)
    created = [
        client.create_custom_job(
            parent=PARENT, custom_job=custom_job(labels={"xm-experiment": str(i % 2)})
        )
        for i in range(5)
    ]
    assert created[0].state == State.JOB_STATE_QUEUED
    assert created[0].name.startswith(PARENT + "/customJobs/")
    job = wait_for(
        lambda: client.get_custom_job(name=created[0].name),
        lambda j: j.state == State.JOB_STATE_RUNNING,
    )
    assert job.start_time
    odd = list(
        client.list_custom_jobs(
            request={"parent": PARENT, "filter": 'labels.xm-experiment="1"', "page_size": 1}
        )
    )
    assert sorted(j.name for j in odd) == sorted(c.name for c in created[1::2])
    assert simulated_vertex.calls["ListCustomJobs"] == 2  # one page each, the pager follows
    with pytest.raises(exceptions.InvalidArgument, match="page_token"):
        list(client.list_custom_jobs(request={"parent": PARENT, "page_token": "not-ours"}))
    since = job.update_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    recent = client.list_custom_jobs(
        request={"parent": PARENT, "filter": f'labels.xm-experiment:* AND update_time>="{since}"'}
    )
    assert created[0].name in {j.name for j in recent}

    client.cancel_custom_job(name=created[0].name)
    assert client.get_custom_job(name=created[0].name).state in (
        State.JOB_STATE_CANCELLING,
        State.JOB_STATE_CANCELLED,
    )
    job = wait_for(
        lambda: client.get_custom_job(name=created[0].name),
        lambda j: j.state == State.JOB_STATE_CANCELLED,
    )
    assert job.end_time
    with pytest.raises(exceptions.FailedPrecondition, match="Cannot cancel"):
        client.cancel_custom_job(name=created[0].name)
    with pytest.raises(exceptions.FailedPrecondition, match="cancel it first"):
        client.delete_custom_job(name=created[1].name)
    client.delete_custom_job(name=created[0].name).result()
    with pytest.raises(exceptions.NotFound):
        client.get_custom_job(name=created[0].name)


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (custom_job(labels={"Bad": "x"}), "invalid key 'Bad'"),
        (custom_job(labels={"ok": "With Space"}), "invalid value"),
        (custom_job(machine={"machine_type": ""}), "machine_type is required"),
        (
            custom_job(
                machine={
                    "machine_type": "n1-standard-8",
                    "accelerator_type": aip.AcceleratorType.NVIDIA_TESLA_A100,
                    "accelerator_count": 1,
                }
            ),
            "cannot be attached|does not come with",
        ),
        (
            custom_job(
                machine={
                    "machine_type": "ct5lp-hightpu-4t",
                    "accelerator_type": aip.AcceleratorType.TPU_V5_LITEPOD,
                    "accelerator_count": 4,
                    "tpu_topology": "3x3",
                }
            ),
            "tpu_topology",
        ),
        (custom_job(image=""), "image_uri is required"),
        (aip.CustomJob(display_name="x"), "worker_pool_specs is required"),
    ],
)
def test_create_enforces_what_vertex_enforces(
    simulated_vertex: FakeVertex, job: aip.CustomJob, message: str
) -> None:
    client = job_client(simulated_vertex.address)
    with pytest.raises(exceptions.InvalidArgument, match=message):
        client.create_custom_job(parent=PARENT, custom_job=job)


def test_chief_pool_has_one_replica(simulated_vertex: FakeVertex) -> None:
    job = custom_job()
    job.job_spec.worker_pool_specs[0].replica_count = 2
    with pytest.raises(exceptions.InvalidArgument, match="chief"):
        job_client(simulated_vertex.address).create_custom_job(parent=PARENT, custom_job=job)


def test_names_are_checked(simulated_vertex: FakeVertex) -> None:
    client = job_client(simulated_vertex.address)
    with pytest.raises(exceptions.InvalidArgument, match="customJobs"):
        client.get_custom_job(name="customJobs/1")
    with pytest.raises(exceptions.InvalidArgument, match="parent"):
        client.create_custom_job(parent="projects/x", custom_job=custom_job())
    with pytest.raises(exceptions.NotFound):
        client.get_custom_job(name=PARENT + "/customJobs/42")
    with pytest.raises(exceptions.InvalidArgument, match="filter"):
        client.list_custom_jobs(request={"parent": PARENT, "filter": "labels.a = = b"})


def test_faults(simulated_vertex: FakeVertex) -> None:
    client = job_client(simulated_vertex.address)
    simulated_vertex.inject(grpc.StatusCode.RESOURCE_EXHAUSTED, 1, {"CreateCustomJob"})
    with pytest.raises(exceptions.ResourceExhausted):
        client.create_custom_job(parent=PARENT, custom_job=custom_job())
    job = client.create_custom_job(parent=PARENT, custom_job=custom_job())
    simulated_vertex.inject(grpc.StatusCode.UNAVAILABLE, 2, {"GetCustomJob"})
    for _ in range(2):
        with pytest.raises(exceptions.ServiceUnavailable):
            client.get_custom_job(name=job.name, retry=None)
    wait_for(lambda: client.get_custom_job(name=job.name), lambda j: j.state == 3)
    simulated_vertex.fail_job(job.name, "The replica workerpool0-0 ran out of memory.")
    failed = client.get_custom_job(name=job.name)
    assert failed.state == State.JOB_STATE_FAILED
    assert failed.error.message == "The replica workerpool0-0 ran out of memory."

    other = client.create_custom_job(parent=PARENT, custom_job=custom_job())
    simulated_vertex.cancel_from_outside(other.name)
    wait_for(lambda: client.get_custom_job(name=other.name), lambda j: j.state == 7)

    exits = client.create_custom_job(
        parent=PARENT, custom_job=custom_job(env={"FAKE_RUN_SECONDS": "0", "FAKE_EXIT_CODE": "3"})
    )
    done = wait_for(lambda: client.get_custom_job(name=exits.name), lambda j: j.state == 5)
    assert "non-zero status of 3" in done.error.message


@pytest.mark.docker
def test_runs_containers_from_the_registry(docker_vertex: FakeVertex, busybox_image: str) -> None:
    client = job_client(docker_vertex.address)
    script = (
        'for a in "$@"; do echo "ARG[$a]"; done; echo "ENV[$TRICKY]"; '
        'echo "CS[$CLUSTER_SPEC]"; echo "HOST[$(hostname)]"; echo to-stderr >&2'
    )
    tricky = "a b\t'\"$HOME\\ ü"
    job = client.create_custom_job(
        parent=PARENT,
        custom_job=custom_job(
            busybox_image,
            command=["/bin/sh", "-c", script, "argv"],
            args=["--x=1", "two words", "", tricky],
            env={"TRICKY": tricky},
            workers=2,
        ),
    )
    done = wait_for(
        lambda: client.get_custom_job(name=job.name), lambda j: j.state in (4, 5), timeout=60
    )
    assert done.state == State.JOB_STATE_SUCCEEDED, done.error.message
    job_id = job.name.rsplit("/", 1)[1]
    entries = list(
        logging_client(docker_vertex.address).list_log_entries(
            request={
                "resource_names": ["projects/test-project"],
                "filter": f'resource.type="ml_job" AND resource.labels.job_id="{job_id}" '
                'AND resource.labels.task_name="workerpool0-0"',
                "order_by": "timestamp asc",
            }
        )
    )
    # Docker orders each stream's lines, not stdout's against stderr's: the order is checked
    # on stdout alone.
    lines = [entry.text_payload for entry in entries if int(entry.severity) == 200]  # INFO
    assert lines[:4] == ["ARG[--x=1]", "ARG[two words]", "ARG[]", f"ARG[{tricky}]"]
    assert f"ENV[{tricky}]" in lines
    spec = json.loads(next(line for line in lines if line.startswith("CS["))[3:-1])
    assert spec["cluster"]["workerpool1"] == ["workerpool1-0:2222", "workerpool1-1:2222"]
    assert spec["task"] == {"type": "workerpool0", "index": 0}
    assert "HOST[workerpool0-0]" in lines
    stderr = [e for e in entries if e.text_payload == "to-stderr"]
    assert stderr
    assert int(stderr[0].severity) == 500  # ERROR


@pytest.mark.docker
def test_container_failure_and_cancel(docker_vertex: FakeVertex, busybox_image: str) -> None:
    client = job_client(docker_vertex.address)
    failing = client.create_custom_job(
        parent=PARENT,
        custom_job=custom_job(busybox_image, command=["/bin/sh", "-c", "exit 7"]),
    )
    sleeping = client.create_custom_job(
        parent=PARENT, custom_job=custom_job(busybox_image, command=["sleep", "600"])
    )
    done = wait_for(
        lambda: client.get_custom_job(name=failing.name), lambda j: j.state == 5, timeout=60
    )
    assert "workerpool0-0 exited with a non-zero status of 7" in done.error.message
    wait_for(lambda: client.get_custom_job(name=sleeping.name), lambda j: j.state == 3, 60)
    client.cancel_custom_job(name=sleeping.name)
    wait_for(lambda: client.get_custom_job(name=sleeping.name), lambda j: j.state == 7, 30)


def test_pull_failure_fails_the_job(docker_vertex: FakeVertex, oci_registry: str) -> None:
    client = job_client(docker_vertex.address)
    job = client.create_custom_job(
        parent=PARENT, custom_job=custom_job(f"{oci_registry}/missing@sha256:{'1' * 64}")
    )
    done = wait_for(lambda: client.get_custom_job(name=job.name), lambda j: j.state == 5, 60)
    assert "Unable to pull the image" in done.error.message
