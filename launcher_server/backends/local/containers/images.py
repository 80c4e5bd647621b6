"""Making sure a job's image is in Docker Engine: loaded from its tarball, or found by reference.

An image tarball is loaded once per image ID: concurrent jobs of one image wait for the first
load, and a tarball's identity is read once per file version. A load sends only the layers the
engine lacks (xmanager.oci.image.load_stream), and sends them all again should the engine have
dropped one meanwhile. Images are never pulled: a reference must name an image already loaded.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from launcher_server.backends.local.containers.engine import (
    ENGINE_ERRORS,
    APIError,
    Client,
    DockerException,
    NotFound,
    explain,
)
from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.oci import image as oci_image

_log = logging.getLogger(__name__)


class ChunkReader:
    """A file-like view of an iterator of byte chunks, streamed as a chunked HTTP body."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._current = b""
        self._offset = 0

    def read(self, size: int = -1) -> bytes:
        # The HTTP client reads small blocks of large chunks: slice, never re-copy the rest.
        pieces: list[bytes] = []
        wanted = size if size >= 0 else float("inf")
        while wanted > 0:
            if self._offset >= len(self._current):
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._current, self._offset = chunk, 0
                continue
            end = len(self._current) if size < 0 else self._offset + int(wanted)
            piece = self._current[self._offset : end]
            self._offset += len(piece)
            wanted -= len(piece)
            pieces.append(piece)
        return b"".join(pieces)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(1 << 20):
            yield chunk


class Images:
    """The engine's images of jobs, loaded on demand; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._image_locks: collections.defaultdict[str, threading.Lock] = collections.defaultdict(
            threading.Lock
        )
        self._tarballs: dict[tuple[str, int, int, int], oci_image.Image] = {}
        self._image_chain_ids: dict[str, list[str]] = {}

    def ensure(self, client: Client, image: pb.OciImage) -> str:
        """The image ID of the job's image, loading its tarball into the engine if needed.

        Raises ValueError saying what is wrong with the image and what to do.
        """
        if image.WhichOneof("source") == "reference":
            return self._reference_image(client, image)
        info = self._tarball(Path(image.tarball_path))
        if image.digest and image.digest not in info.digests:
            found = info.manifest_digest or info.config_digest
            raise ValueError(
                f"image tarball {info.path} holds image {found}, not {image.digest}: it changed "
                "since it was packaged; package it again"
            )
        with self._image_lock(info.config_digest):  # one load per image, however many jobs
            if not self._has_image(client, info.config_digest):
                self._load(client, info)
        return info.config_digest

    def _image_lock(self, image_id: str) -> threading.Lock:
        with self._lock:
            return self._image_locks[image_id]

    def _tarball(self, path: Path) -> oci_image.Image:
        """The tarball's image identity, cached by file identity and modification time."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise ValueError(f"image tarball {path} does not exist; build it first") from None
        identity = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            info = self._tarballs.get(identity)
        if info is None:
            info = oci_image.read(path)
            with self._lock:
                self._tarballs[identity] = info
        return info

    @staticmethod
    def _has_image(client: Client, image_id: str) -> bool:
        try:
            client.images.get(image_id)
        except NotFound:
            return False
        return True

    def _load(self, client: Client, info: oci_image.Image) -> None:
        skip = oci_image.skippable_layers(info, self._engine_chain_ids(client))
        started = time.monotonic()
        try:
            client.images.load(ChunkReader(oci_image.load_stream(info, skip)))
        except DockerException as error:
            if not skip:
                raise ValueError(
                    f"Docker Engine could not load image tarball {info.path}: {explain(error)}"
                ) from None
            # The engine dropped a layer it had (an image removed meanwhile): send them all.
            _log.info("loading %s again with all its layers: %s", info.path, error)
            skip = set()
            client.images.load(ChunkReader(oci_image.load_stream(info)))
        if not self._has_image(client, info.config_digest):
            raise ValueError(
                f"loading image tarball {info.path} did not produce image {info.config_digest}; "
                "the tarball may be corrupt, build it again"
            )
        _log.info(
            "loaded image %s from %s in %.1fs (%d of %d layers sent)",
            info.config_digest,
            info.path,
            time.monotonic() - started,
            len(set(info.layer_members) - skip),
            len(set(info.layer_members)),
        )

    def _engine_chain_ids(self, client: Client) -> set[str]:
        """The chain IDs of every layer the engine has (images are immutable: cached)."""
        result: set[str] = set()
        try:
            image_ids = client.api.images(quiet=True)
        except ENGINE_ERRORS:
            return result
        for image_id in image_ids:
            chain = self._image_chain_ids.get(image_id)
            if chain is None:
                try:
                    layers = client.images.get(image_id).attrs["RootFS"].get("Layers") or []
                except (*ENGINE_ERRORS, KeyError):  # type: ignore[misc]
                    continue
                chain = self._image_chain_ids[image_id] = oci_image.chain_ids(layers)
            result.update(chain)
        return result

    @staticmethod
    def _reference_image(client: Client, image: pb.OciImage) -> str:
        reference = image.reference
        try:
            attrs = client.images.get(reference).attrs
        except NotFound:
            raise ValueError(
                f"image {reference} is not in Docker Engine; docker load it or build it with "
                "Bazel (images are never pulled from a registry here)"
            ) from None
        except APIError as error:
            raise ValueError(f"image reference {reference!r}: {explain(error)}") from None
        image_id = str(attrs["Id"])
        repo_digests = [str(d).rpartition("@")[2] for d in attrs.get("RepoDigests") or []]
        if image.digest and image.digest != image_id and image.digest not in repo_digests:
            raise ValueError(
                f"image {reference} in Docker Engine is {image_id}, not {image.digest}: it "
                "changed since it was packaged; package it again"
            )
        return image_id
