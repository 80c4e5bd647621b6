"""Schema migrations, run by the daemon on start (Alembic, configured in code).

Alembic is imported only when a database needs migrating: a daemon starting on an up-to-date
store (the usual case) checks the recorded revision with one query and saves the memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from launcher_server.errors import StoreVersionError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The newest migration's revision; a test checks it against the migration scripts.
HEAD = "0002"


def _config() -> Config:
    from alembic.config import Config  # noqa: PLC0415  # only when migrating

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The head of the migration scripts (what HEAD must say)."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for an empty database."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        revision = connection.scalar(text("SELECT version_num FROM alembic_version"))
        return None if revision is None else str(revision)


def upgrade(engine: Engine, url_for_messages: str) -> None:
    """Brings the database to this daemon's schema; refuses a database from a newer daemon."""
    current = current_revision(engine)
    if current == HEAD:
        return
    from alembic import command  # noqa: PLC0415  # only when migrating
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    config = _config()
    scripts = ScriptDirectory.from_config(config)
    if current is not None and current not in {s.revision for s in scripts.walk_revisions()}:
        raise StoreVersionError(
            f"the database at {url_for_messages} is at schema revision {current}, newer than "
            f"this daemon (it knows up to {HEAD}): upgrade xmanager, or point "
            "--db_url at another database"
        )
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
