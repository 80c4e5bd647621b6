"""`xmanager ui`: connect to the daemon, print the one-time login URL, serve the dashboard."""

from __future__ import annotations

import os
import socket
import sys
from typing import TextIO

import uvicorn

from xmanager.client.connection import TOKEN_ENV, connect
from xmanager.ui.app import create_app
from xmanager.ui.auth import Guard, load_or_create_token

DEFAULT_PORT = 8765


def login_url(host: str, port: int, code: str) -> str:
    return f"http://{host}:{port}/login?code={code}"


def serve(
    *,
    state_dir: str | None = None,
    port: int = DEFAULT_PORT,
    allow_remote: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Runs the dashboard until interrupted; returns the exit code."""
    launcher = connect(state_dir)
    launcher.state.create()
    token = os.environ.get(TOKEN_ENV) or load_or_create_token(launcher.state.token)
    guard = Guard(token)
    bind = "0.0.0.0" if allow_remote else "127.0.0.1"  # --allow_remote asks for it
    # Bind first, so a port in use is one clear line, and port 0 picks a free one.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((bind, port))
    except OSError as error:
        listener.close()
        print(
            f"xmanager ui: cannot listen on {bind}:{port}: {error.strerror}; "
            "choose another with --port",
            file=sys.stderr,
        )
        return 1
    # Listening before the URL is printed: whoever opens it at once is queued, not refused.
    listener.listen(128)
    port = listener.getsockname()[1]
    host = "127.0.0.1" if not allow_remote else socket.gethostname()
    print(f"xmanager dashboard for the daemon at {launcher.target}", file=out)
    print(f"open {login_url(host, port, guard.one_time_code())}", file=out)
    print(
        f"(one use; later log in at http://{host}:{port}/login with the token in "
        f"{launcher.state.token})",
        file=out,
        flush=True,
    )
    config = uvicorn.Config(
        create_app(launcher, guard, allow_remote=allow_remote),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[listener])
    finally:
        launcher.close()
    return 0
