"""lock v2: once-per-period enforced by a unique index; job_lock no longer needed

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from jobs.clock import UTCDateTime, db_now

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ONCE = sa.text("once_per_period AND status IN ('RUNNING', 'SUCCESS')")


def upgrade() -> None:
    with op.batch_alter_table("job_execution") as batch:
        batch.add_column(
            sa.Column(
                "once_per_period", sa.Boolean(), server_default=sa.text("false"), nullable=False
            )
        )
    op.create_index(
        "uq_job_execution_once_per_period",
        "job_execution",
        ["job_type", "period"],
        unique=True,
        postgresql_where=ONCE,
        sqlite_where=ONCE,
    )
    # Acquirers no longer queue on a per-type row: the unique indexes decide, and pre-checks
    # serialize on a transaction-scoped advisory lock (PostgreSQL) or BEGIN IMMEDIATE (SQLite).
    op.drop_table("job_lock")


def downgrade() -> None:
    op.create_table(
        "job_lock",
        sa.Column("job_type", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=db_now(), nullable=False),
        sa.PrimaryKeyConstraint("job_type", name="pk_job_lock"),
    )
    op.drop_index("uq_job_execution_once_per_period", table_name="job_execution")
    with op.batch_alter_table("job_execution") as batch:
        batch.drop_column("once_per_period")
