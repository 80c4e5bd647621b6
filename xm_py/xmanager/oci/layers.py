"""Deterministic layers: gzip-compressed POSIX (PAX) tar archives whose bytes depend only on
their entries.

Entries sorted by path, every parent directory explicit, mtime 0, uid and gid 0 with empty user
and group names, fixed modes, symlinks kept as symlinks, gzip without file name or timestamp.
One pass over the entries computes both the layer's digest (of the compressed bytes) and its
diff_id (of the uncompressed tar). The Bazel rules' layer actions and the client's
`xm.python_container` builder both write layers with this module.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import posixpath
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, Literal, cast

from xmanager.oci.spec import OCI_LAYER_GZIP, HashingWriter, OciError, dump_pretty

GZIP_LEVEL = 6

Kind = Literal["dir", "file", "symlink"]


class LayerError(OciError):
    """A layer cannot be built as asked; the message names the offending path."""


@dataclasses.dataclass
class Entry:
    """One member of a layer. Paths are relative to `/`, without leading or trailing slashes."""

    path: str
    kind: Kind
    mode: int
    origin: str
    target: str = ""  # symlinks: the link's target, kept verbatim
    src: str | None = None  # files: content read from this path
    data: bytes | None = None  # files: or this content
    implicit: bool = False  # a parent directory nobody declared

    def size(self) -> int:
        if self.kind != "file":
            return 0
        if self.data is not None:
            return len(self.data)
        assert self.src is not None
        return os.stat(self.src).st_size


def normalize(path: str, what: str = "path") -> str:
    """`/a/./b/` -> `a/b`; rejects empty paths and `..` components."""
    stripped = path.strip("/")
    if not stripped:
        raise LayerError(f"{what} {path!r} names the root directory")
    parts = [p for p in stripped.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"{what} {path!r} contains '..'")
    return "/".join(parts)


def looks_executable(path: str) -> bool:
    """Whether a file starts like a program: a script's `#!` or an ELF header."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head == b"\x7fELF" or head.startswith(b"#!")


class LayerBuilder:
    """Collects entries, refusing duplicate paths, and writes them as one deterministic layer."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def _claim(self, entry: Entry) -> None:
        existing = self.entries.get(entry.path)
        if existing is None:
            self.entries[entry.path] = entry
            return
        if existing.kind == "dir" and entry.kind == "dir":
            if existing.implicit and not entry.implicit:
                self.entries[entry.path] = entry
            return
        raise LayerError(
            f"duplicate path in layer: /{entry.path} ({existing.kind} from {existing.origin}, "
            f"{entry.kind} from {entry.origin})"
        )

    def add_dir(self, path: str, mode: int = 0o755, origin: str = "") -> None:
        self._claim(Entry(normalize(path), "dir", mode & 0o7777, origin))

    def add_file(
        self,
        path: str,
        *,
        src: str | None = None,
        data: bytes | None = None,
        mode: int | None = None,
        origin: str = "",
        generated: bool = False,
    ) -> None:
        """A regular file. Without `mode`: 0755 for executables, else 0644. A source file is
        executable when its executable bit is set (git records it); a generated one (Bazel makes
        every output 0555) when it starts like a program: `#!` or an ELF header."""
        if (src is None) == (data is None):
            raise LayerError(f"/{path}: give exactly one of a source file or content")
        if src is not None:
            try:
                st = os.stat(src)
            except FileNotFoundError:
                raise LayerError(f"/{path}: source file {src} does not exist") from None
            if not os.path.isfile(src):
                raise LayerError(f"/{path}: source {src} is not a regular file")
            if mode is None:
                executable = looks_executable(src) if generated else bool(st.st_mode & 0o111)
                mode = 0o755 if executable else 0o644
        elif mode is None:
            mode = 0o644
        self._claim(
            Entry(normalize(path), "file", mode & 0o7777, origin or (src or ""), src=src, data=data)
        )

    def add_symlink(self, path: str, target: str, origin: str = "") -> None:
        if not target:
            raise LayerError(f"/{path}: empty symlink target")
        self._claim(Entry(normalize(path), "symlink", 0o777, origin, target=target))

    def _complete(self) -> list[Entry]:
        """All entries sorted by path, with implicit parent directories added and checked."""
        for path in list(self.entries):
            parent = posixpath.dirname(path)
            while parent:
                existing = self.entries.get(parent)
                if existing is None:
                    self.entries[parent] = Entry(parent, "dir", 0o755, "parent", implicit=True)
                elif existing.kind != "dir":
                    raise LayerError(
                        f"/{path} ({self.entries[path].origin}) lies inside /{parent}, which is a "
                        f"{existing.kind} ({existing.origin}), not a directory"
                    )
                else:
                    break
                parent = posixpath.dirname(parent)
        return [self.entries[p] for p in sorted(self.entries)]

    def write_blob(self, blob: Path, compresslevel: int = GZIP_LEVEL) -> dict[str, Any]:
        """Writes the layer to `blob`; returns its descriptor (with the diff_id as `diffId`)."""
        entries = self._complete()
        with open(blob, "wb") as raw:
            compressed = HashingWriter(raw)
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=compressed, compresslevel=compresslevel, mtime=0
            ) as gz:
                uncompressed = HashingWriter(gz)
                write_tar(cast(IO[bytes], uncompressed), entries)
        return {
            "mediaType": OCI_LAYER_GZIP,
            "digest": compressed.digest,
            "size": compressed.count,
            "diffId": uncompressed.digest,
        }

    def write(
        self, blob: Path, descriptor: Path, compresslevel: int = GZIP_LEVEL
    ) -> dict[str, Any]:
        """Writes the layer and its descriptor file (the rules' layer actions)."""
        result = self.write_blob(blob, compresslevel)
        descriptor.write_text(dump_pretty(result))
        return result


def tar_info(entry: Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = entry.mode
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
    else:
        info.type = tarfile.REGTYPE
        info.size = entry.size()
    return info


def write_tar(out: IO[bytes], entries: Iterable[Entry]) -> None:
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for entry in entries:
            info = tar_info(entry)
            if entry.kind != "file":
                tar.addfile(info)
            elif entry.data is not None:
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                assert entry.src is not None
                with open(entry.src, "rb") as f:
                    tar.addfile(info, f)
                    if f.tell() != info.size:
                        raise LayerError(f"/{entry.path}: {entry.src} changed while being read")
