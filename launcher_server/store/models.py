"""The metadata store's tables, as typed SQLAlchemy ORM classes.

The schema itself is created and evolved by the Alembic migrations in `migrations/versions`; these
classes must describe exactly what the newest migration produces (a test compares them).

Conventions:
- State columns hold `xmanager.launcher.v1.JobState` numbers (never renumbered).
- Timestamps are timezone-aware UTC on the Python side (`UTCDateTime`), whatever the database.
- Protobuf sub-messages a job carries verbatim (artifact, executor, requirements) are stored as
  serialized bytes, with the few fields worth querying copied into plain columns.
"""

from __future__ import annotations

import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Constraint names are spelled out so that migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# 64-bit ids on PostgreSQL (BIGSERIAL); on SQLite an INTEGER PRIMARY KEY is the 64-bit rowid, and
# only the exact type name INTEGER makes it one.
Id = BigInteger().with_variant(Integer(), "sqlite")
# JSONB on PostgreSQL (containment queries on tags); JSON text on SQLite.
Json = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime.datetime]):
    """A `DateTime(timezone=True)` that always hands out aware UTC datetimes.

    SQLite has no time zone support: values are stored as naive UTC text and marked UTC when
    read. PostgreSQL stores `timestamptz` and returns it in the session's zone; it is converted.
    Naive datetimes given to the store are taken to be UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime.datetime | None, dialect: Dialect
    ) -> datetime.datetime | None:
        if value is None:
            return None
        value = to_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(
        self, value: datetime.datetime | None, dialect: Dialect
    ) -> datetime.datetime | None:
        if value is None:
            return None
        return to_utc(value)

    @property
    def python_type(self) -> type[Any]:
        return datetime.datetime


def to_utc(value: datetime.datetime) -> datetime.datetime:
    """An aware UTC datetime; naive values are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.UTC)
    return value.astimezone(datetime.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ExperimentRow(Base):
    __tablename__ = "experiments"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012  # ids are never reused

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(Json)
    notes: Mapped[str] = mapped_column(Text)
    creator: Mapped[str] = mapped_column(Text)
    launch_script_path: Mapped[str] = mapped_column(Text)
    launch_script_sha256: Mapped[str] = mapped_column(Text)
    source_revision: Mapped[str] = mapped_column(Text)
    create_time: Mapped[datetime.datetime] = mapped_column(UTCDateTime)
    update_time: Mapped[datetime.datetime] = mapped_column(UTCDateTime)
    # The id the next work unit gets unless the client asks for one (ids are never reused).
    next_work_unit_id: Mapped[int] = mapped_column(BigInteger)
    # CreateExperiment's idempotency key; NULL when the client gave none.
    request_id: Mapped[str | None] = mapped_column(Text, unique=True)


class WorkUnitRow(Base):
    __tablename__ = "work_units"
    __table_args__ = (
        # NULL (no identity) never conflicts: NULLs are distinct in unique constraints.
        UniqueConstraint("experiment_id", "identity"),
        Index(None, "experiment_id", "state"),
    )

    experiment_id: Mapped[int] = mapped_column(
        Id, ForeignKey("experiments.id"), primary_key=True, autoincrement=False
    )
    work_unit_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    identity: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str] = mapped_column(Text, unique=True)
    args_json: Mapped[str] = mapped_column(Text)
    # The aggregated status of the unit's jobs (see launcher_server.aggregation).
    state: Mapped[int] = mapped_column(Integer)
    native_state: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    start_time: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)
    end_time: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)
    create_time: Mapped[datetime.datetime] = mapped_column(UTCDateTime)
    update_time: Mapped[datetime.datetime] = mapped_column(UTCDateTime)


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        ForeignKeyConstraint(
            ["experiment_id", "work_unit_id"],
            ["work_units.experiment_id", "work_units.work_unit_id"],
        ),
        # Finding the jobs that are not final yet (daemon start) must not scan the table.
        Index(None, "state"),
    )

    experiment_id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=False)
    work_unit_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    # Order within the work unit (the launch script's).
    position: Mapped[int] = mapped_column(Integer)
    # "local" | "vertex" | "kubernetes"
    executor_kind: Mapped[str] = mapped_column(Text)
    # A serialized pb.Executor.
    executor: Mapped[bytes] = mapped_column(LargeBinary)
    # "local_binary" | "oci_image"
    artifact_kind: Mapped[str] = mapped_column(Text)
    # A binary's path, or an image tarball's path.
    artifact_path: Mapped[str] = mapped_column(Text)
    # An image's registry reference.
    artifact_reference: Mapped[str] = mapped_column(Text)
    # A binary's sha256 (hex), or an image's "sha256:..." digest.
    artifact_digest: Mapped[str] = mapped_column(Text)
    # A serialized pb.Artifact (authoritative; the columns above are copies for queries).
    artifact: Mapped[bytes] = mapped_column(LargeBinary)
    args: Mapped[list[str]] = mapped_column(Json)
    env: Mapped[dict[str, str]] = mapped_column(Json)
    # A serialized pb.ResourceRequirements.
    requirements: Mapped[bytes] = mapped_column(LargeBinary)
    backend_handle: Mapped[str] = mapped_column(Text)
    state: Mapped[int] = mapped_column(Integer)
    native_state: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    start_time: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)
    end_time: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)
    update_time: Mapped[datetime.datetime] = mapped_column(UTCDateTime)
    log_location: Mapped[str] = mapped_column(Text)
    # The launch context it runs with (launch_contexts.digest), "" for none.
    launch_context_digest: Mapped[str] = mapped_column(Text, server_default="")


class LaunchContextRow(Base):
    """A launch script's working directory and environment, which local binary jobs run with.

    Apart from the jobs, since the environment may hold secrets: no read RPC selects it.
    """

    __tablename__ = "launch_contexts"

    digest: Mapped[str] = mapped_column(Text, primary_key=True)
    working_directory: Mapped[str] = mapped_column(Text)
    env: Mapped[dict[str, str]] = mapped_column(Json)


class EventRow(Base):
    """The append-only event log; `sequence` orders it globally and is never reused."""

    __tablename__ = "events"
    __table_args__ = (
        # Watching one experiment reads its events after a sequence number.
        Index(None, "experiment_id", "sequence"),
        {"sqlite_autoincrement": True},
    )

    sequence: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    time: Mapped[datetime.datetime] = mapped_column(UTCDateTime)
    # A pb.EventSubject number.
    subject: Mapped[int] = mapped_column(Integer)
    experiment_id: Mapped[int] = mapped_column(Id)
    work_unit_id: Mapped[int | None] = mapped_column(BigInteger)
    job_name: Mapped[str | None] = mapped_column(Text)
    old_state: Mapped[int] = mapped_column(Integer)
    new_state: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)


# The tables, for Core statements on the hot paths (typed as Table, which they are).
EXPERIMENTS = cast(Table, ExperimentRow.__table__)
UNITS = cast(Table, WorkUnitRow.__table__)
JOBS = cast(Table, JobRow.__table__)
EVENTS = cast(Table, EventRow.__table__)
LAUNCH_CONTEXTS = cast(Table, LaunchContextRow.__table__)
