"""Pushing images with xmanager.oci.registry to a real registry on loopback: plain HTTP, and TLS
with a self-signed CA plus basic auth. The pushed image is then pulled by Docker Engine and run."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.images import bazel
from tests.registry.conftest import PASSWORD, USER, Registry
from xmanager import xm
from xmanager.oci import image as oci_image
from xmanager.oci import registry
from xmanager.xm_local import python_image
from xmanager.xm_local.errors import PackagingError

BASE_LABEL = "//xm_rules/debian:python_base"


@pytest.fixture(scope="module")
def base_tarball() -> Path:
    return bazel.build_images([BASE_LABEL])[BASE_LABEL].tarball


@pytest.fixture
def tls_env(tls_registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Registry:
    assert tls_registry.certs_dir is not None
    monkeypatch.setenv("XM_REGISTRY_CERTS_DIR", str(tls_registry.certs_dir))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tls_registry.auth_file))
    monkeypatch.setenv("DOCKER_CONFIG", "/nonexistent")
    return tls_registry


def test_push_plain_twice_uploads_nothing_the_second_time(
    plain_registry: Registry, base_tarball: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", "/nonexistent")
    monkeypatch.setattr(registry, "CHUNK_SIZE", 4 << 20)  # several PATCHes per layer
    image = oci_image.read(base_tarball)
    seen: list[tuple[int, int]] = []
    first = registry.push(
        base_tarball,
        f"{plain_registry.host}/xm/base:v1",
        progress=lambda _, d, t: seen.append((d, t)),
    )
    assert first.digest == image.manifest_digest
    assert first.reference == f"{plain_registry.host}/xm/base@{image.manifest_digest}"
    assert len(first.uploaded) == len(image.layers) + 1  # the layers and the config
    assert seen[-1][0] == seen[-1][1] > 0
    second = registry.push(base_tarball, f"{plain_registry.host}/xm/base:v1")
    assert second.uploaded == []
    assert second.mounted == []
    assert second.digest == first.digest

    mounted = registry.push(
        base_tarball, f"{plain_registry.host}/xm/other:v1", mount_from="xm/base"
    )
    assert mounted.uploaded == []
    assert len(mounted.mounted) == len(image.layers) + 1


def test_pushed_image_runs_on_docker(plain_registry: Registry, base_tarball: Path) -> None:
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as error:
        pytest.skip(f"Docker Engine is not reachable ({error})")
    pushed = registry.push(base_tarball, f"{plain_registry.host}/xm/run:v1")
    pulled = client.images.pull(pushed.reference)
    try:
        output = client.containers.run(pulled.id, ["python3", "-c", "print(6 * 7)"], remove=True)
        assert output.decode().strip() == "42"
    finally:
        client.images.remove(pushed.reference, force=True)


def test_push_tls_with_basic_auth(tls_env: Registry, base_tarball: Path) -> None:
    first = registry.push(base_tarball, f"{tls_env.host}/xm/secure:v1")
    assert first.uploaded
    again = registry.push(base_tarball, f"{tls_env.host}/xm/secure:v1")
    assert again.uploaded == []
    assert again.digest == first.digest


def test_wrong_password_is_a_clear_error_and_pushes_no_manifest(
    tls_env: Registry, base_tarball: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = tmp_path / "auth.json"
    token = base64.b64encode(f"{USER}:not-the-password".encode()).decode()
    wrong.write_text(json.dumps({"auths": {tls_env.host: {"auth": token}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(wrong))
    with pytest.raises(registry.AuthError, match="refused the credentials of user 'xm-user'") as e:
        registry.push(base_tarball, f"{tls_env.host}/xm/denied:v1")
    assert "not-the-password" not in str(e.value)
    assert tls_env.certs_dir is not None
    answer = requests.get(
        f"https://{tls_env.host}/v2/xm/denied/manifests/v1",
        auth=(USER, PASSWORD),
        verify=str(tls_env.certs_dir / tls_env.host / "ca.crt"),
        timeout=10,
    )
    assert answer.status_code == 404


def test_unreachable_registry_names_it(base_tarball: Path) -> None:
    with pytest.raises(registry.RegistryError, match=r"registry 127\.0\.0\.1:9 is unreachable"):
        registry.push(base_tarball, "127.0.0.1:9/xm/nowhere:v1")


def test_references_parse_like_docker() -> None:
    ref: Any = registry.Reference.parse("busybox")
    assert (ref.registry, ref.repository, ref.tag) == ("docker.io", "library/busybox", "")
    ref = registry.Reference.parse("localhost:5000/a/b:v2")
    assert (ref.registry, ref.repository, ref.tag) == ("localhost:5000", "a/b", "v2")
    ref = registry.Reference.parse("us-docker.pkg.dev/p/r/img@sha256:" + "a" * 64)
    assert ref.registry == "us-docker.pkg.dev"
    assert ref.digest == "sha256:" + "a" * 64


def test_vertex_spec_pushes_at_packaging_and_names_the_image_by_digest(
    plain_registry: Registry, base_tarball: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xmanager import xm, xm_local
    from xmanager.xm_local import packaging

    monkeypatch.setenv("DOCKER_CONFIG", "/nonexistent")
    tag = f"{plain_registry.host}/xm/vertex:v1"
    (vertex,) = packaging.package(
        [xm.container(xm_local.VertexSpec(push_image_tag=tag), str(base_tarball))]
    )
    (kubernetes,) = packaging.package(
        [xm.container(xm_local.KubernetesSpec(push_image_tag=tag), str(base_tarball))]
    )
    digest = oci_image.read(base_tarball).manifest_digest
    for artifact in (vertex, kubernetes):
        assert isinstance(artifact, xm.ImageArtifact)
        assert artifact.image_path is None
        assert artifact.image_ref == f"{plain_registry.host}/xm/vertex@{digest}"
        assert artifact.digest == digest
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.delenv("CLOUDSDK_CORE_PROJECT", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent.json")
    with pytest.raises(packaging.PackagingError, match="no push_image_tag"):
        packaging.package([xm.container(xm_local.Vertex.Spec(), str(base_tarball))])


def test_python_container_base_pulled_from_a_registry(
    plain_registry: Registry, base_tarball: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", "/nonexistent")
    monkeypatch.setenv("XM_CACHE_DIR", str(tmp_path / "cache"))
    pushed = registry.push(base_tarball, f"{plain_registry.host}/xm/pullable:v1")
    project = tmp_path / "proj"
    project.mkdir()
    (project / "main.py").write_text("print('hi')\n")
    spec = xm.PythonContainer(
        entrypoint=xm.ModuleName("main"), path=str(project), base_image=pushed.reference
    )
    said: list[str] = []
    built = python_image.build(spec, said.append)
    assert any(line.startswith("pulling") for line in said)
    base_layers = oci_image.read(base_tarball).layer_descriptors()
    assert oci_image.read(built.path).layer_descriptors()[: len(base_layers)] == base_layers
    said.clear()
    assert python_image.build(spec, said.append).digest == built.digest
    assert not any(line.startswith("pulling") for line in said)  # cached by digest

    unreachable = xm.PythonContainer(
        entrypoint=xm.ModuleName("main"), path=str(project), base_image="127.0.0.1:9/xm/base:v1"
    )
    with pytest.raises(
        PackagingError, match=r"base_image '127\.0\.0\.1:9/xm/base:v1'.*unreachable"
    ):
        python_image.build(unreachable, said.append)
