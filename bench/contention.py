"""4. Contention: 32 processes behind a barrier race for one job type, 20 rounds.

Every process (spawn context, its own engine, connection and statement cache warmed by one
acquire of a job type of its own) waits at a barrier; when it opens, all call ``acquire_job_lock``
for the same job type. The winner holds its lease until every process has decided, so a round can
have one winner only if the lock works. A loser's decision latency runs from its own barrier exit
to ``LockNotAcquired`` in hand. Every wait is bounded.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from multiprocessing.synchronize import Barrier
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import URL, make_url

from bench import dbs
from bench.context import Context
from bench.report import BenchError, Row, check, fmt_ms
from bench.stats import summary
from prefect_nightly_jobs import LockPolicy, Status, acquire_job_lock
from prefect_nightly_jobs.database import make_engine
from prefect_nightly_jobs.models import job_execution

PROCESSES = 32
ROUNDS = 20
JOB = "bench_contended"
TARGET_P99_MS = 50.0
WAIT_S = 120.0


def _worker(
    index: int, url_text: str, rounds: int, barriers: tuple[Barrier, Barrier], out: Any
) -> None:
    start, decided = barriers
    policy = LockPolicy()
    engine = make_engine(make_url(url_text), pool_size=2)
    try:
        warm = acquire_job_lock(engine, f"bench_warm_{index}", policy=policy)
        if warm.acquired:
            with warm.lease:
                pass
        for round_no in range(rounds):
            start.wait(WAIT_S)
            began = time.perf_counter()
            result = acquire_job_lock(engine, JOB, policy=policy)
            elapsed_ms = (time.perf_counter() - began) * 1000.0
            out.put((round_no, index, result.acquired, elapsed_ms, getattr(result, "kind", "")))
            if result.acquired:
                with result.lease:
                    decided.wait(WAIT_S)  # hold the lock until every racer has its answer
            else:
                decided.wait(WAIT_S)
    except Exception as err:
        out.put(("error", index, repr(err), 0.0, ""))
        start.abort()
        decided.abort()
    finally:
        engine.dispose()


def race(url: URL, processes: int, rounds: int) -> list[tuple[int, int, bool, float, str]]:
    ctx = mp.get_context("spawn")
    start, decided = ctx.Barrier(processes), ctx.Barrier(processes)
    out = ctx.Queue()
    url_text = url.render_as_string(hide_password=False)
    workers = [
        ctx.Process(target=_worker, args=(i, url_text, rounds, (start, decided), out), daemon=True)
        for i in range(processes)
    ]
    for w in workers:
        w.start()
    results: list[tuple[int, int, bool, float, str]] = []
    deadline = time.monotonic() + WAIT_S + rounds * 10
    try:
        while len(results) < processes * rounds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"contention: only {len(results)} answers before the deadline")
            try:
                item = out.get(timeout=min(remaining, 5.0))
            except queue.Empty:
                if not any(w.is_alive() for w in workers):
                    raise BenchError("contention: every worker exited early") from None
                continue
            if item[0] == "error":
                raise BenchError(f"contention: worker {item[1]} failed: {item[2]}")
            results.append(item)
        for w in workers:
            w.join(WAIT_S)
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
                w.join(10)
    return results


def run(ctx: Context) -> list[Row]:
    processes, rounds = (8, 5) if ctx.quick else (PROCESSES, ROUNDS)
    with dbs.pg_database() as url:
        # Steady state: the job type has run before, so its lock row exists (its very first
        # acquisition creates it, once per database, and makes every racer queue).
        with dbs.engine_for(url) as engine:
            first = acquire_job_lock(engine, JOB, policy=LockPolicy())
            check(first.acquired, "the first acquisition failed")
            if first.acquired:
                with first.lease:
                    pass
        results = race(url, processes, rounds)
        with dbs.engine_for(url) as engine, engine.connect() as conn:
            counts: dict[str, int] = dict(
                conn.execute(
                    select(job_execution.c.status, func.count())
                    .where(job_execution.c.job_type == JOB)
                    .group_by(job_execution.c.status)
                ).all()
            )
    winners_per_round = [0] * rounds
    losers: list[float] = []
    winners: list[float] = []
    for round_no, _index, acquired, elapsed, kind in results:
        if acquired:
            winners_per_round[round_no] += 1
            winners.append(elapsed)
        else:
            check(kind == "already_running", f"a loser was refused for {kind!r}")
            losers.append(elapsed)
    check(
        all(n == 1 for n in winners_per_round),
        f"winners per round must all be 1, got {winners_per_round}",
    )
    expected = {
        Status.SUCCESS.value: rounds + 1,
        Status.SKIPPED.value: rounds * (processes - 1),
    }
    check(counts == expected, f"rows: expected {expected}, found {counts}")
    lose, win = summary(losers), summary(winners)
    per_round = [
        round(max(e for r, _, a, e, _ in results if r == n and not a), 1) for n in range(rounds)
    ]
    return [
        Row(
            key="4",
            what=f"contention: {processes} processes x {rounds} rounds, losers' decision p50 / p99",
            result=f"{fmt_ms(lose['p50'])} / {fmt_ms(lose['p99'])}",
            reference=f"winner p50 {fmt_ms(win['p50'])}; 1 winner in each of {rounds} rounds",
            ratio=lose["p99"],
            target=TARGET_P99_MS,
            unit="ms",
            data={
                "losers_ms": lose,
                "winner_ms": win,
                "winners_per_round": winners_per_round,
                "slowest_loser_per_round_ms": per_round,
            },
        )
    ]
