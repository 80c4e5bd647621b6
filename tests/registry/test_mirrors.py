"""`$XM_REGISTRY_MIRRORS`: parsing, rewriting, the errors of bad values, and a push and a pull of a
gcr.io reference that really go to a loopback registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.containers import images
from tests.registry.conftest import Registry
from xmanager.oci import registry
from xmanager.oci.mirrors import ENV_VAR, Mirrors, MirrorsError

DIGEST = "sha256:" + "a" * 64


def _rewrite(setting: str, reference: str) -> str:
    ref = registry.Reference.parse(reference)
    host, repository = Mirrors.parse(setting).rewrite(ref.registry, ref.repository)
    return str(registry.Reference(host, repository, ref.tag, ref.digest))


def test_a_registry_moves_to_its_location_keeping_tag_and_digest() -> None:
    setting = "gcr.io=127.0.0.1:5000, docker.io=mirror.example:5000/hub"
    assert _rewrite(setting, "gcr.io/p/tf2-gpu.2-6") == "127.0.0.1:5000/p/tf2-gpu.2-6"
    assert _rewrite(setting, "gcr.io/p/img:v1") == "127.0.0.1:5000/p/img:v1"
    assert _rewrite(setting, f"gcr.io/p/img@{DIGEST}") == f"127.0.0.1:5000/p/img@{DIGEST}"
    # Docker Hub references are normalized first, as registries.conf does.
    assert _rewrite(setting, "python:3.11") == "mirror.example:5000/hub/library/python:3.11"
    assert _rewrite(setting, "user/tool") == "mirror.example:5000/hub/user/tool"
    # No match: unchanged. A prefix matches whole components only.
    assert _rewrite(setting, "us-docker.pkg.dev/p/r/i:v") == "us-docker.pkg.dev/p/r/i:v"
    assert _rewrite("gcr.io=localhost:5000", "gcr.iox/p/i") == "gcr.iox/p/i"
    assert _rewrite("", "gcr.io/p/i") == "gcr.io/p/i"


def test_the_longest_prefix_wins_and_namespaces_move() -> None:
    setting = "gcr.io=a.example,gcr.io/team=b.example/mirrored/team-x"
    assert _rewrite(setting, "gcr.io/team/img:v") == "b.example/mirrored/team-x/img:v"
    assert _rewrite(setting, "gcr.io/teams/img") == "a.example/teams/img"
    assert _rewrite(setting, "gcr.io/team") == "b.example/mirrored/team-x"
    assert _rewrite("localhost:5000=[::1]:5001", "localhost:5000/x") == "[::1]:5001/x"


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ("gcr.io", "has no '='"),
        ("gcr.io=", "empty LOCATION"),
        ("=127.0.0.1:5000", "empty PREFIX"),
        ("gcr.io=/srv/registry", "a path as its location"),
        ("gcr.io=./mirror", "a path as its location"),
        ("gcr.io=http://127.0.0.1:5000", "a URL as its location"),
        ("gcr.io=mirror", "does not start with a registry host"),
        ("gcr=127.0.0.1:5000", "does not start with a registry host"),
        ("gcr.io=127.0.0.1:5000/Upper", "lowercase repository path components"),
        ("gcr.io=127.0.0.1:5000/x:tag", "lowercase repository path components"),
        ("gcr.io=127.0.0.1:5000/", "no tag, digest or trailing '/'"),
        ("gcr.io=a.example,gcr.io=b.example", "repeats the prefix 'gcr.io'"),
    ],
)
def test_bad_values_name_the_setting_and_the_fix(setting: str, problem: str) -> None:
    with pytest.raises(MirrorsError) as caught:
        Mirrors.parse(setting)
    message = str(caught.value)
    assert problem in message
    assert f"${ENV_VAR} entry" in message
    assert "PREFIX=LOCATION" in message
    assert f"{ENV_VAR}='gcr.io=127.0.0.1:5000'" in message


def test_locate_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "gcr.io=localhost:5000")
    assert str(registry.locate("gcr.io/p/img:v")) == "localhost:5000/p/img:v"
    monkeypatch.setenv(ENV_VAR, "gcr.io")
    with pytest.raises(registry.RegistryError, match=rf"\${ENV_VAR} entry 'gcr.io' has no '='"):
        registry.locate("gcr.io/p/img:v")
    monkeypatch.delenv(ENV_VAR)
    assert str(registry.locate("gcr.io/p/img:v")) == "gcr.io/p/img:v"


def test_push_and_pull_go_to_the_mirror(
    plain_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", "/nonexistent")
    monkeypatch.setenv(ENV_VAR, f"gcr.io={plain_registry.host}/corp")
    tarball = tmp_path / "image.tar"
    images.write_image_tarball(tarball, fmt="oci", layer=b"\0" * 1024)
    pushed = registry.push(tarball, "gcr.io/project/mirrored:v1")
    # What a job records: where it was pushed, by digest.
    assert pushed.reference == f"{plain_registry.host}/corp/project/mirrored@{pushed.digest}"
    said: list[str] = []
    layout = registry.pull_cached("gcr.io/project/mirrored:v1", tmp_path / "pulled", said.append)
    assert layout.name == pushed.digest.replace(":", "-")
    assert said == [
        f"pulling gcr.io/project/mirrored:v1 from its mirror "
        f"{plain_registry.host}/corp/project/mirrored:v1"
    ]


def test_packaging_stops_on_a_bad_value_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xmanager import xm
    from xmanager.xm_local import python_image
    from xmanager.xm_local.errors import PackagingError

    monkeypatch.setenv("XM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(ENV_VAR, "gcr.io=http://127.0.0.1:5000")
    (tmp_path / "proj").mkdir()
    spec = xm.PythonContainer(
        path=str(tmp_path / "proj"),
        base_image="gcr.io/deeplearning-platform-release/tf2-gpu.2-6",
        entrypoint=xm.ModuleName("cifar10"),
    )
    with pytest.raises(PackagingError, match=rf"\${ENV_VAR} entry .* has a URL as its location"):
        python_image.build(spec, lambda _: None)
    assert not (tmp_path / "cache" / "pulled").exists() or not any(
        (tmp_path / "cache" / "pulled").iterdir()
    )
