"""xm.Dockerfile built by Docker Engine's build API (and by podman when asked), FROM the project's
Python base image loaded locally (nothing can be pulled), then run."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import skip_or_fail
from tests.images import bazel
from xmanager import xm
from xmanager.oci import image as oci_image
from xmanager.xm_local import dockerfile_image, image_cache
from xmanager.xm_local.errors import PackagingError

BASE_LABEL = "//xm_rules/debian:python_base"
BASE_TAG = "bazel/xm_rules/python_base:latest"
APP = 'import sys\nprint("hello from a Dockerfile", sys.argv[1:])\n'


@pytest.fixture(scope="module")
def base_tarball() -> Path:
    return bazel.build_images([BASE_LABEL])[BASE_LABEL].tarball


@pytest.fixture(scope="module")
def docker_client(base_tarball: Path) -> Iterator[Any]:
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as error:
        skip_or_fail(f"Docker Engine is not reachable ({error})")
    with base_tarball.open("rb") as f:
        client.images.load(f.read())  # tagged BASE_TAG
    yield client
    client.close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(image_cache.ENV_VAR, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _context(tmp_path: Path, run: str = "") -> Path:
    context = tmp_path / "app"
    context.mkdir()
    (context / "app.py").write_text(APP)
    (context / "Dockerfile").write_text(
        f'FROM {BASE_TAG}\nCOPY app.py /app/app.py\n{run}ENTRYPOINT ["python3", "/app/app.py"]\n'
    )
    return context


def test_docker_builds_exports_and_runs(docker_client: Any, cache: Path, tmp_path: Path) -> None:
    said: list[str] = []
    built = dockerfile_image.build(xm.Dockerfile(str(_context(tmp_path))), said.append)
    assert any("Step 2/3 : COPY app.py /app/app.py" in line for line in said)
    assert built.path.is_file()
    assert oci_image.read(built.path).digest == built.digest
    # The build's tag is gone (the engine keeps nothing of ours); the tarball is the image.
    with built.path.open("rb") as f:
        (loaded,) = docker_client.images.load(f.read())
    try:
        assert loaded.id == built.digest
        output = docker_client.containers.run(loaded.id, ["--x", "1"], remove=True).decode()
        assert output.strip() == "hello from a Dockerfile ['--x', '1']"
    finally:
        docker_client.images.remove(loaded.id, force=True)


def test_failed_step_is_named(docker_client: Any, cache: Path, tmp_path: Path) -> None:
    context = _context(tmp_path, 'RUN ["python3", "-c", "raise SystemExit(3)"]\n')
    with pytest.raises(PackagingError, match=r"failed at Step 3/4 : RUN \[\"python3\""):
        dockerfile_image.build(xm.Dockerfile(str(context)), lambda _: None)


def test_neither_engine_is_a_clear_error(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XM_DOCKERFILE_BUILDER", "podman")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(PackagingError, match=r"needs Docker Engine .* or podman"):
        dockerfile_image.build(xm.Dockerfile(str(_context(tmp_path))), lambda _: None)


def test_podman_builds_when_docker_is_absent(
    base_tarball: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    podman = shutil.which("podman")
    if podman is None:
        skip_or_fail("podman is not installed (./setup.sh test installs it)")
    assert podman is not None
    loaded = subprocess.run(
        [podman, "load", "-i", str(base_tarball)], capture_output=True, text=True, check=False
    )
    if loaded.returncode != 0:
        pytest.skip(f"podman cannot load images here: {loaded.stderr.strip()[-300:]}")
    monkeypatch.setenv("XM_DOCKERFILE_BUILDER", "podman")
    said: list[str] = []
    built = dockerfile_image.build(xm.Dockerfile(str(_context(tmp_path))), said.append)
    assert any(line.startswith("STEP 2/3: COPY") for line in said), said
    image = oci_image.read(built.path)
    assert image.has_docker_manifest
    run = subprocess.run(
        [podman, "run", "--rm", built.digest.removeprefix("sha256:"), "--y"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    # Some sandboxes refuse podman's containers (rlimits); the build and export are the point.
    if run.returncode == 0:
        assert "hello from a Dockerfile ['--y']" in run.stdout
