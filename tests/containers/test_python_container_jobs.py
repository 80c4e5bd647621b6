"""xm.python_container end to end: a launch script packages it (no docker build), the real daemon
loads the tarball into Docker Engine and runs it with the job's arguments."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.containers.conftest import job_file, wait_no_leftovers
from tests.images import bazel
from tests.support.daemon import DaemonHandle, list_work_units, run_cli
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.xm_local import image_cache

pytestmark = pytest.mark.docker

BASE_LABEL = "//xm_rules/debian:python_base"


def test_python_container_job_runs_through_the_daemon(
    daemon: DaemonHandle, docker_client: Any, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    base = bazel.build_images([BASE_LABEL])[BASE_LABEL].tarball
    shutil.copyfile(base, cache / image_cache.BASE_IMAGE_NAME)
    project = tmp_path / "trainer_project"
    (project / "trainer").mkdir(parents=True)
    (project / "trainer" / "__init__.py").write_text("")
    (project / "trainer" / "main.py").write_text(
        "import os, sys\nprint('trained', sys.argv[1:], os.environ.get('XM_JOB_NAME'))\n"
    )
    script = tmp_path / "launch.py"
    script.write_text(
        textwrap.dedent(
            """
            from xmanager import xm, xm_local
            with xm_local.create_experiment(experiment_title='python_container') as experiment:
                [executable] = experiment.package([xm.python_container(
                    executor_spec=xm_local.Local.Spec(),
                    path='trainer_project',
                    entrypoint=xm.ModuleName('trainer.main'),
                    args={'steps': 3},
                )])
                experiment.add(xm.Job(executable, executor=xm_local.Local(), args={'lr': 0.5}))
            print('EXPERIMENT', experiment.experiment_id)
            """
        )
    )
    result = run_cli(["launch", str(script)], env={**daemon.env(), "XM_CACHE_DIR": str(cache)})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "python_container source: 2 files" in output
    experiment_id = next(
        int(line.split()[1]) for line in output.splitlines() if line.startswith("EXPERIMENT ")
    )
    (unit,) = list_work_units(daemon.client, experiment_id)
    (job,) = unit.jobs
    assert job.status.state == pb.JOB_STATE_SUCCEEDED, job.status
    assert job.artifact.oci_image.digest.startswith("sha256:")
    stdout = job_file(daemon, experiment_id, 1, job.name, "stdout.log").decode()
    assert stdout == f"trained ['--steps=3', '--lr=0.5'] {job.name}\n"
    wait_no_leftovers(docker_client, daemon.state.root)
