"""OCI media types, digests and the canonical JSON of image documents."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from typing import IO, Any, Protocol

OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
OCI_LAYOUT_VERSION = "1.0.0"
EPOCH = "1970-01-01T00:00:00Z"
CHUNK = 1 << 20


class OciError(ValueError):
    """An image, layer or digest is not as it should be; the message says what and where."""


class DigestError(OciError):
    """A digest is malformed or unsupported."""


def dump_pretty(obj: Any) -> str:
    """Descriptors and other files people read: sorted keys, indented, final newline."""
    return json.dumps(obj, sort_keys=True, indent=2) + "\n"


def dump_canonical(obj: Any) -> bytes:
    """OCI JSON blobs (config, manifest, index): compact with sorted keys, so stable."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_path(digest: str) -> str:
    """The path of a blob inside an OCI image layout: `blobs/sha256/<hex>`."""
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64:
        raise DigestError(f"unsupported digest {digest!r}")
    return f"blobs/{algorithm}/{hexdigest}"


def iter_chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(CHUNK):
        yield chunk


class Sink(Protocol):
    def write(self, data: memoryview, /) -> Any: ...


class HashingWriter(io.RawIOBase):
    """Forwards writes to `out` while counting them and hashing them with SHA-256."""

    def __init__(self, out: Sink) -> None:
        super().__init__()
        self.out = out
        self.sha256 = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.out.write(view)
        self.sha256.update(view)
        self.count += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.count

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha256.hexdigest()


OCI_LAYOUT_FILE = dump_canonical({"imageLayoutVersion": OCI_LAYOUT_VERSION})
