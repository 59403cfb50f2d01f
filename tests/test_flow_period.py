"""The nightly period in a real flow run: the schedule interval that the flow run's scheduled
start closes (in SYNC_CRON_TIMEZONE), the same rule relative to now for a run without a schedule,
the date passed as ``period``, or every period from ``period_from`` to ``period_to`` (a backfill
that skips what already succeeded)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.flow_engine import run_flow
from prefect.states import Scheduled
from sqlalchemy import Engine, select
from sqlalchemy.engine import URL

from prefect_nightly_jobs.errors import ConfigurationError
from prefect_nightly_jobs.models import Status, job_execution
from prefect_nightly_jobs.nightly_flow import backfill_from_state, report_from_state, run_registry
from prefect_nightly_jobs.outcome import NightlyReport, SkipKind
from prefect_nightly_jobs.registry import Registry
from prefect_nightly_jobs.schedule import run_period
from prefect_nightly_jobs.settings import get_settings
from prefect_nightly_jobs.task import JobContext, background_job
from tests.jobtools import rows

pytestmark = pytest.mark.prefect

ran: list[tuple[str, date]] = []  # (job, period) of every body that ran


@background_job("r_period", once_per_period=True)
def r_period(ctx: JobContext) -> None:
    ran.append((ctx.job_type, ctx.period))


@background_job("r_after", depends_on=["r_period"])  # not once per period by itself
def r_after(ctx: JobContext) -> None:
    ran.append((ctx.job_type, ctx.period))


REGISTRY = Registry([r_period.spec, r_after.spec])


@flow(name="test-period", persist_result=False)
def period_flow(
    period: date | None = None, period_from: date | None = None, period_to: date | None = None
) -> State[Any]:
    return run_registry(REGISTRY, period, period_from, period_to)


@pytest.fixture(autouse=True)
def _forget_seen() -> None:
    ran.clear()


def _report(state: State[Any]) -> NightlyReport:
    assert state.is_completed(), state.message
    return report_from_state(state)


def _schedule(monkeypatch: pytest.MonkeyPatch, cron: str, timezone: str) -> None:
    monkeypatch.setenv("SYNC_CRON_SCHEDULE", cron)
    monkeypatch.setenv("SYNC_CRON_TIMEZONE", timezone)
    get_settings.cache_clear()


def _scheduled_run(scheduled: datetime) -> tuple[State[Any], str]:
    """Run the flow as the scheduler would: a flow run created Scheduled at ``scheduled``."""
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(period_flow, state=Scheduled(scheduled_time=scheduled))
    state = run_flow(period_flow, flow_run=run, return_type="state")
    assert isinstance(state, State)
    return state, str(run.id)


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"], indirect=True)
def test_a_run_scheduled_at_midnight_of_d_runs_for_d_minus_1(job_env: URL, engine: Engine) -> None:
    state, run_id = _scheduled_run(datetime(2026, 11, 29, 0, 0, tzinfo=UTC))  # default cron, UTC
    assert _report(state).period == date(2026, 11, 28)
    (row,) = rows(engine, "r_period")
    assert (row.period, row.status, row.flow_run_id) == (date(2026, 11, 28), "SUCCESS", run_id)
    assert ran == [("r_period", date(2026, 11, 28)), ("r_after", date(2026, 11, 28))]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_scheduled_runs_in_new_york_across_the_dst_change(
    job_env: URL, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _schedule(monkeypatch, "0 0 * * *", "America/New_York")
    # Midnight on 9 March 2026 (EDT, 04:00 UTC) closes the 23-hour day of 8 March.
    state, _ = _scheduled_run(datetime(2026, 3, 9, 4, 0, tzinfo=UTC))
    assert _report(state).period == date(2026, 3, 8)
    # Midnight on 8 March (still EST, 05:00 UTC) closes 7 March.
    state, _ = _scheduled_run(datetime(2026, 3, 8, 5, 0, tzinfo=UTC))
    assert _report(state).period == date(2026, 3, 7)
    assert [r.period for r in rows(engine, "r_period")] == [date(2026, 3, 8), date(2026, 3, 7)]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_an_hourly_schedule_runs_for_the_day_of_the_hour_it_closes(
    job_env: URL, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _schedule(monkeypatch, "0 * * * *", "UTC")
    state, _ = _scheduled_run(datetime(2026, 11, 29, 0, 0, tzinfo=UTC))  # closes 23:00-00:00
    assert _report(state).period == date(2026, 11, 28)
    state, _ = _scheduled_run(datetime(2026, 11, 29, 1, 0, tzinfo=UTC))  # closes 00:00-01:00
    assert _report(state).period == date(2026, 11, 29)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_manual_run_is_for_the_last_interval_that_ended_and_period_overrides(
    job_env: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    _schedule(monkeypatch, "0 0 * * *", "Asia/Tokyo")
    settings = get_settings()
    before = run_period(settings, datetime.now(UTC))
    manual = _report(period_flow(return_state=True))
    after = run_period(settings, datetime.now(UTC))
    assert manual.period in {before, after}
    assert before < datetime.now(settings.timezone).date()  # the day that ended, not today
    override = _report(period_flow(period=date(2025, 12, 31), return_state=True))
    assert override.period == date(2025, 12, 31)


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"], indirect=True)
def test_a_three_day_backfill_runs_each_period_in_order_and_skips_what_succeeded(
    job_env: URL, engine: Engine
) -> None:
    first, middle, last = date(2026, 11, 26), date(2026, 11, 27), date(2026, 11, 28)
    _report(period_flow(period=middle, return_state=True))
    done = {r.job_type: r.id for r in (*rows(engine, "r_period"), *rows(engine, "r_after"))}
    ran.clear()

    state = period_flow(period_from=first, period_to=last, return_state=True)
    assert state.is_completed(), state.message
    backfill = backfill_from_state(state)
    assert [r.period for r in backfill.reports] == [first, middle, last]
    assert backfill.summary() == "3 periods 2026-11-26..2026-11-28: no failure"
    assert ran == [("r_period", first), ("r_after", first), ("r_period", last), ("r_after", last)]
    skipped = backfill.reports[1].outcomes
    # Every job is skipped where it already succeeded, once-per-period or not.
    assert [(o.job_type, o.status, o.skip_kind, o.reason) for o in skipped] == [
        (
            job,
            Status.SKIPPED,
            SkipKind.ALREADY_DONE,
            f"already succeeded for period 2026-11-27 (execution {done[job]})",
        )
        for job in ("r_period", "r_after")
    ]
    with engine.connect() as conn:
        table = conn.execute(
            select(job_execution.c.job_type, job_execution.c.period, job_execution.c.status)
            .where(job_execution.c.id > max(done.values()))
            .order_by(job_execution.c.id)
        ).all()
    assert [tuple(r) for r in table] == [
        ("r_period", first, "SUCCESS"),
        ("r_after", first, "SUCCESS"),
        ("r_period", middle, "SKIPPED"),
        ("r_after", middle, "SKIPPED"),
        ("r_period", last, "SUCCESS"),
        ("r_after", last, "SUCCESS"),
    ]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_period_and_a_range_together_fail_the_flow_before_any_job(
    job_env: URL, engine: Engine
) -> None:
    state = period_flow(
        period=date(2026, 11, 1),
        period_from=date(2026, 11, 1),
        period_to=date(2026, 11, 2),
        return_state=True,
    )
    assert state.is_failed()
    with pytest.raises(ConfigurationError, match="--period and --from/--to exclude each other"):
        report_from_state(state)
    assert rows(engine, "r_period") == []
