"""The example jobs do real work on their own tables."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.engine import URL

from jobs.daily_rollup import daily_rollup
from jobs.import_events import import_events
from jobs.models import DailyEventRollup, ImportedEvent
from prefect_nightly_jobs.models import Status
from tests.jobtools import rows, run_task

pytestmark = [pytest.mark.prefect, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

DAY = date(2026, 11, 28)


def write_feed(directory: Path, lines: list[str]) -> None:
    directory.mkdir(exist_ok=True)
    (directory / f"{DAY.isoformat()}.jsonl").write_text("\n".join(lines) + "\n")


def event(source_id: str, kind: str, cents: int) -> str:
    return json.dumps(
        {"id": source_id, "occurred_at": f"{DAY}T10:00:00", "kind": kind, "amount_cents": cents}
    )


def test_import_from_a_feed_is_idempotent_and_rolled_up(
    job_env: URL, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = tmp_path / "feed"
    write_feed(
        feed, [event("a", "purchase", 500), event("b", "purchase", 250), event("c", "refund", -100)]
    )
    monkeypatch.setenv("IMPORT_EVENTS_SOURCE", str(feed))
    monkeypatch.setenv("EVENT_RETENTION_DAYS", "7")
    assert run_task(import_events, period=DAY).state.is_completed()
    write_feed(feed, [event("a", "purchase", 500), event("d", "signup", 0)])
    assert run_task(import_events, period=DAY, force=True).state.is_completed()
    assert run_task(daily_rollup, period=DAY).state.is_completed()
    with engine.connect() as conn:
        imported = conn.execute(
            select(
                ImportedEvent.source_id, ImportedEvent.occurred_at, ImportedEvent.expires_at
            ).order_by(ImportedEvent.source_id)
        ).all()
        totals = conn.execute(
            select(
                DailyEventRollup.kind, DailyEventRollup.event_count, DailyEventRollup.amount_cents
            )
            .where(DailyEventRollup.day == DAY)
            .order_by(DailyEventRollup.kind)
        ).all()
    assert [r.source_id for r in imported] == ["a", "b", "c", "d"], "re-import adds only new ids"
    assert all((r.expires_at - r.occurred_at).days == 7 for r in imported)
    assert [tuple(t) for t in totals] == [
        ("purchase", 2, 750),
        ("refund", 1, -100),
        ("signup", 1, 0),
    ]


def test_malformed_feed_line_fails_with_where_and_why(
    job_env: URL, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = tmp_path / "feed"
    write_feed(feed, [event("a", "purchase", 500), '{"id": "b", "kind": "purchase"}'])
    monkeypatch.setenv("IMPORT_EVENTS_SOURCE", str(feed))
    run = run_task(import_events, period=DAY)
    expected = (
        f"ValueError: {feed}/{DAY}.jsonl line 2: not a valid event (missing field 'occurred_at')"
    )
    assert run.state.message == expected
    (row,) = rows(engine, "import_events")
    assert (row.status, row.error_message) == (Status.FAILURE, expected)
    with engine.connect() as conn:
        assert conn.execute(select(ImportedEvent.id)).all() == [], "nothing half-imported"
