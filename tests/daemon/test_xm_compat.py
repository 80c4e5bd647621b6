"""XManager 0.8.5 compatibility through a real daemon: the example launch script, add args,
derived names, and which XM_ variables are reserved."""

from __future__ import annotations

import textwrap
from pathlib import Path

import grpc
import pytest

from tests.support.daemon import ROOT, DaemonHandle, list_work_units, local_job, run_cli
from xmanager.launcher import contract
from xmanager.launcher.v1 import launcher_pb2 as pb


def _log(daemon: DaemonHandle, experiment_id: int, work_unit_id: int, job: str) -> str:
    chunks = daemon.client.stub.StreamLogs(
        pb.StreamLogsRequest(
            experiment_id=experiment_id,
            work_unit_id=work_unit_id,
            job_name=job,
            stream=pb.LOG_STREAM_STDOUT,
        )
    )
    return b"".join(chunk.data for chunk in chunks).decode()


def test_the_xm_compat_example_runs_as_with_xmanager(daemon: DaemonHandle) -> None:
    script = ROOT / "examples" / "xm_compat" / "launch.py"
    # A variable set in the shell, and the working directory, reach local jobs (XManager's
    # semantics); run_cli runs the launch script from the repository's root.
    env = {**daemon.env(), "TRACKER_PROJECT": "compat-demo"}
    result = run_cli(["launch", str(script), "--", "--seeds=2"], env=env)
    assert result.returncode == 0, result.stderr
    assert "executable: sh" in result.stdout
    [experiment] = daemon.client.stub.ListExperiments(pb.ListExperimentsRequest()).experiments
    units = list_work_units(daemon.client, experiment.id)
    assert [u.status.state for u in units] == [pb.JOB_STATE_SUCCEEDED] * 3
    where = f" TRACKER_PROJECT=compat-demo in {ROOT.resolve()}"
    # A lone Job: 'args' and 'env_vars' from add merged into it; named after the binary.
    for seed in (0, 1):
        assert _log(daemon, experiment.id, seed + 1, "sh") == (
            f"--seed={seed} SEED={seed} XM_USER_SETTING=kept XM_JOB_NAME=sh{where}\n"
        )
    # A JobGroup given the same args for all its jobs (xm.get_args_for_all_jobs).
    for job in ("learner", "evaluator"):
        assert _log(daemon, experiment.id, 3, job) == (
            f"--seed=99 SEED= XM_USER_SETTING=kept XM_JOB_NAME={job}{where}\n"
        )
    assert units[0].args_json == '{"args": {"seed": 0}, "env_vars": {"SEED": "0"}}'


def test_only_the_launchers_variables_are_reserved(daemon: DaemonHandle, tmp_path: Path) -> None:
    stub = daemon.client.stub
    experiment = stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="env"))
    )
    # A user variable that merely starts with XM_ passes through the daemon to the job.
    user = {"XM_SETTING": "mine", "XM_": "bare"}
    stub.AddWorkUnit(
        pb.AddWorkUnitRequest(
            experiment_id=experiment.id,
            jobs=[local_job("env", "/bin/sh", "-c", 'echo "$XM_SETTING $XM_"', env=user)],
            request_id="env-1",
        )
    )
    daemon.wait_all_final(experiment.id, 1)
    assert _log(daemon, experiment.id, 1, "env") == "mine bare\n"
    # Each of the launcher's own names is refused by the daemon...
    for i, name in enumerate(contract.LAUNCHER_ENV_VARS):
        with pytest.raises(grpc.RpcError) as refused:
            stub.AddWorkUnit(
                pb.AddWorkUnitRequest(
                    experiment_id=experiment.id,
                    jobs=[local_job("env", "/bin/true", env={name: "x"})],
                    request_id=f"reserved-{i}",
                )
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"{name} is set by the launcher in every job" in str(refused.value.details())
    # ...and by the client, before the work unit reaches the daemon.
    script = tmp_path / "reserved.py"
    script.write_text(
        textwrap.dedent(
            """
            from xmanager import xm, xm_local
            with xm_local.create_experiment(experiment_title='reserved') as experiment:
                [executable] = experiment.package([
                    xm.Packageable(xm.Binary(path='/bin/true'), xm_local.Local.Spec())])
                experiment.add(xm.Job(executable, xm_local.Local(),
                                      env_vars={'XM_WORK_UNIT_ID': '7'}))
            """
        )
    )
    result = run_cli(["launch", str(script)], env=daemon.env())
    assert result.returncode != 0
    assert "XM_WORK_UNIT_ID is set by the launcher in every job" in result.stderr
