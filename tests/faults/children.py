"""Entry points of the worker processes that the fault tests start (spawn: importable, picklable).

Each child reports what it saw as dicts on a queue; every wait inside a child is bounded so that a
lost parent never leaves a child behind.
"""

from __future__ import annotations

import logging
import threading
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from typing import Any

from prefect_nightly_jobs import interrupts
from prefect_nightly_jobs.database import make_engine
from prefect_nightly_jobs.errors import FinalStatusNotRecordedError, LockLostError
from prefect_nightly_jobs.lease import Lease, LockPolicy
from prefect_nightly_jobs.lock import acquire_job_lock

CHILD_LIMIT_S = 120.0  # no child outlives a stuck test by more than this


def _logging(log_path: str | None) -> None:
    if log_path:
        logging.basicConfig(
            filename=log_path, level=logging.INFO, format="%(name)s %(levelname)s %(message)s"
        )


def _heartbeat_stats(lease: Lease) -> dict[str, int]:
    hb = lease._heartbeat  # the test wants to see what the thread went through
    return {"hb_beats": hb.beats, "hb_failures": hb.failures} if hb else {}


def hold(
    *,
    url: str,
    job_type: str,
    stale_ms: int,
    heartbeat_ms: int,
    started: Event,
    release: Event,
    out: Queue[dict[str, Any]],
    log_path: str | None = None,
) -> None:
    """Take the lock and run a body that waits for ``release``.

    Reports ``started``, then ``not_held`` the first time ``still_held()`` turns False, then
    ``done`` with the finish outcome and whether leaving the lease raised ``LockLostError``.
    """
    _logging(log_path)
    engine = make_engine(url)
    try:
        result = acquire_job_lock(engine, job_type, policy=LockPolicy(stale_ms, heartbeat_ms))
        if not result.acquired:
            out.put({"event": "not_acquired", "reason": result.reason})
            return
        lease = result.lease
        lock_lost: str | None = None
        not_recorded: str | None = None
        try:
            with lease:
                out.put({"event": "started", "id": lease.execution.id})
                started.set()
                reported = False
                deadline = time.monotonic() + CHILD_LIMIT_S
                while not release.wait(0.02) and time.monotonic() < deadline:
                    if not reported and not lease.still_held():
                        reported = True
                        out.put({"event": "not_held"})
        except LockLostError as err:
            lock_lost = str(err)
        except FinalStatusNotRecordedError as err:
            not_recorded = str(err)
        outcome = lease.outcome
        assert outcome is not None
        out.put(
            {
                "event": "done",
                "recorded": outcome.recorded,
                "status": str(outcome.status),
                "detail": outcome.detail,
                "lock_lost": lock_lost,
                "not_recorded": not_recorded,
                **_heartbeat_stats(lease),
            }
        )
    finally:
        engine.dispose()


def contend(
    *,
    url: str,
    job_type: str,
    stale_ms: int,
    heartbeat_ms: int,
    barrier: Barrier | None,
    attempts: int,
    spacing_s: float,
    out: Queue[dict[str, Any]],
) -> None:
    """Try to take the lock ``attempts`` times; a win is finished at once and reported."""
    engine = make_engine(url)
    try:
        if barrier is not None:
            barrier.wait(60)
        for i in range(attempts):
            if i:
                time.sleep(spacing_s)
            result = acquire_job_lock(engine, job_type, policy=LockPolicy(stale_ms, heartbeat_ms))
            if result.acquired:
                result.lease.succeed()
                out.put({"event": "acquired", "id": result.execution.id})
            else:
                out.put(
                    {
                        "event": "skipped",
                        "reason": result.reason,
                        "kind": result.kind,
                        "id": result.skipped_execution_id,
                    }
                )
    finally:
        engine.dispose()


def acquire_until_won(
    *,
    url: str,
    job_type: str,
    stale_ms: int,
    heartbeat_ms: int,
    out: Queue[dict[str, Any]],
    limit_s: float = 30.0,
) -> None:
    """Poll the lock until it is won (reaping a stale holder), then finish the run as SUCCESS."""
    engine = make_engine(url)
    try:
        skipped = 0
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            result = acquire_job_lock(engine, job_type, policy=LockPolicy(stale_ms, heartbeat_ms))
            if result.acquired:
                with result.lease:
                    pass
                out.put({"event": "acquired", "id": result.execution.id, "skipped": skipped})
                return
            skipped += 1
            time.sleep(0.05)
        out.put({"event": "gave_up", "skipped": skipped})
    finally:
        engine.dispose()


def hold_for_sigterm(
    *,
    url: str,
    job_type: str,
    stale_ms: int,
    heartbeat_ms: int,
    where: str,
    out: Queue[dict[str, Any]],
    install_first: bool = False,
    log_path: str | None = None,
) -> None:
    """Hold a lease until killed; ``where`` places the body (and the lease) in different threads.

    - ``main``: lease and body in the main thread;
    - ``body_thread``: lease entered in the main thread, body in a worker thread the main joins;
    - ``lease_thread``: lease entered and body run in a worker thread (a thread-pool task runner),
      after the main thread called ``interrupts.install()`` if ``install_first``.
    """
    _logging(log_path)
    if install_first:
        interrupts.install()
    engine = make_engine(url)
    policy = LockPolicy(stale_ms, heartbeat_ms)

    def body() -> None:
        deadline = time.monotonic() + CHILD_LIMIT_S
        while time.monotonic() < deadline:
            time.sleep(0.05)

    def leased_body() -> None:
        result = acquire_job_lock(engine, job_type, policy=policy)
        assert result.acquired
        with result.lease:
            out.put({"event": "started", "id": result.execution.id})
            body()

    if where == "lease_thread":
        worker = threading.Thread(target=leased_body, name="job-body")
        worker.start()
        worker.join(CHILD_LIMIT_S)
        return
    result = acquire_job_lock(engine, job_type, policy=policy)
    assert result.acquired
    with result.lease:
        out.put({"event": "started", "id": result.execution.id})
        if where == "main":
            body()
        else:
            worker = threading.Thread(target=body, name="job-body", daemon=True)
            worker.start()
            worker.join(CHILD_LIMIT_S)


# --- liveness v2 (tests/faults/test_liveness_v2.py) ---------------------------------------------


def _marker(job_type: str, execution_id: int, what: str) -> Any:
    """A row of the application's own data, written by a job body in its session."""
    from datetime import date

    from sqlalchemy import insert

    from jobs.models import DailyEventRollup

    return insert(DailyEventRollup).values(
        day=date(2026, 11, 28),
        kind=f"{job_type}:{execution_id}:{what}"[:50],
        event_count=1,
        amount_cents=0,
    )


def contend_while(
    *,
    url: str,
    job_types: list[str],
    stale_ms: int,
    heartbeat_ms: int,
    spacing_s: float,
    ready: Event,
    go: Event,
    stop: Event,
    stopped: Event,
    out: Queue[dict[str, Any]],
    limit_s: float = 60.0,
) -> None:
    """Once ``go`` is set, try every job type of ``job_types`` every ``spacing_s`` until ``stop``.

    Sets ``ready`` once imported and connected, ``stopped`` when done; reports one ``stopped``
    event with every attempt (a win is finished at once, as SUCCESS) and the error, if any.
    """
    from sqlalchemy import text

    engine = make_engine(url)
    policy = LockPolicy(stale_ms, heartbeat_ms)
    tries: list[dict[str, Any]] = []
    error: str | None = None
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        ready.set()
        if not go.wait(limit_s):
            error = "never told to go"
            return
        deadline = time.monotonic() + limit_s
        while not stop.is_set() and time.monotonic() < deadline:
            for job_type in job_types:
                began = time.monotonic()
                result = acquire_job_lock(engine, job_type, policy=policy)
                took = round(time.monotonic() - began, 3)
                if result.acquired:
                    result.lease.succeed()
                    tries.append(
                        {"event": "acquired", "job_type": job_type, "id": result.execution.id}
                    )
                else:
                    tries.append(
                        {
                            "event": "skipped",
                            "job_type": job_type,
                            "reason": result.reason,
                            "kind": str(result.kind),
                            "id": result.skipped_execution_id,
                            "took_s": took,
                        }
                    )
            stop.wait(spacing_s)
    except BaseException as err:
        error = repr(err)
        raise
    finally:
        out.put({"event": "stopped", "tries": tries, "error": error})
        stopped.set()
        engine.dispose()


def write_then_hold(
    *,
    url: str,
    job_type: str,
    stale_ms: int,
    heartbeat_ms: int,
    out: Queue[dict[str, Any]],
) -> None:
    """A job body as the task runs it (lease, then a session watched by the lease) that
    writes a row and then keeps its write transaction open until the process is killed."""

    from prefect_nightly_jobs.task import job_session  # exactly the task's session

    engine = make_engine(url)
    result = acquire_job_lock(engine, job_type, policy=LockPolicy(stale_ms, heartbeat_ms))
    assert result.acquired
    lease = result.lease
    with lease, job_session(engine, lease) as session:
        session.execute(_marker(job_type, lease.execution.id, "uncommitted"))
        out.put({"event": "written", "id": lease.execution.id})
        deadline = time.monotonic() + CHILD_LIMIT_S
        while time.monotonic() < deadline:
            time.sleep(0.05)
        lease.succeed_with(session.connection(), session.commit)


def hold_parallel(
    *,
    url: str,
    job_types: list[str],
    stale_ms: int,
    heartbeat_ms: int,
    pool: str,
    release: Event,
    out: Queue[dict[str, Any]],
) -> None:
    """One thread per job type (as a thread-pool task runner with MAX_PARALLEL_JOBS runs them):
    each takes its lock, writes a row in its own session and keeps that transaction open until
    ``release``, then commits data and SUCCESS together as the task does.

    ``pool``: ``settings`` builds the engine as production does (MAX_PARALLEL_JOBS = number of
    jobs); ``default`` is make_engine's 5+5 pool, which the ten open sessions exhaust.
    Reports ``started`` per job, then ``done`` per job.
    """
    from pydantic import SecretStr

    from prefect_nightly_jobs.database import engine_from_settings
    from prefect_nightly_jobs.settings import Settings
    from prefect_nightly_jobs.task import job_session

    interrupts.install()  # the leases are entered in worker threads
    if pool == "settings":
        settings = Settings(
            database_url=SecretStr(url),
            stale_job_threshold_ms=stale_ms,
            job_heartbeat_interval_ms=heartbeat_ms,
            max_parallel_jobs=len(job_types),
        )
        engine = engine_from_settings(settings)
    else:
        engine = make_engine(url)
    policy = LockPolicy(stale_ms, heartbeat_ms)

    def run(job_type: str) -> None:
        report: dict[str, Any] = {"event": "done", "job_type": job_type, "lock_lost": None}
        try:
            result = acquire_job_lock(engine, job_type, policy=policy)
            if not result.acquired:
                out.put({"event": "not_acquired", "job_type": job_type, "reason": result.reason})
                return
            lease = result.lease
            report["id"] = lease.execution.id
            try:
                with lease, job_session(engine, lease) as session:
                    session.execute(_marker(job_type, lease.execution.id, "data"))
                    out.put({"event": "started", "job_type": job_type, "id": lease.execution.id})
                    release.wait(CHILD_LIMIT_S)
                    report["held_before_finish"] = lease.still_held()
                    report.update(_heartbeat_stats(lease))
                    if not lease.succeed_with(session.connection(), session.commit).recorded:
                        session.rollback()
            except LockLostError as err:
                report["lock_lost"] = str(err)
            outcome = lease.outcome
            assert outcome is not None
            report.update(
                recorded=outcome.recorded, status=str(outcome.status), detail=outcome.detail
            )
        except BaseException as err:
            report["error"] = repr(err)
            raise
        finally:
            out.put(report)

    workers = [
        threading.Thread(target=run, args=(job_type,), name=f"job-{job_type}")
        for job_type in job_types
    ]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(CHILD_LIMIT_S)
    finally:
        engine.dispose()


# --- fixes of the adversarial review (tests/faults/test_review_v2.py) -------------------------


def _square(x: int) -> int:
    return x * x


_pool_worker: dict[str, Any] = {}  # what a pool worker got from its initializer


def _pool_init(barrier: Barrier) -> None:
    _pool_worker["barrier"] = barrier


def _search(i: int) -> int:
    """Task 0 answers once task 1 runs in the other worker; task 1 works on (until terminated)."""
    _pool_worker["barrier"].wait(10)
    if i:
        time.sleep(30)
    return i


def _finished_report(
    lease: Lease, lock_lost: str | None, not_recorded: str | None
) -> dict[str, Any]:
    outcome = lease.outcome
    assert outcome is not None
    return {
        "event": "done",
        "recorded": outcome.recorded,
        "status": str(outcome.status),
        "detail": outcome.detail,
        "lock_lost": lock_lost,
        "not_recorded": not_recorded,
        **_heartbeat_stats(lease),
    }


def hold_with_fork_pool(
    *,
    url: str,
    job_type: str,
    stale_ms: int,
    heartbeat_ms: int,
    release: Event,
    out: Queue[dict[str, Any]],
) -> None:
    """A body that uses a fork-start ``multiprocessing`` Pool as a context manager (its
    ``__exit__`` terminates the workers: SIGTERM), then waits for ``release``.

    In the pool: a ``map``, then a search whose first answer is enough, so that leaving the block
    surely SIGTERMs a worker still busy (after a bare ``map``, the workers may have ended first).
    Reports ``started``, then ``pooled`` (the pool's results, whether the lease is still held)
    once the pool is closed and its workers are gone, then ``done``.
    """
    import multiprocessing

    fork = multiprocessing.get_context("fork")

    engine = make_engine(url)
    try:
        result = acquire_job_lock(engine, job_type, policy=LockPolicy(stale_ms, heartbeat_ms))
        assert result.acquired
        lease = result.lease
        lock_lost: str | None = None
        not_recorded: str | None = None
        try:
            with lease:
                out.put({"event": "started", "id": lease.execution.id})
                with fork.Pool(2, initializer=_pool_init, initargs=(fork.Barrier(2),)) as pool:
                    squares = pool.map(_square, range(4))
                    first = next(pool.imap_unordered(_search, [0, 1]))
                out.put(
                    {
                        "event": "pooled",
                        "squares": squares,
                        "first": first,
                        "held": lease.still_held(),
                    }
                )
                release.wait(CHILD_LIMIT_S)
        except LockLostError as err:
            lock_lost = str(err)
        except FinalStatusNotRecordedError as err:
            not_recorded = str(err)
        out.put(_finished_report(lease, lock_lost, not_recorded))
    finally:
        engine.dispose()


def _beater_stats(lease: Lease) -> dict[str, Any]:
    hb = lease._heartbeat  # the test wants to see what the heartbeat thread went through
    assert hb is not None
    thread = hb._beater._thread
    return {
        "hb_beats": hb.beats,
        "hb_failures": hb.failures,
        "hb_skipped": hb.skipped,
        "beater_alive": thread is not None and thread.is_alive(),
        "still_held": lease.still_held(),
    }


def hold_on_command(
    *,
    url: str,
    job_types: list[str],
    stale_ms: int,
    heartbeat_ms: int,
    commands: Queue[str],
    out: Queue[dict[str, Any]],
    log_path: str | None = None,
) -> None:
    """Run one job after the other in this process, each holding its lease until told to finish.

    Per job: reports ``started``; answers each ``stats`` command with a ``stats`` event (the
    heartbeat's counters, whether the beater thread is alive, ``still_held()``); on ``silence``
    stops the heartbeat (as when the job's own transaction keeps the beats out of SQLite: only
    the lease's flock proves the job alive) and reports ``silenced``; on ``finish`` leaves the
    lease and reports ``done``.
    """
    import queue

    _logging(log_path)
    engine = make_engine(url)
    try:
        for job_type in job_types:
            result = acquire_job_lock(engine, job_type, policy=LockPolicy(stale_ms, heartbeat_ms))
            if not result.acquired:
                out.put({"event": "not_acquired", "job_type": job_type, "reason": result.reason})
                return
            lease = result.lease
            lock_lost: str | None = None
            not_recorded: str | None = None
            try:
                with lease:
                    out.put({"event": "started", "job_type": job_type, "id": lease.execution.id})
                    deadline = time.monotonic() + CHILD_LIMIT_S
                    while time.monotonic() < deadline:
                        try:
                            command = commands.get(timeout=0.05)
                        except queue.Empty:
                            continue
                        if command == "finish":
                            break
                        if command == "silence":
                            lease.stop_heartbeat()
                            out.put({"event": "silenced", "job_type": job_type})
                            continue
                        out.put({"event": "stats", "job_type": job_type, **_beater_stats(lease)})
            except LockLostError as err:
                lock_lost = str(err)
            except FinalStatusNotRecordedError as err:
                not_recorded = str(err)
            out.put({**_finished_report(lease, lock_lost, not_recorded), "job_type": job_type})
    finally:
        engine.dispose()


def commit_slowly(
    *,
    url: str,
    job_type: str,
    stale_ms: int,
    heartbeat_ms: int,
    commit_s: float,
    out: Queue[dict[str, Any]],
) -> None:
    """A job body as the task runs it (a session watched by the lease, data and SUCCESS
    committed together by ``succeed_with``) whose commit takes ``commit_s`` (a big flush).

    Reports ``committing`` once the commit has begun, and ``returned`` if ``succeed_with`` returns.
    """
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from prefect_nightly_jobs.task import job_session

    engine = make_engine(url)
    result = acquire_job_lock(engine, job_type, policy=LockPolicy(stale_ms, heartbeat_ms))
    assert result.acquired
    lease = result.lease

    def slow_commit(_session: Session) -> None:
        out.put({"event": "committing", "id": lease.execution.id})
        time.sleep(commit_s)

    with lease, job_session(engine, lease) as session:
        event.listen(session, "before_commit", slow_commit)
        session.execute(_marker(job_type, lease.execution.id, "committed"))
        outcome = lease.succeed_with(session.connection(), session.commit)
        out.put({"event": "returned", "status": str(outcome.status), "recorded": outcome.recorded})


def hold_and_fork(
    *,
    url: str,
    job_type: str,
    stale_ms: int,
    heartbeat_ms: int,
    helper_s: float,
    out: Queue[dict[str, Any]],
) -> None:
    """Hold a lease, fork a helper process that lives ``helper_s``, then wait to be killed.

    Reports ``forked`` with the execution id and the helper's pid.
    """
    import os

    engine = make_engine(url)
    result = acquire_job_lock(engine, job_type, policy=LockPolicy(stale_ms, heartbeat_ms))
    assert result.acquired
    lease = result.lease
    with lease:
        pid = os.fork()
        if pid == 0:  # the helper: it only lives on, and never runs any of the parent's code
            try:
                time.sleep(helper_s)
            finally:
                os._exit(0)
        out.put({"event": "forked", "id": lease.execution.id, "helper": pid})
        deadline = time.monotonic() + CHILD_LIMIT_S
        while time.monotonic() < deadline:
            time.sleep(0.05)
