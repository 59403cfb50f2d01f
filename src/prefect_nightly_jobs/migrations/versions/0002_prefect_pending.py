"""job_execution.prefect_pending: reaped rows whose Prefect runs are still to be set Crashed

Revision ID: nightly_jobs_0002
Revises: nightly_jobs_0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "nightly_jobs_0002"
down_revision: str | None = "nightly_jobs_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("prefect_pending")


def upgrade() -> None:
    with op.batch_alter_table("job_execution") as batch:
        batch.add_column(
            sa.Column(
                "prefect_pending", sa.Boolean(), server_default=sa.text("false"), nullable=False
            )
        )
    op.create_index(
        "ix_job_execution_prefect_pending",
        "job_execution",
        ["id"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_job_execution_prefect_pending", table_name="job_execution")
    with op.batch_alter_table("job_execution") as batch:
        batch.drop_column("prefect_pending")
