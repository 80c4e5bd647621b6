"""A launch script in the style of XManager's examples/cifar10_torch (asyncio experiment, a
Vertex JobGroup of nodes with GPUs, a late-bound chief address, waiting for completion), run
through `xmanager launch` against the emulator."""

from __future__ import annotations

import shutil
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud.aiplatform_v1 import JobState as State

from tests.fakes.vertex import FakeVertex
from tests.support.daemon import run_cli
from tests.vertex import registry
from tests.vertex.test_backend_daemon import VertexDaemon, daemon_flags
from xmanager.launcher.v1 import launcher_pb2 as pb

pytestmark = pytest.mark.docker

# Written for this test after the shape of XManager's example (not a copy of it): absl FLAGS, an
# image or a PythonContainer, one JobGroup of Vertex nodes per trial, and the waits after the
# `async with` block has ended.
LAUNCHER = """
r\"\"\"Launches CIFAR-10 style trials on Vertex AI.

Usage:

xmanager launch launcher.py -- --xm_wrap_late_bindings [--image_path=REGISTRY/IMAGE:TAG]
\"\"\"

import itertools

from absl import app
from absl import flags
from xmanager import xm
from xmanager import xm_local
from xmanager.cloud import utils

FLAGS = flags.FLAGS
flags.DEFINE_string("image_path", None, "A pushed trainer image.")
flags.DEFINE_integer("nodes", 1, "Nodes per trial.")
flags.DEFINE_integer("gpus_per_node", 2, "T4 GPUs per node.")


@xm.run_in_asyncio_loop
async def main(_):
    async with xm_local.create_experiment(experiment_title="cifar10") as experiment:
        if FLAGS.image_path:
            spec = xm.Container(image_path=FLAGS.image_path)
        else:
            spec = xm.PythonContainer(
                path=".",
                base_image="gcr.io/deeplearning-platform-release/pytorch-gpu.1-12",
                entrypoint=xm.ModuleName("cifar10"),
            )
        [executable] = experiment.package([
            xm.Packageable(
                executable_spec=spec,
                executor_spec=xm_local.Vertex.Spec(),
                args={"master_addr_port": xm.ShellSafeArg(
                    utils.get_workerpool_address("workerpool0"))},
            )
        ])
        trials = [
            {"batch_size": batch_size, "learning_rate": learning_rate}
            for batch_size, learning_rate in itertools.product([64, 1024], [0.1, 0.001])
        ]
        work_units = []
        for trial in trials:
            job_group = xm.JobGroup()
            for rank in range(FLAGS.nodes):
                hyperparameters = dict(trial, world_size=FLAGS.nodes, rank=rank)
                job_group.jobs[f"node_{rank}"] = xm.Job(
                    executable=executable,
                    executor=xm_local.Vertex(xm.JobRequirements(t4=FLAGS.gpus_per_node)),
                    args=hyperparameters,
                )
            work_units.append(await experiment.add(job_group))
        print("Waiting for async launches to return values...")
    for work_unit in work_units:
        await work_unit.wait_until_complete()
    print("Experiment completed.")


if __name__ == "__main__":
    app.run(main)
"""

# Prints its arguments and the chief's address from CLUSTER_SPEC, as a trainer would use them.
TRAINER = [
    "/bin/sh",
    "-c",
    'for a in "$@"; do echo "ARG[$a]"; done; echo "CLUSTER[$CLUSTER_SPEC]"',
    "cifar10",
]


@pytest.fixture
def daemon(docker_vertex: FakeVertex) -> Iterator[VertexDaemon]:
    path = Path(tempfile.mkdtemp(prefix="xm-vc-", dir="/tmp"))
    handle = VertexDaemon(path, daemon_flags(docker_vertex.address))
    handle.start()
    yield handle
    handle.stop()
    shutil.rmtree(path, ignore_errors=True)


def test_cifar10_style_script_runs_unchanged(
    daemon: VertexDaemon, docker_vertex: FakeVertex, oci_registry: str, tmp_path: Path
) -> None:
    image = registry.push_image(
        oci_registry, "xm-vertex-test/cifar10", tmp_path, entrypoint=TRAINER, cmd=None
    )
    script = tmp_path / "launcher.py"
    script.write_text(textwrap.dedent(LAUNCHER))
    launched = run_cli(
        [
            "launch",
            str(script),
            "--",
            "--xm_wrap_late_bindings",
            f"--image_path={image}",
            "--nodes=2",
        ],
        env=daemon.env(),
        timeout=600,
    )
    assert launched.returncode == 0, launched.stdout + launched.stderr
    # The waits after the block held the script until every trial ended.
    out = launched.stdout
    assert "Experiment completed." in out, out + launched.stderr
    assert out.index("Waiting for async launches") < out.index("Experiment completed.")
    jobs = docker_vertex.jobs()
    assert len(jobs) == 4
    assert all(job.state == State.JOB_STATE_SUCCEEDED for job in jobs), jobs
    for job in jobs:
        pools = job.job_spec.worker_pool_specs
        assert len(pools) == 2
        assert pools[0].machine_spec.accelerator_count == 2
        assert pools[0].container_spec.image_uri == image
        assert pools[0].container_spec.args[0] == "--master_addr_port=%objectname(workerpool0)%"
    [experiment] = daemon.client.stub.ListExperiments(pb.ListExperimentsRequest()).experiments
    logs = run_cli(["logs", f"{experiment.id}/1/node_1"], env=daemon.env())
    assert "ARG[--rank=1]" in logs.stdout, logs.stdout + logs.stderr
    assert "workerpool0-0:2222" in logs.stdout


PY_LAUNCHER = """
from xmanager import xm, xm_local

with xm_local.create_experiment(experiment_title="python container") as experiment:
    [executable] = experiment.package([
        xm.python_container(
            executor_spec=xm_local.Vertex.Spec(push_image_tag={tag!r}),
            path={path!r},
            entrypoint=xm.ModuleName("train"),
        )
    ])
    experiment.add(xm.Job(
        executable, xm_local.Vertex(requirements=xm.JobRequirements(t4=1)), args={{"lr": 0.1}}
    ))
"""


def test_python_container_pushed_at_packaging(
    daemon: VertexDaemon, docker_vertex: FakeVertex, oci_registry: str, tmp_path: Path
) -> None:
    project = tmp_path / "trainer"
    project.mkdir()
    (project / "requirements.txt").write_text("")
    (project / "train.py").write_text("import sys\nprint('TRAIN', sys.argv[1:])\n")
    script = tmp_path / "launch.py"
    tag = f"{oci_registry}/xm-vertex-test/trainer:latest"
    script.write_text(PY_LAUNCHER.format(tag=tag, path=str(project)))
    launched = run_cli(["launch", str(script)], env=daemon.env(), timeout=600)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    deadline = time.monotonic() + 120
    while not docker_vertex.jobs() or docker_vertex.jobs()[0].state != 4:
        assert time.monotonic() < deadline, docker_vertex.jobs()
        time.sleep(0.5)
    [job] = docker_vertex.jobs()
    uri = job.job_spec.worker_pool_specs[0].container_spec.image_uri
    assert uri.startswith(f"{oci_registry}/xm-vertex-test/trainer@sha256:")
    [experiment] = daemon.client.stub.ListExperiments(pb.ListExperimentsRequest()).experiments
    logs = run_cli(["logs", f"{experiment.id}/1"], env=daemon.env())
    assert "TRAIN ['--lr=0.1']" in logs.stdout, logs.stdout + logs.stderr
