"""Code for child processes (multiprocessing "spawn"): importable by module path."""

from __future__ import annotations

import os
import time
from multiprocessing.synchronize import Barrier, Event
from typing import Any

from sqlalchemy import text

from prefect_nightly_jobs import LockPolicy, acquire_job_lock
from prefect_nightly_jobs.database import make_engine

WAIT_S = 60.0  # every wait in a child is bounded: a hang fails the test instead of stalling CI


def race_rounds(  # noqa: PLR0917 - multiprocessing passes arguments by position
    url: str,
    job_type: str,
    rounds: int,
    start: Barrier,
    decided: Barrier,
    results: Any,
) -> None:
    """Each round: everybody acquires at once; the winner holds until all have decided."""
    engine = make_engine(url, pool_size=1)
    policy = LockPolicy(stale_after_ms=60_000, heartbeat_every_ms=10_000)
    try:
        for round_no in range(rounds):
            start.wait(WAIT_S)
            result = acquire_job_lock(engine, job_type, policy=policy)
            decided.wait(WAIT_S)
            if result.acquired:
                result.lease.succeed()
            results.put((round_no, os.getpid(), result.acquired))
            decided.wait(WAIT_S)  # nobody starts the next round before the winner finished
    finally:
        engine.dispose()


def fuzz_counter(url: str, job_type: str, iterations: int, start: Barrier, results: Any) -> None:
    """ShedLock-style fuzz: under the lock, read a counter, pause, write it back plus one.

    Read and write are separate transactions: only mutual exclusion keeps the count right.
    """
    engine = make_engine(url, pool_size=2)
    policy = LockPolicy(stale_after_ms=60_000, heartbeat_every_ms=10_000)
    acquired = skipped = 0
    try:
        start.wait(WAIT_S)
        for _ in range(iterations):
            result = acquire_job_lock(engine, job_type, policy=policy)
            if not result.acquired:
                skipped += 1
                continue
            with result.lease:
                with engine.begin() as conn:
                    value = conn.execute(text("SELECT value FROM fuzz_counter")).scalar_one()
                time.sleep(0.002)
                with engine.begin() as conn:
                    conn.execute(text("UPDATE fuzz_counter SET value = :v"), {"v": value + 1})
            acquired += 1
        results.put((acquired, skipped))
    finally:
        engine.dispose()


def hold_lock_forever(
    url: str, job_type: str, stale_ms: int, heartbeat_ms: int, ready: Event
) -> None:
    """Acquire with a live heartbeat, announce it, then sleep until killed."""
    engine = make_engine(url, pool_size=2)
    result = acquire_job_lock(
        engine,
        job_type,
        policy=LockPolicy(stale_after_ms=stale_ms, heartbeat_every_ms=heartbeat_ms),
    )
    if not result.acquired:
        raise SystemExit(f"expected to acquire, got {result.reason}")
    result.lease.start_heartbeat()
    ready.set()
    time.sleep(WAIT_S)
