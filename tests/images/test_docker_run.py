"""Load and run: the quickstart image built by Bazel loads into Docker Engine; its job succeeds."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.images import bazel
from xm_rules.tools import ocilib

pytestmark = [pytest.mark.bazel, pytest.mark.docker]


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    try:
        import docker
    except ImportError:
        pytest.skip("docker-py is not installed (./setup.sh setup installs it)")
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as error:
        pytest.skip(f"Docker Engine is not reachable ({error}); ./setup.sh test starts it")
    yield client
    client.close()


def test_quickstart_image_loads_and_its_job_succeeds(engine: Any, quickstart: bazel.Image) -> None:
    with open(quickstart.tarball, "rb") as tarball:
        [image] = engine.images.load(tarball)
    try:
        assert "bazel/examples/quickstart/train_image:latest" in image.tags
        # The engine's image ID is the digest of the config Bazel wrote: nothing was rewritten.
        manifest = json.loads(
            (quickstart.layout / ocilib.blob_path(quickstart.digest.read_text())).read_text()
        )
        assert image.id == manifest["config"]["digest"]
        container = engine.containers.run(
            image.id,
            command=["--learning_rate=0.1", "--steps=60", "--batch_size=16"],
            environment={"XM_WORK_UNIT_ID": "7"},
            detach=True,
        )
        try:
            status = container.wait(timeout=120)
            logs = container.logs().decode()
        finally:
            container.remove(force=True)
        assert status["StatusCode"] == 0, logs
        result = json.loads(logs.strip().splitlines()[-1])
        assert result["learning_rate"] == 0.1
        assert result["work_unit"] == "7"
        assert result["loss"] < 0.1
        assert container.attrs["Config"]["User"] == "1000:1000"
    finally:
        with contextlib.suppress(Exception):
            engine.images.remove(image.id, force=True)
