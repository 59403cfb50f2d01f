"""import_events: load the events of the day that ended into ``imported_event``.

The run's period is that day: the nightly run at 00:00 on 30 November imports 29 November, a day
whose events are all in (see "Periods" in the README). The feed is a directory of JSON-lines
files, one per day (``IMPORT_EVENTS_SOURCE/2026-11-29.jsonl``, each line ``{"id": ...,
"occurred_at": ..., "kind": ..., "amount_cents": ...}``). Without IMPORT_EVENTS_SOURCE a built-in
demo feed is used, so a first run has something to import.
Imports are idempotent (one row per source id) and run once per period.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite

from jobs.models import ImportedEvent
from prefect_nightly_jobs import ConfigurationError, JobContext, background_job

SOURCE_ENV = "IMPORT_EVENTS_SOURCE"
RETENTION_ENV = "EVENT_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 30
DEMO_KINDS = ("signup", "purchase", "refund")


@dataclass(frozen=True)
class SourceEvent:
    source_id: str
    occurred_at: datetime
    kind: str
    amount_cents: int


def retention() -> timedelta:
    raw = os.environ.get(RETENTION_ENV, "").strip() or str(DEFAULT_RETENTION_DAYS)
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigurationError(
            f"{RETENTION_ENV} must be a whole number of days >= 1, got {raw!r}"
        )
    return timedelta(days=int(raw))


def demo_feed(day: date) -> Iterator[SourceEvent]:
    """48 events per day, the same ones every time for a given day."""
    rng = random.Random(day.toordinal())
    start = datetime.combine(day, time(), tzinfo=UTC)
    for i in range(48):
        kind = rng.choice(DEMO_KINDS)
        amount = 0 if kind == "signup" else rng.randint(100, 20_000)
        yield SourceEvent(
            source_id=f"demo-{day.isoformat()}-{i:02d}",
            occurred_at=start + timedelta(minutes=30 * i),
            kind=kind,
            amount_cents=-amount if kind == "refund" else amount,
        )


def _parse(line: str, where: str) -> SourceEvent:
    try:
        raw = json.loads(line)
        occurred = datetime.fromisoformat(str(raw["occurred_at"]))
        event = SourceEvent(
            source_id=str(raw["id"]),
            occurred_at=occurred if occurred.tzinfo else occurred.replace(tzinfo=UTC),
            kind=str(raw["kind"]),
            amount_cents=int(raw["amount_cents"]),
        )
    except (ValueError, KeyError, TypeError) as err:
        detail = f"missing field {err}" if isinstance(err, KeyError) else str(err)
        raise ValueError(f"{where}: not a valid event ({detail})") from None
    if not event.source_id or len(event.source_id) > 100 or not 0 < len(event.kind) <= 50:
        raise ValueError(f"{where}: id must be 1-100 characters and kind 1-50")
    return event


def file_feed(directory: Path, day: date) -> Iterator[SourceEvent]:
    path = directory / f"{day.isoformat()}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no events file for {day.isoformat()}: expected {path}")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield _parse(line, f"{path} line {number}")


def source_events(day: date) -> list[SourceEvent]:
    directory = os.environ.get(SOURCE_ENV, "").strip()
    return list(file_feed(Path(directory), day) if directory else demo_feed(day))


def _insert_ignoring_duplicates(dialect: str) -> Insert:
    if dialect == "postgresql":
        return postgresql.insert(ImportedEvent).on_conflict_do_nothing(index_elements=["source_id"])
    return sqlite.insert(ImportedEvent).on_conflict_do_nothing(index_elements=["source_id"])


@background_job(
    "import_events",
    description="Import the events of the day that ended (the period) into imported_event.",
    once_per_period=True,
)
def import_events(ctx: JobContext) -> None:
    keep_for = retention()
    events = source_events(ctx.period)
    if not events:
        ctx.logger.info("no events for %s", ctx.period.isoformat())
        return
    rows = [
        {
            "source_id": e.source_id,
            "day": ctx.period,
            "occurred_at": e.occurred_at,
            "kind": e.kind,
            "amount_cents": e.amount_cents,
            "expires_at": e.occurred_at + keep_for,
        }
        for e in events
    ]
    stmt = _insert_ignoring_duplicates(ctx.session.get_bind().dialect.name)
    inserted = len(ctx.session.execute(stmt.returning(ImportedEvent.id), rows).all())
    ctx.logger.info(
        "imported %d new events for %s (%d already there)",
        inserted,
        ctx.period.isoformat(),
        len(rows) - inserted,
    )
