"""job_execution: the lock's table

Revision ID: nightly_jobs_0001
Revises:
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from prefect_nightly_jobs.clock import UTCDateTime

# Revision ids are namespaced and the history has its own branch label, so that a host project
# can also load these scripts into its own Alembic environment beside its own history.
revision: str = "nightly_jobs_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("nightly_jobs",)
depends_on: str | Sequence[str] | None = None

RUNNING = sa.text("status = 'RUNNING'")
SUCCESS = sa.text("status = 'SUCCESS'")
ONCE = sa.text("once_per_period AND status IN ('RUNNING', 'SUCCESS')")


def upgrade() -> None:
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
        sa.Column("once_per_period", sa.Boolean(), server_default=sa.text("false"), nullable=False),
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
        "uq_job_execution_once_per_period",
        "job_execution",
        ["job_type", "period"],
        unique=True,
        postgresql_where=ONCE,
        sqlite_where=ONCE,
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
    op.drop_table("job_execution")
