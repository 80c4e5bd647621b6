"""The ASGI middleware in front of every route: host check, session cookie, CSRF on actions."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from http.cookies import SimpleCookie

from starlette.types import ASGIApp, Receive, Scope, Send

from xmanager.ui.auth import COOKIE, CSRF_HEADER, Guard

# Reachable without a session: logging in, and the stylesheet of the login page.
_OPEN_PATHS = ("/login", "/static/")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


class GuardMiddleware:
    def __init__(self, app: ASGIApp, guard: Guard, *, allow_remote: bool) -> None:
        self.app = app
        self.guard = guard
        self.allow_remote = allow_remote

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope["path"]
        if not self.allow_remote:
            # A page on another site cannot reach us through DNS rebinding: its Host differs.
            host = _host_name(headers.get("host", ""))
            if host not in LOOPBACK_HOSTS:
                await _deny(
                    scope,
                    send,
                    403,
                    f"host {host!r} refused: this dashboard answers on loopback only "
                    "(start it with --allow_remote to serve other hosts)",
                )
                return
        session = self.guard.session_of(_cookie(headers.get("cookie", "")))
        scope.setdefault("state", {})["session"] = session
        if path.startswith(_OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        if session is None:
            await _deny(
                scope,
                send,
                401,
                "not logged in: open the one-time URL that `xmanager ui` printed, or log in at "
                "/login with the daemon's token (the file 'token' in its state directory)",
            )
            return
        if scope["method"] not in _SAFE_METHODS and not self.guard.csrf_ok(
            session, headers.get(CSRF_HEADER)
        ):
            await _deny(
                scope,
                send,
                403,
                f"missing or wrong CSRF token: send the page's token in the {CSRF_HEADER} header "
                "(reload the page to get a fresh one)",
            )
            return
        await self.app(scope, receive, send)


def _host_name(header: str) -> str:
    """ "127.0.0.1:8080" -> "127.0.0.1", "[::1]:8080" -> "[::1]"."""
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0]


def _cookie(header: str) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # a malformed Cookie header is just no session
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


async def _deny(scope: Scope, send: Send, status: int, message: str) -> None:
    wants_json = scope["path"].startswith("/api/")
    if wants_json:
        body = json.dumps({"error": message}).encode()
        content_type = b"application/json"
    else:
        body = _page(status, message).encode()
        content_type = b"text/html; charset=utf-8"
    headers: Iterable[tuple[bytes, bytes]] = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


def _page(status: int, message: str) -> str:
    login = '<p><a href="/login">Log in with the daemon\'s token</a></p>' if status == 401 else ""
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><title>xmanager: "
        f"{status}</title><link rel=stylesheet href=/static/ui.css><main class=narrow>"
        f"<h1>{status}</h1><p class=error>{html.escape(message)}</p>{login}</main></html>"
    )
