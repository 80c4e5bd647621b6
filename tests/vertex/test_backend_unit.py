"""The backend in process against the simulated emulator: outages at create, re-attach, cancel."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from launcher_server.backends.base import BackendContext
from launcher_server.backends.vertex.backend import VertexBackend
from launcher_server.config import DaemonConfig
from launcher_server.job_dirs import JobDirs
from launcher_server.jobs import JobKey, JobObservation, LaunchSpec
from tests.fakes.vertex import FakeVertex
from tests.vertex.test_emulator import wait_for
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.state_dir import StateDir

IMAGE = "127.0.0.1:5000/x@sha256:" + "0" * 64


class Reports:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[JobObservation] = []

    def __call__(self, observation: JobObservation) -> None:
        with self.lock:
            self.seen.append(observation)

    def states(self, key: JobKey) -> list[int]:
        with self.lock:
            return [o.state for o in self.seen if o.key == key]


@pytest.fixture
def emulator() -> Iterator[FakeVertex]:
    with FakeVertex(simulate=True, queue_seconds=0.01) as fake:
        yield fake


def make_backend(emulator: FakeVertex, tmp_path: Path, reports: Reports) -> VertexBackend:
    address = f"http://{emulator.address}"
    config = DaemonConfig(
        state_dir=StateDir.resolve(tmp_path),
        vertex_project="test-project",
        vertex_region="us-central1",
        vertex_endpoint=address,
        vertex_logging_endpoint=address,
        vertex_poll_min_seconds=0.05,
        vertex_poll_max_seconds=0.2,
    )
    return VertexBackend(BackendContext(reports, JobDirs(tmp_path / "jobs"), config))


def launch_spec(unit: int, seconds: str = "0.3") -> LaunchSpec:
    job = pb.Job(
        name="main",
        artifact=pb.Artifact(oci_image=pb.OciImage(reference=IMAGE)),
        env={"FAKE_RUN_SECONDS": seconds},
        executor=pb.Executor(vertex=pb.VertexExecutor()),
    )
    key = JobKey(1, unit, "main")
    return LaunchSpec(key=key, job=job, args=(), env=dict(job.env), experiment_title="t")


def test_create_outage_is_retried_once_created(emulator: FakeVertex, tmp_path: Path) -> None:
    reports = Reports()
    backend = make_backend(emulator, tmp_path, reports)
    try:
        emulator.inject(grpc.StatusCode.UNAVAILABLE, 2, {"CreateCustomJob"})
        spec = launch_spec(1)
        assert backend.start([spec]) == [""]
        # During the outage the next start does not wait on the endpoint: straight to retries.
        other = launch_spec(2)
        assert backend.start([other]) == [""]
        wait_for(lambda: reports.states(spec.key), lambda s: pb.JOB_STATE_SUCCEEDED in s)
        wait_for(lambda: reports.states(other.key), lambda s: pb.JOB_STATE_SUCCEEDED in s)
        assert len(emulator.jobs()) == 2  # each created once
        # After a restart with no recorded handle: found by its labels, never created again.
        again = make_backend(emulator, tmp_path, Reports())
        assert again.reattach(spec.key, "").state == pb.JOB_STATE_SUCCEEDED
        assert again.reattach(JobKey(1, 99, "main"), "").state == pb.JOB_STATE_PENDING
        again.close()
    finally:
        backend.close()


def test_cancel_while_creation_is_retried(emulator: FakeVertex, tmp_path: Path) -> None:
    reports = Reports()
    backend = make_backend(emulator, tmp_path, reports)
    try:
        emulator.inject(grpc.StatusCode.RESOURCE_EXHAUSTED, 1000, {"CreateCustomJob"})
        spec = launch_spec(1)
        assert backend.start([spec]) == [""]
        backend.cancel(spec.key, "", datetime.timedelta(seconds=1))
        wait_for(lambda: reports.states(spec.key), lambda s: pb.JOB_STATE_CANCELLED in s)
        assert emulator.jobs() == []
    finally:
        backend.close()


def test_reattach_by_resource_name_and_lost(emulator: FakeVertex, tmp_path: Path) -> None:
    reports = Reports()
    backend = make_backend(emulator, tmp_path, reports)
    try:
        spec = launch_spec(1, seconds="600")
        [handle] = backend.start([spec])
        assert handle.endswith("#workerpool0")
        wait_for(lambda: reports.states(spec.key), lambda s: pb.JOB_STATE_RUNNING in s)
        restarted = make_backend(emulator, tmp_path, reports)
        assert restarted.reattach(spec.key, handle).state == pb.JOB_STATE_RUNNING
        restarted.cancel(spec.key, handle, datetime.timedelta(seconds=1))
        wait_for(lambda: reports.states(spec.key), lambda s: pb.JOB_STATE_CANCELLED in s)
        restarted.close()
        name = handle.split("#")[0]
        from tests.vertex.conftest import job_client

        job_client(emulator.address).delete_custom_job(name=name).result()
        assert backend.reattach(spec.key, handle).state == pb.JOB_STATE_LOST
    finally:
        backend.close()
