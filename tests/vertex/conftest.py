"""Fixtures for the Vertex AI backend: the emulator (simulated or on Docker), a loopback
registry with a pushed test image, and official clients pointed at the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.fakes.vertex import FakeVertex
from tests.vertex import registry


def job_client(address: str) -> Any:
    """The official JobServiceClient over an insecure channel to `address`."""
    from google.cloud import aiplatform_v1
    from google.cloud.aiplatform_v1.services.job_service.transports.grpc import (
        JobServiceGrpcTransport,
    )

    channel = grpc.insecure_channel(address)
    return aiplatform_v1.JobServiceClient(transport=JobServiceGrpcTransport(channel=channel))


def logging_client(address: str) -> Any:
    from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client
    from google.cloud.logging_v2.services.logging_service_v2.transports import (
        LoggingServiceV2GrpcTransport,
    )

    channel = grpc.insecure_channel(address)
    return LoggingServiceV2Client(transport=LoggingServiceV2GrpcTransport(channel=channel))


@pytest.fixture
def simulated_vertex() -> Iterator[FakeVertex]:
    with FakeVertex(simulate=True, queue_seconds=0.01) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Any]:
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as error:
        pytest.skip(f"Docker Engine is not reachable ({error}); start it with ./setup.sh setup")
    from tests.containers import images

    reason = images.busybox_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    yield client
    client.close()


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory, docker_engine: Any) -> Iterator[str]:
    with registry.loopback_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address
        # Images the emulator pulled from this (short-lived) registry.
        for image in docker_engine.images.list():
            if any(str(t).startswith(address) for t in image.attrs.get("RepoDigests", [])):
                docker_engine.images.remove(image.id, force=True)


@pytest.fixture(scope="session")
def busybox_image(oci_registry: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A busybox image on the loopback registry, by digest."""
    return registry.push_image(
        oci_registry, "xm-vertex-test/busybox", tmp_path_factory.mktemp("image")
    )


@pytest.fixture
def docker_vertex(docker_engine: Any) -> Iterator[FakeVertex]:
    with FakeVertex(queue_seconds=0.01) as emulator:
        yield emulator


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="session")
def shell_image(oci_registry: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An image whose entrypoint is /bin/sh (job args follow it), by digest."""
    return registry.push_image(
        oci_registry,
        "xm-vertex-test/shell",
        tmp_path_factory.mktemp("image"),
        entrypoint=["/bin/sh"],
        cmd=None,
    )
