"""The manifest of an xm_launch target: the executables Bazel built with the launch script.

Under `bazel run` of an xm_launch target, `XM_BAZEL_MANIFEST` names it, and the client packages
`xm.bazel_binary` / `xm.bazel_container` labels from it without running Bazel again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xmanager import xm
from xmanager.xm_local.errors import PackagingError

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


def warn_ignored_bazel_args(specs: Sequence[xm.BazelBinary | xm.BazelContainer]) -> None:
    ignored = sorted({arg for spec in specs for arg in spec.bazel_args})
    if ignored:
        print(
            f"xmanager: bazel_args {ignored} not applied: under `bazel run` the executables were "
            "built with the launcher, with the `bazel run` command's flags; pass them there",
            file=sys.stderr,
        )
