"""Validates an image tarball (OCI layout plus Docker manifest.json) or an OCI layout directory.

Checks: `oci-layout` and `index.json` present and well-formed; every blob's sha256 and size match
its descriptor; the config's diff_ids equal the sha256 of the decompressed layers; config,
history and manifest agree; no layer holds a path twice; Docker's `manifest.json` names the same
config and layers. With --strict (the default), also this project's determinism rules: entries
sorted with explicit parent directories, mtime 0, uid and gid 0 with empty names, gzip without a
file name or timestamp, no unreferenced blobs.

    validate_image.py --tarball bazel-bin/examples/quickstart/train_image.tar
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import posixpath
import re
import sys
import tarfile
from pathlib import Path
from typing import IO, Any, cast

from xm_rules.tools import ocilib
from xmanager.oci.image import ImageFiles

LAYER_TYPES = {
    ocilib.OCI_LAYER_GZIP: "gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar": "tar",
}
_REFERENCE = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*:[\w][\w.-]{0,127}$"
)


# The files of an image (a tarball or a layout directory), read by the shared reader.
Source = ImageFiles


class HashingReader:
    """Hashes what is read through it."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.sha256 = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.sha256.update(data)
        self.count += len(data)
        return data


class Validator:
    def __init__(self, source: Source, strict: bool) -> None:
        self.source = source
        self.strict = strict
        self.problems: list[str] = []
        self.referenced: set[str] = set()

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def json_file(self, name: str) -> Any:
        if not self.source.exists(name):
            self.problem(f"{name} is missing")
            return None
        try:
            return json.loads(self.source.read(name))
        except ValueError as e:
            self.problem(f"{name} is not JSON: {e}")
            return None

    def blob(self, descriptor: dict[str, Any], what: str) -> bytes | None:
        """Checks a small blob (index, manifest, config) and returns its bytes."""
        name = self.blob_name(descriptor, what)
        if name is None:
            return None
        data = self.source.read(name)
        if len(data) != descriptor.get("size"):
            self.problem(
                f"{what} {name}: size {len(data)}, descriptor says {descriptor.get('size')}"
            )
        if ocilib.sha256_digest(data) != descriptor.get("digest"):
            self.problem(f"{what} {name}: sha256 is {ocilib.sha256_digest(data)}")
        return data

    def blob_name(self, descriptor: dict[str, Any], what: str) -> str | None:
        try:
            name = ocilib.blob_path(str(descriptor.get("digest")))
        except ocilib.LayerError as e:
            self.problem(f"{what}: {e}")
            return None
        self.referenced.add(name)
        if not self.source.exists(name):
            self.problem(f"{what}: blob {name} is missing")
            return None
        return name

    def run(self) -> dict[str, Any]:
        layout = self.json_file("oci-layout")
        if layout is not None and layout.get("imageLayoutVersion") != ocilib.OCI_LAYOUT_VERSION:
            self.problem(f"oci-layout: imageLayoutVersion is {layout.get('imageLayoutVersion')!r}")
        index = self.json_file("index.json")
        summary: dict[str, Any] = {}
        if index is None:
            return summary
        if index.get("schemaVersion") != 2:
            self.problem("index.json: schemaVersion is not 2")
        manifests = index.get("manifests") or []
        if not manifests:
            self.problem("index.json lists no manifests")
        for number, descriptor in enumerate(manifests):
            if descriptor.get("mediaType") != ocilib.OCI_MANIFEST:
                self.problem(
                    f"index.json manifest {number}: mediaType {descriptor.get('mediaType')}"
                )
            data = self.blob(descriptor, f"manifest {number}")
            if data is not None:
                summary = self.manifest(json.loads(data), descriptor, f"manifest {number}")
                summary["digest"] = descriptor.get("digest")
        if self.source.tar is not None:
            self.docker_manifest(manifests)
        if self.strict:
            for name in sorted(self.source.names):
                if name.startswith("blobs/") and name not in self.referenced:
                    self.problem(f"{name} is not referenced by any manifest")
        return summary

    def manifest(
        self, manifest: dict[str, Any], descriptor: dict[str, Any], what: str
    ) -> dict[str, Any]:
        if manifest.get("schemaVersion") != 2 or manifest.get("mediaType") != ocilib.OCI_MANIFEST:
            self.problem(f"{what}: not an OCI image manifest (schemaVersion 2)")
        config_descriptor = manifest.get("config") or {}
        if config_descriptor.get("mediaType") != ocilib.OCI_CONFIG:
            self.problem(f"{what}: config mediaType {config_descriptor.get('mediaType')}")
        config_data = self.blob(config_descriptor, f"{what} config")
        config: dict[str, Any] = json.loads(config_data) if config_data else {}
        layers = manifest.get("layers") or []
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if (config.get("rootfs") or {}).get("type") != "layers":
            self.problem(f"{what} config: rootfs.type is not 'layers'")
        if len(diff_ids) != len(layers):
            self.problem(f"{what}: {len(layers)} layers but {len(diff_ids)} diff_ids in the config")
        history = config.get("history") or []
        with_layers = [h for h in history if not h.get("empty_layer")]
        if history and len(with_layers) != len(layers):
            self.problem(
                f"{what}: {len(layers)} layers but {len(with_layers)} non-empty history entries"
            )
        for key in ("os", "architecture"):
            if not config.get(key):
                self.problem(f"{what} config: no {key}")
            platform = descriptor.get("platform") or {}
            if key in platform and platform[key] != config.get(key):
                self.problem(
                    f"index.json platform {key} {platform[key]} != config {config.get(key)}"
                )
        total = 0
        for number, layer in enumerate(layers):
            diff_id = diff_ids[number] if number < len(diff_ids) else None
            total += int(layer.get("size", 0))
            self.layer(layer, diff_id, f"{what} layer {number}")
        return {"layers": len(layers), "bytes": total}

    def layer(self, descriptor: dict[str, Any], diff_id: str | None, what: str) -> None:
        compression = LAYER_TYPES.get(str(descriptor.get("mediaType")))
        if compression is None:
            self.problem(f"{what}: unsupported mediaType {descriptor.get('mediaType')}")
            return
        name = self.blob_name(descriptor, what)
        if name is None:
            return
        with self.source.open(name) as raw:
            compressed = HashingReader(raw)
            if compression == "gzip":
                header = compressed.read(10)
                if header[:2] != b"\x1f\x8b":
                    self.problem(f"{what}: not gzip")
                    return
                if self.strict and (header[3] & 0x08 or header[4:8] != b"\0\0\0\0"):
                    self.problem(f"{what}: the gzip header records a file name or a timestamp")
                stream: Any = gzip.GzipFile(
                    fileobj=cast(IO[bytes], _Prefixed(header, compressed)), mode="rb"
                )
            else:
                stream = compressed
            uncompressed = HashingReader(stream)
            try:
                self.layer_entries(uncompressed, what)
                while uncompressed.read(ocilib.CHUNK):
                    pass
            except (tarfile.TarError, OSError, EOFError) as e:
                self.problem(f"{what}: unreadable: {e}")
                return
            while compressed.read(ocilib.CHUNK):
                pass
        digest = "sha256:" + compressed.sha256.hexdigest()
        if digest != descriptor.get("digest"):
            self.problem(f"{what} {name}: sha256 is {digest}")
        if compressed.count != descriptor.get("size"):
            self.problem(
                f"{what} {name}: size {compressed.count}, descriptor says {descriptor.get('size')}"
            )
        actual_diff_id = "sha256:" + uncompressed.sha256.hexdigest()
        if diff_id is not None and actual_diff_id != diff_id:
            self.problem(
                f"{what}: diff_id in the config is {diff_id}, the layer's is {actual_diff_id}"
            )

    def layer_entries(self, stream: HashingReader, what: str) -> None:
        seen: set[str] = set()
        previous = ""
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                path = member.name.removeprefix("./").rstrip("/")
                if path in seen:
                    self.problem(f"{what}: duplicate path /{path}")
                seen.add(path)
                if not self.strict:
                    continue
                if (
                    member.mtime != 0
                    or member.uid != 0
                    or member.gid != 0
                    or member.uname
                    or member.gname
                ):
                    self.problem(
                        f"{what}: /{path} has mtime {member.mtime}, owner "
                        f"{member.uid}:{member.gid} ({member.uname!r}:{member.gname!r}); "
                        "want 0, 0:0 and empty names"
                    )
                if path < previous:
                    self.problem(f"{what}: /{path} is out of order (after /{previous})")
                previous = path
                parent = posixpath.dirname(path)
                if parent and parent not in seen:
                    self.problem(f"{what}: /{path} comes without its parent directory /{parent}")

    def docker_manifest(self, manifests: list[dict[str, Any]]) -> None:
        docker = self.json_file("manifest.json")
        if docker is None:
            return
        if not isinstance(docker, list) or len(docker) != len(manifests):
            self.problem("manifest.json: want one entry per image of index.json")
            return
        for entry, descriptor in zip(docker, manifests, strict=True):
            name = self.blob_name(descriptor, "manifest.json")
            if name is None:
                continue
            manifest = json.loads(self.source.read(name))
            want_config = ocilib.blob_path(manifest["config"]["digest"])
            want_layers = [ocilib.blob_path(layer["digest"]) for layer in manifest["layers"]]
            if entry.get("Config") != want_config:
                self.problem(f"manifest.json: Config is {entry.get('Config')}, want {want_config}")
            if entry.get("Layers") != want_layers:
                self.problem("manifest.json: Layers differ from the OCI manifest's layers")
            for tag in entry.get("RepoTags") or []:
                if not _REFERENCE.match(tag):
                    self.problem(f"manifest.json: RepoTags entry {tag!r} is not a valid name:tag")


class _Prefixed:
    """A stream with some already-read bytes put back in front."""

    def __init__(self, prefix: bytes, rest: HashingReader) -> None:
        self.prefix = prefix
        self.rest = rest

    def read(self, size: int = -1) -> bytes:
        if self.prefix:
            if size < 0:
                data, self.prefix = self.prefix + self.rest.read(), b""
                return data
            data, self.prefix = self.prefix[:size], self.prefix[size:]
            return data
        return self.rest.read(size)


def validate(path: Path, strict: bool = True) -> tuple[list[str], dict[str, Any]]:
    """(problems, summary) of the image at `path`, a tarball or an OCI layout directory."""
    if not path.exists():
        return [f"{path} does not exist"], {}
    with Source(path) as source:
        validator = Validator(source, strict)
        summary = validator.run()
    return validator.problems, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", action="append", default=[], type=Path)
    parser.add_argument("--layout", action="append", default=[], type=Path)
    parser.add_argument(
        "--digest", action="append", default=[], type=Path, help="a digest file to compare"
    )
    parser.add_argument("--no-strict", dest="strict", action="store_false")
    args = parser.parse_args(argv)
    failed = False
    digests: set[str] = {p.read_text().strip() for p in args.digest}
    for path in [*args.tarball, *args.layout]:
        problems, summary = validate(path, args.strict)
        if digests and summary.get("digest") not in digests:
            problems.append(
                f"the image digest {summary.get('digest')} is not the digest file's {digests}"
            )
        if problems:
            failed = True
            print(f"FAIL {path}:")
            for problem in problems:
                print(f"  - {problem}")
        else:
            layers, size = summary["layers"], summary["bytes"]
            print(f"OK {path}: {summary['digest']}, {layers} layers, {size} bytes")
    if not args.tarball and not args.layout:
        parser.error("give --tarball or --layout")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
