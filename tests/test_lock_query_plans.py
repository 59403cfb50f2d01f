"""The lock stays an index probe however long the history grows, also under generic plans.

psycopg prepares a statement after a few executions and PostgreSQL may then use a generic plan,
built without the parameter values. If a statement compared ``status`` with a bind parameter,
that plan could not use the partial indexes (``WHERE status = 'RUNNING'`` / ``'SUCCESS'``) and
every acquisition would read the job type's whole history. Here every statement is prepared at
once and planned generically, and PostgreSQL's own counters tell how many rows were read.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import URL

from prefect_nightly_jobs import (
    Status,
    acquire_job_lock,
    already_succeeded_for_period,
    record_outcome,
    testing,
)
from prefect_nightly_jobs.database import make_engine

HISTORY = 5_000
JOB = "long_history"


def _generic_plans(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.prepare_threshold = 0  # prepare every statement, from the first execution
        dbapi_conn.execute("SET plan_cache_mode = force_generic_plan")
        dbapi_conn.commit()


def _rows_read(admin: Engine) -> int:
    """Rows of job_execution read by sequential scans plus through non-partial indexes."""
    with admin.connect() as conn:
        seq = conn.execute(
            text("SELECT coalesce(seq_tup_read, 0) FROM pg_stat_user_tables WHERE relname = :t"),
            {"t": "job_execution"},
        ).scalar_one()
        by_type = conn.execute(
            text("SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelname = :i"),
            {"i": "ix_job_execution_type_id"},
        ).scalar_one()
    return int(seq) + int(by_type)


def _wait_backends_gone(admin: Engine, database: str) -> None:
    """Backends flush their statistics when they exit: wait for that (bounded)."""
    deadline = time.monotonic() + 30
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"
    )
    while time.monotonic() < deadline:
        with admin.connect() as conn:
            if conn.execute(query, {"d": database}).scalar_one() == 0:
                return
        time.sleep(0.05)
    raise AssertionError("the lock's connections did not close within 30 s")


def test_lock_reads_no_history_under_generic_plans(pg_url: URL) -> None:
    assert pg_url.database is not None
    setup = make_engine(pg_url)
    try:
        with setup.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO job_execution (job_type, status, period, started_at, "
                    "completed_at) SELECT :t, 'SUCCESS', date '2000-01-01' + g, now(), now() "
                    "FROM generate_series(1, :n) AS g"
                ),
                {"t": JOB, "n": HISTORY},
            )
        with setup.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE job_execution")
    finally:
        setup.dispose()

    with testing.counted_engine(pg_url) as (admin, _):
        _wait_backends_gone(admin, pg_url.database)
        before = _rows_read(admin)
        with testing.counted_engine(pg_url) as (engine, counter):
            _generic_plans(engine)
            for day in range(1, 8):  # the pre-checked path, the plain path, the refused path
                period = date(2100, 1, day)
                got = acquire_job_lock(
                    engine, JOB, period=period, pre_check=already_succeeded_for_period
                )
                assert got.acquired
                with got.lease:
                    refused = acquire_job_lock(engine, JOB)
                    assert not refused.acquired
                again = acquire_job_lock(
                    engine, JOB, period=period, pre_check=already_succeeded_for_period
                )
                assert not again.acquired and again.kind == "pre_check"
                plain = acquire_job_lock(engine, JOB)
                assert plain.acquired
                with plain.lease:
                    pass
            record_outcome(engine, JOB, Status.SKIPPED, "disabled")
            assert counter.out == 0
        _wait_backends_gone(admin, pg_url.database)
        read = _rows_read(admin) - before
    assert read < 100, f"the lock read {read} history rows: a status filter lost its index"
