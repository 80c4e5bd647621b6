"""The Kubernetes backend's contract-suite harness: the API emulator and a node agent on Docker
Engine, jobs pulled by digest from a loopback registry.

With XM_TEST_KUBECONFIG naming a kubeconfig, the suite runs against that cluster instead
(XM_TEST_KUBERNETES_CONTEXT picks a context; XM_TEST_KUBERNETES_IMAGE names an image with
`/bin/sh` that the cluster can pull, default busybox by digest).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher_server.backends.base import Backend, BackendContext
from launcher_server.backends.kubernetes.backend import KubernetesBackend
from launcher_server.config import DaemonConfig
from launcher_server.job_dirs import JobDirs
from launcher_server.observations import ObservationQueue
from tests.conftest import skip_or_fail
from tests.containers import images
from tests.kubernetes import cluster
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.state_dir import StateDir

REAL_CLUSTER = "XM_TEST_KUBECONFIG"
# busybox 1.36.1 (linux/amd64), by digest.
DEFAULT_IMAGE = "busybox@sha256:7edf5efe6b86dbf01ccc3c76b32a37a8e23b84e6bad81ce8ae8c221fa456fda8"


@pytest.fixture(scope="session")
def kubernetes_sh_image() -> Iterator[str]:
    """An image whose entrypoint is `sh -c`, by digest in a registry the cluster pulls from."""
    if os.environ.get(REAL_CLUSTER):
        yield os.environ.get("XM_TEST_KUBERNETES_IMAGE", DEFAULT_IMAGE)
        return
    reason = cluster.missing_reason()
    if reason is not None:
        skip_or_fail(reason)
    root = Path(tempfile.mkdtemp(prefix="xm-bk-k8s-"))
    with cluster.registry() as host:
        layer = images.layer_tar()
        yield cluster.push(host, "sh", root, layer, entrypoint=["/bin/sh", "-c"], cmd=None)
    shutil.rmtree(root, ignore_errors=True)


def _config(state_dir: Path, kubeconfig: str, context: str = "") -> DaemonConfig:
    state = StateDir.resolve(state_dir)
    state.create()
    return DaemonConfig(state_dir=state, kubeconfig=kubeconfig, kubernetes_context=context)


@pytest.fixture
def kubernetes_harness(state_dir: Path, kubernetes_sh_image: str) -> Iterator[object]:
    from tests.backends.conftest import BackendHarness, JobPlan

    real = os.environ.get(REAL_CLUSTER, "")
    (state_dir / "cluster").mkdir()
    emulated = None if real else cluster.Cluster(state_dir / "cluster", None)
    kubeconfig = real or str(emulated.kubeconfig if emulated else "")
    context = os.environ.get("XM_TEST_KUBERNETES_CONTEXT", "") if real else ""
    # A sh-entrypoint image: the plan's script is the one argument. Busybox from a public
    # registry has no entrypoint: run sh -c through the arguments instead.
    via_args = bool(real) and "XM_TEST_KUBERNETES_IMAGE" not in os.environ

    def job(name: str, plan: JobPlan) -> pb.Job:
        args = ["sh", "-c", plan.shell()] if via_args else [plan.shell()]
        return pb.Job(
            name=name,
            artifact=pb.Artifact(oci_image=pb.OciImage(reference=kubernetes_sh_image)),
            args=args,
            executor=pb.Executor(kubernetes=pb.KubernetesExecutor(namespace="default")),
        )

    bad_namespace = job("bad_namespace", JobPlan())
    bad_namespace.executor.kubernetes.namespace = "Not_Valid"
    tarball = job("tarball", JobPlan())
    tarball.artifact.oci_image.tarball_path = str(state_dir / "image.tar")
    unreachable = dataclasses.replace(
        _config(Path(tempfile.mkdtemp(prefix="xm-bk-", dir=state_dir)), ""),
        kubeconfig=str(state_dir / "missing-kubeconfig"),
    )

    def unavailable() -> Backend:
        context_ = BackendContext(
            report=ObservationQueue().put,
            job_dirs=JobDirs(unreachable.state_dir.jobs),
            config=unreachable,
        )
        return KubernetesBackend(context_)

    harness = BackendHarness(
        name="kubernetes",
        backend_class=KubernetesBackend,
        config=_config(state_dir, kubeconfig, context),
        job=job,
        invalid_jobs=[
            (bad_namespace, "executor.kubernetes.namespace"),
            (tarball, "artifact.oci_image"),
        ],
        unavailable=unavailable,
        start_timeout=120.0,
    )
    yield harness
    harness.close()
    if emulated is not None:
        emulated.close()
