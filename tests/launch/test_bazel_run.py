"""Launch scripts under `bazel run` of their xm_launch targets, end to end through a real daemon.

The executables come from the target's manifest: no nested Bazel runs. The workspace is built by
`bazel build //...` before pytest in CI, so each `bazel run` here only starts the script.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.images import bazel
from tests.support.daemon import ROOT, DaemonHandle, kill_job_processes, list_work_units
from xmanager.launcher.v1 import launcher_pb2 as pb

pytestmark = pytest.mark.bazel


def _bazel_run(
    target: str, *flags: str, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = bazel.run(["run", *bazel.QUIET, target, "--", *flags], env=env, check=False)
    if check:
        assert result.returncode == 0, f"bazel run {target} failed:\n{result.stderr[-5000:]}"
    return result


def _containers(daemon: DaemonHandle) -> bool:
    backends = daemon.client.server_info.backends
    return any(b.name == "local_container" and b.available for b in backends)


def _last_experiment(daemon: DaemonHandle) -> pb.Experiment:
    response: pb.ListExperimentsResponse = daemon.client.stub.ListExperiments(
        pb.ListExperimentsRequest()
    )
    return max(response.experiments, key=lambda e: e.id)


def _assert_from_output_tree(artifact: pb.Artifact) -> None:
    """Built by Bazel, and outside the launcher's runfiles (the daemon runs it on its own)."""
    path = (
        artifact.oci_image.tarball_path
        if artifact.WhichOneof("kind") == "oci_image"
        else artifact.local_binary.path
    )
    assert "/bazel-out/" in path
    assert ".runfiles/" not in path


def test_quickstart_sweep(launch_daemon: DaemonHandle) -> None:
    result = _bazel_run("//examples/quickstart:launch", "--steps=50", env=launch_daemon.env())
    assert "4 work unit(s) finished" in result.stdout + result.stderr
    experiment = _last_experiment(launch_daemon)
    assert experiment.title == "quickstart sweep"
    assert experiment.launch_script_path == str(ROOT / "examples" / "quickstart" / "launch.py")
    units = list_work_units(launch_daemon.client, experiment.id)
    assert [u.status.state for u in units] == [pb.JOB_STATE_SUCCEEDED] * 4
    kind = "oci_image" if _containers(launch_daemon) else "local_binary"
    for unit in units:
        (job,) = unit.jobs
        assert job.artifact.WhichOneof("kind") == kind
        _assert_from_output_tree(job.artifact)
    if kind == "oci_image":
        digest = (ROOT / "bazel-bin" / "examples" / "quickstart" / "train_image.digest").read_text()
        assert units[0].jobs[0].artifact.oci_image.digest == digest


@pytest.mark.parametrize("run_as", ["auto", "binary"])
def test_job_group(launch_daemon: DaemonHandle, run_as: str) -> None:
    if run_as == "binary" and not _containers(launch_daemon):
        pytest.skip("`auto` already ran the jobs as processes")
    _bazel_run("//examples/job_group:launch", f"--run_as={run_as}", env=launch_daemon.env())
    experiment = _last_experiment(launch_daemon)
    assert experiment.title == "job group: echo"
    (unit,) = list_work_units(launch_daemon.client, experiment.id)
    assert unit.status.state == pb.JOB_STATE_SUCCEEDED
    assert {job.name: job.status.state for job in unit.jobs} == {
        "server": pb.JOB_STATE_SUCCEEDED,
        "client": pb.JOB_STATE_SUCCEEDED,
    }
    containers = run_as == "auto" and _containers(launch_daemon)
    for job in unit.jobs:
        assert job.artifact.WhichOneof("kind") == ("oci_image" if containers else "local_binary")
        _assert_from_output_tree(job.artifact)


def test_xm_compat_example(launch_daemon: DaemonHandle) -> None:
    result = _bazel_run("//examples/xm_compat:launch", "--seeds=1", env=launch_daemon.env())
    assert "executable: sh" in result.stdout
    experiment = _last_experiment(launch_daemon)
    assert experiment.title == "xm compat"
    units = list_work_units(launch_daemon.client, experiment.id)
    assert [u.status.state for u in units] == [pb.JOB_STATE_SUCCEEDED] * 2


def test_a_label_the_target_does_not_list(launch_daemon: DaemonHandle) -> None:
    result = _bazel_run("//tests/launch:unlisted", env=launch_daemon.env(), check=False)
    assert result.returncode == 1
    assert result.stderr.rstrip().splitlines()[-1] == (
        "xmanager: //tests/launch:not_listed is not among the executables of the xm_launch "
        "target //tests/launch:unlisted: add it to that target's `executables` and `bazel run` "
        "it again (it lists: //tests/launch:hello)"
    )


def test_without_a_daemon_the_installed_command_starts_one() -> None:
    state = Path(tempfile.mkdtemp(prefix="xm-", dir="/tmp"))
    env = {**os.environ, "XM_STATE_DIR": str(state)}
    env.pop("XM_LAUNCHER_ADDRESS", None)
    handle = DaemonHandle(state)
    try:
        # Without `xmanager` on PATH, the Bazel-built client cannot start a daemon: it says so.
        bare = {**env, "PATH": "/usr/bin:/bin"}
        result = _bazel_run("//tests/launch:unlisted", env=bare, check=False)
        assert result.returncode == 1
        assert "no launcher daemon runs for" in result.stderr
        assert "xmanager daemon start" in result.stderr
        # With the virtual environment's `xmanager`, a daemon starts before the script runs.
        venv = {**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"}
        result = _bazel_run("//tests/launch:unlisted", env=venv, check=False)
        assert "is not among the executables" in result.stderr  # the script ran
        handle.attach()
    finally:
        handle.stop()
        kill_job_processes(state)
        shutil.rmtree(state, ignore_errors=True)


def test_executables_must_be_binaries_or_images() -> None:
    result = bazel.run(["build", *bazel.QUIET, "//tests/launch:not_executable"], check=False)
    assert result.returncode != 0
    assert (
        "executables: @@//tests/launch:library is neither an executable target (py_binary, "
        "sh_binary, ...) nor an image (xm_oci_image, xm_py_image)"
    ) in result.stderr
