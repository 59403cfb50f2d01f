"""A job held mid-body for e2e fault tests, and the app database that counts finished bodies.

To hold a job "mid-job" for as long as a test needs, the test takes ``LOCK TABLE imported_event``
in a transaction of its own: the ``import_events`` body then waits on its INSERT, heartbeat
beating, until the test lets it go. Statement triggers count the bodies that really ran (and
committed) in ``body_runs``. The fixtures are registered by tests/e2e/conftest.py.
"""

from __future__ import annotations

import contextlib
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
from tests.e2e.procs import Managed, descendants

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


def task_states(server: Any, flow_run_id: str) -> dict[str, dict[str, Any]]:
    """Task run name prefix (the job type) → its state."""
    return {t["name"].rsplit("-", 1)[0]: t["state"] for t in server.task_runs(flow_run_id)}
