"""The client of the JobGroup example: finds the server job by its name, echoes, shuts it down.

The server is addressed by its job name (--server, e.g. `server`) and a port. As containers on
the launcher daemon's machine, a job name resolves to that job's container on the experiment's
network. As processes, the jobs of a work unit share the machine's network: a name that does not
resolve but is one of this work unit's jobs (`XM_JOB_PEERS`) means this machine, 127.0.0.1.
The server's answer names its work unit, which must be this one (`XM_WORK_UNIT_ID`).
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request


def server_host(name: str) -> str:
    """The host to reach the job called `name` of this work unit at."""
    try:
        socket.getaddrinfo(name, None)
    except socket.gaierror:
        peers = os.environ.get("XM_JOB_PEERS", "").split(",")
        if name in peers:
            return "127.0.0.1"
        raise SystemExit(
            f"{name} does not resolve and is not a job of this work unit ({peers})"
        ) from None
    return name


def post(url: str, data: bytes, deadline: float) -> bytes:
    """POSTs, retrying while the server is not listening yet."""
    while True:
        try:
            with urllib.request.urlopen(url, data=data, timeout=10) as response:
                return bytes(response.read())
        except (urllib.error.URLError, ConnectionError) as error:
            if time.monotonic() > deadline:
                raise SystemExit(f"no answer from {url}: {error}") from None
            time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="server", help="the server's job name")
    parser.add_argument("--port", type=int, required=True, help="the server's port")
    parser.add_argument("--message", default="hello", help="what to echo")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to reach the server")
    flags = parser.parse_args()

    base = f"http://{server_host(flags.server)}:{flags.port}"
    deadline = time.monotonic() + flags.timeout
    reply = json.loads(post(f"{base}/echo", flags.message.encode(), deadline))
    print(f"{base}/echo answered {reply}", flush=True)
    if reply["echo"] != flags.message:
        print(f"expected the echo of {flags.message!r}", file=sys.stderr)
        return 1
    if reply["work_unit"] != os.environ.get("XM_WORK_UNIT_ID"):
        print(f"reached the server of work unit {reply['work_unit']}, not ours", file=sys.stderr)
        return 1
    post(f"{base}/shutdown", b"", deadline)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
