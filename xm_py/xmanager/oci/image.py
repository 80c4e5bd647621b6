"""Reading an image without a container engine: from an image tarball or an OCI layout directory.

An image tarball is what `docker save` writes (manifest.json naming a config and its layers),
an OCI image layout (index.json, manifests and blobs), or both; an OCI layout directory holds
the same files unpacked. `read` learns the image's identity from the small members only: its
config digest (Docker Engine's image ID), its manifest digest, and its layers.

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
from types import TracebackType
from typing import IO, Any

from xmanager.oci.spec import (
    CHUNK,
    DOCKER_LAYER_GZIP,
    INDEX_TYPES,
    OCI_LAYER_TAR,
    OciError,
    blob_path,
)

_BLOCK = tarfile.BLOCKSIZE
# A nested index (multi-platform image): the platform containers run on here.
PLATFORM = {"os": "linux", "architecture": "amd64"}


class ImageError(OciError):
    """The file is not a usable image; the message says what is wrong."""


# The name the daemon and older code use.
ImageTarballError = ImageError


class ImageFiles:
    """The files of an image: an OCI layout directory or an image tarball (read in place)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tar: tarfile.TarFile | None = None
        self.members: dict[str, tarfile.TarInfo] = {}
        if path.is_dir():
            self.names = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
            return
        try:
            self.tar = tarfile.open(path, mode="r:")  # noqa: SIM115  # closed by close()
        except FileNotFoundError:
            raise ImageError(f"image {path} does not exist; build it first") from None
        except (tarfile.TarError, OSError) as error:
            raise ImageError(
                f"{path} is not a readable image tarball: not a readable tar archive ({error})"
            ) from None
        for member in self.tar.getmembers():
            if member.isfile() or member.islnk():
                self.members[member.name.removeprefix("./")] = member
        self.names = set(self.members)

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()

    def __enter__(self) -> ImageFiles:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def exists(self, name: str) -> bool:
        return name in self.names

    def size(self, name: str) -> int:
        if self.tar is None:
            return (self.path / name).stat().st_size
        return self._member(name).size

    def _member(self, name: str) -> tarfile.TarInfo:
        try:
            return self.members[name]
        except KeyError:
            raise ImageError(
                f"image {self.path} lacks {name}; it is incomplete, build it again"
            ) from None

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        if self.tar is None:
            try:
                f = open(self.path / name, "rb")  # noqa: SIM115  # closed below
            except FileNotFoundError:
                raise ImageError(
                    f"image {self.path} lacks {name}; it is incomplete, build it again"
                ) from None
            with f:
                yield f
            return
        member = self.tar.extractfile(self._member(name))
        if member is None:
            raise ImageError(f"image {self.path}: {name} is not a file")
        with member:
            yield member

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ImageError(f"image {self.path}: {name} is not valid JSON ({error})") from None


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer: its member in the image's files and, when known, its descriptor."""

    member: str
    diff_id: str
    # The blob's descriptor fields; for a `docker save` layer (an uncompressed tar named by
    # path, not digest) computed on demand by `Image.layer_descriptors`.
    media_type: str = ""
    digest: str = ""
    size: int = 0


@dataclasses.dataclass(frozen=True)
class Image:
    """What an image tarball or layout says about the one image it holds."""

    path: Path
    # sha256 of the image config: Docker Engine's image ID.
    config_digest: str
    # The OCI manifest's digest, "" for a tarball without index.json.
    manifest_digest: str
    # The digest index.json lists: the manifest's, or a multi-platform index's.
    index_digest: str
    config_member: str
    layers: tuple[Layer, ...]
    repo_tags: tuple[str, ...]
    # Whether the tarball carries a manifest.json (else one is added when loading).
    has_docker_manifest: bool

    @property
    def layer_members(self) -> tuple[str, ...]:
        """One member per layer, bottom first; a member may repeat."""
        return tuple(layer.member for layer in self.layers)

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return tuple(layer.diff_id for layer in self.layers)

    @property
    def digest(self) -> str:
        """The digest that names the image: what index.json lists, else the config's."""
        return self.index_digest or self.config_digest

    @property
    def digests(self) -> set[str]:
        """Every digest that names this image: config, manifest, index entry."""
        return {d for d in (self.config_digest, self.manifest_digest, self.index_digest) if d}

    @property
    def chain_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)

    def config(self) -> bytes:
        with ImageFiles(self.path) as files:
            return files.read(self.config_member)

    def layer_descriptors(self) -> list[dict[str, Any]]:
        """The layers' descriptors (mediaType, digest, size); a `docker save` layer's digest is
        computed by reading it (it is an uncompressed tar)."""
        result = []
        with ImageFiles(self.path) as files:
            for layer in self.layers:
                if layer.digest:
                    result.append(
                        {"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}
                    )
                    continue
                digest = hashlib.sha256()
                with files.open(layer.member) as f:
                    while chunk := f.read(CHUNK):
                        digest.update(chunk)
                result.append(
                    {
                        "mediaType": OCI_LAYER_TAR,
                        "digest": "sha256:" + digest.hexdigest(),
                        "size": files.size(layer.member),
                    }
                )
        return result

    def docker_manifest(self) -> bytes:
        """The manifest.json `docker load` needs."""
        entry = {
            "Config": self.config_member,
            "RepoTags": list(self.repo_tags) or None,
            "Layers": list(self.layer_members),
        }
        return json.dumps([entry]).encode()


# The name the daemon and older code use.
TarballImage = Image


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


def read(path: Path) -> Image:
    """Reads the identity of the image in a tarball or layout directory; raises ImageError."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image {path} does not exist; build it first")
    with ImageFiles(path) as files:
        try:
            if files.exists("manifest.json"):
                return _read_docker(files)
            if files.exists("index.json"):
                return _read_oci(files)
        except (KeyError, TypeError, IndexError, AttributeError) as error:
            raise ImageError(
                f"image {path} has an unexpected structure ({error!r}); build it again"
            ) from None
    raise ImageError(
        f"{path} is not an image tarball or OCI layout: it has neither manifest.json "
        "(docker save) nor index.json (OCI image layout)"
    )


def _read_docker(files: ImageFiles) -> Image:
    entries = files.json("manifest.json")
    if not isinstance(entries, list) or len(entries) != 1:
        count = len(entries) if isinstance(entries, list) else 0
        raise ImageError(
            f"image tarball {files.path} holds {count} images; a job's tarball must hold "
            "exactly one"
        )
    entry = entries[0]
    config_member = str(entry["Config"])
    config = files.read(config_member)
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    members = [str(layer) for layer in entry["Layers"]]
    diff_ids = _diff_ids(files, config, len(members))
    manifest_digest = index_digest = ""
    oci_layers: list[dict[str, Any]] = []
    if files.exists("index.json"):
        descriptor, index_digest = _manifest_descriptor(files)
        manifest_digest = descriptor["digest"]
        oci_layers = files.json(blob_path(manifest_digest))["layers"]
    layers = []
    for number, (member, diff_id) in enumerate(zip(members, diff_ids, strict=True)):
        known = oci_layers[number] if number < len(oci_layers) else None
        if known is not None and blob_path(known["digest"]) == member:
            layers.append(
                Layer(member, diff_id, known["mediaType"], known["digest"], known["size"])
            )
        else:
            layers.append(Layer(member, diff_id))
    return Image(
        path=files.path,
        config_digest=config_digest,
        manifest_digest=manifest_digest,
        index_digest=index_digest,
        config_member=config_member,
        layers=tuple(layers),
        repo_tags=tuple(str(tag) for tag in entry.get("RepoTags") or ()),
        has_docker_manifest=True,
    )


def _read_oci(files: ImageFiles) -> Image:
    descriptor, index_digest = _manifest_descriptor(files)
    manifest = files.json(blob_path(descriptor["digest"]))
    config_member = blob_path(manifest["config"]["digest"])
    config = files.read(config_member)
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    if config_digest != manifest["config"]["digest"]:
        raise ImageError(
            f"image {files.path}: the config's content does not match its digest "
            f"{manifest['config']['digest']}; the image is corrupt, build it again"
        )
    descriptors = manifest["layers"]
    diff_ids = _diff_ids(files, config, len(descriptors))
    layers = tuple(
        Layer(
            blob_path(d["digest"]),
            diff_id,
            str(d.get("mediaType") or DOCKER_LAYER_GZIP),
            str(d["digest"]),
            int(d["size"]),
        )
        for d, diff_id in zip(descriptors, diff_ids, strict=True)
    )
    annotations = descriptor.get("annotations") or {}
    name = annotations.get("io.containerd.image.name", "")
    return Image(
        path=files.path,
        config_digest=config_digest,
        manifest_digest=descriptor["digest"],
        index_digest=index_digest,
        config_member=config_member,
        layers=layers,
        repo_tags=(name,) if ":" in name.rpartition("/")[2] else (),
        has_docker_manifest=False,
    )


def _manifest_descriptor(files: ImageFiles) -> tuple[dict[str, Any], str]:
    """The image manifest's descriptor (the index's only entry, or this platform's), and the
    digest index.json itself lists for the image."""
    index = files.json("index.json")
    descriptors: list[dict[str, Any]] = index["manifests"]
    listed = ""
    for _ in range(4):  # an index may point at an index (a multi-platform image)
        if len(descriptors) != 1:
            matching = [d for d in descriptors if _platform_matches(d.get("platform"))]
            if len(matching) != 1:
                raise ImageError(
                    f"image {files.path} holds {len(descriptors)} images and none (or "
                    f"several) for {PLATFORM['os']}/{PLATFORM['architecture']}; a job's "
                    "image must be exactly one"
                )
            descriptors = matching
        descriptor = descriptors[0]
        listed = listed or str(descriptor["digest"])
        if descriptor.get("mediaType") not in INDEX_TYPES:
            return descriptor, listed
        descriptors = files.json(blob_path(descriptor["digest"]))["manifests"]
    raise ImageError(f"image {files.path}: index.json nests too deeply")


def _platform_matches(platform: object) -> bool:
    return isinstance(platform, dict) and all(platform.get(k) == v for k, v in PLATFORM.items())


def _diff_ids(files: ImageFiles, config: bytes, layer_count: int) -> tuple[str, ...]:
    try:
        diff_ids = tuple(str(d) for d in json.loads(config)["rootfs"]["diff_ids"])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ImageError(
            f"image {files.path}: its image config has no rootfs.diff_ids ({error!r})"
        ) from None
    if len(diff_ids) != layer_count:
        raise ImageError(
            f"image {files.path}: {layer_count} layers but {len(diff_ids)} diff_ids "
            "in its config; build it again"
        )
    return diff_ids


def skippable_layers(image: Image, engine_chain_ids: Iterable[str]) -> set[str]:
    """Layer members the engine does not need: it has those layers (by chain ID) already."""
    have = set(engine_chain_ids)
    needed = {
        member
        for member, chain_id in zip(image.layer_members, image.chain_ids, strict=True)
        if chain_id not in have
    }
    return set(image.layer_members) - needed


def load_stream(image: Image, skip: Iterable[str] = ()) -> Iterator[bytes]:
    """The tarball as `docker load` of Docker Engine 20.10 takes it, chunk by chunk."""
    skip = set(skip)
    if image.path.is_dir():
        raise ImageError(f"{image.path} is an OCI layout directory; docker load needs a tarball")
    with ImageFiles(image.path) as files:
        assert files.tar is not None
        tar = files.tar
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
                    while chunk := source.read(CHUNK):
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
