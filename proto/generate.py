"""Generates the Python modules of the launcher contract with grpcio-tools.

One generator for both worlds: Bazel runs it as `//proto:generate` (grpcio-tools from the pip
repository, no protobuf C++ build) and the pip world runs `python proto/generate.py` to refresh
the committed copies under `xm_py/`. The outputs are byte-identical, which tests check.

Usage: generate.py --proto_root DIR --out_dir DIR PROTO_FILE...
(PROTO_FILE paths relative to --proto_root.)
"""

from __future__ import annotations

import argparse
import importlib.resources
import sys
from collections.abc import Sequence
from pathlib import Path

from grpc_tools import protoc

_HERE = Path(__file__).resolve().parent
DEFAULT_PROTOS = ("xmanager/launcher/v1/launcher.proto",)


def generate(proto_root: Path, out_dir: Path, protos: Sequence[str]) -> None:
    """Writes `*_pb2.py`, `*_pb2.pyi` and `*_pb2_grpc.py` for each proto into out_dir."""
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        "grpc_tools.protoc",
        f"--proto_path={proto_root}",
        f"--proto_path={well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(argv) != 0:
        raise SystemExit(f"protoc failed for {', '.join(protos)}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proto_root", type=Path, default=_HERE)
    parser.add_argument("--out_dir", type=Path, default=_HERE.parent / "xm_py")
    parser.add_argument("protos", nargs="*", default=list(DEFAULT_PROTOS))
    args = parser.parse_args(argv)
    generate(args.proto_root, args.out_dir, args.protos)


if __name__ == "__main__":
    main(sys.argv[1:])
