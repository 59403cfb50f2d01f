"""Tables of the application's own jobs (the example jobs' data), on the plugin's metadata so that
one set of migrations and one "models match the schema" test cover them."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from jobs.clock import UTCDateTime, db_now
from jobs.models import Base, BigId


class ImportedEvent(Base):
    """Events imported by ``import_events``, one row per source event (imports are idempotent)."""

    __tablename__ = "imported_event"
    __table_args__ = (
        Index("ix_imported_event_day_kind", "day", "kind"),
        Index("ix_imported_event_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source_id: Mapped[str] = mapped_column(String(100), unique=True)
    day: Mapped[date] = mapped_column(Date())
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(50))
    amount_cents: Mapped[int] = mapped_column(BigInteger())
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=db_now())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DailyEventRollup(Base):
    """Per day and kind: how many events and how much, recomputed by ``daily_rollup``."""

    __tablename__ = "daily_event_rollup"

    day: Mapped[date] = mapped_column(Date(), primary_key=True)
    kind: Mapped[str] = mapped_column(String(50), primary_key=True)
    event_count: Mapped[int] = mapped_column(Integer())
    amount_cents: Mapped[int] = mapped_column(BigInteger())
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=db_now())
