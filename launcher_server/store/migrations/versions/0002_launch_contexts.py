"""Launch contexts: the working directory and environment local binary jobs run with.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "launch_contexts",
        sa.Column("digest", sa.Text(), primary_key=True),
        sa.Column("working_directory", sa.Text(), nullable=False),
        sa.Column("env", _JSON, nullable=False),
    )
    op.add_column(
        "jobs",
        sa.Column("launch_context_digest", sa.Text(), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_column("jobs", "launch_context_digest")
    op.drop_table("launch_contexts")
