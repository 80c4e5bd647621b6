"""XManager's multi-worker Kubernetes launch script, unchanged, through `xmanager launch`, on the
emulated cluster: its xm.PythonContainer is built on a gcr.io base and pushed to gcr.io, both sent
to the loopback registry by `$XM_REGISTRY_MIRRORS`; statuses and logs through `xmanager
show/logs`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.images import bazel
from tests.kubernetes import cluster
from tests.kubernetes.conftest import RegistryImages
from tests.kubernetes.test_backend import _final
from tests.support.daemon import ROOT, DaemonHandle, list_work_units, run_cli
from xmanager.launcher.v1 import launcher_pb2 as pb

SCRIPT = ROOT / "examples" / "kubernetes_multiworker" / "launcher.py"
BASE_LABEL = "//xm_rules/debian:python_base"
# The script's base_image, without its registry: what the mirror serves it as.
TF2_BASE = "deeplearning-platform-release/tf2-gpu.2-6"
PROJECT = "xm-test-project"


@pytest.fixture(scope="module")
def tf2_base(registry_images: RegistryImages) -> str:
    """The project's Python base (built by Bazel) standing in for the TensorFlow base, in the
    loopback registry where `gcr.io/deeplearning-platform-release/tf2-gpu.2-6` is mirrored."""
    layout = bazel.build_images([BASE_LABEL])[BASE_LABEL].layout
    cluster.push_layout(layout, f"{registry_images.host}/{TF2_BASE}:latest")
    return TF2_BASE


def test_the_multiworker_example_runs_on_the_cluster(
    k8s_daemon: DaemonHandle, registry_images: RegistryImages, tf2_base: str, tmp_path: Path
) -> None:
    env = {
        **k8s_daemon.env(),
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "XM_REGISTRY_MIRRORS": f"gcr.io={registry_images.host}",
        "XM_CACHE_DIR": str(tmp_path / "cache"),
        "DOCKER_CONFIG": str(tmp_path / "no-docker-config"),
    }
    result = run_cli(["launch", str(SCRIPT), "--", "--xm_wrap_late_bindings"], env=env, timeout=300)
    output = result.stderr + result.stdout
    assert result.returncode == 0, output
    pulled = f"pulling gcr.io/{tf2_base} from its mirror {registry_images.host}/{tf2_base}"
    assert pulled in " ".join(output.split()), output  # as printed, maybe wrapped
    [experiment] = k8s_daemon.client.stub.ListExperiments(pb.ListExperimentsRequest()).experiments
    [unit] = list_work_units(k8s_daemon.client, experiment.id)
    done = _final(k8s_daemon, experiment.id, unit.work_unit_id)
    assert done.status.state == pb.JOB_STATE_SUCCEEDED, done
    assert sorted(job.name for job in done.jobs) == ["worker-0", "worker-1", "worker-2"]
    for job in done.jobs:
        assert job.requirements.accelerator.type == "T4"
        # Recorded: what the cluster pulled (gcr.io/PROJECT/... at the mirror), by digest.
        image = job.artifact.oci_image
        assert image.reference.startswith(f"{registry_images.host}/{PROJECT}/"), image
        assert image.reference.endswith(f"@{image.digest}"), image
        assert image.digest.startswith("sha256:")

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
    assert ":2222: ready" in logs.stdout
