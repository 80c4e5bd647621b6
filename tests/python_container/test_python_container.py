"""xm.python_container built without Docker: layers, caching, reproducibility, XManager's
entrypoint semantics, and the image run by the real Docker Engine."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from xm_rules.tools import validate_image
from xmanager import xm
from xmanager.oci import image as oci_image
from xmanager.xm_local import packaging, python_image

TRAIN = 'import sys\nimport numpy\nprint("numpy", numpy.__version__, "args", sys.argv[1:])\n'


def _project(root: Path, *, requirements: str | None = "numpy\n") -> Path:
    project = root / "proj"
    (project / "trainer").mkdir(parents=True)
    (project / "trainer" / "__init__.py").write_text("")
    (project / "trainer" / "train.py").write_text(TRAIN)
    if requirements is not None:
        (project / "requirements.txt").write_text(requirements)
    return project


def _build(project: Path, **kwargs: Any) -> tuple[python_image.Built, list[str]]:
    said: list[str] = []
    entrypoint = kwargs.pop("entrypoint", xm.ModuleName("trainer.train"))
    spec = xm.PythonContainer(entrypoint=entrypoint, path=str(project), **kwargs)
    return python_image.build(spec, say=said.append), said


def _manifest(built: python_image.Built) -> dict[str, Any]:
    with tarfile.open(built.path) as tar:
        member = tar.extractfile(f"blobs/sha256/{built.digest.removeprefix('sha256:')}")
        assert member is not None
        return dict(json.loads(member.read()))


def _layer_paths(built: python_image.Built, digest: str) -> list[str]:
    with tarfile.open(built.path) as tar:
        blob = tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
        assert blob is not None
        with tarfile.open(fileobj=blob, mode="r:gz") as layer:
            return layer.getnames()


def _run(docker_client: Any, built: python_image.Built, args: list[str]) -> str:
    with built.path.open("rb") as f:
        (loaded,) = docker_client.images.load(f.read())
    try:
        output = docker_client.containers.run(loaded.id, args, remove=True)
        return str(output.decode())
    finally:
        docker_client.images.remove(loaded.id, force=True)


def test_module_image_runs_with_numpy_and_caches(
    cache: Path, tmp_path: Path, docker_client: Any
) -> None:
    project = _project(tmp_path)
    first, _ = _build(project)
    problems, _ = validate_image.validate(first.path, strict=False)
    assert problems == []
    assert oci_image.read(first.path).digest == first.digest
    output = _run(docker_client, first, ["--lr", "0.1"])
    assert output.startswith("numpy 2.")
    assert "args ['--lr', '0.1']" in output

    again, said = _build(project)
    assert again.digest == first.digest
    assert any("cached layer" in line for line in said)
    assert not any(line.startswith("resolving") for line in said), said

    train = project / "trainer" / "train.py"
    train.write_text(TRAIN + "# one line more\n")
    edited, _ = _build(project)
    before, after = _manifest(first)["layers"], _manifest(edited)["layers"]
    assert edited.digest != first.digest
    assert before[:-1] == after[:-1]  # base and dependencies unchanged
    assert before[-1] != after[-1]  # only the source layer changed


def test_same_inputs_same_digest(cache: Path, tmp_path: Path) -> None:
    one = _project(tmp_path / "a", requirements=None)
    two = _project(tmp_path / "b", requirements=None)
    os.utime(two / "trainer" / "train.py", (1, 1))
    os.chmod(two / "trainer", 0o700)
    first, _ = _build(one)
    shutil.rmtree(cache / "images")
    second, _ = _build(two)
    assert first.digest == second.digest


def test_exclusions_and_dockerignore(cache: Path, tmp_path: Path) -> None:
    project = _project(tmp_path, requirements=None)
    for junk in (".git/HEAD", "trainer/__pycache__/x.pyc", "env/pyvenv.cfg", "data/big.bin"):
        (project / junk).parent.mkdir(parents=True, exist_ok=True)
        (project / junk).write_text("junk")
    (project / ".dockerignore").write_text("# comment\ndata\n")
    built, _ = _build(project)
    paths = _layer_paths(built, _manifest(built)["layers"][-1]["digest"])
    assert paths == ["proj", "proj/trainer", "proj/trainer/__init__.py", "proj/trainer/train.py"]


def test_deep_module_and_command_list(cache: Path, tmp_path: Path, docker_client: Any) -> None:
    project = _project(tmp_path)
    deep, _ = _build(project, entrypoint=xm.ModuleName("proj.trainer.train"), use_deep_module=True)
    config = json.loads(oci_image.read(deep.path).config())["config"]
    assert config["WorkingDir"] == "/workdir"
    assert config["Entrypoint"] == ["python3", "-m", "proj.trainer.train"]
    assert "args ['x']" in _run(docker_client, deep, ["x"])

    commands = xm.CommandList(["python -c 'print(1)'", "python -m trainer.train --fixed"])
    listed, _ = _build(project, entrypoint=commands)
    output = _run(docker_client, listed, ["--seed", "3"])
    assert output.splitlines()[0] == "1"
    assert "args ['--fixed', '--seed', '3']" in output


def test_packaging_returns_an_image_artifact(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project(tmp_path, requirements=None)
    packageable = xm.python_container(
        xm_local_spec(), xm.ModuleName("trainer.train"), path=str(project), args={"lr": 1}
    )
    (artifact,) = packaging.package([packageable])
    assert isinstance(artifact, xm.ImageArtifact)
    assert artifact.image_path is not None
    assert artifact.digest.startswith("sha256:")
    assert oci_image.read(Path(artifact.image_path)).digest == artifact.digest


def xm_local_spec() -> xm.ExecutorSpec:
    from xmanager import xm_local

    return xm_local.Local.Spec()


def test_errors_name_what_to_do(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project(tmp_path, requirements="surely-no-such-package-xm==0.0.1\n")
    with pytest.raises(packaging.PackagingError, match="could not resolve the requirements"):
        _build(project)
    (project / "requirements.txt").unlink()
    with pytest.raises(packaging.PackagingError, match="no such image tarball"):
        _build(project, base_image="./missing.tar")
    monkeypatch.setenv("XM_PYTHON_BASE_IMAGE", str(tmp_path / "nothing.tar"))
    with pytest.raises(packaging.PackagingError, match=r"setup\.sh setup"):
        _build(project)
