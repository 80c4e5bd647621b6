"""Schema migrations, run by the daemon on start (Alembic, configured in code)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from launcher_server.errors import StoreVersionError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, url_for_messages: str) -> None:
    """Brings the database to this daemon's schema; refuses a database from a newer daemon."""
    scripts = ScriptDirectory.from_config(_config())
    current = current_revision(engine)
    if current is not None and current not in {s.revision for s in scripts.walk_revisions()}:
        raise StoreVersionError(
            f"the database at {url_for_messages} is at schema revision {current}, newer than "
            f"this daemon (it knows up to {head_revision()}): upgrade xmanager, or point "
            "--db_url at another database"
        )
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
