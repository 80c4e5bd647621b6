"""`xmanager delete EXP`: removes a finished experiment; refuses one still running, in a line."""

from __future__ import annotations

from pathlib import Path

from tests.support.daemon import DaemonHandle, local_job, make_executable, run_cli
from xmanager.launcher.v1 import launcher_pb2 as pb


def test_delete_a_finished_experiment_and_refuse_a_running_one(
    daemon: DaemonHandle, tmp_path: Path
) -> None:
    stub = daemon.client.stub
    done = stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="finished sweep"))
    ).id
    stub.AddWorkUnit(
        pb.AddWorkUnitRequest(
            experiment_id=done, request_id="done", jobs=[local_job("main", "/bin/true")]
        )
    )
    daemon.wait_all_final(done, 1)
    sleeper = make_executable(tmp_path / "sleep.sh", "#!/bin/sh\nexec sleep 60\n")
    busy = stub.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(title="still running"))
    ).id
    stub.AddWorkUnit(
        pb.AddWorkUnitRequest(experiment_id=busy, request_id="busy", jobs=[local_job("m", sleeper)])
    )
    env = daemon.env()

    deleted = run_cli(["delete", str(done)], env)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"deleted experiment {done} (1 work unit(s))"
    listed = run_cli(["list"], env)
    assert "finished sweep" not in listed.stdout
    assert "still running" in listed.stdout

    refused = run_cli(["delete", str(busy)], env)
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "FAILED_PRECONDITION" in refused.stderr
    assert f"xmanager cancel {busy}" in refused.stderr
    missing = run_cli(["delete", str(done)], env)
    assert missing.returncode == 1
    assert "NOT_FOUND" in missing.stderr
    stub.CancelExperiment(pb.CancelExperimentRequest(experiment_id=busy))
    daemon.wait_all_final(busy, 1)
