"""job_execution and job_lock: the lock's tables

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from jobs.clock import UTCDateTime, db_now

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNNING = sa.text("status = 'RUNNING'")
SUCCESS = sa.text("status = 'SUCCESS'")


def upgrade() -> None:
    op.create_table(
        "job_lock",
        sa.Column("job_type", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=db_now(), nullable=False),
        sa.PrimaryKeyConstraint("job_type", name="pk_job_lock"),
    )
    op.create_table(
        "job_execution",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("job_type", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("period", sa.Date(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("flow_run_id", sa.String(36), nullable=True),
        sa.Column("task_run_id", sa.String(36), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_job_execution"),
        sa.CheckConstraint(
            "status IN ('RUNNING', 'SUCCESS', 'FAILURE', 'SKIPPED')",
            name="ck_job_execution_status_known",
        ),
        sa.CheckConstraint(
            "(status = 'RUNNING' AND completed_at IS NULL) "
            "OR (status <> 'RUNNING' AND completed_at IS NOT NULL)",
            name="ck_job_execution_completed_iff_finished",
        ),
    )
    op.create_index(
        "uq_job_execution_running",
        "job_execution",
        ["job_type"],
        unique=True,
        postgresql_where=RUNNING,
        sqlite_where=RUNNING,
    )
    op.create_index(
        "ix_job_execution_success_period",
        "job_execution",
        ["job_type", "period"],
        postgresql_where=SUCCESS,
        sqlite_where=SUCCESS,
    )
    op.create_index("ix_job_execution_type_id", "job_execution", ["job_type", "id"])


def downgrade() -> None:
    op.drop_index("ix_job_execution_type_id", table_name="job_execution")
    op.drop_index("ix_job_execution_success_period", table_name="job_execution")
    op.drop_index("uq_job_execution_running", table_name="job_execution")
    op.drop_table("job_execution")
    op.drop_table("job_lock")
