"""Liveness of held leases when the jobs themselves get in the way (core v2, issue 9).

Regression tests for four defects of the lock before core v2 (commit 28e0dc7): a job's own open
write transaction starved its heartbeat (SQLite) and the run was failed as "lock lost"; SIGTERM
could not end a run whose body held the SQLite write lock; heartbeats shared the jobs' connection
pool, so ten parallel jobs starved them; and one process's beats ran one after the other, so one
stuck beat froze every other lease of the process.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.engine import URL

from jobs.models import DailyEventRollup
from prefect_nightly_jobs.database import make_engine
from prefect_nightly_jobs.executions import job_states
from prefect_nightly_jobs.liveness import is_alive, lease_dir
from prefect_nightly_jobs.models import Status
from prefect_nightly_jobs.reaper import reap_stale
from prefect_nightly_jobs.task import JobContext, background_job
from tests.faults import children as child
from tests.faults.conftest import Children
from tests.faults.helpers import SPAWN, executions, expect, url_str, wait_for
from tests.jobtools import run_task

pytestmark = pytest.mark.faults

STALE_MS = 2000
# A plain read must not queue behind a job's write transaction; the busy timeout of the reader's
# engine is longer, so a read that waits for the write lock would show as a slow read, not an error.
READ_BOUND_S = 5.0
READER_BUSY_TIMEOUT_MS = 8000


def _markers(engine: Engine, prefix: str) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(DailyEventRollup.kind)
                .where(DailyEventRollup.kind.like(f"{prefix}%"))
                .order_by(DailyEventRollup.kind)
            ).scalars()
        )


@dataclass
class _Contender:
    """A process that tries to take job types while the test's runs hold them."""

    proc: BaseProcess
    go: Event
    stop: Event
    stopped: Event
    out: Queue[dict[str, Any]]

    def finish(self, timeout: float = 30) -> list[dict[str, Any]]:
        """Stop it and return its attempts (each a ``skipped`` or ``acquired`` event)."""
        self.stop.set()
        report = expect(self.out, "stopped", timeout)
        self.proc.join(timeout)
        assert report["error"] is None, report["error"]
        tries: list[dict[str, Any]] = report["tries"]
        return tries


def _start_contender(
    children: Children,
    url: URL,
    job_types: list[str],
    *,
    heartbeat_ms: int,
    spacing_s: float = 0.3,
) -> _Contender:
    ready, go, stop, stopped = SPAWN.Event(), SPAWN.Event(), SPAWN.Event(), SPAWN.Event()
    out: Queue[dict[str, Any]] = SPAWN.Queue()
    proc = children.spawn(
        child.contend_while,
        name="contender",
        url=url_str(url),
        job_types=job_types,
        stale_ms=STALE_MS,
        heartbeat_ms=heartbeat_ms,
        spacing_s=spacing_s,
        ready=ready,
        go=go,
        stop=stop,
        stopped=stopped,
        out=out,
    )
    assert ready.wait(60), "the contender process did not start"
    return _Contender(proc, go, stop, stopped, out)


def _assert_all_skipped(tries: list[dict[str, Any]], holders: dict[str, int], least: int) -> None:
    assert [t for t in tries if t["event"] != "skipped"] == [], tries
    assert len(tries) >= least, f"only {len(tries)} attempts: {tries}"
    for t in tries:
        assert t["kind"] == "already_running", t
        assert t["reason"].startswith(f"already running: execution {holders[t['job_type']]} "), t


# --- 1. a job's own open write transaction --------------------------------------------------

OPEN_TXN_JOB = "live_open_txn"


@dataclass
class _OpenTxnCase:
    reader: Engine
    contender: _Contender
    seen: dict[str, Any] = field(default_factory=dict)


_case: _OpenTxnCase | None = None  # the running test's, for the job body below


def _reapable(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        try:
            return [r.execution_id for r in reap_stale(conn, STALE_MS, OPEN_TXN_JOB)]
        finally:
            conn.rollback()


def _read_like_status(case: _OpenTxnCase, execution_id: int, key: str) -> None:
    """What `jobctl status` reads, on a fresh engine, timed; and whether the job's uncommitted
    row shows through."""
    began = time.monotonic()
    try:
        report = job_states(case.reader, [OPEN_TXN_JOB])
        (state,) = report.jobs
        running = state.running
        case.seen[key] = {
            "took_s": time.monotonic() - began,
            "running_id": running.id if running is not None else None,
            "heartbeat_age_s": running.heartbeat_age_s if running is not None else None,
            "uncommitted_visible": _markers(case.reader, f"{OPEN_TXN_JOB}:"),
            "flock_held": is_alive(lease_dir(case.reader.url), execution_id),
            # What an acquirer decides about the row (it must not try to reap it), in a read-only
            # transaction: a reaper that tried would wait for the job's write lock (SQLite).
            "reapable": _reapable(case.reader),
        }
    except Exception as err:  # the body must not raise: the test asserts on what it saw
        case.seen[key] = {"took_s": time.monotonic() - began, "error": repr(err)}


@background_job(OPEN_TXN_JOB)
def live_open_txn(ctx: JobContext) -> None:
    """Writes, then keeps its transaction open 1.5 thresholds; twice (a batch commit between)."""
    case = _case
    assert case is not None
    hold_s = 1.5 * STALE_MS / 1000
    case.seen["id"] = ctx.execution_id
    case.contender.go.set()
    # First batch: written, kept open past the threshold, committed by the body itself.
    ctx.session.execute(
        insert(DailyEventRollup).values(
            day=ctx.period, kind=f"{OPEN_TXN_JOB}:first", event_count=1, amount_cents=0
        )
    )
    opened = time.monotonic()
    _read_like_status(case, ctx.execution_id, "read_early")
    time.sleep(max(0.0, hold_s - 0.3 - (time.monotonic() - opened)))
    _read_like_status(case, ctx.execution_id, "read_late")
    time.sleep(max(0.0, hold_s - (time.monotonic() - opened)))
    ctx.session.commit()
    # The contender's attempts that queued behind the write lock (SQLite) now find a row whose
    # heartbeat is older than the threshold, held by a live process: they must skip, not reap.
    time.sleep(1.5)
    case.contender.stop.set()
    case.seen["contender_stopped"] = case.contender.stopped.wait(20)
    # Second batch: written and kept open past the threshold; the framework commits it together
    # with SUCCESS when the body returns.
    ctx.session.execute(
        insert(DailyEventRollup).values(
            day=ctx.period, kind=f"{OPEN_TXN_JOB}:last", event_count=1, amount_cents=0
        )
    )
    time.sleep(hold_s)


@pytest.fixture
def reader(db_url: URL) -> Iterator[Engine]:
    eng = make_engine(db_url, busy_timeout_ms=READER_BUSY_TIMEOUT_MS)
    yield eng
    eng.dispose()


@pytest.mark.prefect
def test_job_keeping_its_write_transaction_open_past_the_threshold_succeeds(
    job_env: URL, engine: Engine, reader: Engine, children: Children, backend: str
) -> None:
    """Defect: a job's own write transaction outlasting the threshold failed it as "lock lost"."""
    global _case  # noqa: PLW0603 - the job body is module level, as every @background_job
    contender = _start_contender(children, job_env, [OPEN_TXN_JOB], heartbeat_ms=STALE_MS // 5)
    _case = case = _OpenTxnCase(reader=reader, contender=contender)
    try:
        run = run_task(live_open_txn)
    finally:
        _case = None
        contender.stop.set()
    tries = contender.finish()
    seen = case.seen
    run_id = seen["id"]

    (row,) = [r for r in executions(engine, OPEN_TXN_JOB) if r.status != Status.SKIPPED]
    assert (row.id, row.status, row.error_message) == (run_id, Status.SUCCESS, None)
    assert run.state.is_completed(), run.state
    # Both batches are committed: the body's own commit and the one that wrote SUCCESS.
    assert _markers(engine, f"{OPEN_TXN_JOB}:") == [f"{OPEN_TXN_JOB}:first", f"{OPEN_TXN_JOB}:last"]

    assert seen["contender_stopped"], "the contender did not stop"
    _assert_all_skipped(tries, {OPEN_TXN_JOB: run_id}, least=2)
    skipped_rows = [r for r in executions(engine, OPEN_TXN_JOB) if r.status == Status.SKIPPED]
    assert len(skipped_rows) == len(tries)

    for key in ("read_early", "read_late"):
        read = seen[key]
        assert "error" not in read, read
        assert read["took_s"] < READ_BOUND_S, f"a read waited for the job's transaction: {read}"
        assert read["running_id"] == run_id, read
        assert read["uncommitted_visible"] == [], read
        assert read["reapable"] == [], read
    late = seen["read_late"]
    if backend == "sqlite":
        # The scenario is real: the job's write lock kept its heartbeat out for longer than the
        # threshold, so by age alone the row was stale; the lease's flock kept it from being
        # reaped (``reapable`` above), and the contender's attempts queued behind the write lock.
        assert late["heartbeat_age_s"] > STALE_MS / 1000, late
        assert late["flock_held"], late
    else:
        # PostgreSQL: the job's transaction does not touch its execution row; beats went on.
        assert late["heartbeat_age_s"] < STALE_MS / 1000, late


# --- 2. SIGTERM while the body holds the write lock ------------------------------------------

SIGTERM_JOB = "live_term_in_txn"


def test_sigterm_while_the_body_holds_a_write_transaction(
    db_url: URL, engine: Engine, children: Children
) -> None:
    """Defect: SIGTERM while the body held the SQLite write lock left the row RUNNING."""
    out: Queue[dict[str, Any]] = SPAWN.Queue()
    proc = children.start(
        SPAWN.Process(
            target=child.write_then_hold,
            kwargs={
                "url": url_str(db_url),
                "job_type": SIGTERM_JOB,
                # Far beyond the test: only the SIGTERM handler can end this row.
                "stale_ms": 600_000,
                "heartbeat_ms": 200,
                "out": out,
            },
        )
    )
    exec_id = int(expect(out, "written", 60)["id"])
    time.sleep(0.5)  # a few beats are refused by the body's write lock meanwhile (SQLite)
    assert executions(engine, SIGTERM_JOB)[0].status == Status.RUNNING
    assert proc.pid is not None
    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    wait_for(
        lambda: executions(engine, SIGTERM_JOB)[0].status != Status.RUNNING,
        8,
        "the SIGTERM handler to end the row",
    )
    ended_s = time.monotonic() - sent
    proc.join(15)
    assert not proc.is_alive(), "SIGTERM did not end the process"
    assert proc.exitcode == -signal.SIGTERM

    (row,) = executions(engine, SIGTERM_JOB)
    assert row.id == exec_id
    assert (row.status, row.error_message) == (Status.FAILURE, "interrupted (SIGTERM)")
    assert row.completed_at is not None
    assert ended_s < 5, f"the row was ended {ended_s:.1f}s after SIGTERM"
    # The body's write died with its transaction: nothing done under the lease was committed.
    assert _markers(engine, f"{SIGTERM_JOB}:") == []


# --- 3. ten parallel jobs, each with an open session -----------------------------------------

PARALLEL = 10


def _hold_in_child(
    children: Children, url: URL, job_types: list[str], *, heartbeat_ms: int, pool: str
) -> tuple[Event, Queue[dict[str, Any]], dict[str, int]]:
    """Start ``hold_parallel``; return its release event, its queue and the held execution ids."""
    release = SPAWN.Event()
    out: Queue[dict[str, Any]] = SPAWN.Queue()
    children.spawn(
        child.hold_parallel,
        name="holder",
        url=url_str(url),
        job_types=job_types,
        stale_ms=STALE_MS,
        heartbeat_ms=heartbeat_ms,
        pool=pool,
        release=release,
        out=out,
    )
    held: dict[str, int] = {}
    deadline = time.monotonic() + 60
    while len(held) < len(job_types):
        left = deadline - time.monotonic()
        assert left > 0, f"only {sorted(held)} of {job_types} started"
        event = expect(out, "started", left)
        held[event["job_type"]] = int(event["id"])
    return release, out, held


def _done(out: Queue[dict[str, Any]], count: int, timeout: float) -> dict[str, dict[str, Any]]:
    reports: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(reports) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(reports)} of {count} jobs reported: {reports}"
        report = expect(out, "done", left)
        reports[report["job_type"]] = report
    return reports


def _beats(engine: Engine, ids: list[int]) -> dict[int, tuple[str, datetime | None, float]]:
    """id -> (status, heartbeat_at, seconds since the last sign of life by the database clock)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, status, heartbeat_at, "
                "EXTRACT(EPOCH FROM now() - COALESCE(heartbeat_at, started_at)) AS age "
                "FROM job_execution WHERE id = ANY(:ids)"
            ),
            {"ids": ids},
        ).all()
        conn.rollback()
    return {r.id: (r.status, r.heartbeat_at, float(r.age)) for r in rows}


@pytest.mark.parametrize("pool", ["settings", "default"], ids=["pool-from-settings", "pool-5+5"])
def test_ten_parallel_jobs_with_open_sessions_keep_their_locks(
    pg_url: URL, pg_engine: Engine, children: Children, pool: str
) -> None:
    """Defect: heartbeats shared the jobs' 5+5 pool, so ten open sessions starved them."""
    engine = pg_engine
    job_types = [f"live_par_{i}" for i in range(PARALLEL)]
    heartbeat_ms = STALE_MS // 5
    contender = _start_contender(children, pg_url, job_types, heartbeat_ms=heartbeat_ms)
    release, out, held = _hold_in_child(
        children, pg_url, job_types, heartbeat_ms=heartbeat_ms, pool=pool
    )
    ids = list(held.values())
    contender.go.set()
    first = _beats(engine, ids)
    began = time.monotonic()
    # Every beat must keep coming while all ten sessions stay open: 1.5 thresholds.
    worst_age = 0.0
    while time.monotonic() - began < 1.5 * STALE_MS / 1000:
        worst_age = max(worst_age, *(age for _, _, age in _beats(engine, ids).values()))
        time.sleep(0.1)
    last = _beats(engine, ids)
    tries = contender.finish()
    release.set()
    reports = _done(out, PARALLEL, 60)
    children.join_all(60)

    _assert_all_skipped(tries, held, least=2 * PARALLEL)
    assert {t["job_type"] for t in tries} == set(job_types)
    for i in ids:
        status, beat, _ = last[i]
        before = first[i][1]
        assert status == Status.RUNNING
        assert beat is not None and (before is None or beat > before), (before, beat)
    assert worst_age < STALE_MS / 1000, f"a lease went {worst_age:.1f}s without a beat"
    for report in reports.values():
        assert "error" not in report, report
        assert report["lock_lost"] is None, report
        assert report["held_before_finish"], report
        assert (report["status"], report["recorded"]) == (Status.SUCCESS, True), report
    rows = {r.id: r for r in executions(engine) if r.id in ids}
    assert {r.status for r in rows.values()} == {Status.SUCCESS}
    assert all(r.error_message is None for r in rows.values())
    # Each job's data committed with its SUCCESS.
    assert len(_markers(engine, "live_par_")) == PARALLEL


# --- 4. one stuck beat ------------------------------------------------------------------------

JOB_A, JOB_B = "live_stuck_a", "live_stuck_b"


def test_one_stuck_beat_does_not_freeze_the_other_leases(
    pg_url: URL, pg_engine: Engine, children: Children
) -> None:
    """Defect: one beat stuck on a locked row froze the beats of every lease of its process."""
    engine = pg_engine
    heartbeat_ms = 300
    contender = _start_contender(children, pg_url, [JOB_B], heartbeat_ms=heartbeat_ms)
    release, out, held = _hold_in_child(
        children, pg_url, [JOB_A, JOB_B], heartbeat_ms=heartbeat_ms, pool="default"
    )
    a, b = held[JOB_A], held[JOB_B]
    wait_for(lambda: all(hb for _, hb, _ in _beats(engine, [a, b]).values()), 10, "first beats")
    contender.go.set()
    samples: list[dict[int, tuple[str, datetime | None, float]]] = []
    locked_for_s = 3 * STALE_MS / 1000
    with engine.connect() as outside:
        # An operator's (or a migration's) transaction sits on A's row for three thresholds.
        outside.execute(
            text("SELECT id FROM job_execution WHERE id = :id FOR UPDATE"), {"id": a}
        ).one()
        locked = time.monotonic()
        while time.monotonic() - locked < locked_for_s:
            samples.append(_beats(engine, [a, b]))
            time.sleep(0.25)
        outside.rollback()
    # A's beats get through again once its row is free.
    a_locked_beat = samples[-1][a][1]
    wait_for(lambda: _beats(engine, [a])[a][1] != a_locked_beat, 5, "A's beats to resume")
    tries = contender.finish()
    release.set()
    reports = _done(out, 2, 30)
    children.join_all(60)

    _assert_all_skipped(tries, {JOB_B: b}, least=5)
    # While A's row was locked, B kept beating (its beat age stayed under the threshold and its
    # heartbeat_at moved on) and A's beats were skipped, not waited for.
    b_beats = [beat for s in samples if (beat := s[b][1]) is not None]
    assert len(b_beats) == len(samples)
    assert all(s[b][2] < STALE_MS / 1000 for s in samples), [s[b] for s in samples]
    assert len(set(b_beats)) >= 5, f"B's heartbeat hardly moved while A was locked: {b_beats}"
    assert b_beats == sorted(b_beats), b_beats
    # A beat in flight as the outside transaction asked for the row committed before it got it.
    assert len({s[a][1] for s in samples}) == 1, [s[a] for s in samples]
    assert samples[-1][a][2] > STALE_MS / 1000, "A's row was never left without beats"
    for job_type in (JOB_A, JOB_B):
        report = reports[job_type]
        assert "error" not in report, report
        assert report["lock_lost"] is None, report
        assert (report["status"], report["recorded"]) == (Status.SUCCESS, True), report
    rows = {r.id: r for r in executions(engine)}
    assert (rows[a].status, rows[b].status) == (Status.SUCCESS, Status.SUCCESS)
    assert rows[a].error_message is None and rows[b].error_message is None
