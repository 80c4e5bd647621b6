"""Turns the data archives of Debian packages into one deterministic layer (blob and descriptor).

No maintainer script runs. The layer is laid out as a merged-/usr system: `/bin`, `/sbin`, `/lib`
and `/lib64` are symlinks into `/usr`, and whatever a package ships under them is relocated into
`/usr` (relative symlink targets are rewritten so they still point where they did). Hard links
become regular files. Each package's control paragraph is written to
`/var/lib/dpkg/status.d/<package>`, as distroless images do, so scanners can tell what is installed.
Documentation is dropped except copyright files, unless --keep-docs.
"""

from __future__ import annotations

import argparse
import posixpath
import sys
import tarfile
from pathlib import Path

from xm_rules.tools import ocilib
from xm_rules.tools.debian import DebianError, deb_control, deb_tar

MERGED_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
ALWAYS_LINKED = ("bin", "sbin", "lib", "lib64")
DOC_TREES = (
    "usr/share/man/",
    "usr/share/info/",
    "usr/share/lintian/",
    "usr/share/doc-base/",
    "usr/share/bug/",
)


def relocate(path: str) -> str:
    """`lib/x86_64-linux-gnu/libc.so.6` -> `usr/lib/x86_64-linux-gnu/libc.so.6`."""
    top = path.split("/", 1)[0]
    return f"usr/{path}" if top in MERGED_DIRS else path


def relink(original: str, moved: str, target: str) -> str:
    """A relative symlink target that still resolves as it did before `original` moved."""
    if target.startswith("/") or original == moved:
        return target
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(original), target))
    if resolved.startswith("../"):
        return target
    return posixpath.relpath(relocate(resolved), posixpath.dirname(moved))


def is_doc(path: str, kind: str) -> bool:
    if any(path.startswith(tree) or path + "/" == tree for tree in DOC_TREES):
        return True
    if path.startswith("usr/share/doc/"):
        parts = path.split("/")
        keep = len(parts) == 4 or (len(parts) == 5 and parts[4] == "copyright" and kind == "file")
        return not keep
    return False


def add_package(builder: ocilib.LayerBuilder, name: str, deb_path: str, keep_docs: bool) -> None:
    deb = Path(deb_path).read_bytes()
    what = f"{name} ({deb_path})"
    control = deb_control(deb, what)
    builder.add_file(
        f"var/lib/dpkg/status.d/{name}", data=control.encode(), mode=0o644, origin=name
    )
    with deb_tar(deb, "data", what) as tar:
        for member in tar.getmembers():
            original = member.name.removeprefix("./").strip("/")
            if not original or original == ".":
                continue
            path = relocate(original)
            if member.isdir():
                kind = "dir"
            elif member.issym():
                kind = "symlink"
            elif member.isreg() or member.islnk():
                kind = "file"
            else:
                raise DebianError(
                    f"{what}: /{original} is a device or FIFO, which layers do not hold"
                )
            if not keep_docs and is_doc(path, kind):
                continue
            if kind == "dir":
                builder.add_dir(path, member.mode, origin=name)
            elif kind == "symlink":
                target = relink(original, path, member.linkname)
                existing = builder.entries.get(ocilib.normalize(path))
                if existing and existing.kind == "symlink" and existing.target == target:
                    continue
                builder.add_symlink(path, target, origin=name)
            else:
                f = tar.extractfile(member)
                assert f is not None, member.name
                data = f.read()
                existing = builder.entries.get(ocilib.normalize(path))
                if existing and existing.kind == "file" and existing.data == data:
                    continue  # the same file shipped by two packages, e.g. /bin/x and /usr/bin/x
                builder.add_file(path, data=data, mode=member.mode, origin=name)


def build(debs: list[tuple[str, str]], keep_docs: bool) -> ocilib.LayerBuilder:
    builder = ocilib.LayerBuilder()
    for name, path in debs:
        add_package(builder, name, path, keep_docs)
    used = {
        p.split("/", 2)[1] for p in builder.entries if p.startswith("usr/") and p.count("/") >= 1
    }
    for top in MERGED_DIRS:
        if top in ALWAYS_LINKED or top in used:
            builder.add_symlink(top, f"usr/{top}", origin="merged /usr")
            builder.add_dir(f"usr/{top}", 0o755, origin="merged /usr")
    return builder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deb", action="append", default=[], help="NAME=PATH, in install order")
    parser.add_argument("--keep-docs", action="store_true", help="keep /usr/share/doc, man pages…")
    parser.add_argument("--blob", required=True, type=Path)
    parser.add_argument("--descriptor", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        debs = [ocilib.split_pair(value, "--deb") for value in args.deb]
        build(debs, args.keep_docs).write(args.blob, args.descriptor)
    except (ocilib.LayerError, DebianError, tarfile.TarError, OSError) as e:
        print(f"deb_layer: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
