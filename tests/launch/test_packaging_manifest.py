"""Packaging Bazel labels from an xm_launch manifest (XM_BAZEL_MANIFEST), without Bazel."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from xmanager import xm, xm_local
from xmanager.xm_local import packaging
from xmanager.xm_local.packaging import PackagingError

IMAGE_DIGEST = "sha256:" + "cd" * 32


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    """A fake output tree: a binary with its runfiles, and an image tarball."""
    out = tmp_path / "bazel-out" / "bin" / "exp"
    (out / "train.runfiles").mkdir(parents=True)
    binary = out / "train"
    binary.write_text("#!/bin/sh\necho trained\n")
    binary.chmod(0o755)
    (out / "train_image.tar").write_bytes(b"not read: the digest comes from the manifest")
    return out


def _entry(label: str, kind: str, path: str, digest: str) -> dict[str, str]:
    return {"label": label, "kind": kind, "path": path, "digest": digest}


def _write_manifest(tmp_path: Path, outputs: Path, **overrides: Any) -> Path:
    """A manifest in a runfiles tree whose files link into the output tree, as Bazel lays out."""
    runfiles = tmp_path / "launch.runfiles" / "_main" / "exp"
    runfiles.mkdir(parents=True)
    for name in ("train", "train_image.tar"):
        (runfiles / name).symlink_to(outputs / name)
    binary_digest = "sha256:" + hashlib.sha256((outputs / "train").read_bytes()).hexdigest()
    train = _entry("@@//exp:train", "binary", "train", binary_digest)
    image = _entry("@@//exp:train_image", "image", "train_image.tar", IMAGE_DIGEST)
    data: dict[str, Any] = {
        "version": 1,
        "launcher": "//exp:launch",
        "artifacts": {
            "@@//exp:train": train,
            "//exp:train": train,
            "@@//exp:train_image": image,
            "//exp:train_image": image,
        },
    }
    data.update(overrides)
    manifest = runfiles / "launch.xm_manifest.json"
    manifest.write_text(json.dumps(data))
    return manifest


@pytest.fixture
def no_bazel(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("bazel build must not run when a manifest is given")

    monkeypatch.setattr(packaging, "build_bazel_targets", fail)


def _use(monkeypatch: pytest.MonkeyPatch, manifest: Path | str) -> None:
    monkeypatch.setenv(packaging.MANIFEST_ENV, str(manifest))


def _binary(label: str, **kwargs: Any) -> xm.Packageable:
    return xm.bazel_binary(xm_local.Local.Spec(), label=label, **kwargs)


def _image(label: str) -> xm.Packageable:
    return xm.bazel_container(xm_local.Local.Spec(), label=label)


@pytest.mark.usefixtures("no_bazel")
def test_labels_resolve_to_the_output_tree_with_the_manifest_digests(
    tmp_path: Path, outputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, _write_manifest(tmp_path, outputs))
    binary, image = packaging.package(
        [_binary("//exp:train", args={"lr": 0.1}), _image("//exp:train_image")]
    )
    assert isinstance(binary, xm.BinaryArtifact)
    # The real file, next to its own runfiles tree: it runs outside the launcher's runfiles.
    assert binary.path == str(outputs / "train")
    assert binary.sha256 == hashlib.sha256((outputs / "train").read_bytes()).hexdigest()
    assert binary.args.to_dict() == {"lr": 0.1}
    assert isinstance(image, xm.ImageArtifact)
    assert image.image_path == str(outputs / "train_image.tar")
    assert image.digest == IMAGE_DIGEST


@pytest.mark.usefixtures("no_bazel")
@pytest.mark.parametrize("label", ["@@//exp:train", "@//exp:train", "//exp:train"])
def test_every_spelling_of_a_main_repository_label(
    tmp_path: Path, outputs: Path, monkeypatch: pytest.MonkeyPatch, label: str
) -> None:
    _use(monkeypatch, _write_manifest(tmp_path, outputs))
    [binary] = packaging.package([_binary(label)])
    assert isinstance(binary, xm.BinaryArtifact)
    assert binary.path == str(outputs / "train")


@pytest.mark.usefixtures("no_bazel")
def test_package_shorthand_label(
    tmp_path: Path, outputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = _entry("@@//exp/train:train", "binary", "train", "sha256:" + "00" * 32)
    _use(monkeypatch, _write_manifest(tmp_path, outputs, artifacts={"@@//exp/train:train": train}))
    [binary] = packaging.package([_binary("//exp/train")])
    assert isinstance(binary, xm.BinaryArtifact)


@pytest.mark.usefixtures("no_bazel")
def test_a_label_missing_from_the_manifest_names_it_and_the_target(
    tmp_path: Path, outputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, _write_manifest(tmp_path, outputs))
    with pytest.raises(PackagingError) as error:
        packaging.package([_binary("//exp:eval")])
    message = str(error.value)
    assert "//exp:eval is not among the executables of the xm_launch target //exp:launch" in (
        message
    )
    assert "add it to that target's `executables`" in message
    assert "//exp:train, //exp:train_image" in message


@pytest.mark.usefixtures("no_bazel")
def test_the_wrong_kind_says_which_function_to_use(
    tmp_path: Path, outputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, _write_manifest(tmp_path, outputs))
    with pytest.raises(PackagingError, match=r"is an image: package it with xm\.bazel_container"):
        packaging.package([_binary("//exp:train_image")])
    with pytest.raises(PackagingError, match=r"is a binary: package it with xm\.bazel_binary"):
        packaging.package([_image("//exp:train")])


@pytest.mark.usefixtures("no_bazel")
@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read it"),
        ("{not json", "cannot read it"),
        ("[]", "malformed"),
        ('{"version": 1, "launcher": "//exp:launch"}', "malformed"),
        ('{"version": 9, "launcher": "//x:y", "artifacts": {}}', "version 9"),
        (
            '{"version": 1, "launcher": "//x:y", "artifacts": {"//x:a": '
            '{"label": "//x:a", "kind": "wheel", "path": "a", "digest": "sha256:00"}}}',
            "bad kind 'wheel'",
        ),
    ],
)
def test_an_unreadable_manifest_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, problem: str
) -> None:
    manifest = tmp_path / "launch.xm_manifest.json"
    if content is not None:
        manifest.write_text(content)
    _use(monkeypatch, manifest)
    with pytest.raises(PackagingError) as error:
        packaging.package([_binary("//exp:train")])
    message = str(error.value)
    assert message.startswith(f"XM_BAZEL_MANIFEST={manifest}: ")
    assert problem in message
    assert "unset XM_BAZEL_MANIFEST" in message


@pytest.mark.usefixtures("no_bazel")
def test_a_binary_gone_since_the_build(
    tmp_path: Path, outputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, _write_manifest(tmp_path, outputs))
    (outputs / "train").unlink()
    (outputs / "train_image.tar").unlink()
    with pytest.raises(PackagingError, match="does not exist"):
        packaging.package([_binary("//exp:train")])
    with pytest.raises(PackagingError, match=r"tarball .* does not exist; build the launcher"):
        packaging.package([_image("//exp:train_image")])


@pytest.mark.usefixtures("no_bazel")
def test_bazel_args_are_reported_as_not_applied(
    tmp_path: Path,
    outputs: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _use(monkeypatch, _write_manifest(tmp_path, outputs))
    packaging.package([_binary("//exp:train", bazel_args=["-c", "opt"])])
    assert "bazel_args ['-c', 'opt'] not applied" in capsys.readouterr().err


@pytest.mark.usefixtures("no_bazel")
def test_a_broken_manifest_does_not_matter_without_bazel_labels(
    tmp_path: Path, outputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, tmp_path / "missing.json")
    [binary] = packaging.package([xm.binary(xm_local.Local.Spec(), str(outputs / "train"))])
    assert isinstance(binary, xm.BinaryArtifact)
