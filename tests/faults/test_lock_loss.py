"""A live run loses its row (reaped while stalled, or released by an operator): it must notice, and
it must not overwrite the run that took over."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import URL

from prefect_nightly_jobs.database import make_engine
from prefect_nightly_jobs.errors import LockLostError
from prefect_nightly_jobs.lease import Lease, LockPolicy
from prefect_nightly_jobs.lock import LockAcquired, LockResult, acquire_job_lock
from prefect_nightly_jobs.models import Status
from tests.faults import children as child
from tests.faults.conftest import Children
from tests.faults.helpers import SPAWN, executions, expect, url_str, wait_for

pytestmark = pytest.mark.faults

JOB = "fault_lost"


def _acquire(engine: Engine, policy: LockPolicy) -> LockAcquired:
    result = acquire_job_lock(engine, JOB, policy=policy)
    assert isinstance(result, LockAcquired), result
    return result


def _acquire_within(engine: Engine, policy: LockPolicy, timeout: float) -> LockAcquired:
    """Poll the lock (each miss is a SKIPPED row) until it is won, e.g. by reaping a stale run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = acquire_job_lock(engine, JOB, policy=policy)
        if isinstance(result, LockAcquired):
            return result
        time.sleep(0.1)
    raise AssertionError(f"the lock was not won within {timeout}s")


def _row_locked(engine: Engine, execution_id: int) -> bool:
    """Is some transaction in the middle of writing this row (or, on SQLite, the database)?"""
    if engine.dialect.name == "sqlite":
        conn = sqlite3.connect(str(engine.url.database), timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            conn.close()
    with engine.connect() as conn:
        try:
            conn.execute(
                text("SELECT id FROM job_execution WHERE id = :id FOR UPDATE NOWAIT"),
                {"id": execution_id},
            )
            return False
        except Exception:  # LockNotAvailable, whatever the driver calls it
            return True
        finally:
            conn.rollback()


def _freeze(pid: int, engine: Engine, execution_id: int) -> None:
    """SIGSTOP the process, but not in the middle of a heartbeat's write: a frozen transaction
    would hold its lock and block everybody, which is another fault than the one tested here."""
    for _ in range(50):
        os.kill(pid, signal.SIGSTOP)
        if not _row_locked(engine, execution_id):
            return
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError("could not freeze the holder between two heartbeats")


def _frozen_holder(db_url: URL, engine: Engine, children: Children) -> tuple[Any, Any, Any, int]:
    """A child process that holds the lock (1 s threshold, 100 ms beats), frozen by SIGSTOP."""
    started, release, out = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
    holder = children.spawn(
        child.hold,
        url=url_str(db_url),
        job_type=JOB,
        stale_ms=1000,
        heartbeat_ms=100,
        started=started,
        release=release,
        out=out,
    )
    old_id = expect(out, "started", 60)["id"]
    assert holder.pid is not None
    _freeze(holder.pid, engine, old_id)
    return holder, release, out, int(old_id)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_stalled_run_is_reaped_and_cannot_overwrite_the_newer_run(
    db_url: URL, engine: Engine, children: Children
) -> None:
    """The holder freezes (GC pause, VM stall: SIGSTOP) past the threshold and is reaped; when it
    wakes up, still_held() is False, its exit raises LockLostError, the new run is untouched.
    (On SQLite a frozen process still holds its lease's flock: see the next test.)"""
    policy = LockPolicy(1000, 100)
    holder, release, out, old_id = _frozen_holder(db_url, engine, children)
    try:
        newer = _acquire_within(engine, policy, 15)
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    new_id = newer.execution.id
    rows = {r.id: r for r in executions(engine, JOB)}
    assert rows[old_id].status == Status.FAILURE
    assert rows[old_id].error_message.startswith("abandoned: no heartbeat since ")
    assert rows[new_id].status == Status.RUNNING

    expect(out, "not_held", 15)
    release.set()
    done = expect(out, "done", 30)
    children.join_all(60)
    assert not done["recorded"]
    assert done["lock_lost"].startswith(
        f"lock lost: execution {old_id} is already FAILURE: abandoned"
    )
    rows = {r.id: r for r in executions(engine, JOB)}
    assert rows[new_id].status == Status.RUNNING, "the stale run overwrote the newer one"
    assert rows[old_id].error_message.startswith("abandoned: no heartbeat since ")
    assert newer.lease.succeed().recorded


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_frozen_process_keeps_its_lease(
    db_url: URL, engine: Engine, children: Children
) -> None:
    """SQLite is one host: a frozen (SIGSTOPped) holder is alive, so it is not reaped however long
    it is silent; once it continues, it finishes SUCCESS. Only its death releases the lease."""
    policy = LockPolicy(1000, 100)
    holder, release, out, old_id = _frozen_holder(db_url, engine, children)
    try:
        deadline = time.monotonic() + 3.5  # more than three thresholds of silence
        while time.monotonic() < deadline:
            assert not acquire_job_lock(engine, JOB, policy=policy).acquired
            time.sleep(0.2)
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    release.set()
    done = expect(out, "done", 30)
    children.join_all(60)
    assert done["recorded"], done
    assert {r.id: r.status for r in executions(engine, JOB)}[old_id] == Status.SUCCESS


def _eventually(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _release_as_operator(engine: Engine, execution_id: int) -> None:
    """What `jobctl unlock` does: end a RUNNING row by hand."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE job_execution SET status = 'FAILURE', completed_at = CURRENT_TIMESTAMP, "
                "error_message = 'released by operator' WHERE id = :id AND status = 'RUNNING'"
            ),
            {"id": execution_id},
        )


@pytest.mark.parametrize("body_raises", [False, True], ids=["body-returns", "body-raises"])
def test_released_run_notices_and_cannot_overwrite_the_newer_run(
    engine: Engine, body_raises: bool
) -> None:
    policy = LockPolicy(2000, 100)
    old = _acquire(engine, policy).lease
    seen: dict[str, bool] = {}
    # Assertions stay outside the lease block: a failing one would turn into LockLostError there.
    with pytest.raises(LockLostError) as lost, old:
        seen["held_before"] = old.still_held()
        _release_as_operator(engine, old.execution.id)
        new = _acquire(engine, policy).lease  # nothing RUNNING any more: no reaping needed
        seen["noticed"] = _eventually(lambda: not old.still_held(), 5)
        if body_raises:
            raise RuntimeError("the body failed after its lock was released")
    assert seen == {"held_before": True, "noticed": True}
    assert str(lost.value).startswith(
        f"lock lost: execution {old.execution.id} is already FAILURE: released by operator"
    )
    cause = lost.value.__cause__
    assert isinstance(cause, RuntimeError) if body_raises else cause is None
    rows = {r.id: r for r in executions(engine, JOB)}
    assert rows[old.execution.id].error_message == "released by operator"
    assert rows[new.execution.id].status == Status.RUNNING
    assert new.succeed().recorded
    assert executions(engine, JOB)[-1].status == Status.SUCCESS


class BeatGate:
    """Slows the heartbeat of one engine down, client side, the way a stalled network would:
    ``block()`` holds every beat before it reaches the database; ``hold_next_commit(s)`` lets the
    next beat's UPDATE run, then holds its COMMIT (the row stays locked, the beat unconfirmed)."""

    def __init__(self, engine: Engine) -> None:
        self._open = threading.Event()
        self._open.set()
        self._hold_s: float | None = None
        self._block_after_hold = False
        self.commit_held = threading.Event()
        self.release_commit = threading.Event()
        # The heartbeat has an engine of its own, made inside the process: listen on every engine
        # and act only in the beater thread of this database.
        self._thread_name = f"heartbeat:{engine.url.database}"
        event.listen(Engine, "before_cursor_execute", self._before_execute)
        event.listen(Engine, "commit", self._before_commit)

    def close(self) -> None:
        self.unblock()
        self.release_commit.set()
        event.remove(Engine, "before_cursor_execute", self._before_execute)
        event.remove(Engine, "commit", self._before_commit)

    def _in_heartbeat(self) -> bool:
        return threading.current_thread().name == self._thread_name

    def _before_execute(self, *_: Any) -> None:
        if self._in_heartbeat():
            self._open.wait(30)

    def _before_commit(self, *_: Any) -> None:
        if self._in_heartbeat() and self._hold_s is not None:
            hold, self._hold_s = self._hold_s, None
            self.commit_held.set()
            self.release_commit.wait(hold)
            if self._block_after_hold:
                self._open.clear()

    def block(self) -> None:
        self._open.clear()

    def unblock(self) -> None:
        self._open.set()

    def hold_next_commit(self, seconds: float, *, then_block: bool = False) -> None:
        self._block_after_hold = then_block
        self._hold_s = seconds


@pytest.fixture
def runner_engine(db_url: URL) -> Iterator[Engine]:
    """The engine of the process that holds the lock (contenders use ``engine``)."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def _stale_now(engine: Engine, execution_id: int, stale_ms: int) -> bool:
    from sqlalchemy import func, select

    from prefect_nightly_jobs.clock import is_stale
    from prefect_nightly_jobs.models import job_execution as t

    beat = func.coalesce(t.c.heartbeat_at, t.c.started_at)
    with engine.connect() as conn:
        return bool(
            conn.execute(
                select(is_stale(beat, stale_ms)).where(t.c.id == execution_id)
            ).scalar_one()
        )


def _waiting_on_locks(engine: Engine) -> int:
    # A new transaction each time: PostgreSQL keeps one pg_stat_activity snapshot per transaction.
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


def test_reap_rechecks_staleness_under_the_row_lock(pg_engine: Engine, pg_url: URL) -> None:
    """A beat that commits while an acquirer is about to reap (it read the old, stale heartbeat)
    must win: the acquirer re-checks staleness when it gets the row, and skips."""
    engine = pg_engine
    runner = make_engine(pg_url)
    gate = BeatGate(runner)
    # The beat must still be fresh (younger than the threshold) when the acquirer's UPDATE
    # starts, however slowly a loaded machine gets from one to the other: 3 s is plenty.
    policy = LockPolicy(3000, 100)
    lease = _acquire(runner, policy).lease
    contender: dict[str, LockResult] = {}
    try:
        with lease:
            gate.block()
            wait_for(lambda: _stale_now(engine, lease.execution.id, 3000), 15, "a stale row")
            gate.hold_next_commit(30)
            gate.unblock()
            assert gate.commit_held.wait(10), "the beat never reached its commit"
            # The acquirer reads the old heartbeat (stale) and then waits for the beat's row lock.
            worker = threading.Thread(
                target=lambda: contender.setdefault(
                    "r", acquire_job_lock(engine, JOB, policy=policy)
                )
            )
            worker.start()
            wait_for(lambda: _waiting_on_locks(engine), 10, "the acquirer to wait on the row lock")
            gate.release_commit.set()
            worker.join(30)
            result = contender["r"]
            assert not result.acquired, "a run whose heartbeat had just committed was reaped"
            assert result.kind == "already_running"
            # The blocked beat made the holder unsure (it could not know it would win); the next
            # beat confirms the lock again.
            assert _eventually(lease.still_held, 5)
    finally:
        gate.close()
        won = contender.get("r")
        if isinstance(won, LockAcquired):
            won.lease.succeed()
        runner.dispose()
    rows = {r.id: r for r in executions(engine, JOB)}
    assert rows[lease.execution.id].status == Status.SUCCESS


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_still_held_turns_false_before_the_row_can_be_reaped(
    engine: Engine, runner_engine: Engine
) -> None:
    """A beat whose commit is slow is dated when it ran, not when it was confirmed: the holder must
    count its silence from the moment it sent the beat, or it believes it still holds the lock
    for a while after another process has reaped it (two runners). PostgreSQL only: on SQLite a
    live process keeps its lease by its flock, whatever its heartbeat does."""
    gate = BeatGate(runner_engine)
    policy = LockPolicy(1000, 100)
    lease: Lease = _acquire(runner_engine, policy).lease
    won: LockAcquired | None = None
    held_after_reap: bool | None = None
    with contextlib.ExitStack() as cleanup, pytest.raises(LockLostError), lease:
        cleanup.callback(gate.close)
        _eventually(lambda: executions(engine, JOB)[0].heartbeat_at is not None, 10)
        gate.hold_next_commit(0.5, then_block=True)  # the last beat that gets through is slow
        if gate.commit_held.wait(10):
            deadline = time.monotonic() + 15
            while won is None and time.monotonic() < deadline:
                result = acquire_job_lock(engine, JOB, policy=policy)
                if isinstance(result, LockAcquired):
                    won = result
                    held_after_reap = lease.still_held()
                else:
                    time.sleep(0.02)
        gate.unblock()
        hb = lease._heartbeat
        _eventually(lambda: hb is not None and hb.lost.is_set(), 5)
    assert won is not None, "the silent run was never reaped"
    assert held_after_reap is False, "the reaped run still believed it held the lock"
    assert won.lease.succeed().recorded
