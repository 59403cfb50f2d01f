"""imported_event and daily_event_rollup: the example jobs' tables

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from prefect_nightly_jobs import UTCDateTime, db_now

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "imported_event",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source_id", sa.String(100), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("imported_at", UTCDateTime(), server_default=db_now(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_imported_event"),
        sa.UniqueConstraint("source_id", name="uq_imported_event_source_id"),
    )
    op.create_index("ix_imported_event_day_kind", "imported_event", ["day", "kind"])
    op.create_index("ix_imported_event_expires_at", "imported_event", ["expires_at"])
    op.create_table(
        "daily_event_rollup",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("computed_at", UTCDateTime(), server_default=db_now(), nullable=False),
        sa.PrimaryKeyConstraint("day", "kind", name="pk_daily_event_rollup"),
    )


def downgrade() -> None:
    op.drop_table("daily_event_rollup")
    op.drop_index("ix_imported_event_expires_at", table_name="imported_event")
    op.drop_index("ix_imported_event_day_kind", table_name="imported_event")
    op.drop_table("imported_event")
