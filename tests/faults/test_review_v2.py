"""Regressions of the breaks an adversarial review found in the lock core (reproducers of
/tmp/review, fixed in "Fixes from an adversarial review ...").

1. A body that used a fork-start ``multiprocessing`` Pool lost its lease: ``Pool.__exit__``
   SIGTERMs the workers, which had inherited the parent's SIGTERM handler and leases and ended
   the parent's row "interrupted (SIGTERM)" while the parent ran on; a second runner got in.
2. PostgreSQL: a read-only episode (a failover onto a demoted primary) raised a driver error that
   is not an OperationalError in the heartbeat thread and killed it for good: the live job was
   reaped, and later leases of the process never beat.
3. SIGTERM while the main thread committed SUCCESS deadlocked the handler on the finish lock for
   ten seconds; the process was killed with its row RUNNING, later reaped as "abandoned".
4. SQLite: a forked helper inherited the lease's flock, so a SIGKILLed job was never reaped while
   the helper lived.
5. SQLite: the same database opened through a symlink kept its leases in another directory, so a
   contender using the real file name reaped a live job whose beats could not get through.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.engine import URL

from jobs.models import DailyEventRollup
from prefect_nightly_jobs import testing
from prefect_nightly_jobs.lease import LockPolicy
from prefect_nightly_jobs.liveness import is_alive, lease_dir
from prefect_nightly_jobs.lock import acquire_job_lock
from prefect_nightly_jobs.models import Status
from prefect_nightly_jobs.outcome import SkipKind
from prefect_nightly_jobs.reaper import sweep
from tests.faults import children as child
from tests.faults.conftest import Children
from tests.faults.helpers import SPAWN, db_time, executions, expect, url_str, wait_for

pytestmark = pytest.mark.faults

STALE_MS = 2000
HEARTBEAT_MS = 200
POLICY = LockPolicy(STALE_MS, HEARTBEAT_MS)


def _markers(engine: Engine, prefix: str) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(DailyEventRollup.kind)
                .where(DailyEventRollup.kind.like(f"{prefix}%"))
                .order_by(DailyEventRollup.kind)
            ).scalars()
        )


def _row(engine: Engine, execution_id: int) -> Any:
    (row,) = [r for r in executions(engine) if r.id == execution_id]
    return row


def _contend(engine: Engine, job_type: str) -> dict[str, Any]:
    """One acquisition from this (the test's) process; a win is finished at once."""
    result = acquire_job_lock(engine, job_type, policy=POLICY)
    if result.acquired:
        result.lease.succeed()
        return {"event": "acquired", "id": result.execution.id}
    return {
        "event": "skipped",
        "kind": result.kind,
        "reason": result.reason,
        "id": result.skipped_execution_id,
    }


def _assert_skipped_by(attempt: dict[str, Any], holder: int) -> None:
    assert attempt["event"] == "skipped", f"a second runner got in while {holder} ran: {attempt}"
    assert attempt["kind"] == SkipKind.ALREADY_RUNNING, attempt
    assert attempt["reason"].startswith(f"already running: execution {holder} "), attempt


def _beat_after(engine: Engine, execution_id: int, moment: datetime) -> bool:
    row = _row(engine, execution_id)
    return (
        row.status == Status.RUNNING and row.heartbeat_at is not None and row.heartbeat_at > moment
    )


@pytest.fixture
def sqlite_engine(sqlite_url: URL) -> Iterator[Engine]:
    """Like ``engine``, on SQLite only: for breaks of the flock that proves a lease alive."""
    with testing.counted_engine(sqlite_url) as (eng, counter):
        yield eng
        assert counter.out == 0, f"{counter.out} connection(s) still checked out after the test"


# --- 1. a fork-start multiprocessing Pool inside the body -------------------------------------

POOL_JOB = "review_pool"


def test_fork_pool_in_the_body_keeps_the_lease(
    db_url: URL, engine: Engine, children: Children
) -> None:
    """Defect: the pool's terminated workers ended their parent's row "interrupted (SIGTERM)"."""
    release = SPAWN.Event()
    out: Queue[dict[str, Any]] = SPAWN.Queue()
    proc = children.spawn(
        child.hold_with_fork_pool,
        name="pool-job",
        url=url_str(db_url),
        job_type=POOL_JOB,
        stale_ms=STALE_MS,
        heartbeat_ms=HEARTBEAT_MS,
        release=release,
        out=out,
    )
    exec_id = int(expect(out, "started", 60)["id"])
    # The pool is closed and its workers are gone (Pool.terminate joins them, SIGTERM handlers
    # and all): whatever they did to the row is done.
    pooled = expect(out, "pooled", 30)
    assert (pooled["squares"], pooled["first"]) == ([0, 1, 4, 9], 0)
    row = _row(engine, exec_id)
    assert (row.status, row.error_message) == (Status.RUNNING, None)
    assert pooled["held"], "the job believes its lease is gone after the pool closed"

    # Another process tries the job while the body runs on, for more than a threshold: the row
    # must stay the live job's, neither ended by the workers nor reaped.
    after_pool = db_time(engine)
    attempts = []
    began = time.monotonic()
    while time.monotonic() - began < 1.25 * STALE_MS / 1000:
        attempts.append(_contend(engine, POOL_JOB))
        time.sleep(0.25)
    for attempt in attempts:
        _assert_skipped_by(attempt, exec_id)
    assert _beat_after(engine, exec_id, after_pool), _row(engine, exec_id)

    release.set()
    done = expect(out, "done", 30)
    proc.join(15)
    assert proc.exitcode == 0
    assert done["lock_lost"] is None and done["not_recorded"] is None, done
    assert (done["status"], done["recorded"]) == (Status.SUCCESS, True), done
    row = _row(engine, exec_id)
    assert (row.status, row.error_message) == (Status.SUCCESS, None)
    assert [r.status for r in executions(engine, POOL_JOB)] == [Status.SUCCESS] + [
        Status.SKIPPED
    ] * len(attempts)


# --- 2. a read-only episode on PostgreSQL -----------------------------------------------------

RO_JOB, RO_LATER_JOB = "review_ro", "review_ro_later"
RO_EPISODE_S = 1.2  # shorter than the threshold: only a dead heartbeat can make the row stale


def _admin(sql: str) -> None:
    """On the server's maintenance database: never among the connections the test terminates."""
    testing.admin_execute(sql)


def _terminate_connections(database: str) -> None:
    _admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )


def _stats(commands: Queue[str], out: Queue[dict[str, Any]]) -> dict[str, Any]:
    commands.put("stats")
    return expect(out, "stats", 10)


def test_read_only_episode_is_a_failed_beat_not_a_dead_heartbeat(
    pg_url: URL, pg_engine: Engine, children: Children, tmp_path: Path
) -> None:
    """Defect: a read-only transaction error (SQLSTATE 25006, an InternalError) killed the
    heartbeat thread: the live job was reaped, and later leases of the process never beat."""
    engine = pg_engine
    database = pg_url.database
    assert database is not None
    log = tmp_path / "child.log"
    commands: Queue[str] = SPAWN.Queue()
    out: Queue[dict[str, Any]] = SPAWN.Queue()
    proc = children.spawn(
        child.hold_on_command,
        name="ro-job",
        url=url_str(pg_url),
        job_types=[RO_JOB, RO_LATER_JOB],
        stale_ms=STALE_MS,
        heartbeat_ms=HEARTBEAT_MS,
        commands=commands,
        out=out,
        log_path=str(log),
    )
    exec_id = int(expect(out, "started", 60)["id"])
    wait_for(lambda: _row(engine, exec_id).heartbeat_at, 10, "the first beat")
    try:
        # The episode: new sessions are read-only, and every session is replaced by a new one.
        _admin(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
        _terminate_connections(database)
        episode = time.monotonic()

        def failed_or_dead() -> dict[str, Any] | None:
            stats = _stats(commands, out)
            return stats if stats["hb_failures"] or not stats["beater_alive"] else None

        during = wait_for(failed_or_dead, 3, "a beat to fail")
        time.sleep(max(0.0, RO_EPISODE_S - (time.monotonic() - episode)))
    finally:
        _admin(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
        _terminate_connections(database)
    ended = db_time(engine)
    assert during["beater_alive"], f"the read-only error killed the heartbeat thread: {during}"
    assert during["hb_failures"] > 0, during
    # The beats failed for being refused as read-only (not for the terminated connections).
    failures = [line for line in log.read_text().splitlines() if "heartbeat failed" in line]
    assert any("read-only transaction" in line for line in failures), log.read_text()

    # Writable again: the beats resume on a fresh connection.
    wait_for(lambda: _beat_after(engine, exec_id, ended), 5, "the beats to resume")
    # Past a threshold after the episode, the live job's row is not stale: a contender skips.
    time.sleep(max(0.0, STALE_MS / 1000 + 0.3 - (time.monotonic() - episode)))
    _assert_skipped_by(_contend(engine, RO_JOB), exec_id)
    after = _stats(commands, out)
    assert after["beater_alive"], after
    assert after["hb_beats"] > during["hb_beats"], (during, after)
    assert after["still_held"], after
    assert "heartbeats recovered for [review_ro]" in log.read_text(), log.read_text()
    commands.put("finish")
    done = expect(out, "done", 30)
    assert done["lock_lost"] is None and done["not_recorded"] is None, done
    assert (done["status"], done["recorded"]) == (Status.SUCCESS, True), done
    row = _row(engine, exec_id)
    assert (row.status, row.error_message) == (Status.SUCCESS, None)

    # A later lease in the same process gets its beats.
    later_id = int(expect(out, "started", 30)["id"])
    assert _row(engine, later_id).job_type == RO_LATER_JOB
    first = wait_for(lambda: _row(engine, later_id).heartbeat_at, 5, "the later lease's beat")
    wait_for(lambda: _beat_after(engine, later_id, first), 5, "the later lease's next beat")
    later = _stats(commands, out)
    assert later["beater_alive"] and later["hb_beats"] >= 2, later
    commands.put("finish")
    done = expect(out, "done", 30)
    assert (done["status"], done["recorded"]) == (Status.SUCCESS, True), done
    proc.join(15)
    assert proc.exitcode == 0


# --- 3. SIGTERM while the SUCCESS commit is in progress ----------------------------------------

COMMIT_JOB = "review_term_commit"
COMMIT_S = 2.0  # how long the job's SUCCESS commit takes (a big flush)
EXIT_BOUND_S = 6.0  # the commit's time, then the deferred SIGTERM; the old deadlock took 10 s


def test_sigterm_during_the_success_commit(db_url: URL, engine: Engine, children: Children) -> None:
    """Defect: the SIGTERM handler deadlocked on the finish lock that the interrupted commit held:
    ten seconds later the process was killed with its row RUNNING (later reaped "abandoned")."""
    out: Queue[dict[str, Any]] = SPAWN.Queue()
    proc = children.start(
        SPAWN.Process(
            target=child.commit_slowly,
            kwargs={
                "url": url_str(db_url),
                "job_type": COMMIT_JOB,
                # Far beyond the test: nothing but the job itself can end this row.
                "stale_ms": 600_000,
                "heartbeat_ms": HEARTBEAT_MS,
                "commit_s": COMMIT_S,
                "out": out,
            },
            name="commit-job",
        )
    )
    exec_id = int(expect(out, "committing", 60)["id"])
    assert proc.pid is not None
    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    proc.join(EXIT_BOUND_S + 2)
    took = time.monotonic() - sent
    assert not proc.is_alive(), f"the process still runs {took:.1f}s after SIGTERM"
    assert took < EXIT_BOUND_S, f"the process took {took:.1f}s to end after SIGTERM"
    # The signal's default action, once the commit was through (succeed_with never returned).
    assert proc.exitcode == -signal.SIGTERM

    row = _row(engine, exec_id)
    assert (row.status, row.error_message) == (Status.SUCCESS, None)
    assert row.completed_at is not None
    # The job's data committed with its SUCCESS, and nothing is left for a sweep to reap.
    assert _markers(engine, f"{COMMIT_JOB}:") == [f"{COMMIT_JOB}:{exec_id}:committed"]
    assert sweep(engine, 1) == []
    assert _row(engine, exec_id).status == Status.SUCCESS


# --- 4. SQLite: a forked helper outlives a killed job -----------------------------------------

FORK_JOB = "review_fork"


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot); None once it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


@pytest.fixture
def helpers_to_kill() -> Iterator[dict[int, str]]:
    """pid -> start time of processes that are not our children (forked by a child): killed at
    the end if the same process is still there."""
    started: dict[int, str] = {}
    yield started
    for pid, when in started.items():
        if _start_time(pid) == when:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_sqlite_forked_helper_does_not_keep_a_killed_jobs_lease(
    sqlite_url: URL, sqlite_engine: Engine, children: Children, helpers_to_kill: dict[int, str]
) -> None:
    """Defect: the helper inherited the lease's flock, so the dead job's row was never reaped."""
    out: Queue[dict[str, Any]] = SPAWN.Queue()
    proc = children.spawn(
        child.hold_and_fork,
        name="forking-job",
        url=url_str(sqlite_url),
        job_type=FORK_JOB,
        stale_ms=STALE_MS,
        heartbeat_ms=HEARTBEAT_MS,
        helper_s=60.0,
        out=out,
    )
    forked = expect(out, "forked", 60)
    exec_id, helper = int(forked["id"]), int(forked["helper"])
    born = wait_for(lambda: _start_time(helper), 5, "the helper to show in /proc")
    helpers_to_kill[helper] = born
    leases = lease_dir(sqlite_url)
    assert is_alive(leases, exec_id), "the job does not hold its lease"

    engine = sqlite_engine
    wait_for(lambda: _row(engine, exec_id).heartbeat_at, 10, "the first beat")
    proc.kill()
    # Not join(): the helper holds the job's end of the process sentinel pipe.
    wait_for(lambda: proc.exitcode is not None, 5, "the killed job to end")
    assert proc.exitcode == -signal.SIGKILL
    killed = time.monotonic()
    # The job is dead; its helper lives on. Past the threshold, a sweep reaps the dead job's row.
    assert _start_time(helper) == born, "the helper died with the job"
    reaped = wait_for(
        lambda: sweep(engine, STALE_MS), STALE_MS / 1000 + 5, "a sweep to reap the row"
    )
    reaped_after = time.monotonic() - killed
    assert [r.execution_id for r in reaped] == [exec_id]
    assert _start_time(helper) == born, "the helper died before the row was reaped"
    assert not is_alive(leases, exec_id), "the helper holds the dead job's flock"
    row = _row(engine, exec_id)
    assert row.status == Status.FAILURE
    assert row.error_message.startswith("abandoned: no heartbeat since "), row.error_message
    assert reaped_after < STALE_MS / 1000 + 3, f"reaped {reaped_after:.1f}s after the kill"


# --- 5. SQLite: the same database through a symlink -------------------------------------------

ALIAS_JOB = "review_alias"


def test_sqlite_job_opened_through_a_symlink_keeps_its_lease(
    sqlite_url: URL, sqlite_engine: Engine, children: Children, tmp_path: Path
) -> None:
    """Defect: a job using a symlinked file name kept its flock in the link's lease directory, so
    a contender using the real name found no live holder of a silent row and reaped the job."""
    engine = sqlite_engine
    link = tmp_path / "alias" / "link.db"
    link.parent.mkdir()
    link.symlink_to(Path(str(sqlite_url.database)))
    link_url = sqlite_url.set(database=str(link))
    commands: Queue[str] = SPAWN.Queue()
    out: Queue[dict[str, Any]] = SPAWN.Queue()
    proc = children.spawn(
        child.hold_on_command,
        name="alias-job",
        url=url_str(link_url),
        job_types=[ALIAS_JOB],
        stale_ms=STALE_MS,
        heartbeat_ms=HEARTBEAT_MS,
        commands=commands,
        out=out,
    )
    exec_id = int(expect(out, "started", 60)["id"])
    first = wait_for(lambda: _row(engine, exec_id).heartbeat_at, 10, "the first beat")
    # The job goes silent (its beats cannot get through, as while its own write transaction
    # holds the SQLite write lock); only its flock proves it alive once the threshold has passed.
    commands.put("silence")
    expect(out, "silenced", 10)
    wait_for(
        lambda: (
            (db_time(engine) - (_row(engine, exec_id).heartbeat_at or first)).total_seconds()
            > STALE_MS / 1000 + 0.2
        ),
        STALE_MS / 1000 + 5,
        "the silent job's row to be stale by age",
    )
    assert proc.is_alive()
    # A contender using the real file name: its liveness probe must find the job's flock.
    attempts = []
    for _ in range(4):
        attempts.append(_contend(engine, ALIAS_JOB))
        time.sleep(0.1)
    alive_by_real_name = is_alive(lease_dir(sqlite_url), exec_id)
    commands.put("finish")
    done = expect(out, "done", 30)
    proc.join(15)

    for attempt in attempts:
        _assert_skipped_by(attempt, exec_id)
    assert alive_by_real_name, "the real file name's lease directory did not show the job's flock"
    assert lease_dir(link_url) == lease_dir(sqlite_url)
    assert done["lock_lost"] is None and done["not_recorded"] is None, done
    assert (done["status"], done["recorded"]) == (Status.SUCCESS, True), done
    assert proc.exitcode == 0
    row = _row(engine, exec_id)
    assert (row.status, row.error_message) == (Status.SUCCESS, None)
