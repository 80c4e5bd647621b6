"""Who may use the dashboard: the daemon's token, a one-time login URL, a session cookie, CSRF.

As Jupyter does: the server prints a URL carrying a one-time code; opening it sets a session
cookie and the code is spent. Anyone holding the daemon's token (the `token` file of the state
directory) can also log in with it at /login. Cookies and CSRF tokens are HMACs keyed by the
daemon's token, so they die with it and nothing secret is stored server-side.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from pathlib import Path

COOKIE = "xm_ui_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"


def load_or_create_token(path: Path) -> str:
    """The daemon's token (the daemon creates the same file, mode 0600, for its TCP listener)."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # the daemon created it meanwhile
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token


class Guard:
    """Issues and checks login codes, session cookies and CSRF tokens."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the dashboard needs the daemon's token; it is empty")
        self._key = hashlib.sha256(b"xmanager-ui:" + token.encode()).digest()
        self._token = token
        self._codes: set[str] = set()
        self._lock = threading.Lock()

    def one_time_code(self) -> str:
        """A fresh login code, valid for one use."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes.add(code)
        return code

    def redeem(self, code: str) -> bool:
        """Spends a one-time code; False when unknown or already used."""
        with self._lock:
            if code in self._codes:
                self._codes.discard(code)
                return True
        return False

    def token_matches(self, given: str) -> bool:
        return hmac.compare_digest(given.strip().encode(), self._token.encode())

    def new_session(self) -> str:
        """A cookie value: a random id and its signature."""
        session = secrets.token_urlsafe(18)
        return f"{session}.{self._sign('session', session)}"

    def session_of(self, cookie: str | None) -> str | None:
        """The session id of a valid cookie, else None."""
        if not cookie or "." not in cookie:
            return None
        session, _, signature = cookie.partition(".")
        if hmac.compare_digest(signature, self._sign("session", session)):
            return session
        return None

    def csrf_token(self, session: str) -> str:
        return self._sign("csrf", session)

    def csrf_ok(self, session: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given), self.csrf_token(session))

    def _sign(self, purpose: str, value: str) -> str:
        return hmac.new(self._key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()
