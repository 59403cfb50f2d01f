"""The nightly period: the flow run's scheduled date in SYNC_CRON_TIMEZONE, today when ad hoc,
or the date passed for a backfill."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.flow_engine import run_flow
from prefect.states import Scheduled
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from prefect_nightly_jobs.nightly_flow import report_from_state, run_registry
from prefect_nightly_jobs.outcome import NightlyReport
from prefect_nightly_jobs.registry import Registry
from prefect_nightly_jobs.task import JobContext, background_job
from tests.jobtools import rows

pytestmark = [pytest.mark.prefect, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]


@background_job("r_period")
def r_period(ctx: JobContext) -> None:
    ctx.logger.info("working on %s", ctx.period)


REGISTRY = Registry([r_period.spec])


@flow(name="test-period", persist_result=False)
def period_flow(period: date | None = None) -> State[Any]:
    return run_registry(REGISTRY, period)


def _report(state: State[Any]) -> NightlyReport:
    assert state.is_completed(), state.message
    return report_from_state(state)


@pytest.fixture
def tokyo(job_env: URL, monkeypatch: pytest.MonkeyPatch) -> ZoneInfo:
    from prefect_nightly_jobs.settings import get_settings

    monkeypatch.setenv("SYNC_CRON_TIMEZONE", "Asia/Tokyo")
    get_settings.cache_clear()
    return ZoneInfo("Asia/Tokyo")


def test_scheduled_run_uses_its_scheduled_date_in_the_timezone(
    tokyo: ZoneInfo, engine: Engine
) -> None:
    scheduled = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)  # 05:00 on 2 March in Tokyo
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(period_flow, state=Scheduled(scheduled_time=scheduled))
    state = run_flow(period_flow, flow_run=run, return_type="state")
    assert isinstance(state, State)
    assert _report(state).period == date(2026, 3, 2)
    (row,) = rows(engine, "r_period")
    assert (row.period, row.flow_run_id) == (date(2026, 3, 2), str(run.id))


def test_ad_hoc_run_is_today_and_backfill_is_the_given_date(tokyo: ZoneInfo) -> None:
    before = datetime.now(tokyo).date()
    ad_hoc = _report(period_flow(return_state=True))
    after = datetime.now(tokyo).date()
    assert ad_hoc.period in {before, after}
    backfill = _report(period_flow(period=date(2025, 12, 31), return_state=True))
    assert backfill.period == date(2025, 12, 31)
