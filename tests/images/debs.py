"""Synthetic .deb files for tests: an `ar` archive of debian-binary, control.tar.xz, data.tar.xz."""

from __future__ import annotations

import io
import lzma
import tarfile
from collections.abc import Mapping

# path -> content (bytes), a symlink target ("-> target"), or None for a directory.
Tree = Mapping[str, bytes | str | None]


def _tar(tree: Tree) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path, content in tree.items():
            info = tarfile.TarInfo("./" + path)
            info.uid, info.gid, info.uname, info.gname = 0, 0, "root", "root"
            info.mtime = 1_700_000_000
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content.removeprefix("-> ")
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o755 if path.endswith("bin") else 0o644
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def _ar_member(name: str, data: bytes) -> bytes:
    header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
    return header + data + (b"\n" if len(data) % 2 else b"")


def make_deb(name: str, tree: Tree, version: str = "1.0") -> bytes:
    control = f"Package: {name}\nVersion: {version}\nArchitecture: all\nDescription: test\n"
    return (
        b"!<arch>\n"
        + _ar_member("debian-binary", b"2.0\n")
        + _ar_member("control.tar.xz", lzma.compress(_tar({"control": control.encode()})))
        + _ar_member("data.tar.xz", lzma.compress(_tar(tree)))
    )
