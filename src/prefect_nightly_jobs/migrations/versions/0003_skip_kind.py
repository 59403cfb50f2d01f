"""job_execution.skip_kind: why a SKIPPED row did not run, as data

Revision ID: nightly_jobs_0003
Revises: nightly_jobs_0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "nightly_jobs_0003"
down_revision: str | None = "nightly_jobs_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: rows written before it keep NULL ("kind not recorded").
    op.add_column("job_execution", sa.Column("skip_kind", sa.String(32), nullable=True))


def downgrade() -> None:
    op.drop_column("job_execution", "skip_kind")
