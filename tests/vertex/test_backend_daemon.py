"""The Vertex AI backend in a real daemon, against the emulator running real containers."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.fakes.vertex import FakeVertex
from tests.support.daemon import TRICKY_VALUES, DaemonHandle, kill_job_processes
from xmanager.client import daemon_process
from xmanager.client.connection import Launcher
from xmanager.launcher.v1 import launcher_pb2 as pb

pytestmark = pytest.mark.docker

# Prints its args one per line (bracketed) and $TRICKY, then sleeps $NAP seconds.
SCRIPT = (
    'for a in "$@"; do printf "ARG[%s]\\n" "$a"; done; printf "ENV[%s]\\n" "$TRICKY"; '
    'echo "JOB[$XM_JOB_NAME]"; echo "CS[$CLUSTER_SPEC]"; echo oops >&2; sleep "${NAP:-0}"; '
    'exit "${CODE:-0}"'
)


def daemon_flags(address: str) -> list[str]:
    return [
        "--grace_period_seconds=2",
        f"--vertex_endpoint=http://{address}",
        f"--vertex_logging_endpoint=http://{address}",
        "--vertex_project=test-project",
        "--vertex_region=us-central1",
        "--vertex_poll_min_seconds=0.2",
        "--vertex_poll_max_seconds=1",
    ]


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="xm-vx-", dir="/tmp"))
    try:
        yield path
    finally:
        kill_job_processes(path)
        shutil.rmtree(path, ignore_errors=True)


class VertexDaemon(DaemonHandle):
    """A daemon given more time to start: the machine running the tests may be busy."""

    def start(self) -> Launcher:
        self.pid = daemon_process.start_detached(self.state, self.flags, timeout=120)
        self.launcher = Launcher(self.state, autostart=False, retry_seconds=60)
        return self.launcher


@pytest.fixture
def vertex_daemon(docker_vertex: FakeVertex, state_dir: Path) -> Iterator[DaemonHandle]:
    handle = VertexDaemon(state_dir, daemon_flags(docker_vertex.address))
    handle.start()
    yield handle
    handle.stop()


def vertex_job(
    name: str,
    image: str,
    *args: str,
    env: dict[str, str] | None = None,
    replicas: int = 0,
    accelerator: str = "",
    count: int = 0,
) -> pb.Job:
    reference, _, digest = image.partition("@")
    job = pb.Job(
        name=name,
        artifact=pb.Artifact(oci_image=pb.OciImage(reference=f"{reference}:latest", digest=digest)),
        args=["-c", SCRIPT, "script", *args],
        env=env or {},
        executor=pb.Executor(vertex=pb.VertexExecutor()),
    )
    job.requirements.replicas = replicas
    if accelerator:
        job.requirements.accelerator.type = accelerator
        job.requirements.accelerator.count = count
    return job


def experiment(daemon: DaemonHandle, title: str = "vertex test") -> int:
    return int(
        daemon.client.stub.CreateExperiment(
            pb.CreateExperimentRequest(experiment=pb.Experiment(title=title))
        ).id
    )


def add(daemon: DaemonHandle, experiment_id: int, *jobs: pb.Job) -> pb.WorkUnit:
    unit: pb.WorkUnit = daemon.client.stub.AddWorkUnit(
        pb.AddWorkUnitRequest(
            experiment_id=experiment_id, request_id=os.urandom(8).hex(), jobs=jobs
        )
    )
    return unit


def unit(daemon: DaemonHandle, experiment_id: int, work_unit_id: int) -> pb.WorkUnit:
    found: pb.WorkUnit = daemon.client.stub.GetWorkUnit(
        pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=work_unit_id)
    )
    return found


def wait_state(
    daemon: DaemonHandle, experiment_id: int, work_unit_id: int, *states: int, timeout: float = 60
) -> pb.WorkUnit:
    deadline = time.monotonic() + timeout
    while True:
        found = unit(daemon, experiment_id, work_unit_id)
        if found.status.state in states:
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


def logs(
    daemon: DaemonHandle,
    experiment_id: int,
    work_unit_id: int,
    job: str,
    *,
    stream: pb.LogStream = pb.LOG_STREAM_UNSPECIFIED,
    follow: bool = False,
) -> str:
    chunks = daemon.client.stub.StreamLogs(
        pb.StreamLogsRequest(
            experiment_id=experiment_id,
            work_unit_id=work_unit_id,
            job_name=job,
            stream=stream,
            follow=follow,
        ),
        timeout=60,
    )
    return b"".join(chunk.data for chunk in chunks).decode()


def test_a_gang_runs_with_image_args_and_env_intact(
    vertex_daemon: DaemonHandle, docker_vertex: FakeVertex, shell_image: str
) -> None:
    experiment_id = experiment(vertex_daemon, "Sweep: lr")
    tricky = [v for v in TRICKY_VALUES if "\n" not in v]
    added = add(
        vertex_daemon,
        experiment_id,
        vertex_job("chief", shell_image, *tricky, env={"TRICKY": "a b $HOME 'q'"}),
        vertex_job("worker", shell_image, "w", replicas=2),
    )
    done = wait_state(
        vertex_daemon,
        experiment_id,
        added.work_unit_id,
        pb.JOB_STATE_SUCCEEDED,
        pb.JOB_STATE_FAILED,
    )
    assert done.status.state == pb.JOB_STATE_SUCCEEDED, done.jobs[0].status.reason
    for job in done.jobs:
        assert job.status.native_state == "JOB_STATE_SUCCEEDED"
    [created] = docker_vertex.jobs()
    assert created.display_name == f"Sweep: lr_{added.work_unit_id}"
    assert created.labels["xm-experiment"] == str(experiment_id)
    pools = created.job_spec.worker_pool_specs
    assert [p.replica_count for p in pools] == [1, 2]
    assert pools[0].container_spec.image_uri == shell_image  # by digest
    assert pools[0].machine_spec.machine_type == "n1-standard-4"
    chief = logs(
        vertex_daemon, experiment_id, added.work_unit_id, "chief", stream=pb.LOG_STREAM_STDOUT
    )
    lines = chief.splitlines()
    assert lines[: len(tricky)] == [f"ARG[{v}]" for v in tricky]
    assert "ENV[a b $HOME 'q']" in lines
    assert "JOB[chief]" in lines
    assert "oops" in logs(
        vertex_daemon, experiment_id, added.work_unit_id, "chief", stream=pb.LOG_STREAM_STDERR
    )
    worker = logs(vertex_daemon, experiment_id, added.work_unit_id, "worker")
    assert "ARG[w]" in worker
    assert "[workerpool1-1] JOB[worker]" in worker
    assert "cpu?project=test-project" in done.jobs[0].log_location or done.jobs[0].log_location


def test_failure_cancel_and_follow(
    vertex_daemon: DaemonHandle, docker_vertex: FakeVertex, shell_image: str
) -> None:
    experiment_id = experiment(vertex_daemon)
    failing = add(vertex_daemon, experiment_id, vertex_job("main", shell_image, env={"CODE": "3"}))
    sleeping = add(
        vertex_daemon, experiment_id, vertex_job("main", shell_image, env={"NAP": "600"})
    )
    failed = wait_state(vertex_daemon, experiment_id, failing.work_unit_id, pb.JOB_STATE_FAILED)
    assert "non-zero status of 3" in failed.jobs[0].status.reason
    assert failed.jobs[0].status.exit_code == 3
    wait_state(vertex_daemon, experiment_id, sleeping.work_unit_id, pb.JOB_STATE_RUNNING)
    vertex_daemon.client.stub.CancelWorkUnit(
        pb.CancelWorkUnitRequest(experiment_id=experiment_id, work_unit_id=sleeping.work_unit_id)
    )
    cancelled = wait_state(
        vertex_daemon, experiment_id, sleeping.work_unit_id, pb.JOB_STATE_CANCELLED
    )
    assert cancelled.jobs[0].status.native_state == "JOB_STATE_CANCELLED"
    assert docker_vertex.calls["CancelCustomJob"] == 1
    followed = logs(vertex_daemon, experiment_id, sleeping.work_unit_id, "main", follow=True)
    assert "JOB[main]" in followed


def test_outside_failures_and_outages(
    vertex_daemon: DaemonHandle, docker_vertex: FakeVertex, shell_image: str
) -> None:
    experiment_id = experiment(vertex_daemon)
    first = add(vertex_daemon, experiment_id, vertex_job("main", shell_image, env={"NAP": "600"}))
    second = add(vertex_daemon, experiment_id, vertex_job("main", shell_image, env={"NAP": "600"}))
    wait_state(vertex_daemon, experiment_id, first.work_unit_id, pb.JOB_STATE_RUNNING)
    wait_state(vertex_daemon, experiment_id, second.work_unit_id, pb.JOB_STATE_RUNNING)
    # An outage and quota errors: nothing changes, then observation resumes.
    docker_vertex.inject(grpc.StatusCode.UNAVAILABLE, 5, {"ListCustomJobs"})
    docker_vertex.inject(grpc.StatusCode.RESOURCE_EXHAUSTED, 2, {"ListCustomJobs"})
    time.sleep(2)
    assert (
        unit(vertex_daemon, experiment_id, first.work_unit_id).status.state == pb.JOB_STATE_RUNNING
    )
    by_unit = {job.labels["xm-work-unit"]: job.name for job in docker_vertex.jobs()}
    docker_vertex.fail_job(
        by_unit[str(first.work_unit_id)], "The replica workerpool0-0 was preempted."
    )
    docker_vertex.cancel_from_outside(by_unit[str(second.work_unit_id)])
    failed = wait_state(
        vertex_daemon, experiment_id, first.work_unit_id, pb.JOB_STATE_FAILED, timeout=120
    )
    assert failed.jobs[0].status.reason == "The replica workerpool0-0 was preempted."
    wait_state(
        vertex_daemon, experiment_id, second.work_unit_id, pb.JOB_STATE_CANCELLED, timeout=60
    )


def test_kill_9_mid_run_loses_nothing(
    docker_vertex: FakeVertex, state_dir: Path, shell_image: str
) -> None:
    daemon = VertexDaemon(state_dir, daemon_flags(docker_vertex.address))
    daemon.start()
    try:
        experiment_id = experiment(daemon)
        running = add(daemon, experiment_id, vertex_job("main", shell_image, env={"NAP": "3"}))
        wait_state(daemon, experiment_id, running.work_unit_id, pb.JOB_STATE_RUNNING)
        daemon.kill()
        daemon.start()
        done = wait_state(
            daemon, experiment_id, running.work_unit_id, pb.JOB_STATE_SUCCEEDED, timeout=60
        )
        assert done.jobs[0].status.native_state == "JOB_STATE_SUCCEEDED"
        assert docker_vertex.calls["CreateCustomJob"] == 1
        assert "JOB[main]" in logs(daemon, experiment_id, running.work_unit_id, "main")
    finally:
        daemon.stop()


def test_add_time_refusals(vertex_daemon: DaemonHandle, shell_image: str) -> None:
    experiment_id = experiment(vertex_daemon)
    with pytest.raises(grpc.RpcError) as refused:
        add(
            vertex_daemon,
            experiment_id,
            vertex_job("main", shell_image, accelerator="A100", count=3),
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "jobs[0].requirements" in str(refused.value.details())
    assert "1, 2, 4, 8, 16" in str(refused.value.details())
    tarball = pb.Job(
        name="main",
        artifact=pb.Artifact(oci_image=pb.OciImage(tarball_path="/tmp/image.tar")),
        executor=pb.Executor(vertex=pb.VertexExecutor()),
    )
    with pytest.raises(grpc.RpcError) as refused:
        add(vertex_daemon, experiment_id, tarball)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "push_image_tag" in str(refused.value.details())


def test_network_and_tensorboard(
    vertex_daemon: DaemonHandle, docker_vertex: FakeVertex, shell_image: str
) -> None:
    """Wrong names are refused when added (naming the field and the form); right ones reach the
    CustomJob."""
    experiment_id = experiment(vertex_daemon)
    board = _create_tensorboard(docker_vertex)

    def refusal(**fields: str) -> str:
        job = vertex_job("main", shell_image)
        for name, value in fields.items():
            setattr(job.executor.vertex, name, value)
        with pytest.raises(grpc.RpcError) as refused:
            add(vertex_daemon, experiment_id, job)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        return str(refused.value.details())

    details = refusal(network="projects/my-project/global/networks/vpc")
    assert details.startswith("jobs[0].executor.vertex.network: ")
    assert "projects/PROJECT_NUMBER/global/networks/NETWORK" in details
    assert "jobs[0].executor.vertex.tensorboard: " in refusal(tensorboard="my-board")
    assert "region" in refusal(
        tensorboard=board.replace("us-central1", "europe-west4"),
        service_account="sa@test-project.iam.gserviceaccount.com",
        output_directory="gs://b/run",
    )
    assert "jobs[0].executor.vertex.service_account: " in refusal(
        tensorboard=board, output_directory="gs://b/run"
    )
    assert "jobs[0].executor.vertex.output_directory: " in refusal(
        tensorboard=board, service_account="sa@test-project.iam.gserviceaccount.com"
    )
    assert docker_vertex.jobs() == []  # nothing half-created

    job = vertex_job("main", shell_image)
    job.executor.vertex.network = "projects/123456789012/global/networks/research-vpc"
    job.executor.vertex.tensorboard = board
    job.executor.vertex.service_account = "sa@test-project.iam.gserviceaccount.com"
    job.executor.vertex.output_directory = "gs://b/run"
    added = add(vertex_daemon, experiment_id, job)
    wait_state(vertex_daemon, experiment_id, added.work_unit_id, pb.JOB_STATE_SUCCEEDED)
    [created] = docker_vertex.jobs()
    assert created.job_spec.network == "projects/123456789012/global/networks/research-vpc"
    assert created.job_spec.tensorboard == board
    assert created.job_spec.service_account == "sa@test-project.iam.gserviceaccount.com"


def _create_tensorboard(emulator: FakeVertex) -> str:
    from google.cloud import aiplatform_v1 as aip
    from google.cloud.aiplatform_v1.services.tensorboard_service.transports.grpc import (
        TensorboardServiceGrpcTransport,
    )

    client = aip.TensorboardServiceClient(
        transport=TensorboardServiceGrpcTransport(channel=grpc.insecure_channel(emulator.address))
    )
    operation: Any = client.create_tensorboard(
        parent="projects/test-project/locations/us-central1",
        tensorboard=aip.Tensorboard(display_name="daemon test"),
    )
    return str(operation.result(timeout=10).name)


def test_daemon_network_default(
    docker_vertex: FakeVertex, state_dir: Path, shell_image: str
) -> None:
    flags = daemon_flags(docker_vertex.address)
    with pytest.raises(daemon_process.DaemonStartError, match="vertex_network"):
        VertexDaemon(state_dir, [*flags, "--vertex_network=my-vpc"]).start()
    daemon = VertexDaemon(
        state_dir, [*flags, "--vertex_network=projects/42/global/networks/default"]
    )
    daemon.start()
    try:
        experiment_id = experiment(daemon)
        add(daemon, experiment_id, vertex_job("main", shell_image))
        deadline = time.monotonic() + 60
        while not docker_vertex.jobs():  # created by the dispatcher, soon after the add
            assert time.monotonic() < deadline
            time.sleep(0.05)
        [created] = docker_vertex.jobs()
        assert created.job_spec.network == "projects/42/global/networks/default"
    finally:
        daemon.stop()


def test_without_project_or_credentials(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, shell_image: str, tmp_path: Path
) -> None:
    for name in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no application-default credentials file
    daemon = VertexDaemon(state_dir, ["--grace_period_seconds=2"])
    daemon.start()
    try:
        experiment_id = experiment(daemon)
        with pytest.raises(grpc.RpcError) as refused:
            add(daemon, experiment_id, vertex_job("main", shell_image))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "GOOGLE_CLOUD_PROJECT" in str(refused.value.details())
        job = vertex_job("main", shell_image)
        job.executor.vertex.project = "p"
        with pytest.raises(grpc.RpcError) as refused:
            add(daemon, experiment_id, job)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "gcloud auth application-default login" in str(refused.value.details())
    finally:
        daemon.stop()
