"""The image tools' shared code: the OCI library of the client package, plus what only the
tools need (reading descriptors and command-line pairs, running as a Bazel persistent worker).

Layers, digests and OCI documents come from `xmanager.oci` (one implementation for the rules,
the client's image builder and the daemon); the names are re-exported for the tools.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xmanager.oci.layers import (
    GZIP_LEVEL,
    Entry,
    LayerBuilder,
    normalize,
    write_tar,
)
from xmanager.oci.spec import (
    CHUNK,
    EPOCH,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_LAYOUT_FILE,
    OCI_LAYOUT_VERSION,
    OCI_MANIFEST,
    HashingWriter,
    OciError,
    blob_path,
    dump_canonical,
    dump_pretty,
    iter_chunks,
    sha256_digest,
)

# Every error of the library (a layer, a digest): what the tools catch and report.
LayerError = OciError

__all__ = [
    "CHUNK",
    "EPOCH",
    "GZIP_LEVEL",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_LAYOUT_FILE",
    "OCI_LAYOUT_VERSION",
    "OCI_MANIFEST",
    "Entry",
    "HashingWriter",
    "LayerBuilder",
    "LayerError",
    "blob_path",
    "dump_canonical",
    "dump_pretty",
    "iter_chunks",
    "normalize",
    "read_descriptor",
    "read_json",
    "run_tool",
    "sha256_digest",
    "split_pair",
    "write_tar",
]


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
