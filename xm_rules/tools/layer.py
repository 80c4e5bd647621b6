"""Writes one deterministic layer (blob and descriptor) from a JSON spec of its entries.

The spec, written by the rule at analysis time, lists only this layer's files:

    {"files": [{"path": "/app/x.py", "src": "bazel-out/.../x.py", "mode": "", "generated": true}],
     "empty_files": ["/app/pkg/__init__.py"],
     "symlinks": [{"path": "/usr/local/bin/python3.11", "target": "/usr/bin/python3.11"}],
     "directories": [{"path": "/tmp", "mode": "1777"}]}

A file's mode, when not given, is 0755 if it is executable and 0644 otherwise: for a source file
its executable bit says so, for a generated one (all Bazel outputs are 0555) its first bytes
(`#!` or an ELF header).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from xm_rules.tools import ocilib


def _mode(value: Any, where: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(str(value), 8)
    except ValueError:
        raise ocilib.LayerError(f"{where}: mode {value!r} is not an octal number") from None


def build(spec: dict[str, Any], label: str) -> ocilib.LayerBuilder:
    builder = ocilib.LayerBuilder()
    for item in spec.get("directories", []):
        builder.add_dir(item["path"], _mode(item.get("mode"), item["path"]) or 0o755, origin=label)
    for item in spec.get("files", []):
        builder.add_file(
            item["path"],
            src=item["src"],
            mode=_mode(item.get("mode"), item["path"]),
            origin=item.get("origin") or item["src"],
            generated=bool(item.get("generated")),
        )
    for path in spec.get("empty_files", []):
        builder.add_file(path, data=b"", origin=f"{label} (empty file)")
    for item in spec.get("symlinks", []):
        builder.add_symlink(item["path"], item["target"], origin=label)
    return builder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], fromfile_prefix_chars="@")
    parser.add_argument("--spec", required=True, help="the layer's JSON spec")
    parser.add_argument("--label", default="", help="the target, for error messages")
    parser.add_argument("--blob", required=True, type=Path, help="output: the .tar.gz layer")
    parser.add_argument("--descriptor", required=True, type=Path, help="output: its descriptor")
    args = parser.parse_args(argv)
    try:
        build(ocilib.read_json(args.spec), args.label).write(args.blob, args.descriptor)
    except ocilib.LayerError as e:
        print(f"layer {args.label}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(ocilib.run_tool(main))
