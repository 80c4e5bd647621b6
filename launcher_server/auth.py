"""Bearer-token authentication for the daemon's optional TCP listener.

The Unix socket is protected by its file mode (0600); TCP has no such protection, so every call
arriving over TCP must carry `authorization: Bearer <token>`, the token being generated on the
daemon's first start and stored with mode 0600 in the state directory.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

import grpc

METADATA_KEY = "authorization"


def load_or_create_token(path: Path) -> str:
    """The daemon's token, created (mode 0600) on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token


def is_tcp_peer(context: grpc.ServicerContext) -> bool:
    return context.peer().startswith(("ipv4:", "ipv6:"))


def check(context: grpc.ServicerContext, token: str | None) -> None:
    """Aborts with UNAUTHENTICATED when a TCP caller lacks the right token."""
    if token is None or not is_tcp_peer(context):
        return
    for key, value in context.invocation_metadata():
        if key == METADATA_KEY and isinstance(value, str):
            scheme, _, given = value.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token):
                return
    context.abort(
        grpc.StatusCode.UNAUTHENTICATED,
        "missing or wrong bearer token: send 'authorization: Bearer <token>' with the token "
        "from the daemon's state directory (file 'token')",
    )
