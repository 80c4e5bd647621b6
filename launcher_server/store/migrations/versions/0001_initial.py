"""The first schema: experiments, work units, jobs and the append-only events.

Written out in full (not imported from the models) so that it never changes once released; a test
checks that the models describe exactly what the migrations produce.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# 64-bit ids; on SQLite only the exact type INTEGER makes a primary key the rowid.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("tags", _JSON, nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("creator", sa.Text(), nullable=False),
        sa.Column("launch_script_path", sa.Text(), nullable=False),
        sa.Column("launch_script_sha256", sa.Text(), nullable=False),
        sa.Column("source_revision", sa.Text(), nullable=False),
        sa.Column("create_time", _TIME, nullable=False),
        sa.Column("update_time", _TIME, nullable=False),
        sa.Column("next_work_unit_id", sa.BigInteger(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_experiments"),
        sa.UniqueConstraint("request_id", name="uq_experiments_request_id"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "work_units",
        sa.Column("experiment_id", _ID, nullable=False),
        sa.Column("work_unit_id", sa.BigInteger(), nullable=False),
        sa.Column("identity", sa.Text(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("args_json", sa.Text(), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("native_state", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("start_time", _TIME, nullable=True),
        sa.Column("end_time", _TIME, nullable=True),
        sa.Column("create_time", _TIME, nullable=False),
        sa.Column("update_time", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("experiment_id", "work_unit_id", name="pk_work_units"),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name="fk_work_units_experiment_id_experiments",
        ),
        sa.UniqueConstraint(
            "experiment_id", "identity", name="uq_work_units_experiment_id_identity"
        ),
        sa.UniqueConstraint("request_id", name="uq_work_units_request_id"),
    )
    op.create_index("ix_work_units_experiment_id_state", "work_units", ["experiment_id", "state"])
    op.create_table(
        "jobs",
        sa.Column("experiment_id", _ID, nullable=False),
        sa.Column("work_unit_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("executor_kind", sa.Text(), nullable=False),
        sa.Column("executor", sa.LargeBinary(), nullable=False),
        sa.Column("artifact_kind", sa.Text(), nullable=False),
        sa.Column("artifact_path", sa.Text(), nullable=False),
        sa.Column("artifact_reference", sa.Text(), nullable=False),
        sa.Column("artifact_digest", sa.Text(), nullable=False),
        sa.Column("artifact", sa.LargeBinary(), nullable=False),
        sa.Column("args", _JSON, nullable=False),
        sa.Column("env", _JSON, nullable=False),
        sa.Column("requirements", sa.LargeBinary(), nullable=False),
        sa.Column("backend_handle", sa.Text(), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("native_state", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("start_time", _TIME, nullable=True),
        sa.Column("end_time", _TIME, nullable=True),
        sa.Column("update_time", _TIME, nullable=False),
        sa.Column("log_location", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("experiment_id", "work_unit_id", "name", name="pk_jobs"),
        sa.ForeignKeyConstraint(
            ["experiment_id", "work_unit_id"],
            ["work_units.experiment_id", "work_units.work_unit_id"],
            name="fk_jobs_experiment_id_work_unit_id_work_units",
        ),
    )
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_table(
        "events",
        sa.Column("sequence", _ID, primary_key=True, autoincrement=True),
        sa.Column("time", _TIME, nullable=False),
        sa.Column("subject", sa.Integer(), nullable=False),
        sa.Column("experiment_id", _ID, nullable=False),
        sa.Column("work_unit_id", sa.BigInteger(), nullable=True),
        sa.Column("job_name", sa.Text(), nullable=True),
        sa.Column("old_state", sa.Integer(), nullable=False),
        sa.Column("new_state", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name="pk_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_experiment_id_sequence", "events", ["experiment_id", "sequence"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("jobs")
    op.drop_table("work_units")
    op.drop_table("experiments")
