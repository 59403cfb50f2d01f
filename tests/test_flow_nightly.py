"""The nightly flow with the real catalog: outcomes in both systems, the report and its artifact."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect.client.schemas.objects import StateType
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.engine import URL

from jobs.models import DailyEventRollup, ImportedEvent
from prefect_nightly_jobs import testing
from prefect_nightly_jobs.errors import (
    ConfigurationError,
    DependencyError,
    MigrationsNotAppliedError,
)
from prefect_nightly_jobs.models import Status, job_execution
from prefect_nightly_jobs.nightly_flow import run_job, run_nightly
from prefect_nightly_jobs.report import ARTIFACT_KEY
from tests.prefect_api import flow_run_state, markdown_artifacts, task_states

pytestmark = pytest.mark.prefect

PERIOD = date(2026, 11, 28)
ORDER = ["import_events", "daily_rollup", "purge_expired"]


def all_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(job_execution).order_by(job_execution.c.id)))


def summary(engine: Engine) -> list[tuple[str, str, str | None]]:
    return [(r.job_type, r.status, r.error_message) for r in all_rows(engine)]


def seed_expired_event(engine: Engine) -> None:
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(ImportedEvent).values(
                source_id="old-1",
                day=long_ago.date(),
                occurred_at=long_ago,
                kind="purchase",
                amount_cents=100,
                expires_at=long_ago + timedelta(days=30),
            )
        )


def test_nightly_runs_every_job_in_order(job_env: URL, engine: Engine) -> None:
    seed_expired_event(engine)
    report = run_nightly(PERIOD)
    assert [o.job_type for o in report.outcomes] == ORDER
    assert [o.status for o in report.outcomes] == [Status.SUCCESS] * 3
    assert not report.failed and report.period == PERIOD
    assert report.flow_run_id is not None
    rows = all_rows(engine)
    assert summary(engine) == [(t, Status.SUCCESS, None) for t in ORDER]
    assert {r.flow_run_id for r in rows} == {report.flow_run_id}
    assert [o.execution_id for o in report.outcomes] == [r.id for r in rows]

    with engine.connect() as conn:
        events = conn.execute(select(func.count()).select_from(ImportedEvent)).scalar_one()
        rollup = conn.execute(
            select(func.sum(DailyEventRollup.event_count)).where(DailyEventRollup.day == PERIOD)
        ).scalar_one()
    assert events == 48, "48 demo events imported, the expired one purged"
    assert rollup == 48

    state = flow_run_state(report.flow_run_id)
    assert state.type == StateType.COMPLETED
    assert {name: s.type for name, s in task_states(report.flow_run_id).items()} == {
        name: StateType.COMPLETED for name in ORDER
    }
    table = markdown_artifacts(report.flow_run_id)[ARTIFACT_KEY]
    assert "| job | status | execution id | duration | reason / error |" in table
    for outcome in report.outcomes:
        assert f"| {outcome.job_type} | SUCCESS | {outcome.execution_id} | " in table


def test_failed_upstream_skips_downstream_in_both_systems(
    job_env: URL, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = tmp_path / "feed"
    feed.mkdir()
    monkeypatch.setenv("IMPORT_EVENTS_SOURCE", str(feed))
    report = run_nightly(PERIOD)
    assert report.failed
    missing = f"FileNotFoundError: no events file for {PERIOD}: expected {feed}/{PERIOD}.jsonl"
    assert [(o.status, o.reason) for o in report.outcomes] == [
        (Status.FAILURE, missing),
        (Status.SKIPPED, "upstream import_events failed"),
        (Status.SUCCESS, None),
    ]
    assert report.flow_run_id is not None
    assert summary(engine) == [
        ("import_events", Status.FAILURE, missing),
        ("daily_rollup", Status.SKIPPED, "upstream import_events failed"),
        ("purge_expired", Status.SUCCESS, None),
    ]
    flow_state = flow_run_state(report.flow_run_id)
    assert flow_state.type == StateType.FAILED
    assert flow_state.message is not None and "failed: import_events" in flow_state.message
    tasks = task_states(report.flow_run_id)
    assert (tasks["import_events"].type, tasks["import_events"].message) == (
        StateType.FAILED,
        missing,
    )
    rollup = tasks["daily_rollup"]
    # Not run because something failed: neither green like a success nor red like its upstream.
    assert (rollup.type, rollup.name, rollup.message) == (
        StateType.CRASHED,
        "UpstreamFailed",
        "upstream import_events failed",
    )
    assert tasks["purge_expired"].type == StateType.COMPLETED
    assert [(r.job_type, r.skip_kind) for r in all_rows(engine)] == [
        ("import_events", None),
        ("daily_rollup", "upstream_failed"),
        ("purge_expired", None),
    ]
    table = markdown_artifacts(report.flow_run_id)[ARTIFACT_KEY]
    ids = [o.execution_id for o in report.outcomes]
    assert f"| import_events | FAILURE | {ids[0]} | " in table
    assert f"| daily_rollup | SKIPPED (upstream_failed) | {ids[1]} | " in table
    assert "upstream import_events failed" in table


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_disabled_and_already_done_upstreams_count_as_satisfied(
    job_env: URL, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = run_nightly(PERIOD)
    again = run_nightly(PERIOD)
    assert [(o.status, o.reason) for o in again.outcomes] == [
        (
            Status.SKIPPED,
            f"already succeeded for period {PERIOD} (execution {first.outcomes[0].execution_id})",
        ),
        (Status.SUCCESS, None),
        (Status.SUCCESS, None),
    ]
    monkeypatch.setenv("IMPORT_EVENTS_ENABLED", "false")
    disabled = run_nightly(PERIOD)
    assert [(o.status, o.reason) for o in disabled.outcomes] == [
        (Status.SKIPPED, "disabled via IMPORT_EVENTS_ENABLED"),
        (Status.SUCCESS, None),
        (Status.SUCCESS, None),
    ]
    assert not again.failed and not disabled.failed
    assert again.flow_run_id is not None and disabled.flow_run_id is not None
    assert flow_run_state(again.flow_run_id).type == StateType.COMPLETED
    # Skipped as intended: grey in the UI, neither a success nor a failure.
    for run, kind in ((again, "already_done"), (disabled, "disabled")):
        skipped = task_states(run.flow_run_id)["import_events"]
        assert (skipped.type, skipped.name) == (StateType.CANCELLED, "Skipped")
        assert run.outcomes[0].skip_kind == kind
    assert [r.skip_kind for r in all_rows(engine) if r.status == Status.SKIPPED] == [
        "already_done",
        "disabled",
    ]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_run_job_once_per_period_and_force(job_env: URL, engine: Engine) -> None:
    first = run_job("import_events", period=PERIOD)
    again = run_job("import_events", period=PERIOD)
    forced = run_job("import_events", period=PERIOD, force=True)
    assert (first.status, again.status, forced.status) == (
        Status.SUCCESS,
        Status.SKIPPED,
        Status.SUCCESS,
    )
    assert again.describe().startswith("SKIPPED: already succeeded for period 2026-11-28")
    rows = all_rows(engine)
    assert [r.status for r in rows] == [Status.SUCCESS, Status.SKIPPED, Status.SUCCESS]
    assert all(r.flow_run_id is not None for r in rows), "run_job runs inside a flow run"
    assert len({r.flow_run_id for r in rows}) == 3


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_bad_input_fails_before_anything_runs(
    job_env: URL, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(
        DependencyError, match="unknown job 'nope': use one of daily_rollup, import_events"
    ):
        run_job("nope")
    monkeypatch.setenv("DAILY_ROLLUP_ENABLED", "maybe")
    with pytest.raises(ConfigurationError, match="DAILY_ROLLUP_ENABLED must be one of"):
        run_nightly(PERIOD)
    assert all_rows(engine) == []


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_unmigrated_postgres_is_refused_before_anything_runs(
    job_env: URL, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    from prefect_nightly_jobs.settings import get_settings

    empty = testing.create_pg_database()
    request.addfinalizer(lambda: testing.drop_pg_database(empty))
    monkeypatch.setenv("DATABASE_URL", empty.render_as_string(hide_password=False))
    get_settings.cache_clear()
    with pytest.raises(MigrationsNotAppliedError, match="run `jobctl db upgrade`"):
        run_nightly(PERIOD)
