"""A launch script with xm_local.Vertex through `xmanager launch`, run by the emulator."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.vertex import FakeVertex
from tests.support.daemon import TRICKY_VALUES, run_cli
from tests.vertex.test_backend_daemon import VertexDaemon, daemon_flags
from xmanager.launcher.v1 import launcher_pb2 as pb

pytestmark = pytest.mark.docker

SCRIPT = """
import asyncio

from absl import app
from xmanager import xm, xm_local
from xmanager.cloud import vertex

IMAGE = {image!r}
VALUES = {values!r}
TRAIN = 'for a in "$@"; do printf "ARG[%s]\\\\n" "$a"; done; echo "LR[$LR]"; sleep "$NAP"'


def main(_):
    client = vertex.Client(project="test-project", location="us-central1")
    vertex.set_default_client(client)
    board = asyncio.run(client.get_or_create_tensorboard("vertex e2e"))
    # The first work unit streams to a TensorBoard from a peered network, as XManager scripts
    # write it (plus this launcher's service_account and network keywords).
    streaming = dict(
        tensorboard=xm_local.TensorboardCapability(name=board, base_output_directory="bkt/e2e"),
        service_account="trainer@test-project.iam.gserviceaccount.com",
        network="projects/123456789012/global/networks/research-vpc",
    )
    with xm_local.create_experiment(experiment_title="vertex e2e") as experiment:
        [image] = experiment.package(
            [xm.Packageable(xm.Container(image_path=IMAGE), xm_local.Vertex.Spec())]
        )
        for nap in ("0", "600"):
            extra = streaming if nap == "0" else dict()
            experiment.add(
                xm.JobGroup(
                    trainer=xm.Job(
                        image,
                        xm_local.Vertex(requirements=xm.JobRequirements(cpu=4, t4=1), **extra),
                        args=["-c", TRAIN, "train", *VALUES],
                        env_vars={{"LR": "0.1"}},
                    ),
                    worker=xm.Job(
                        image,
                        xm_local.Caip(requirements=xm.JobRequirements(replicas=2), **extra),
                        args=["-c", "echo worker $CLOUD_ML_JOB_ID"],
                    ),
                ),
                args={{"trainer": {{"env_vars": {{"NAP": nap}}}}}},
            )


if __name__ == "__main__":
    app.run(main)
"""


@pytest.fixture
def daemon(docker_vertex: FakeVertex) -> Iterator[VertexDaemon]:
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="xm-vl-", dir="/tmp"))
    handle = VertexDaemon(path, daemon_flags(docker_vertex.address))
    handle.start()
    yield handle
    handle.stop()
    shutil.rmtree(path, ignore_errors=True)


def test_launch_show_logs_cancel(
    daemon: VertexDaemon, docker_vertex: FakeVertex, shell_image: str, tmp_path: Path
) -> None:
    values = [v for v in TRICKY_VALUES if "\n" not in v]
    script = tmp_path / "launch.py"
    script.write_text(textwrap.dedent(SCRIPT.format(image=shell_image, values=values)))
    env = {**daemon.env(), "XM_VERTEX_ENDPOINT": f"http://{docker_vertex.address}"}
    # As with XManager, the script does not wait for Vertex AI jobs.
    launched = run_cli(["launch", str(script)], env=env, timeout=300)
    output = launched.stdout + launched.stderr
    assert launched.returncode == 0, output
    [experiment] = daemon.client.stub.ListExperiments(pb.ListExperimentsRequest()).experiments
    deadline = time.monotonic() + 60
    while len(docker_vertex.jobs()) < 2:
        assert time.monotonic() < deadline, docker_vertex.jobs()
        time.sleep(0.2)
    [first] = [job for job in docker_vertex.jobs() if job.labels["xm-work-unit"] == "1"]
    chief_pool = first.job_spec.worker_pool_specs[0]
    assert chief_pool.machine_spec.machine_type == "n1-standard-4"
    assert chief_pool.container_spec.image_uri == shell_image
    [board] = docker_vertex.tensorboards.tensorboards()  # created by the script
    assert board.display_name == "vertex e2e"
    assert first.job_spec.tensorboard == board.name
    assert first.job_spec.base_output_directory.output_uri_prefix == "gs://bkt/e2e"
    assert first.job_spec.service_account == "trainer@test-project.iam.gserviceaccount.com"
    assert first.job_spec.network == "projects/123456789012/global/networks/research-vpc"

    deadline = time.monotonic() + 120
    while True:
        shown = run_cli(["show", f"{experiment.id}/1"], env=env)
        if "SUCCEEDED" in shown.stdout:
            break
        assert time.monotonic() < deadline, shown.stdout + shown.stderr
        time.sleep(1)
    assert "console.cloud.google.com/vertex-ai" in shown.stdout, shown.stdout
    logs = run_cli(["logs", f"{experiment.id}/1/trainer"], env=env)
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert [line for line in lines if line.startswith("ARG[")] == [f"ARG[{v}]" for v in values]
    assert "LR[0.1]" in lines
    worker = run_cli(["logs", f"{experiment.id}/1/worker"], env=env)
    assert "worker " in worker.stdout

    cancelled = run_cli(["cancel", f"{experiment.id}/2"], env=env)
    assert cancelled.returncode == 0, cancelled.stderr
    deadline = time.monotonic() + 120
    while "CANCELLED" not in (shown := run_cli(["show", f"{experiment.id}/2"], env=env)).stdout:
        assert time.monotonic() < deadline, shown.stdout
        time.sleep(1)
