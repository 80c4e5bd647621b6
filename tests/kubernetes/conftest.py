"""Fixtures of the Kubernetes tests: the loopback registry with test images, the emulated
cluster. Tests that need Docker skip (or fail in CI) when a component is missing."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail
from tests.containers import images
from tests.kubernetes import cluster
from tests.support.daemon import DaemonHandle, kill_job_processes


class RegistryImages:
    """Images in the loopback registry, by digest."""

    def __init__(self, host: str, root: Path) -> None:
        layer = images.layer_tar()
        self.host = host
        # `docker run IMAGE ARGS`: the job's args follow /bin/sh -c SCRIPT.
        self.sh = cluster.push(host, "sh", root, layer, entrypoint=["/bin/sh", "-c"], cmd=None)
        # Prints each argument NUL-separated, then XM_*/TRICKY variables.
        self.argv = cluster.push(
            host,
            "argv",
            root,
            layer,
            entrypoint=["/bin/sh", "-c", 'printf "%s\\0" "$@"', "argv"],
            cmd=None,
        )
        self.unpullable = f"{host}/missing@sha256:{'0' * 64}"


@pytest.fixture(scope="session")
def registry_images() -> Iterator[RegistryImages]:
    reason = cluster.missing_reason()
    if reason is not None:
        skip_or_fail(reason)
    root = Path(tempfile.mkdtemp(prefix="xm-k8s-images-"))
    with cluster.registry() as host:
        yield RegistryImages(host, root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def k8s(registry_images: RegistryImages) -> Iterator[cluster.Cluster]:
    root = Path(tempfile.mkdtemp(prefix="xm-k8s-"))
    labels = {"pool": "default", "cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    emulated = cluster.Cluster(root, node_labels=labels)
    yield emulated
    emulated.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def k8s_daemon(k8s: cluster.Cluster) -> Iterator[DaemonHandle]:
    """A real daemon whose Kubernetes backend talks to the emulated cluster."""
    path = Path(tempfile.mkdtemp(prefix="xm-k8sd-", dir="/tmp"))
    handle = DaemonHandle(path, ["--grace_period_seconds=2", f"--kubeconfig={k8s.kubeconfig}"])
    handle.start()
    yield handle
    handle.stop()
    kill_job_processes(path)
    shutil.rmtree(path, ignore_errors=True)
