"""The launch context (working directory and environment of the launch script), shared by the
client, which captures and sends it, and the daemon, which stores it and runs local binaries in
it. Its digest names it on the wire after its first use."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping

from xmanager.launcher.v1 import launcher_pb2 as pb


def digest(context: pb.LaunchContext) -> str:
    """Lowercase hex sha256 of the context's canonical JSON."""
    canonical = json.dumps(
        {"working_directory": context.working_directory, "env": dict(context.env)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def capture(environ: Mapping[str, str] | None = None, cwd: str | None = None) -> pb.LaunchContext:
    """This process's working directory and environment."""
    return pb.LaunchContext(
        working_directory=cwd if cwd is not None else os.getcwd(),
        env=dict(os.environ if environ is None else environ),
    )
