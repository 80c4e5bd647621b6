"""Packaging for the local launcher: executable specs become artifacts the daemon can run.

- `xm.Binary`: the path, made absolute against the launch script's directory, checked to be an
  executable file, and hashed so the daemon can refuse a binary changed since packaging.
- `xm.BazelBinary`, `xm.BazelContainer`: under `bazel run` of an xm_launch target, the labels
  come from the target's manifest (`XM_BAZEL_MANIFEST`): Bazel built them with the launcher, and
  no nested Bazel runs. Otherwise all labels of one `package()` call are built by a single
  `bazel build`, and their outputs are read from the Build Event Protocol (no guessing of
  bazel-bin paths).
- `xm.PythonContainer`: an image assembled in-process from the base image, a dependency layer
  and a source layer, no Docker needed (see `python_image`).
- `xm.Dockerfile`: built by Docker Engine (or podman), exported as an image tarball (see
  `dockerfile_image`).
- `xm.Container`: an image tarball (made absolute, checked, and its image digest read so that the
  daemon refuses a tarball changed since packaging) or a reference to an image already in the
  daemon's container engine (checked by the daemon: images are never pulled).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

from xmanager import xm
from xmanager.oci import image as oci_image
from xmanager.xm.executables import launch_script_dir
from xmanager.xm_local import dockerfile_image, image_push, python_image
from xmanager.xm_local.bazel_build import build_bazel_targets, pick_executable
from xmanager.xm_local.bazel_manifest import (
    MANIFEST_ENV,
    BazelManifest,
    warn_ignored_bazel_args,
)
from xmanager.xm_local.errors import PackagingError

__all__ = ["MANIFEST_ENV", "PackagingError", "image_tarball_digest", "package"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _binary_artifact(
    path: Path, name: str, packageable: xm.Packageable, sha256: str | None = None
) -> xm.BinaryArtifact:
    if not path.is_file():
        raise PackagingError(f"binary {path} does not exist or is not a file; build it first")
    if not os.access(path, os.X_OK):
        raise PackagingError(f"binary {path} is not executable; chmod +x it")
    return xm.BinaryArtifact(
        name=name,
        path=str(path),
        sha256=sha256 if sha256 is not None else sha256_file(path),
        args=packageable.args,
        env_vars=dict(packageable.env_vars),
    )


def _image_artifact(
    name: str, packageable: xm.Packageable, path: Path, digest: str
) -> xm.ImageArtifact:
    """An image tarball on this machine, with the packageable's args and env_vars."""
    return xm.ImageArtifact(
        name=name,
        image_path=str(path),
        digest=digest,
        args=packageable.args,
        env_vars=dict(packageable.env_vars),
    )


def package(packageables: Sequence[xm.Packageable]) -> list[xm.Executable]:
    """Packages each packageable; Bazel labels come from the xm_launch manifest under
    `bazel run`, else are built together in one `bazel build`."""
    bazel_specs = [
        spec
        for spec in (p.executable_spec for p in packageables)
        if isinstance(spec, xm.BazelBinary | xm.BazelContainer)
    ]
    manifest = BazelManifest.from_env() if bazel_specs else None
    built: dict[str, list[Path]] = {}
    if manifest is not None:
        warn_ignored_bazel_args(bazel_specs)
    elif bazel_specs:
        bazel_args = sorted({arg for spec in bazel_specs for arg in spec.bazel_args})
        built = build_bazel_targets([spec.label for spec in bazel_specs], bazel_args)
    return [_pushed(_package_one(p, built, manifest), p) for p in packageables]


def _pushed(executable: xm.Executable, packageable: xm.Packageable) -> xm.Executable:
    """Images for Vertex AI and Kubernetes go to a registry (see `image_push`)."""
    if isinstance(executable, xm.ImageArtifact):
        return image_push.push_artifact(executable, packageable.executor_spec)
    return executable


def _package_one(
    packageable: xm.Packageable, built: dict[str, list[Path]], manifest: BazelManifest | None
) -> xm.Executable:
    spec = packageable.executable_spec
    if isinstance(spec, xm.Binary):
        path = Path(spec.path)
        if not path.is_absolute():
            path = Path(launch_script_dir()) / path
        return _binary_artifact(path, spec.name, packageable)
    if isinstance(spec, xm.BazelBinary):
        if manifest is not None:
            entry = manifest.artifact(spec.label, "binary")
            sha256 = entry.digest.removeprefix("sha256:")
            return _binary_artifact(entry.path, spec.name, packageable, sha256)
        outputs = built[spec.label]
        return _binary_artifact(pick_executable(spec.label, outputs), spec.name, packageable)
    if isinstance(spec, xm.Container):
        return _container_artifact(spec, packageable)
    if isinstance(spec, xm.BazelContainer):
        if manifest is not None:
            entry = manifest.artifact(spec.label, "image")
            if not entry.path.is_file():
                raise PackagingError(
                    f"image tarball {entry.path} of {spec.label} does not exist; build the "
                    f"launcher again (`bazel run {manifest.launcher}`)"
                )
            return _image_artifact(spec.name, packageable, entry.path, entry.digest)
        tarballs = [p for p in built[spec.label] if p.name.endswith(".tar")]
        if not tarballs:
            raise PackagingError(f"{spec.label} built no image tarball (*.tar)")
        return _image_artifact(
            spec.name, packageable, tarballs[0], image_tarball_digest(tarballs[0])
        )
    if isinstance(spec, xm.PythonContainer):
        image = python_image.build(spec)
        return _image_artifact(spec.name, packageable, image.path, image.digest)
    if isinstance(spec, xm.Dockerfile):
        dockerfile_built = dockerfile_image.build(spec)
        return _image_artifact(
            spec.name, packageable, dockerfile_built.path, dockerfile_built.digest
        )
    raise PackagingError(
        f"{type(spec).__name__} is not supported by the local launcher yet: build the image "
        "with Bazel (xm.bazel_container) or use xm.Binary / xm.Container"
    )


# -- containers ------------------------------------------------------------------------------------

_TARBALL_SUFFIXES = (".tar", ".tar.gz", ".tgz")
# Docker's reference grammar, loosely: [registry[:port]/]path[:tag][@digest], lowercase path.
_REFERENCE = re.compile(
    r"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)


def _container_artifact(spec: xm.Container, packageable: xm.Packageable) -> xm.ImageArtifact:
    """An image tarball when image_path names a file (or looks like one), else a reference."""
    image_path = spec.image_path
    path = Path(image_path).expanduser()
    if not path.is_absolute():
        path = Path(launch_script_dir()) / path
    looks_like_file = image_path.endswith(_TARBALL_SUFFIXES) or image_path.startswith(
        ("/", "./", "../", "~")
    )
    if path.is_file() or looks_like_file:
        if not path.is_file():
            raise PackagingError(f"image tarball {path} does not exist; build it first")
        return _image_artifact(spec.name, packageable, path, image_tarball_digest(path))
    if _REFERENCE.fullmatch(image_path) is None:
        raise PackagingError(
            f"xm.Container(image_path={image_path!r}) is neither an existing image tarball nor an "
            "image reference like 'name:tag' or 'registry/repository@sha256:...'"
        )
    return xm.ImageArtifact(
        name=spec.name,
        image_ref=image_path,
        args=packageable.args,
        env_vars=dict(packageable.env_vars),
    )


def image_tarball_digest(path: Path) -> str:
    """The image's digest from its tarball's small members, so the daemon can check it.

    The digest an OCI layout's index.json lists; for a `docker save` tarball without one, the
    config digest (Docker's image ID) named by manifest.json.
    """
    try:
        return oci_image.read(path).digest
    except oci_image.ImageError as error:
        raise PackagingError(str(error)) from None
