"""Tiny test images without Bazel or a registry: Debian's static busybox in one layer.

`write_image_tarball` writes an image tarball the way `docker save` does (manifest.json), as an
OCI image layout (index.json and blobs, gzip layers), or both, so that the daemon's tarball
loading is what the tests exercise. Images differ only by their config (entrypoint, command,
labels), so they share their one layer, as images built on a common base do.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
_MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
_MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
_MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"


def busybox_missing_reason() -> str | None:
    """Why the test image cannot be built here, or None when it can."""
    if not BUSYBOX.is_file():
        return "Debian's busybox-static is not installed (./setup.sh test installs it)"
    probe = subprocess.run(
        ["file", "-L", str(BUSYBOX)], capture_output=True, text=True, check=False
    )
    if probe.returncode == 0 and "dynamically linked" in probe.stdout:
        return f"{BUSYBOX} is dynamically linked; install busybox-static"
    return None


def _applets() -> list[str]:
    listing = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout
    return sorted(name for name in listing.split() if name and "/" not in name)


def _add(tar: tarfile.TarFile, info: tarfile.TarInfo, data: bytes | None = None) -> None:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def layer_tar() -> bytes:
    """The root file system: busybox, its applets as symlinks, /tmp and an /etc/passwd."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("bin", "etc", "tmp", "usr", "usr/bin", "www"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            _add(tar, info)
        data = BUSYBOX.read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size = len(data)
        info.mode = 0o755
        _add(tar, info, data)
        for applet in _applets():
            if applet == "busybox":
                continue
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            info.mode = 0o777
            _add(tar, info)
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        info.mode = 0o644
        _add(tar, info, passwd)
    return out.getvalue()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_config(
    layer: bytes,
    *,
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = ("sh",),
    labels: dict[str, str] | None = None,
) -> bytes:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/bin:/usr/bin"],
            "Entrypoint": list(entrypoint) if entrypoint is not None else None,
            "Cmd": list(cmd) if cmd is not None else None,
            "Labels": labels or {},
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [_sha256(layer)]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "tests/containers"}],
    }
    return json.dumps(config, sort_keys=True).encode()


def write_image_tarball(
    path: Path,
    *,
    fmt: str = "docker",
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = ("sh",),
    labels: dict[str, str] | None = None,
    tag: str | None = None,
    layer: bytes | None = None,
) -> str:
    """Writes an image tarball; returns the image ID (the config digest).

    fmt: "docker" (manifest.json, as `docker save` of Docker 20.10 writes), "oci" (an OCI image
    layout only: index.json, gzip-compressed layer) or "both" (as Docker 25+ writes).
    """
    layer = layer if layer is not None else layer_tar()
    config = image_config(layer, entrypoint=entrypoint, cmd=cmd, labels=labels)
    config_digest = _sha256(config)
    members: dict[str, bytes] = {}
    if fmt in ("docker", "both"):
        layer_name = f"blobs/sha256/{_sha256(layer)[7:]}"
        config_name = f"blobs/sha256/{config_digest[7:]}"
        if fmt == "docker":  # the layout of Docker 20.10's `docker save`
            layer_name = f"{_sha256(layer)[7:]}/layer.tar"
            config_name = f"{config_digest[7:]}.json"
        members[layer_name] = layer
        members[config_name] = config
        members["manifest.json"] = json.dumps(
            [{"Config": config_name, "RepoTags": [tag] if tag else None, "Layers": [layer_name]}]
        ).encode()
    if fmt in ("oci", "both"):
        blob = layer if fmt == "both" else gzip.compress(layer, mtime=0)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": _MEDIA_MANIFEST,
                "config": {
                    "mediaType": _MEDIA_CONFIG,
                    "digest": config_digest,
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": _MEDIA_LAYER_GZIP
                        if fmt == "oci"
                        else "application/vnd.oci.image.layer.v1.tar",
                        "digest": _sha256(blob),
                        "size": len(blob),
                    }
                ],
            }
        ).encode()
        annotations = {"io.containerd.image.name": tag} if tag else {}
        members[f"blobs/sha256/{_sha256(blob)[7:]}"] = blob
        members[f"blobs/sha256/{config_digest[7:]}"] = config
        members[f"blobs/sha256/{_sha256(manifest)[7:]}"] = manifest
        members["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
        members["index.json"] = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": _MEDIA_INDEX,
                "manifests": [
                    {
                        "mediaType": _MEDIA_MANIFEST,
                        "digest": _sha256(manifest),
                        "size": len(manifest),
                        "annotations": annotations,
                    }
                ],
            }
        ).encode()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tarfile.open(temporary, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            _add(tar, info, data)
    temporary.replace(path)
    return config_digest


def manifest_digest(path: Path) -> str:
    """The manifest digest of an OCI-layout tarball (the index's only entry)."""
    with tarfile.open(path) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        return str(json.load(member)["manifests"][0]["digest"])
