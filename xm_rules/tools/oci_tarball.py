"""Writes one image tarball holding both an OCI image layout and Docker's `manifest.json`.

`docker load`, `podman load` and `skopeo copy oci-archive:…` all accept it. Blobs are copied
into the tar as they are, never recompressed or hashed. Deterministic, like the layers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xm_rules.tools import image_config, ocilib


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], fromfile_prefix_chars="@")
    parser.add_argument("--spec", required=True, help="the image spec JSON the rule wrote")
    parser.add_argument("--out", required=True, type=Path, help="the .tar")
    args = parser.parse_args(argv)
    try:
        spec, documents = image_config.load(args.spec)
        entries = [
            ocilib.Entry("oci-layout", "file", 0o644, "", data=ocilib.OCI_LAYOUT_FILE),
            ocilib.Entry("index.json", "file", 0o644, "", data=documents["index"]),
            ocilib.Entry("manifest.json", "file", 0o644, "", data=documents["docker_manifest"]),
            ocilib.Entry("blobs", "dir", 0o755, ""),
            ocilib.Entry("blobs/sha256", "dir", 0o755, ""),
        ]
        for path, content in image_config.blobs(spec, documents).items():
            if isinstance(content, bytes):
                entries.append(ocilib.Entry(path, "file", 0o644, "", data=content))
            else:
                entries.append(ocilib.Entry(path, "file", 0o644, "", src=content))
        with open(args.out, "wb") as out:
            ocilib.write_tar(out, sorted(entries, key=lambda e: e.path))
    except (image_config.ConfigError, ocilib.LayerError, KeyError, OSError) as e:
        print(f"oci_tarball: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(ocilib.run_tool(main))
