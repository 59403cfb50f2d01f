"""10. Lock throughput: 64 different job types acquired concurrently from 8 processes, PostgreSQL
vs a SQLite file.

Each process (spawn context, its own engine) owns 8 job types and, once a barrier opens, cycles
through them for DURATION_S: acquire, then finish at once (no body). Different job types never
wait for each other on PostgreSQL; on SQLite every writer shares the database's one write lock.
Correct when every acquisition succeeded (no two processes share a job type) and the table holds
one SUCCESS row per acquisition.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from multiprocessing.synchronize import Barrier
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import URL, make_url

from bench import dbs
from bench.context import Context
from bench.report import BenchError, Row, check
from prefect_nightly_jobs import LockPolicy, Status, acquire_job_lock
from prefect_nightly_jobs.database import make_engine
from prefect_nightly_jobs.models import job_execution

PROCESSES = 8
JOB_TYPES = 64
DURATION_S = 10.0
WAIT_S = 120.0


def _worker(index: int, url_text: str, duration_s: float, start: Barrier, out: Any) -> None:
    per = JOB_TYPES // PROCESSES
    mine = [f"bench_tp_{index * per + k:02d}" for k in range(per)]
    engine = make_engine(make_url(url_text), pool_size=2)
    policy = LockPolicy()
    try:
        for job_type in mine:  # warm: connection, statement cache
            warm = acquire_job_lock(engine, job_type, policy=policy)
            if warm.acquired:
                warm.lease.succeed()
        start.wait(WAIT_S)
        done = refused = 0
        deadline = time.perf_counter() + duration_s
        while time.perf_counter() < deadline:
            result = acquire_job_lock(engine, mine[done % per], policy=policy)
            if result.acquired:
                result.lease.succeed()
                done += 1
            else:
                refused += 1
        out.put((index, done, refused))
    except Exception as err:
        out.put((index, -1, repr(err)))
        start.abort()
    finally:
        engine.dispose()


def _race(url: URL, duration_s: float) -> tuple[int, int]:
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(PROCESSES)
    out = ctx.Queue()
    text = url.render_as_string(hide_password=False)
    workers = [
        ctx.Process(target=_worker, args=(i, text, duration_s, start, out), daemon=True)
        for i in range(PROCESSES)
    ]
    for w in workers:
        w.start()
    done = refused = 0
    try:
        for _ in range(PROCESSES):
            try:
                index, count, extra = out.get(timeout=WAIT_S + duration_s)
            except queue.Empty:
                raise BenchError("lock throughput: a worker never reported") from None
            if count < 0:
                raise BenchError(f"lock throughput: worker {index} failed: {extra}")
            done += count
            refused += extra
        for w in workers:
            w.join(WAIT_S)
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
                w.join(10)
    return done, refused


def _measure(database: Callable[[], AbstractContextManager[URL]], duration_s: float) -> float:
    with database() as url:
        done, refused = _race(url, duration_s)
        with dbs.engine_for(url) as engine, engine.connect() as conn:
            successes = conn.execute(
                select(func.count()).where(job_execution.c.status == Status.SUCCESS.value)
            ).scalar_one()
    check(refused == 0, f"{refused} acquisitions refused: the job types overlap")
    check(successes == done + JOB_TYPES, f"{successes} SUCCESS rows for {done} acquisitions")
    return done / duration_s


def run(ctx: Context) -> list[Row]:
    duration = 3.0 if ctx.quick else DURATION_S
    pg = _measure(dbs.pg_database, duration)
    lite = _measure(dbs.sqlite_database, duration)
    return [
        Row(
            key="10",
            what=f"lock throughput: {JOB_TYPES} job types from {PROCESSES} processes, "
            "PostgreSQL vs SQLite",
            result=f"PostgreSQL {pg:.0f} acquisitions/s",
            reference=f"SQLite file {lite:.0f} acquisitions/s",
            ratio=pg / lite,
            note=(
                f"{duration:g}s per database, each acquisition finished at once (acquire + fenced "
                "SUCCESS); SQLite serializes every writer on one lock"
            ),
            data={"postgresql_per_s": pg, "sqlite_per_s": lite, "seconds": duration},
        )
    ]
