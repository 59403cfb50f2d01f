"""The database goes away under a running job: killed connections, a restart, a long outage.

PostgreSQL only (a SQLite file has no server to lose). Killing connections happens on the shared
server but only inside the test's own database; restarts and outages use a throwaway cluster.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from prefect_nightly_jobs.database import make_engine
from prefect_nightly_jobs.lease import LockPolicy
from prefect_nightly_jobs.lock import acquire_job_lock
from prefect_nightly_jobs.models import Status
from tests.faults import children as child
from tests.faults.conftest import Children
from tests.faults.helpers import SPAWN, db_time, executions, expect, url_str, wait_for
from tests.faults.pgcluster import PASSWORD, ThrowawayCluster

pytestmark = pytest.mark.faults

JOB = "fault_conn"


@pytest.fixture
def cluster_engine(cluster_url: URL) -> Iterator[Engine]:
    engine = make_engine(cluster_url)
    yield engine
    engine.dispose()


def _start_holder(
    children: Children, url: URL, stale_ms: int, heartbeat_ms: int, log: Path | None = None
) -> tuple[Any, Any, Any, int]:
    started, release, out = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
    children.spawn(
        child.hold,
        name="holder",
        url=url_str(url),
        job_type=JOB,
        stale_ms=stale_ms,
        heartbeat_ms=heartbeat_ms,
        started=started,
        release=release,
        out=out,
        log_path=str(log or ""),
    )
    first = expect(out, "started", 60)
    return started, release, out, int(first["id"])


class _Killer:
    """Terminates every other backend of one database, in a loop, from its own connection."""

    def __init__(self, url: URL) -> None:
        self.engine = make_engine(url)
        self.killed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def kill_once(self) -> int:
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            n = conn.execute(
                text(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        self.killed += int(n)
        return int(n)

    def run_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.kill_once()
            time.sleep(0.005)

    def start_background(self, seconds: float) -> None:
        self._thread = threading.Thread(target=self.run_for, args=(seconds,))
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(30)

    def close(self) -> None:
        self.engine.dispose()


def _heartbeat_after(engine: Engine, execution_id: int, moment: Any) -> bool:
    (row,) = [r for r in executions(engine, JOB) if r.id == execution_id]
    return (
        row.status == Status.RUNNING and row.heartbeat_at is not None and row.heartbeat_at > moment
    )


def test_terminated_connections_heartbeat_and_finish_recover(
    pg_url: URL, pg_engine: Engine, children: Children
) -> None:
    """pg_terminate_backend on the job's connections: heartbeats resume, SUCCESS is recorded."""
    engine = pg_engine
    _, release, out, exec_id = _start_holder(children, pg_url, 3000, 150)
    killer = _Killer(pg_url)
    try:
        wait_for(killer.kill_once, 10, "a connection of the job to terminate")
        killer.run_for(1.0)  # every beat in this second meets a freshly terminated connection
        after_kills = db_time(engine)
        wait_for(lambda: _heartbeat_after(engine, exec_id, after_kills), 10, "heartbeat to recover")
        # Now the finish: release the body while its connections keep being terminated.
        killer.start_background(0.6)
        release.set()
        done = expect(out, "done", 30)
        killer.join()
    finally:
        killer.close()
    assert killer.killed > 0
    assert done["recorded"], done
    assert done["lock_lost"] is None
    (row,) = executions(engine, JOB)
    assert (row.status, row.error_message) == (Status.SUCCESS, None)
    assert row.completed_at is not None
    children.join_all(60)


def test_postgres_restart_heartbeat_and_finish_recover(
    throwaway_cluster: ThrowawayCluster,
    cluster_url: URL,
    cluster_engine: Engine,
    children: Children,
    tmp_path: Path,
) -> None:
    """The server restarts while the job runs, then is down when it finishes: both recover."""
    log = tmp_path / "holder.log"
    _, release, out, exec_id = _start_holder(children, cluster_url, 3000, 150, log)
    # A quick restart (dead pooled connections are replaced), then a restart with the server down
    # long enough for beats to fail (they are retried every interval).
    throwaway_cluster.restart()
    cluster_engine.dispose()
    throwaway_cluster.stop()
    wait_for(lambda: "heartbeat failed" in log.read_text(), 10, "a heartbeat to fail")
    throwaway_cluster.start()
    after_restart = db_time(cluster_engine)
    wait_for(
        lambda: _heartbeat_after(cluster_engine, exec_id, after_restart), 10, "heartbeat recovery"
    )
    # Down exactly when the body ends: the finish must retry until the server is back.
    cluster_engine.dispose()
    throwaway_cluster.stop()
    release.set()
    wait_for(lambda: "retrying" in log.read_text(), 10, "the finish to retry")
    throwaway_cluster.start()
    done = expect(out, "done", 30)
    assert done["recorded"], done
    assert done["hb_failures"] >= 1, done
    (row,) = executions(cluster_engine, JOB)
    assert (row.status, row.error_message) == (Status.SUCCESS, None)
    logged = log.read_text()
    assert "heartbeat failed" in logged
    assert "recording SUCCESS failed, retrying" in logged
    assert PASSWORD not in logged
    children.join_all(60)


def test_database_away_past_the_window_row_is_reaped_later(
    throwaway_cluster: ThrowawayCluster,
    cluster_url: URL,
    cluster_engine: Engine,
    children: Children,
    tmp_path: Path,
) -> None:
    """Down longer than the threshold: the run is told it may no longer hold the lock, cannot
    record its status and says why (the database, not a reaper), and the next acquirer reaps the
    row once the server is back. Never RUNNING forever."""
    stale_ms, heartbeat_ms = 1500, 150
    log = tmp_path / "holder.log"
    _, release, out, exec_id = _start_holder(children, cluster_url, stale_ms, heartbeat_ms, log)
    cluster_engine.dispose()
    throwaway_cluster.stop()
    # Silent for a whole threshold: the job is told it may no longer hold the lock.
    expect(out, "not_held", 15)
    release.set()
    done = expect(out, "done", 30)
    assert not done["recorded"]
    assert "not recorded: database unreachable for " in done["detail"], done
    assert done["not_recorded"] == done["detail"] and done["lock_lost"] is None, done
    assert "reaped or released" not in done["detail"]
    assert PASSWORD not in done["detail"] + log.read_text()
    children.join_all(60)

    throwaway_cluster.start()
    (left,) = executions(cluster_engine, JOB)
    assert left.status == Status.RUNNING  # what the outage left behind, until someone acquires

    result = acquire_job_lock(cluster_engine, JOB, policy=LockPolicy(stale_ms, heartbeat_ms))
    assert result.acquired, result
    with result.lease:
        pass
    old, new = executions(cluster_engine, JOB)
    assert old.id == exec_id
    assert old.status == Status.FAILURE
    assert old.error_message.startswith("abandoned: no heartbeat since ")
    assert new.status == Status.SUCCESS
