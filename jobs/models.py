"""This application's own tables (the example jobs' data). Their migrations are in migrations/,
beside the plugin's, which the plugin applies itself (`jobctl db upgrade`)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from prefect_nightly_jobs import UTCDateTime, db_now

# SQLite only makes an INTEGER PRIMARY KEY an alias of the rowid (auto-increment).
BigId = BigInteger().with_variant(Integer(), "sqlite")
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


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
