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

from jobs import interrupts
from jobs.database import make_engine
from jobs.errors import LockLostError
from jobs.lease import Lease, LockPolicy
from jobs.lock import acquire_job_lock

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
        outcome = lease.outcome
        assert outcome is not None
        out.put(
            {
                "event": "done",
                "recorded": outcome.recorded,
                "status": str(outcome.status),
                "detail": outcome.detail,
                "lock_lost": lock_lost,
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
