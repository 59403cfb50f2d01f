"""End to end: prefect.yaml deployed to a real server, run by a process worker, recorded in
PostgreSQL with the flow run's id."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from prefect_nightly_jobs import testing
from prefect_nightly_jobs.database import make_engine
from prefect_nightly_jobs.models import Status, job_execution
from tests.e2e.conftest import (
    DEPLOYMENT,
    MixedRun,
    PrefectServer,
    run_deployment,
    wait_for_flow_run,
)
from tests.e2e.held import poll
from tests.e2e.procs import Managed

pytestmark = pytest.mark.e2e

MIDNIGHT = "2026-11-30T00:00:00+00:00"


@pytest.fixture
def app_db(nightly_pg_template: str) -> Iterator[URL]:
    url = testing.create_pg_database(template=nightly_pg_template)
    yield url
    testing.drop_pg_database(url)


def rows_of(url: URL, flow_run_id: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    select(job_execution)
                    .where(job_execution.c.flow_run_id == flow_run_id)
                    .order_by(job_execution.c.id)
                )
            )
    finally:
        engine.dispose()


def test_deployment_run_completes_as_recorded(
    prefect_server: PrefectServer,
    start_worker: Callable[..., Managed],
    app_db: URL,
) -> None:
    worker = start_worker(env={"DATABASE_URL": app_db.render_as_string(hide_password=False)})

    good = run_deployment(prefect_server, params={"period": "2026-11-28"})
    assert good.state_type == "COMPLETED", f"{good.output[-2000:]}\n{worker.tail()}"
    rows = rows_of(app_db, good.flow_run_id)
    assert [(r.job_type, r.status) for r in rows] == [
        ("import_events", Status.SUCCESS),
        ("daily_rollup", Status.SUCCESS),
        ("purge_expired", Status.SUCCESS),
    ]
    task_runs = {t["id"]: t for t in prefect_server.task_runs(good.flow_run_id)}
    for row in rows:
        assert row.task_run_id in task_runs, "each row names its Prefect task run"
        assert task_runs[row.task_run_id]["state"]["type"] == "COMPLETED"
        assert str(row.period) == "2026-11-28"


def test_deployment_run_fails_as_recorded(
    prefect_server: PrefectServer, mixed_nightly_run: MixedRun
) -> None:
    # The import feed has no file for the period: import fails, the rollup is not run.
    bad = mixed_nightly_run.flow_run
    assert bad.state_type == "FAILED", mixed_nightly_run.worker_log
    assert bad.message is not None and bad.message.endswith("failed: import_events")
    rows = rows_of(mixed_nightly_run.app_db, bad.flow_run_id)
    assert [(r.job_type, r.status, r.skip_kind) for r in rows] == [
        ("import_events", Status.FAILURE, None),
        ("daily_rollup", Status.SKIPPED, "upstream_failed"),
        ("purge_expired", Status.SUCCESS, None),
    ]
    assert rows[0].error_message.startswith("FileNotFoundError: no events file for 2026-11-29")
    assert rows[1].error_message == "upstream import_events failed"
    prefect_side = {t["id"]: t["state"] for t in prefect_server.task_runs(bad.flow_run_id)}
    assert prefect_side[rows[0].task_run_id]["type"] == "FAILED"
    assert prefect_side[rows[0].task_run_id]["message"] == rows[0].error_message
    rollup = prefect_side[rows[1].task_run_id]
    assert (rollup["type"], rollup["name"]) == ("CRASHED", "UpstreamFailed")
    assert rollup["message"] == "upstream import_events failed"
    assert prefect_side[rows[2].task_run_id]["type"] == "COMPLETED"

    # One event per outcome, the job type as its resource, related to the flow run and the
    # deployment: what an automation ("when import_events fails, notify me") matches on.
    def three_events() -> list[dict[str, Any]] | None:
        found = prefect_server.job_events(bad.flow_run_id)
        return found if len(found) >= 3 else None

    events = poll(three_events, 60, "the run's events to be persisted")
    assert sorted((e["event"], e["resource"]["prefect.resource.id"]) for e in events) == [
        ("prefect-nightly-jobs.job.failed", "prefect-nightly-jobs.job.import_events"),
        ("prefect-nightly-jobs.job.skipped", "prefect-nightly-jobs.job.daily_rollup"),
        ("prefect-nightly-jobs.job.succeeded", "prefect-nightly-jobs.job.purge_expired"),
    ]
    by_job = {e["resource"]["prefect.resource.name"]: e for e in events}
    assert by_job["import_events"]["payload"]["reason"] == rows[0].error_message
    assert by_job["import_events"]["payload"]["execution_id"] == rows[0].id
    assert by_job["daily_rollup"]["payload"]["skip_kind"] == "upstream_failed"
    for event in events:
        related = {r["prefect.resource.role"]: r["prefect.resource.id"] for r in event["related"]}
        assert related["flow-run"] == f"prefect.flow-run.{bad.flow_run_id}"
        assert related["deployment"].startswith("prefect.deployment.")


def test_invalid_cron_stops_the_deploy_with_one_line(
    prefect_server: PrefectServer, deployment: str
) -> None:
    done = prefect_server.cli(
        "deploy", "--all", env={"SYNC_CRON_SCHEDULE": "61 * * * *"}, check=False
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: SYNC_CRON_SCHEDULE '61 * * * *' is not a valid cron expression: use five fields "
        "'minute hour day-of-month month day-of-week', e.g. '0 0 * * *' (daily at midnight)"
    ]
    assert "Traceback" not in done.stdout + done.stderr


def test_a_run_scheduled_at_midnight_is_for_the_day_before_and_a_backfill_runs_each_day(
    prefect_server: PrefectServer, start_worker: Callable[..., Managed], app_db: URL
) -> None:
    worker = start_worker(env={"DATABASE_URL": app_db.render_as_string(hide_password=False)})
    deployment_id = prefect_server.deployment_id(DEPLOYMENT)
    # As the scheduler creates it: Scheduled for 00:00 UTC on 2026-11-30 (already due).
    created = prefect_server.api(
        "POST",
        f"/deployments/{deployment_id}/create_flow_run",
        json={"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": MIDNIGHT}}},
    )
    nightly = wait_for_flow_run(prefect_server, created.json()["id"])
    assert nightly.state_type == "COMPLETED", worker.tail()
    assert {str(r.period) for r in rows_of(app_db, nightly.flow_run_id)} == {"2026-11-29"}

    # 2026-11-29 is done already: a backfill of 28..30 runs 28 and 30, and skips 29.
    backfill = run_deployment(
        prefect_server, params={"period_from": "2026-11-28", "period_to": "2026-11-30"}
    )
    assert backfill.state_type == "COMPLETED", f"{backfill.output[-2000:]}\n{worker.tail()}"
    done = [(str(r.period), r.job_type, r.status) for r in rows_of(app_db, backfill.flow_run_id)]
    jobs = ("import_events", "daily_rollup", "purge_expired")
    assert done == [
        *(("2026-11-28", job, Status.SUCCESS) for job in jobs),
        *(("2026-11-29", job, Status.SKIPPED) for job in jobs),
        *(("2026-11-30", job, Status.SUCCESS) for job in jobs),
    ]
