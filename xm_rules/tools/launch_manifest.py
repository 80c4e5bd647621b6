"""Writes an xm_launch target's manifest: each executable's label, kind, path and digest.

The spec, written by the rule at analysis time:

    {"version": 1, "launcher": "//exp:launch", "manifest": "_main/exp/launch.xm_manifest.json",
     "artifacts": [
       {"label": "@@//exp:train", "names": ["@@//exp:train", "//exp:train", "@//exp:train"],
        "kind": "binary", "runfile": "_main/exp/train", "file": "bazel-out/.../bin/exp/train"},
       {"label": "@@//exp:image", "names": [...], "kind": "image", "runfile": "_main/exp/image.tar",
        "digest_file": "bazel-out/k8-fastbuild/bin/exp/image.digest"}]}

The manifest (docs/rules.md, "xm_launch"), read by the `xmanager` client under `bazel run`:

    {"version": 1, "launcher": "//exp:launch",
     "artifacts": {"//exp:train": {"label": "@@//exp:train", "kind": "binary", "path": "train",
                                   "digest": "sha256:<hex>"}, ...}}

with one key per spelling of each label and `path` relative to the manifest's directory in the
launcher's runfiles tree.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import posixpath
import re
import sys
from pathlib import Path
from typing import Any

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class ManifestError(Exception):
    """The spec or an input is unusable; the message says which."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def _digest(item: dict[str, Any]) -> str:
    if item["kind"] == "binary":
        return _sha256(Path(item["file"]))
    text = Path(item["digest_file"]).read_text().strip()
    if not _DIGEST.fullmatch(text):
        raise ManifestError(f"{item['label']}: {item['digest_file']} holds {text!r}, not a digest")
    return text


def build(spec: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a spec, reading the binaries and the images' digest files."""
    base = posixpath.dirname(spec["manifest"])
    artifacts: dict[str, dict[str, str]] = {}
    for item in spec["artifacts"]:
        if item["kind"] not in ("binary", "image"):
            raise ManifestError(f"{item['label']}: unknown kind {item['kind']!r}")
        entry = {
            "label": item["label"],
            "kind": item["kind"],
            "path": posixpath.relpath(item["runfile"], base),
            "digest": _digest(item),
        }
        for name in item["names"]:
            artifacts[name] = entry
    return {"version": spec["version"], "launcher": spec["launcher"], "artifacts": artifacts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, type=Path, help="the rule's JSON spec")
    parser.add_argument("--out", required=True, type=Path, help="output: the manifest")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text())
    try:
        manifest = build(spec)
    except (ManifestError, OSError) as error:
        print(f"xm_launch {spec.get('launcher', '')}: {error}", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
