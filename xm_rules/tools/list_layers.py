"""Writes a listing of each layer of an image, for golden tests: one text file per layer.

Each line is one entry: path, mode, type, then the size and sha256 of a file's content or the
target of a symlink:

    /usr/bin/python3.11 0755 file 6831704 sha256:0f3c…
    /bin 0777 symlink -> usr/bin
    /tmp 1777 dir
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
import tarfile
from pathlib import Path

from xm_rules.tools import ocilib


def listing(blob: str) -> str:
    lines = []
    with gzip.open(blob, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            path = "/" + member.name.removeprefix("./").rstrip("/")
            mode = f"{member.mode & 0o7777:04o}"
            if member.isdir():
                lines.append(f"{path} {mode} dir")
            elif member.issym():
                lines.append(f"{path} {mode} symlink -> {member.linkname}")
            elif member.islnk():
                lines.append(f"{path} {mode} hardlink -> /{member.linkname}")
            elif member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                digest = hashlib.sha256()
                for chunk in ocilib.iter_chunks(f):
                    digest.update(chunk)
                lines.append(f"{path} {mode} file {member.size} sha256:{digest.hexdigest()}")
            else:
                lines.append(f"{path} {mode} special")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", action="append", default=[], help="NAME=BLOB, in image order")
    parser.add_argument("--out", required=True, type=Path, help="the directory to write")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for number, pair in enumerate(args.layer):
        name, blob = ocilib.split_pair(pair, "--layer")
        (args.out / f"{number:02d}_{name}.txt").write_text(listing(blob))
    return 0


if __name__ == "__main__":
    sys.exit(main())
