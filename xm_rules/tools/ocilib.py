"""Shared code of the image tools: deterministic layers, descriptors and OCI JSON documents.

Layers are gzip-compressed POSIX (PAX) tar archives whose bytes depend only on their entries:
entries sorted by path, every parent directory explicit, mtime 0, uid and gid 0 with empty user
and group names, fixed modes, symlinks kept as symlinks, gzip without file name or timestamp.
One pass over the entries computes both the layer's digest (of the compressed bytes) and its
diff_id (of the uncompressed tar), which the layer's descriptor records for image assembly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import os
import posixpath
import sys
import tarfile
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal, Protocol, cast

OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_LAYOUT_VERSION = "1.0.0"
EPOCH = "1970-01-01T00:00:00Z"
GZIP_LEVEL = 6
CHUNK = 1 << 20

Kind = Literal["dir", "file", "symlink"]


class LayerError(Exception):
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

    def write(
        self, blob: Path, descriptor: Path, compresslevel: int = GZIP_LEVEL
    ) -> dict[str, Any]:
        entries = self._complete()
        with open(blob, "wb") as raw:
            compressed = HashingWriter(raw)
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=compressed, compresslevel=compresslevel, mtime=0
            ) as gz:
                uncompressed = HashingWriter(gz)
                write_tar(cast(IO[bytes], uncompressed), entries)
        result = {
            "mediaType": OCI_LAYER_GZIP,
            "digest": "sha256:" + compressed.sha256.hexdigest(),
            "size": compressed.count,
            "diffId": "sha256:" + uncompressed.sha256.hexdigest(),
        }
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
        raise LayerError(f"unsupported digest {digest!r}")
    return f"blobs/{algorithm}/{hexdigest}"


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_descriptor(path: str | Path) -> dict[str, Any]:
    descriptor = read_json(path)
    for key in ("mediaType", "digest", "size", "diffId"):
        if key not in descriptor:
            raise LayerError(f"layer descriptor {path} lacks {key!r}")
    return dict(descriptor)


def split_pair(value: str, what: str) -> tuple[str, str]:
    """`A=B` command-line pairs (descriptor=blob, name=path)."""
    left, sep, right = value.partition("=")
    if not sep or not left or not right:
        raise LayerError(f"{what}: expected NAME=VALUE, got {value!r}")
    return left, right


def iter_chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(CHUNK):
        yield chunk


OCI_LAYOUT_FILE = dump_canonical({"imageLayoutVersion": OCI_LAYOUT_VERSION})


# --- Running as a Bazel persistent worker -----------------------------------------------------


def run_tool(main: Callable[[list[str]], int]) -> int:
    """Runs a tool's `main` once, or as a Bazel persistent worker (JSON protocol).

    The rules mark their actions `supports-workers`: Bazel then starts each tool once with
    `--persistent_worker` and sends it one JSON WorkRequest per line on stdin, saving a Python
    start-up (and a sandbox) per action; that is most of an incremental image build's time.
    Without workers (e.g. `--strategy=XmLayer=sandboxed`), arguments come in an `@params` file,
    which argparse reads (`fromfile_prefix_chars="@"`).
    """
    if "--persistent_worker" not in sys.argv[1:]:
        return main(sys.argv[1:])
    channel = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            try:
                code = main(list(request.get("arguments", [])))
            except SystemExit as exit_:  # argparse errors
                code = exit_.code if isinstance(exit_.code, int) else 1
            except Exception:  # report it as the action's failure, keep serving
                traceback.print_exc()
                code = 1
        response = {"exitCode": code, "output": captured.getvalue()}
        if "requestId" in request:
            response["requestId"] = request["requestId"]
        channel.write(json.dumps(response) + "\n")
        channel.flush()
    return 0
