"""One writer per database: the daemon claims its store exclusively while it runs.

Being the only writer lets the daemon number events itself (in commit order, with no gaps a
watcher could trip over) and keep its in-memory view of the store exact. SQLite: an exclusive
lock on a file beside the database. PostgreSQL: a session-level advisory lock held by one
dedicated connection; the server releases it when that connection ends, however the daemon ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from typing import IO, Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from launcher_server.errors import FailedPreconditionError


class StoreInUseError(FailedPreconditionError):
    """Another daemon writes to this database."""


# A stable 63-bit key naming the lock; advisory locks are scoped to their database.
_ADVISORY_KEY = int.from_bytes(hashlib.sha256(b"xmanager.launcher.store").digest()[:8]) >> 1


class WriterClaim:
    def __init__(self, holder: IO[str] | Connection) -> None:
        self._holder = holder

    @classmethod
    def take(cls, engine: Engine, url_for_messages: str) -> WriterClaim:
        if engine.dialect.name == "sqlite":
            return cls._take_file(engine, url_for_messages)
        return cls._take_advisory(engine, url_for_messages)

    @classmethod
    def _take_file(cls, engine: Engine, url_for_messages: str) -> WriterClaim:
        database = engine.url.database
        if not database or database == ":memory:":
            raise ValueError("an in-memory SQLite store cannot be shared: use a file")
        # Private (0600): another user who could open it could lock the daemon out.
        fd = os.open(f"{database}.lock", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        handle = open(fd, "a+")  # noqa: SIM115  # held until release()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise _in_use(url_for_messages) from None
        return cls(handle)

    @classmethod
    def _take_advisory(cls, engine: Engine, url_for_messages: str) -> WriterClaim:
        connection = engine.connect()
        try:
            claimed = connection.scalar(
                text("SELECT pg_try_advisory_lock(:key)"),
                {"key": _ADVISORY_KEY},
            )
            connection.commit()
        except Exception:
            connection.close()
            raise
        if not claimed:
            connection.close()
            raise _in_use(url_for_messages)
        return cls(connection)

    def release(self) -> None:
        holder: Any = self._holder
        if isinstance(holder, Connection):
            # Unlocked explicitly: a closed connection goes back to SQLAlchemy's pool, and the
            # server frees a session's locks only when it notices the session ended, a moment
            # after the disconnect; a daemon restarting at once would find the lock still taken.
            with contextlib.suppress(SQLAlchemyError):  # a broken session holds nothing
                holder.scalar(text("SELECT pg_advisory_unlock(:key)"), {"key": _ADVISORY_KEY})
                holder.commit()
        holder.close()  # closing the file releases its lock


def _in_use(url_for_messages: str) -> StoreInUseError:
    return StoreInUseError(
        f"another launcher daemon is using the database {url_for_messages}; stop it "
        "(`xmanager daemon stop` with its --state_dir) or give this one its own --db_url"
    )
