"""XManager's multi-worker Kubernetes launch script through `xmanager launch`, on the emulated
cluster, with a stand-in trainer image; statuses and logs through `xmanager show/logs`."""

from __future__ import annotations

from tests.kubernetes.conftest import RegistryImages
from tests.kubernetes.test_backend import _final
from tests.support.daemon import ROOT, DaemonHandle, list_work_units, run_cli
from xmanager.launcher.v1 import launcher_pb2 as pb

SCRIPT = ROOT / "examples" / "kubernetes_multiworker" / "launcher.py"


def test_the_multiworker_example_runs_on_the_cluster(
    k8s_daemon: DaemonHandle, registry_images: RegistryImages
) -> None:
    env = k8s_daemon.env()
    result = run_cli(
        [
            "launch",
            str(SCRIPT),
            "--",
            "--xm_wrap_late_bindings",
            f"--image={registry_images.trainer}",
        ],
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    [experiment] = k8s_daemon.client.stub.ListExperiments(pb.ListExperimentsRequest()).experiments
    [unit] = list_work_units(k8s_daemon.client, experiment.id)
    done = _final(k8s_daemon, experiment.id, unit.work_unit_id)
    assert done.status.state == pb.JOB_STATE_SUCCEEDED, done
    assert sorted(job.name for job in done.jobs) == ["worker-0", "worker-1", "worker-2"]
    for job in done.jobs:
        assert job.requirements.accelerator.type == "T4"

    shown = run_cli(["show", str(experiment.id)], env=env)
    assert shown.returncode == 0, shown.stderr
    assert "worker-2" in shown.stdout
    assert "SUCCEEDED" in shown.stdout.upper()
    logs = run_cli(["logs", f"{experiment.id}/{unit.work_unit_id}/worker-0"], env=env)
    assert logs.returncode == 0, logs.stderr
    assert "worker 0 of 3, args: --learning_rate=0.001" in logs.stdout
    assert "all 3 workers met" in logs.stdout
    logs = run_cli(["logs", f"{experiment.id}/{unit.work_unit_id}/worker-2"], env=env)
    assert f"reached xm-{experiment.id}-{unit.work_unit_id}-worker-0-0." in logs.stdout
