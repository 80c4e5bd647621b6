"""Fixtures for container jobs: Docker Engine, test images, daemons whose containers are cleaned up.

Tests that need the engine take the `docker_client` fixture, which skips them (saying why) when
Docker Engine is not reachable. Everything a test creates in the engine carries its daemon's
instance label or is a test image recorded here, and is removed afterwards.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from launcher_server.backends.local.containers.options import INSTANCE_LABEL, instance_id
from tests.containers import images
from tests.support.daemon import FINAL, DaemonHandle, kill_job_processes
from xmanager.launcher.v1 import launcher_pb2 as pb

# Prints its arguments NUL-separated on stdout and $TRICKY on stderr: the job's args are
# appended to this entrypoint, as `docker run IMAGE ARGS` does.
ARGV_ENTRYPOINT = ["/bin/sh", "-c", 'printf "%s\\0" "$@"; printf "%s" "$TRICKY" >&2', "argv"]


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A docker-py client of the local engine; skips the test when there is none."""
    try:
        import docker
    except ImportError:
        pytest.skip("docker-py is not installed (./setup.sh setup installs it)")
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as error:
        pytest.skip(f"Docker Engine is not reachable ({error}); start it with ./setup.sh setup")
    reason = images.busybox_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    yield client
    client.close()


class ImageSet:
    """Image tarballs written for this session, and every image ID they may have loaded."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.layer = images.layer_tar()
        self.ids: set[str] = set()
        self.sh = self.tarball("sh.tar", fmt="docker")
        self.argv = self.tarball("argv.tar", fmt="oci", entrypoint=ARGV_ENTRYPOINT, cmd=None)

    def tarball(self, name: str, **config: Any) -> Path:
        path = self.root / name
        self.ids.add(images.write_image_tarball(path, layer=self.layer, **config))
        return path

    def fresh(self, fmt: str = "docker", **config: Any) -> tuple[Path, str]:
        """An image no engine has seen: (tarball, image ID)."""
        labels = {"xmanager.test": uuid.uuid4().hex}
        path = self.root / f"fresh-{labels['xmanager.test'][:8]}.tar"
        image_id = images.write_image_tarball(
            path, fmt=fmt, layer=self.layer, labels=labels, **config
        )
        self.ids.add(image_id)
        return path, image_id


@pytest.fixture(scope="session")
def test_images(docker_client: Any) -> Iterator[ImageSet]:
    root = Path(tempfile.mkdtemp(prefix="xm-images-"))
    built = ImageSet(root)
    yield built
    for image_id in built.ids:
        with contextlib.suppress(Exception):
            docker_client.images.remove(image_id, force=True)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Short: a Unix socket path must fit in 108 bytes, pytest's tmp_path may not.
    path = Path(tempfile.mkdtemp(prefix="xm-", dir="/tmp"))
    yield path
    kill_job_processes(path)
    shutil.rmtree(path, ignore_errors=True)


def leftovers(client: Any, state_dir: Path) -> tuple[list[str], list[str]]:
    """Names of the containers and networks a daemon of this state directory left."""
    filters = {"label": f"{INSTANCE_LABEL}={instance_id(state_dir)}"}
    containers = [
        c.name for c in client.containers.list(all=True, filters=filters, ignore_removed=True)
    ]
    networks = [n.name for n in client.networks.list(filters=filters)]
    return containers, networks


def wait_no_leftovers(client: Any, state_dir: Path, timeout: float = 10) -> None:
    """Containers are removed just after their job's final status is reported: wait for it."""
    deadline = time.monotonic() + timeout
    while (found := leftovers(client, state_dir)) != ([], []):
        assert time.monotonic() < deadline, f"left behind: {found}"
        time.sleep(0.1)


def remove_leftovers(client: Any, state_dir: Path) -> None:
    containers, networks = leftovers(client, state_dir)
    for name in containers:
        with contextlib.suppress(Exception):
            client.containers.get(name).remove(force=True)
    for name in networks:
        with contextlib.suppress(Exception):
            client.networks.get(name).remove()


@pytest.fixture
def daemon(state_dir: Path, docker_client: Any) -> Iterator[DaemonHandle]:
    handle = DaemonHandle(state_dir, ["--grace_period_seconds=2"])
    handle.start()
    yield handle
    handle.stop()
    remove_leftovers(docker_client, state_dir)


def container_job(
    name: str,
    *,
    tarball: Path | None = None,
    reference: str = "",
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    digest: str = "",
    options: pb.DockerOptions | None = None,
    gpus: int = 0,
) -> pb.Job:
    image = pb.OciImage(digest=digest)
    if tarball is not None:
        image.tarball_path = str(tarball)
    else:
        image.reference = reference
    local = pb.LocalExecutor(gpus=gpus)
    if options is not None:
        local.docker_options.CopyFrom(options)
    return pb.Job(
        name=name,
        artifact=pb.Artifact(oci_image=image),
        args=list(args),
        env=dict(env or {}),
        executor=pb.Executor(local=local),
    )


def create_experiment(daemon: DaemonHandle, title: str) -> int:
    request = pb.CreateExperimentRequest(experiment=pb.Experiment(title=title))
    return int(daemon.client.stub.CreateExperiment(request).id)


def add_unit(daemon: DaemonHandle, experiment_id: int, *jobs: pb.Job) -> pb.WorkUnit:
    request = pb.AddWorkUnitRequest(
        experiment_id=experiment_id, request_id=uuid.uuid4().hex, jobs=list(jobs)
    )
    unit: pb.WorkUnit = daemon.client.stub.AddWorkUnit(request)
    return unit


def wait_job(
    daemon: DaemonHandle,
    experiment_id: int,
    work_unit_id: int,
    name: str,
    states: set[int] | frozenset[int] = frozenset(FINAL),
    *,
    timeout: float = 60,
) -> pb.Job:
    """Waits until the job is in one of `states` (by default: final)."""
    deadline = time.monotonic() + timeout
    while True:
        unit: pb.WorkUnit = daemon.client.stub.GetWorkUnit(
            pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=work_unit_id)
        )
        (job,) = [j for j in unit.jobs if j.name == name]
        if job.status.state in states:
            return job
        if job.status.state in FINAL:
            raise AssertionError(f"job {name} ended before reaching {states}: {job.status}")
        assert time.monotonic() < deadline, f"job {name} still {job.status}"
        time.sleep(0.05)


def job_file(
    daemon: DaemonHandle, experiment_id: int, work_unit_id: int, name: str, f: str
) -> bytes:
    return (daemon.state.job_dir(experiment_id, work_unit_id, name) / f).read_bytes()
