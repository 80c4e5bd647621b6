"""Kubernetes units waited for, queried and stopped after the experiment's `with` block ended
(synchronously), on the emulated cluster."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.kubernetes.conftest import RegistryImages
from tests.support.daemon import DaemonHandle, run_cli

SCRIPT = """
from xmanager import xm, xm_local

with xm_local.create_experiment(experiment_title="k8s after exit") as experiment:
    [executable] = experiment.package(
        [xm.Packageable(xm.Container(image_path={image!r}), xm_local.Kubernetes.Spec())]
    )
    units = [
        experiment.add(xm.Job(executable, xm_local.Kubernetes(), args=[script])).result()
        for script in ["sleep 1", "sleep 1; exit 3", "sleep 600"]
    ]
# Kubernetes jobs run on their own: the block did not wait for them, the script does now.
assert units[0].wait_until_complete().result() is units[0]
try:
    units[1].wait_until_complete().result()
except xm.ExperimentUnitFailedError as error:
    print("FAILED AS EXPECTED", error)
print("ACTIVE", units[2].get_status().is_active)
units[2].stop(message="not needed")
try:
    units[2].wait_until_complete().result()
except xm.ExperimentUnitNotCompletedError:
    print("STOPPED", units[2].get_status().is_cancelled)
print("COMPLETED", units[0].get_status().is_completed)
"""


def test_kubernetes_units_are_waited_for_after_the_block(
    k8s_daemon: DaemonHandle, registry_images: RegistryImages, tmp_path: Path
) -> None:
    script = tmp_path / "launch.py"
    script.write_text(textwrap.dedent(SCRIPT.format(image=registry_images.sh)))
    result = run_cli(["launch", str(script)], env=k8s_daemon.env(), timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "FAILED AS EXPECTED" in result.stdout, result.stdout
    assert "ACTIVE True" in result.stdout
    assert "STOPPED True" in result.stdout
    assert "COMPLETED True" in result.stdout
