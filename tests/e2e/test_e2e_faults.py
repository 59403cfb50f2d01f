"""Faults under a real deployment (issue 6): a flow-run process killed or terminated mid-job, a run
released by an operator while alive, two workers and two overlapping runs of the nightly flow.

Here (not in tests/faults) because the Prefect server, the deployment and the workers are the
session fixtures of tests/e2e. The app database is PostgreSQL. To hold a job "mid-job" for as long
as a test needs, the test takes ``LOCK TABLE imported_event`` in a transaction of its own: the
``import_events`` body then waits on its INSERT, heartbeat beating, until the test lets it go.
Statement triggers count the bodies that really ran (and committed) in ``body_runs``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL

from prefect_nightly_jobs import testing
from prefect_nightly_jobs.database import make_engine
from prefect_nightly_jobs.models import Status
from tests import REPO_ROOT
from tests.cli.conftest import run_jobctl, subprocess_env
from tests.e2e.conftest import PrefectServer, trigger_deployment, wait_for_flow_run
from tests.e2e.procs import Managed, descendants

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

STALE_MS, HEARTBEAT_MS = 3000, 300
PERIOD = "2026-11-27"
JOBS = ("import_events", "daily_rollup", "purge_expired")

COUNT_BODIES = """
CREATE TABLE body_runs (id serial PRIMARY KEY, job text NOT NULL);
CREATE FUNCTION count_body() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO body_runs (job) VALUES (TG_ARGV[0]); RETURN NULL; END $$;
CREATE TRIGGER import_body AFTER INSERT ON imported_event
    FOR EACH STATEMENT EXECUTE FUNCTION count_body('import_events');
CREATE TRIGGER rollup_body AFTER INSERT ON daily_event_rollup
    FOR EACH STATEMENT EXECUTE FUNCTION count_body('daily_rollup');
CREATE TRIGGER purge_body AFTER DELETE ON imported_event
    FOR EACH STATEMENT EXECUTE FUNCTION count_body('purge_expired');
"""


@pytest.fixture
def app_db(nightly_pg_template: str) -> Iterator[URL]:
    url = testing.create_pg_database(template=nightly_pg_template)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(COUNT_BODIES)
    finally:
        engine.dispose()
    yield url
    testing.drop_pg_database(url)


@pytest.fixture
def app(app_db: URL) -> Iterator[Engine]:
    engine = make_engine(app_db)
    yield engine
    engine.dispose()


@pytest.fixture
def worker_env(app_db: URL) -> dict[str, str]:
    return {
        "DATABASE_URL": app_db.render_as_string(hide_password=False),
        "STALE_JOB_THRESHOLD_MS": str(STALE_MS),
        "JOB_HEARTBEAT_INTERVAL_MS": str(HEARTBEAT_MS),
    }


class TableHold:
    """``LOCK TABLE imported_event`` in an open transaction: import_events waits until released."""

    def __init__(self, engine: Engine) -> None:
        self._conn: Connection | None = engine.connect()
        self._conn.exec_driver_sql("LOCK TABLE imported_event IN ACCESS EXCLUSIVE MODE")

    def release(self) -> None:
        if self._conn is not None:
            self._conn.rollback()
            self._conn.close()
            self._conn = None


@pytest.fixture
def hold(app: Engine) -> Iterator[Callable[[], TableHold]]:
    holds: list[TableHold] = []

    def take() -> TableHold:
        holds.append(TableHold(app))
        return holds[-1]

    yield take
    for h in holds:
        h.release()


def poll(check: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(every)


def rows(app: Engine, job_type: str | None = None) -> list[Any]:
    sql = "SELECT * FROM job_execution"
    if job_type:
        sql += " WHERE job_type = :t"
    with app.connect() as conn:
        return list(conn.execute(text(sql + " ORDER BY id"), {"t": job_type}))


def bodies(app: Engine) -> dict[str, int]:
    with app.connect() as conn:
        found = conn.execute(text("SELECT job, count(*) FROM body_runs GROUP BY job")).all()
    return {job: int(n) for job, n in found}


def running_import(app: Engine, flow_run_id: str) -> Any:
    """The import_events row of that flow run, once its body waits on the held table."""
    with app.connect() as conn:
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query ILIKE 'INSERT INTO imported_event%'"
            )
        ).scalar_one()
    found = [
        r
        for r in rows(app, "import_events")
        if r.flow_run_id == flow_run_id and r.status == Status.RUNNING
    ]
    return found[0] if found and waiting else None


def flow_run_process(worker: Managed, flow_run_id: str) -> int:
    """The pid of the process executing that flow run (a descendant of the worker)."""
    marker = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()

    def find() -> int | None:
        for pid in descendants(worker.pid):
            with contextlib.suppress(OSError):
                if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    return pid
        return None

    pid: int = poll(find, 30, f"the process of flow run {flow_run_id}")
    return pid


def stale_by_db_clock(app: Engine, execution_id: int) -> bool:
    with app.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT coalesce(heartbeat_at, started_at) < statement_timestamp() "
                    "- make_interval(secs => :ms / 1000.0) FROM job_execution WHERE id = :id"
                ),
                {"ms": STALE_MS, "id": execution_id},
            ).scalar_one()
        )


def task_states(server: PrefectServer, flow_run_id: str) -> dict[str, dict[str, Any]]:
    """Task run name prefix (the job type) → its state."""
    return {t["name"].rsplit("-", 1)[0]: t["state"] for t in server.task_runs(flow_run_id)}


def test_sigkill_of_the_flow_run_process_is_reaped_and_the_job_runs_once(
    prefect_server: PrefectServer,
    start_worker: Callable[..., Managed],
    worker_env: dict[str, str],
    app: Engine,
    hold: Callable[[], TableHold],
) -> None:
    worker = start_worker(env=worker_env)
    held = hold()
    first = trigger_deployment(prefect_server, params={"period": PERIOD})
    killed = poll(lambda: running_import(app, first), 150, "import_events to be mid-job")
    pid = flow_run_process(worker, first)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    held.release()
    crashed = wait_for_flow_run(prefect_server, first)
    assert crashed.state_type in {"CRASHED", "FAILED"}, (crashed, worker.tail())
    assert rows(app, "import_events")[0].status == Status.RUNNING  # nobody could end it

    poll(lambda: stale_by_db_clock(app, killed.id), 30, "the dead run to go stale")
    second = trigger_deployment(prefect_server, params={"period": PERIOD})
    rerun = wait_for_flow_run(prefect_server, second)
    assert rerun.state_type == "COMPLETED", worker.tail()

    reaped, again = rows(app, "import_events")
    assert reaped.id == killed.id and reaped.flow_run_id == first
    assert reaped.status == Status.FAILURE
    assert reaped.error_message.startswith("abandoned: no heartbeat since ")
    assert (again.flow_run_id, again.status) == (second, Status.SUCCESS)
    assert bodies(app) == dict.fromkeys(JOBS, 1)
    assert not [r for r in rows(app) if r.status == Status.RUNNING]


def test_sigterm_of_the_flow_run_process_ends_row_and_runs_promptly(
    prefect_server: PrefectServer,
    start_worker: Callable[..., Managed],
    worker_env: dict[str, str],
    app: Engine,
    hold: Callable[[], TableHold],
) -> None:
    worker = start_worker(env=worker_env)
    hold()
    run_id = trigger_deployment(prefect_server, params={"period": PERIOD})
    row = poll(lambda: running_import(app, run_id), 150, "import_events to be mid-job")
    os.kill(flow_run_process(worker, run_id), signal.SIGTERM)
    # The handler ends the row at once, while the table is still held: not the stale reaper.
    ended = poll(
        lambda: [r for r in rows(app, "import_events") if r.status != Status.RUNNING],
        15,
        "the row to be ended",
    )
    assert (ended[0].id, ended[0].status) == (row.id, Status.FAILURE)
    assert ended[0].error_message == "interrupted (SIGTERM)"
    final = wait_for_flow_run(prefect_server, run_id, timeout_s=60)
    assert final.state_type in {"CRASHED", "FAILED", "CANCELLED"}, (final, worker.tail())
    states = task_states(prefect_server, run_id)
    assert states["import_events"]["type"] != "RUNNING", states
    assert bodies(app) == {}


def test_run_released_by_jobctl_unlock_while_alive_ends_failed_with_lock_lost(
    prefect_server: PrefectServer,
    start_worker: Callable[..., Managed],
    worker_env: dict[str, str],
    app: Engine,
    hold: Callable[[], TableHold],
) -> None:
    worker = start_worker(env=worker_env)
    held = hold()
    run_id = trigger_deployment(prefect_server, params={"period": PERIOD})
    row = poll(lambda: running_import(app, run_id), 150, "import_events to be mid-job")
    unlocked = run_jobctl(
        "unlock",
        "import_events",
        "--reason",
        "looked stuck",
        cwd=REPO_ROOT,  # the project: with DATABASE_URL set, unlock writes no file
        env=subprocess_env(DATABASE_URL=worker_env["DATABASE_URL"]),
    )
    assert unlocked.returncode == 0, unlocked.stderr
    assert unlocked.stdout.startswith(f"released execution {row.id} of import_events")
    poll(lambda: "lock lost" in worker.tail(200), 30, "the heartbeat to notice the release")
    held.release()
    final = wait_for_flow_run(prefect_server, run_id, timeout_s=60)
    assert final.state_type == "FAILED", worker.tail()
    states = task_states(prefect_server, run_id)
    assert states["import_events"]["type"] == "FAILED"
    assert states["import_events"]["message"].startswith(
        f"lock lost: execution {row.id} is already FAILURE: released by operator: looked stuck"
    )
    assert (states["daily_rollup"]["type"], states["daily_rollup"]["name"]) == (
        "CRASHED",
        "UpstreamFailed",
    )
    (released,) = rows(app, "import_events")
    assert released.error_message == "released by operator: looked stuck"
    assert "import_events" not in bodies(app), "the released run's import was committed"


def test_two_workers_two_overlapping_runs_each_body_once(
    prefect_server: PrefectServer,
    start_worker: Callable[..., Managed],
    worker_env: dict[str, str],
    app: Engine,
    hold: Callable[[], TableHold],
) -> None:
    workers = [start_worker(env=worker_env, name=f"twin-{i}") for i in (1, 2)]
    held = hold()
    ids: list[str] = []

    def trigger() -> None:
        ids.append(trigger_deployment(prefect_server, params={"period": PERIOD}))

    threads = [threading.Thread(target=trigger) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(200)
    assert len(ids) == 2
    winner = poll(
        lambda: next((i for i in ids if running_import(app, i)), None), 150, "one run mid-job"
    )
    (loser,) = [i for i in ids if i != winner]
    lost = wait_for_flow_run(prefect_server, loser, timeout_s=90)
    held.release()
    won = wait_for_flow_run(prefect_server, winner, timeout_s=90)
    tails = "\n".join(w.tail() for w in workers)
    assert won.state_type == "COMPLETED", tails
    assert lost.state_type == "CANCELLED", (lost, tails)
    assert lost.message, "the cancelled run must say why"
    assert bodies(app) == dict.fromkeys(JOBS, 1)
    assert {r.flow_run_id for r in rows(app)} == {winner}
