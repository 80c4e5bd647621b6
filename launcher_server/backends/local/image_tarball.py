"""Reading image tarballs without a container engine, and streaming them into one.

An image tarball is what `docker save` writes (manifest.json naming a config and its layers),
an OCI image layout (index.json, manifests and blobs), or both. Only small members are read to
learn the image's identity: its config digest, which Docker Engine uses as the image ID, and,
for OCI layouts, its manifest digest.

Docker Engine 20.10 loads only the `docker save` form, and reads whole tarballs even when it has
their layers already. `load_stream` therefore re-streams a tarball for `docker load`, adding a
manifest.json to a bare OCI layout and leaving out layers the engine already has (it skips
reading a layer whose chain ID it has, so the layer's file may be absent).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

_BLOCK = tarfile.BLOCKSIZE
_CHUNK = 1 << 20
_INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
# A nested index (multi-platform image): the platform this daemon runs containers for.
_PLATFORM = {"os": "linux", "architecture": "amd64"}


class ImageTarballError(ValueError):
    """The tarball is not a usable image tarball; the message says what is wrong."""


@dataclasses.dataclass(frozen=True)
class TarballImage:
    """What a tarball says about the one image it holds."""

    path: Path
    # sha256 of the image config: Docker Engine's image ID.
    config_digest: str
    # The OCI manifest's digest, "" for a tarball without index.json.
    manifest_digest: str
    # The digest index.json lists: the manifest's, or a multi-platform index's.
    index_digest: str
    config_member: str
    # One member per layer, bottom first; a member may repeat.
    layer_members: tuple[str, ...]
    # The uncompressed layers' digests, from the config.
    diff_ids: tuple[str, ...]
    repo_tags: tuple[str, ...]
    # Whether the tarball carries a manifest.json (else one is added when loading).
    has_docker_manifest: bool

    @property
    def digests(self) -> set[str]:
        """Every digest that names this image: config, manifest, index entry."""
        return {d for d in (self.config_digest, self.manifest_digest, self.index_digest) if d}

    @property
    def chain_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)

    def docker_manifest(self) -> bytes:
        """The manifest.json `docker load` needs."""
        entry = {
            "Config": self.config_member,
            "RepoTags": list(self.repo_tags) or None,
            "Layers": list(self.layer_members),
        }
        return json.dumps([entry]).encode()


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The layers' chain IDs (how an engine names a layer together with those below it)."""
    result: list[str] = []
    for diff_id in diff_ids:
        if not result:
            result.append(diff_id)
        else:
            text = f"{result[-1]} {diff_id}".encode()
            result.append("sha256:" + hashlib.sha256(text).hexdigest())
    return result


def _blob(digest: str) -> str:
    algorithm, _, hex_digest = digest.partition(":")
    return f"blobs/{algorithm}/{hex_digest}"


class _Reader:
    def __init__(self, path: Path, tar: tarfile.TarFile) -> None:
        self.path = path
        self.tar = tar

    def has(self, name: str) -> bool:
        try:
            self.tar.getmember(name)
        except KeyError:
            return False
        return True

    def read(self, name: str) -> bytes:
        try:
            member = self.tar.extractfile(name)
        except KeyError:
            raise ImageTarballError(
                f"image tarball {self.path} lacks {name}; it is incomplete, build it again"
            ) from None
        if member is None:
            raise ImageTarballError(f"image tarball {self.path}: {name} is not a file")
        with member:
            return member.read()

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ImageTarballError(
                f"image tarball {self.path}: {name} is not valid JSON ({error})"
            ) from None


@contextlib.contextmanager
def _open(path: Path) -> Iterator[tarfile.TarFile]:
    try:
        tar = tarfile.open(path)  # noqa: SIM115  # closed below, errors explained
    except FileNotFoundError:
        raise ImageTarballError(f"image tarball {path} does not exist; build it first") from None
    except (tarfile.TarError, OSError) as error:
        raise ImageTarballError(f"{path} is not a readable tar archive: {error}") from None
    with tar:
        yield tar


def read(path: Path) -> TarballImage:
    """Reads the identity of the image in a tarball; raises ImageTarballError."""
    with _open(path) as tar:
        reader = _Reader(path, tar)
        try:
            if reader.has("manifest.json"):
                return _read_docker(reader)
            if reader.has("index.json"):
                return _read_oci(reader)
        except (KeyError, TypeError, IndexError, AttributeError) as error:
            raise ImageTarballError(
                f"image tarball {path} has an unexpected structure ({error!r}); build it again"
            ) from None
    raise ImageTarballError(
        f"{path} is not an image tarball: it has neither manifest.json (docker save) nor "
        "index.json (OCI image layout)"
    )


def _read_docker(reader: _Reader) -> TarballImage:
    entries = reader.json("manifest.json")
    if not isinstance(entries, list) or len(entries) != 1:
        count = len(entries) if isinstance(entries, list) else 0
        raise ImageTarballError(
            f"image tarball {reader.path} holds {count} images; a job's tarball must hold "
            "exactly one"
        )
    entry = entries[0]
    config_member = str(entry["Config"])
    config = reader.read(config_member)
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest_digest = index_digest = ""
    if reader.has("index.json"):
        descriptor, index_digest = _manifest_descriptor(reader)
        manifest_digest = descriptor["digest"]
    return TarballImage(
        path=reader.path,
        config_digest=config_digest,
        manifest_digest=manifest_digest,
        index_digest=index_digest,
        config_member=config_member,
        layer_members=tuple(str(layer) for layer in entry["Layers"]),
        diff_ids=_diff_ids(reader, config, len(entry["Layers"])),
        repo_tags=tuple(str(tag) for tag in entry.get("RepoTags") or ()),
        has_docker_manifest=True,
    )


def _read_oci(reader: _Reader) -> TarballImage:
    descriptor, index_digest = _manifest_descriptor(reader)
    manifest = reader.json(_blob(descriptor["digest"]))
    config_member = _blob(manifest["config"]["digest"])
    config = reader.read(config_member)
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    if config_digest != manifest["config"]["digest"]:
        raise ImageTarballError(
            f"image tarball {reader.path}: the config's content does not match its digest "
            f"{manifest['config']['digest']}; the tarball is corrupt, build it again"
        )
    layers = tuple(_blob(layer["digest"]) for layer in manifest["layers"])
    annotations = descriptor.get("annotations") or {}
    name = annotations.get("io.containerd.image.name", "")
    return TarballImage(
        path=reader.path,
        config_digest=config_digest,
        manifest_digest=descriptor["digest"],
        index_digest=index_digest,
        config_member=config_member,
        layer_members=layers,
        diff_ids=_diff_ids(reader, config, len(layers)),
        repo_tags=(name,) if ":" in name.rpartition("/")[2] else (),
        has_docker_manifest=False,
    )


def _manifest_descriptor(reader: _Reader) -> tuple[dict[str, Any], str]:
    """The image manifest's descriptor (the index's only entry, or this platform's), and the
    digest index.json itself lists for the image."""
    index = reader.json("index.json")
    descriptors: list[dict[str, Any]] = index["manifests"]
    listed = ""
    for _ in range(4):  # an index may point at an index (a multi-platform image)
        if len(descriptors) != 1:
            matching = [d for d in descriptors if _platform_matches(d.get("platform"))]
            if len(matching) != 1:
                raise ImageTarballError(
                    f"image tarball {reader.path} holds {len(descriptors)} images and none (or "
                    f"several) for {_PLATFORM['os']}/{_PLATFORM['architecture']}; a job's "
                    "tarball must hold exactly one image"
                )
            descriptors = matching
        descriptor = descriptors[0]
        listed = listed or str(descriptor["digest"])
        if descriptor.get("mediaType") not in _INDEX_TYPES:
            return descriptor, listed
        descriptors = reader.json(_blob(descriptor["digest"]))["manifests"]
    raise ImageTarballError(f"image tarball {reader.path}: index.json nests too deeply")


def _platform_matches(platform: object) -> bool:
    return isinstance(platform, dict) and all(platform.get(k) == v for k, v in _PLATFORM.items())


def _diff_ids(reader: _Reader, config: bytes, layer_count: int) -> tuple[str, ...]:
    try:
        diff_ids = tuple(str(d) for d in json.loads(config)["rootfs"]["diff_ids"])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ImageTarballError(
            f"image tarball {reader.path}: its image config has no rootfs.diff_ids ({error!r})"
        ) from None
    if len(diff_ids) != layer_count:
        raise ImageTarballError(
            f"image tarball {reader.path}: {layer_count} layers but {len(diff_ids)} diff_ids "
            "in its config; build it again"
        )
    return diff_ids


def skippable_layers(image: TarballImage, engine_chain_ids: Iterable[str]) -> set[str]:
    """Layer members the engine does not need: it has those layers (by chain ID) already."""
    have = set(engine_chain_ids)
    needed = {
        member
        for member, chain_id in zip(image.layer_members, image.chain_ids, strict=True)
        if chain_id not in have
    }
    return set(image.layer_members) - needed


def load_stream(image: TarballImage, skip: Iterable[str] = ()) -> Iterator[bytes]:
    """The tarball as `docker load` of Docker Engine 20.10 takes it, chunk by chunk."""
    skip = set(skip)
    with _open(image.path) as tar:
        members = tar.getmembers()
        # A member another member links to must stay, or the link would dangle.
        link_targets = {m.linkname for m in members if m.islnk()}
        for member in members:
            if member.name in skip and member.isfile() and member.name not in link_targets:
                continue
            yield member.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
            if member.isfile():
                source = tar.extractfile(member)
                assert source is not None
                with source:
                    while chunk := source.read(_CHUNK):
                        yield chunk
                yield _padding(member.size)
    if not image.has_docker_manifest:
        manifest = image.docker_manifest()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        info.mode = 0o644
        yield info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
        yield manifest + _padding(len(manifest))
    yield b"\0" * (2 * _BLOCK)  # the end of the archive


def _padding(size: int) -> bytes:
    return b"\0" * (-size % _BLOCK)
