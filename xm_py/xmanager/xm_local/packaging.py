"""Packaging for the local launcher: executable specs become artifacts the daemon can run.

- `xm.Binary`: the path, made absolute against the launch script's directory, checked to be an
  executable file, and hashed so the daemon can refuse a binary changed since packaging.
- `xm.BazelBinary`, `xm.BazelContainer`: under `bazel run` of an xm_launch target, the labels
  come from the target's manifest (`XM_BAZEL_MANIFEST`): Bazel built them with the launcher, and
  no nested Bazel runs. Otherwise all labels of one `package()` call are built by a single
  `bazel build`, and their outputs are read from the Build Event Protocol (no guessing of
  bazel-bin paths).
- `xm.Container`: an image tarball (made absolute, checked, and its image digest read so that the
  daemon refuses a tarball changed since packaging) or a reference to an image already in the
  daemon's container engine (checked by the daemon: images are never pulled).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from xmanager import xm


class PackagingError(RuntimeError):
    """An executable could not be packaged; the message says what to fix."""


def launch_script_dir() -> Path:
    """The directory relative paths in a launch script are resolved against."""
    script = os.environ.get("XM_LAUNCH_SCRIPT") or (sys.argv[0] if sys.argv else "")
    return Path(script).resolve().parent if script else Path.cwd()


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
        _warn_ignored_bazel_args(bazel_specs)
    elif bazel_specs:
        bazel_args = sorted({arg for spec in bazel_specs for arg in spec.bazel_args})
        built = build_bazel_targets([spec.label for spec in bazel_specs], bazel_args)
    return [_package_one(p, built, manifest) for p in packageables]


def _package_one(
    packageable: xm.Packageable, built: dict[str, list[Path]], manifest: BazelManifest | None
) -> xm.Executable:
    spec = packageable.executable_spec
    if isinstance(spec, xm.Binary):
        path = Path(spec.path)
        if not path.is_absolute():
            path = launch_script_dir() / path
        return _binary_artifact(path, spec.name, packageable)
    if isinstance(spec, xm.BazelBinary):
        if manifest is not None:
            entry = manifest.artifact(spec.label, "binary")
            sha256 = entry.digest.removeprefix("sha256:")
            return _binary_artifact(entry.path, spec.name, packageable, sha256)
        outputs = built[spec.label]
        return _binary_artifact(_pick_executable(spec.label, outputs), spec.name, packageable)
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
            return xm.ImageArtifact(
                name=spec.name,
                image_path=str(entry.path),
                digest=entry.digest,
                args=packageable.args,
                env_vars=dict(packageable.env_vars),
            )
        tarballs = [p for p in built[spec.label] if p.name.endswith(".tar")]
        if not tarballs:
            raise PackagingError(f"{spec.label} built no image tarball (*.tar)")
        return xm.ImageArtifact(
            name=spec.name,
            image_path=str(tarballs[0]),
            digest=image_tarball_digest(tarballs[0]),
            args=packageable.args,
            env_vars=dict(packageable.env_vars),
        )
    raise PackagingError(
        f"{type(spec).__name__} is not supported by the local launcher yet: build the image "
        "with Bazel (xm.bazel_container) or use xm.Binary / xm.Container"
    )


# -- the xm_launch manifest ------------------------------------------------------------------------

MANIFEST_ENV = "XM_BAZEL_MANIFEST"
_MANIFEST_VERSION = 1
_KINDS = {"binary": "xm.bazel_binary", "image": "xm.bazel_container"}
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True)
class ManifestEntry:
    """One prebuilt executable of an xm_launch target."""

    label: str
    kind: str
    path: Path
    digest: str


@dataclasses.dataclass(frozen=True)
class BazelManifest:
    """The executables an xm_launch target built with it (docs/rules.md, "xm_launch").

    JSON: `{"version": 1, "launcher": "//exp:launch", "artifacts": {LABEL: {"label": canonical
    label, "kind": "binary" | "image", "path": ..., "digest": "sha256:<hex>"}}}`, one key per
    spelling of each label. A relative `path` is relative to the manifest's directory (in the
    launcher's runfiles tree), and symlinks are resolved: that leads to Bazel's output tree, where
    a binary has its own runfiles tree next to it and so runs outside the launcher's.
    """

    launcher: str
    entries: Mapping[str, ManifestEntry]

    @classmethod
    def from_env(cls) -> BazelManifest | None:
        """The manifest named by XM_BAZEL_MANIFEST (set by `bazel run` of an xm_launch target)."""
        configured = os.environ.get(MANIFEST_ENV)
        return cls.load(Path(configured)) if configured else None

    @classmethod
    def load(cls, path: Path) -> BazelManifest:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise _manifest_error(path, f"cannot read it: {error}") from None
        try:
            return cls._parse(path, data)
        except (KeyError, TypeError, AttributeError) as error:
            raise _manifest_error(path, f"malformed ({type(error).__name__}: {error})") from None

    @classmethod
    def _parse(cls, path: Path, data: Any) -> BazelManifest:
        if data.get("version") != _MANIFEST_VERSION:
            raise _manifest_error(
                path,
                f"version {data.get('version')!r}, but this client reads version "
                f"{_MANIFEST_VERSION}: build it with the xm_rules of this xmanager",
            )
        entries: dict[str, ManifestEntry] = {}
        for name, item in data["artifacts"].items():
            kind = item["kind"]
            digest = item["digest"]
            if kind not in _KINDS or not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
                raise _manifest_error(path, f"{name}: bad kind {kind!r} or digest {digest!r}")
            # Not resolved against the manifest's real path: external repositories are laid
            # out differently in the runfiles tree and in the output tree.
            where = path.parent / str(item["path"])
            entries[name] = ManifestEntry(
                str(item["label"]), kind, Path(os.path.realpath(where)), digest
            )
        return cls(str(data["launcher"]), entries)

    def artifact(self, label: str, kind: str) -> ManifestEntry:
        """The entry of `label` (as a launch script spells it), which must be of `kind`."""
        entry = next((self.entries[n] for n in _label_spellings(label) if n in self.entries), None)
        if entry is None:
            listed = sorted({e.label.removeprefix("@@") for e in self.entries.values()})
            raise PackagingError(
                f"{label} is not among the executables of the xm_launch target {self.launcher}: "
                f"add it to that target's `executables` and `bazel run` it again (it lists: "
                f"{', '.join(listed) or 'nothing'})"
            )
        if entry.kind != kind:
            raise PackagingError(
                f"{label} is {'an image' if entry.kind == 'image' else 'a binary'}: package it "
                f"with {_KINDS[entry.kind]}, not {_KINDS[kind]}"
            )
        return entry


def _manifest_error(path: Path, problem: str) -> PackagingError:
    return PackagingError(
        f"{MANIFEST_ENV}={path}: {problem}. It should be the manifest of an xm_launch target, "
        f"set by `bazel run`; unset {MANIFEST_ENV} to build the labels with `bazel build`"
    )


def _label_spellings(label: str) -> list[str]:
    """`label` and its main-repository spellings: `@@//p:n`, `@//p:n`, `//p:n`, `//p` (`//p:p`)."""
    forms = [label]
    bare = label.removeprefix("@@") if label.startswith("@@//") else label.removeprefix("@")
    if bare.startswith("//"):
        if ":" not in bare:
            bare = f"{bare}:{bare.rsplit('/', 1)[-1]}"
        forms += [bare, f"@@{bare}"]
    return forms


def _warn_ignored_bazel_args(specs: Sequence[xm.BazelBinary | xm.BazelContainer]) -> None:
    ignored = sorted({arg for spec in specs for arg in spec.bazel_args})
    if ignored:
        print(
            f"xmanager: bazel_args {ignored} not applied: under `bazel run` the executables were "
            "built with the launcher, with the `bazel run` command's flags; pass them there",
            file=sys.stderr,
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
        path = launch_script_dir() / path
    looks_like_file = image_path.endswith(_TARBALL_SUFFIXES) or image_path.startswith(
        ("/", "./", "../", "~")
    )
    if path.is_file() or looks_like_file:
        if not path.is_file():
            raise PackagingError(f"image tarball {path} does not exist; build it first")
        return xm.ImageArtifact(
            name=spec.name,
            image_path=str(path),
            digest=image_tarball_digest(path),
            args=packageable.args,
            env_vars=dict(packageable.env_vars),
        )
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
        with tarfile.open(path) as tar:
            names = set(tar.getnames())
            if "index.json" in names:
                manifests = json.loads(_tar_member(tar, "index.json"))["manifests"]
                # Several: one per platform, which the daemon chooses from (unchecked).
                return str(manifests[0]["digest"]) if len(manifests) == 1 else ""
            if "manifest.json" in names:
                entries = json.loads(_tar_member(tar, "manifest.json"))
                if not isinstance(entries, list) or len(entries) != 1:
                    raise PackagingError(
                        f"image tarball {path} holds several images (or none) in its "
                        "manifest.json; a job's tarball must hold exactly one"
                    )
                config = _tar_member(tar, str(entries[0]["Config"]))
                return "sha256:" + hashlib.sha256(config).hexdigest()
    except (tarfile.TarError, OSError, ValueError, KeyError, TypeError) as error:
        raise PackagingError(f"{path} is not a readable image tarball: {error}") from None
    raise PackagingError(
        f"{path} is not an image tarball: it has neither index.json (OCI image layout) nor "
        "manifest.json (docker save)"
    )


def _tar_member(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    if member is None:
        raise PackagingError(f"{name} in image tarball {tar.name!r} is not a file")
    with member:
        return member.read()


def _pick_executable(label: str, outputs: Sequence[Path]) -> Path:
    """The target's executable among its outputs: the file named like the target."""
    target = label.rsplit(":", 1)[-1] if ":" in label else label.rsplit("/", 1)[-1]
    for path in outputs:
        if path.name == target and os.access(path, os.X_OK):
            return path
    executables = [p for p in outputs if p.is_file() and os.access(p, os.X_OK)]
    if len(executables) == 1:
        return executables[0]
    raise PackagingError(
        f"cannot tell which output of {label} is its executable: {[str(p) for p in outputs]}"
    )


def workspace_dir() -> Path:
    """The Bazel workspace to build in: `bazel run`'s, else the launch script's."""
    configured = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
    return Path(configured) if configured else launch_script_dir()


def build_bazel_targets(
    labels: Iterable[str], bazel_args: Sequence[str] = ()
) -> dict[str, list[Path]]:
    """Builds the labels with one `bazel build`; returns each label's output files."""
    labels = list(dict.fromkeys(labels))
    workspace = workspace_dir()
    with tempfile.TemporaryDirectory(prefix="xm-bep-") as tmp:
        bep = Path(tmp) / "bep.json"
        command = [
            "bazel",
            "build",
            f"--build_event_json_file={bep}",
            "--build_event_json_file_path_conversion=true",
            *bazel_args,
            "--",
            *labels,
        ]
        result = subprocess.run(
            command, cwd=workspace, stderr=subprocess.PIPE, text=True, check=False
        )
        if result.returncode != 0:
            tail = "\n".join(result.stderr.splitlines()[-15:])
            raise PackagingError(f"`bazel build {' '.join(labels)}` failed in {workspace}:\n{tail}")
        return outputs_from_bep(bep.read_text().splitlines(), labels)


def outputs_from_bep(lines: Iterable[str], labels: Sequence[str]) -> dict[str, list[Path]]:
    """Reads each target's default outputs from Build Event Protocol JSON lines."""
    file_sets: dict[str, dict[str, list[str]]] = {}
    completed: dict[str, list[str]] = {}
    for line in lines:
        if not line.strip():
            continue
        event = json.loads(line)
        event_id = event.get("id", {})
        if "namedSet" in event_id:
            named = event.get("namedSetOfFiles", {})
            file_sets[event_id["namedSet"]["id"]] = {
                "files": [f.get("uri", "") for f in named.get("files", [])],
                "sets": [s["id"] for s in named.get("fileSets", [])],
            }
        elif "targetCompleted" in event_id:
            label = event_id["targetCompleted"]["label"]
            sets = [
                file_set["id"]
                for group in event.get("completed", {}).get("outputGroup", [])
                if group.get("name") == "default"
                for file_set in group.get("fileSets", [])
            ]
            completed[label] = sets

    def expand(set_id: str, seen: set[str]) -> list[str]:
        if set_id in seen or set_id not in file_sets:
            return []
        seen.add(set_id)
        uris = list(file_sets[set_id]["files"])
        for child in file_sets[set_id]["sets"]:
            uris.extend(expand(child, seen))
        return uris

    result: dict[str, list[Path]] = {}
    for label in labels:
        match = _match_label(label, completed)
        if match is None:
            raise PackagingError(f"Bazel reported no outputs for {label}")
        seen: set[str] = set()
        uris = [uri for set_id in completed[match] for uri in expand(set_id, seen)]
        result[label] = [
            Path(uri.removeprefix("file://")) for uri in uris if uri.startswith("file://")
        ]
    return result


def _match_label(label: str, completed: dict[str, list[str]]) -> str | None:
    """BEP spells labels canonically (`//pkg:name`, sometimes `@@//pkg:name`)."""
    candidates = {label, f"@@{label}", f"@{label}"}
    if ":" not in label:
        candidates |= {f"{c}:{label.rsplit('/', 1)[-1]}" for c in list(candidates)}
    return next((c for c in completed if c in candidates), None)
