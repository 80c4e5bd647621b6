"""Writes an OCI image layout directory: `oci-layout`, `index.json` and `blobs/sha256/*`.

Layer blobs are hard-linked from the layer actions' outputs rather than copied (Bazel's outputs
live on one file system); where a link is impossible the blob is copied.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from xm_rules.tools import image_config, ocilib


def link_or_copy(src: str, dst: Path) -> None:
    try:
        os.link(os.path.realpath(src), dst)
    except OSError:
        shutil.copyfile(src, dst)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], fromfile_prefix_chars="@")
    parser.add_argument("--spec", required=True, help="the image spec JSON the rule wrote")
    parser.add_argument("--out", required=True, type=Path, help="the layout directory")
    args = parser.parse_args(argv)
    try:
        spec, documents = image_config.load(args.spec)
        (args.out / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (args.out / "oci-layout").write_bytes(ocilib.OCI_LAYOUT_FILE)
        (args.out / "index.json").write_bytes(documents["index"])
        for path, content in sorted(image_config.blobs(spec, documents).items()):
            if isinstance(content, bytes):
                (args.out / path).write_bytes(content)
            else:
                link_or_copy(content, args.out / path)
    except (image_config.ConfigError, ocilib.LayerError, KeyError, OSError) as e:
        print(f"oci_layout: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(ocilib.run_tool(main))
