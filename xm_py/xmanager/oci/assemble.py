"""Writes an image on top of a base image: new config, manifest and index, as an image tarball.

The tarball holds both an OCI image layout and Docker's `manifest.json` (so `docker load`,
`podman load` and the daemon all take it), written deterministically: the same base, layers and
settings give the same bytes and the same digest. Blobs are copied as they are, never
recompressed.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xmanager.oci import layers as oci_layers
from xmanager.oci.image import Image, ImageFiles
from xmanager.oci.spec import (
    EPOCH,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYOUT_FILE,
    OCI_MANIFEST,
    blob_path,
    dump_canonical,
    sha256_digest,
)


@dataclasses.dataclass(frozen=True)
class NewLayer:
    """A layer blob on disk with its descriptor (`mediaType`, `digest`, `size`, `diffId`)."""

    name: str
    blob: Path
    descriptor: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Settings:
    """The container settings the new image sets over its base's (Dockerfile semantics)."""

    entrypoint: Sequence[str] | None = None
    cmd: Sequence[str] | None = None
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    workdir: str = ""
    user: str = ""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    created_by: str = "xmanager"


@dataclasses.dataclass(frozen=True)
class Written:
    path: Path
    digest: str  # the manifest's
    config_digest: str


def _merge_env(base: list[str], updates: Mapping[str, str]) -> list[str]:
    current: dict[str, str] = {}
    for item in base:
        key, _, value = item.partition("=")
        current[key] = value
    current.update(updates)
    return [f"{key}={value}" for key, value in current.items()]


def documents(
    base_config: Mapping[str, Any],
    base_layers: Sequence[Mapping[str, Any]],
    new: Sequence[NewLayer],
    settings: Settings,
) -> tuple[bytes, bytes, bytes]:
    """(config, manifest, index) of the image: base layers, then the new ones."""
    container: dict[str, Any] = dict(base_config.get("config") or {})
    if settings.entrypoint is not None:
        container["Entrypoint"] = list(settings.entrypoint)
        container.pop("Cmd", None)
    if settings.cmd is not None:
        container["Cmd"] = list(settings.cmd)
    env = _merge_env(list(container.get("Env") or []), settings.env)
    if env:
        container["Env"] = env
    if settings.workdir:
        container["WorkingDir"] = settings.workdir
    if settings.user:
        container["User"] = settings.user
    labels = {**(container.get("Labels") or {}), **settings.labels}
    if labels:
        container["Labels"] = labels
    history = list(base_config.get("history") or [])
    for layer in new:
        history.append({"created": EPOCH, "created_by": f"{settings.created_by}: {layer.name}"})
    diff_ids = list((base_config.get("rootfs") or {}).get("diff_ids") or [])
    config = {
        "architecture": base_config.get("architecture") or "amd64",
        "os": base_config.get("os") or "linux",
        "created": EPOCH,
        "config": container,
        "rootfs": {"type": "layers", "diff_ids": diff_ids + [n.descriptor["diffId"] for n in new]},
        "history": history,
    }
    config_bytes = dump_canonical(config)
    layer_descriptors = [
        {"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"]}
        for d in [*base_layers, *(n.descriptor for n in new)]
    ]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": sha256_digest(config_bytes),
            "size": len(config_bytes),
        },
        "layers": layer_descriptors,
    }
    manifest_bytes = dump_canonical(manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": sha256_digest(manifest_bytes),
                "size": len(manifest_bytes),
                "platform": {"architecture": config["architecture"], "os": config["os"]},
            }
        ],
    }
    return config_bytes, manifest_bytes, dump_canonical(index)


def write_tarball(
    out: Path, base: Image | None, new: Sequence[NewLayer], settings: Settings
) -> Written:
    """Writes the image tarball atomically (a temporary file renamed into place)."""
    base_config: dict[str, Any] = json.loads(base.config()) if base is not None else {}
    base_layers = base.layer_descriptors() if base is not None else []
    config, manifest, index = documents(base_config, base_layers, new, settings)
    manifest_doc = json.loads(manifest)
    docker_manifest = [
        {
            "Config": blob_path(manifest_doc["config"]["digest"]),
            "RepoTags": [],
            "Layers": [blob_path(d["digest"]) for d in manifest_doc["layers"]],
        }
    ]
    entries: dict[str, oci_layers.Entry] = {}

    def add(path: str, **kwargs: Any) -> None:
        entries.setdefault(path, oci_layers.Entry(path, "file", 0o644, "", **kwargs))

    add("oci-layout", data=OCI_LAYOUT_FILE)
    add("index.json", data=index)
    add("manifest.json", data=dump_canonical(docker_manifest))
    add(blob_path(sha256_digest(config)), data=config)
    add(blob_path(sha256_digest(manifest)), data=manifest)
    for layer in new:
        add(blob_path(str(layer.descriptor["digest"])), src=str(layer.blob))
    entries["blobs"] = oci_layers.Entry("blobs", "dir", 0o755, "")
    entries["blobs/sha256"] = oci_layers.Entry("blobs/sha256", "dir", 0o755, "")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            base_members = _base_blobs(base, base_layers)
            ordered = sorted(set(entries) | set(base_members))
            if base is None:
                oci_layers.write_tar(f, [entries[p] for p in ordered])
            else:
                with ImageFiles(base.path) as files:
                    _write_mixed(f, ordered, entries, base_members, files)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Written(out, sha256_digest(manifest), sha256_digest(config))


def _base_blobs(base: Image | None, base_layers: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """`blobs/sha256/<hex>` -> the member of the base image holding that layer."""
    if base is None:
        return {}
    return {
        blob_path(str(d["digest"])): member
        for d, member in zip(base_layers, base.layer_members, strict=True)
    }


def _write_mixed(
    f: Any,
    ordered: list[str],
    entries: dict[str, oci_layers.Entry],
    base_members: dict[str, str],
    files: ImageFiles,
) -> None:
    """A tarball of our own entries and the base image's layer blobs, in path order."""
    with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for path in ordered:
            entry = entries.get(path)
            if entry is not None:
                info = oci_layers.tar_info(entry)
                if entry.kind == "dir":
                    tar.addfile(info)
                elif entry.data is not None:
                    tar.addfile(info, io.BytesIO(entry.data))
                else:
                    assert entry.src is not None
                    with open(entry.src, "rb") as src:
                        tar.addfile(info, src)
                continue
            member = base_members[path]
            info = oci_layers.tar_info(oci_layers.Entry(path, "file", 0o644, "", data=b""))
            info.size = files.size(member)
            with files.open(member) as src:
                tar.addfile(info, src)
