"""Fixtures of the xm.python_container suites: the project's Python base image, built once by
real Bazel, a client cache per session, and Docker Engine to run what was built."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import skip_or_fail
from tests.images import bazel
from xmanager.xm_local import image_cache

BASE_LABEL = "//xm_rules/debian:python_base"


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A client cache holding the default base image (as setup.sh puts it), shared by the
    session so wheels are downloaded once."""
    cache = tmp_path_factory.mktemp("xm-cache")
    built = bazel.build_images([BASE_LABEL])[BASE_LABEL]
    shutil.copyfile(built.tarball, cache / image_cache.BASE_IMAGE_NAME)
    return cache


@pytest.fixture
def cache(session_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(image_cache.ENV_VAR, str(session_cache))
    monkeypatch.delenv(image_cache.BASE_IMAGE_ENV, raising=False)
    return session_cache


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    try:
        import docker
    except ImportError:
        pytest.skip("docker-py is not installed (./setup.sh setup installs it)")
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as error:  # any failure means: no engine here
        skip_or_fail(f"Docker Engine is not reachable ({error}); ./setup.sh setup starts it")
    yield client
    client.close()
