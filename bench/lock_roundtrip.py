"""1. Lock round trip: acquire + finish with no body, against the raw-psycopg floor.

The floor is the least any database lock of this shape can do with the same driver on the same
table: ``pg_try_advisory_xact_lock`` + INSERT of a RUNNING row (one transaction), then UPDATE to
SUCCESS (a second one). Ours is the product's full path: ``acquire_job_lock`` then ``with lease:``
(which also starts and stops the heartbeat thread) on the product's own engine. Both run in the
same process against the same database, interleaved in blocks so machine noise hits both alike.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import psycopg
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import URL

from bench import dbs
from bench.context import Context
from bench.report import Row, check, fmt_ms
from bench.stats import interleave, summary
from prefect_nightly_jobs import LockPolicy, Status, acquire_job_lock
from prefect_nightly_jobs.models import job_execution

OURS = "bench_roundtrip"
FLOOR = "bench_floor"
TARGET = 1.3

_FLOOR_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext(%s))"
_FLOOR_INSERT = (
    "INSERT INTO job_execution (job_type, status, started_at, owner) "
    "VALUES (%s, 'RUNNING', statement_timestamp(), %s) RETURNING id"
)
_FLOOR_FINISH = (
    "UPDATE job_execution SET status = 'SUCCESS', completed_at = statement_timestamp() "
    "WHERE id = %s AND status = 'RUNNING'"
)


class Floor:
    """The raw-psycopg floor on persistent connections (no pool, no ORM, no checks).

    As specified: lock + INSERT in one transaction, UPDATE in a second one, each committed:
    7 round trips (BEGIN, lock, INSERT, COMMIT, BEGIN, UPDATE, COMMIT). ``tight=True`` sends the
    UPDATE in autocommit, as the product does: 5 round trips (ours takes 4: BEGIN, the INSERT that
    the unique index admits or refuses, COMMIT, then the fenced UPDATE in autocommit).
    """

    def __init__(self, url: URL, *, tight: bool = False) -> None:
        self.conn = psycopg.connect(dbs.libpq_conninfo(url))
        self.finisher = (
            psycopg.connect(dbs.libpq_conninfo(url), autocommit=True) if tight else self.conn
        )

    def __call__(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute(_FLOOR_LOCK, (FLOOR,))
            got = cur.fetchone()
            check(got is not None and got[0] is True, "floor: advisory lock not granted")
            cur.execute(_FLOOR_INSERT, (FLOOR, "bench"))
            row = cur.fetchone()
            check(row is not None, "floor: INSERT returned no id")
            assert row is not None
            self.conn.commit()
        with self.finisher.cursor() as cur:
            cur.execute(_FLOOR_FINISH, (row[0],))
            check(cur.rowcount == 1, "floor: UPDATE to SUCCESS matched no RUNNING row")
        if not self.finisher.autocommit:
            self.finisher.commit()

    def close(self) -> None:
        self.conn.close()
        self.finisher.close()


def lock_cycle(engine: Engine, job_type: str, policy: LockPolicy) -> None:
    """One acquire + finish through the product API, checked."""
    result = acquire_job_lock(engine, job_type, policy=policy)
    if not result.acquired:
        raise AssertionError(f"{job_type}: lock not acquired with nothing running: {result}")
    with result.lease as lease:
        pass
    outcome = lease.outcome
    check(
        outcome is not None and outcome.recorded and outcome.status == Status.SUCCESS,
        f"{job_type}: finish not recorded as SUCCESS: {outcome}",
    )


def status_counts(engine: Engine, job_type: str) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(job_execution.c.status, func.count())
            .where(job_execution.c.job_type == job_type)
            .group_by(job_execution.c.status)
        ).all()
    return {str(status): int(n) for status, n in rows}


def check_all_succeeded(engine: Engine, job_type: str, expected: int) -> None:
    counts = status_counts(engine, job_type)
    check(
        counts == {Status.SUCCESS.value: expected},
        f"{job_type}: expected {expected} SUCCESS rows and nothing else, found {counts}",
    )


def run(ctx: Context) -> list[Row]:
    policy = LockPolicy()
    total = ctx.iterations + ctx.warmup
    rows: list[Row] = []
    with dbs.pg_database() as url, dbs.engine_for(url) as engine:
        floor, tight = Floor(url), Floor(url, tight=True)
        try:
            contenders: dict[str, Callable[[], object]] = {
                "floor": floor,
                "tight": tight,
                "ours": partial(lock_cycle, engine, OURS, policy),
            }
            interleave(contenders, ctx.warmup)
            samples = interleave(contenders, ctx.iterations)
        finally:
            floor.close()
            tight.close()
        check_all_succeeded(engine, OURS, total)
        check_all_succeeded(engine, FLOOR, 2 * total)
    ours, base = summary(samples["ours"]), summary(samples["floor"])
    tight_p50 = summary(samples["tight"])["p50"]
    rows.append(
        Row(
            key="1",
            what=f"lock acquire+finish, PostgreSQL (p50 / p99, n={ctx.iterations})",
            result=f"{fmt_ms(ours['p50'])} / {fmt_ms(ours['p99'])}",
            reference=f"floor {fmt_ms(base['p50'])} / {fmt_ms(base['p99'])}",
            ratio=ours["p50"] / base["p50"],
            target=TARGET,
            note=(
                "floor = raw psycopg, lock + INSERT committed, then UPDATE committed (7 round "
                f"trips); ours takes 4. Against the 5-round-trip floor (UPDATE in autocommit, "
                f"p50 {fmt_ms(tight_p50)}): {ours['p50'] / tight_p50:.2f}x"
            ),
            data={"ours_ms": ours, "floor_ms": base, "tight_floor_ms": summary(samples["tight"])},
        )
    )
    with dbs.sqlite_database() as url, dbs.engine_for(url) as engine:
        contenders = {"sqlite": partial(lock_cycle, engine, OURS, policy)}
        interleave(contenders, ctx.warmup)
        lite = summary(interleave(contenders, ctx.iterations)["sqlite"])
        check_all_succeeded(engine, OURS, total)
    rows.append(
        Row(
            key="1s",
            what=f"lock acquire+finish, SQLite file (p50 / p99, n={ctx.iterations})",
            result=f"{fmt_ms(lite['p50'])} / {fmt_ms(lite['p99'])}",
            reference="no floor",
            data={"ours_ms": lite},
        )
    )
    return rows
