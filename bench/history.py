"""5. History growth: acquire + finish p50 with 0, 100,000 and 1,000,000 rows in job_execution.

Three databases are bulk-loaded with ``generate_series`` (50 job types, 85 % SUCCESS, 9 % SKIPPED,
6 % FAILURE with messages, periods and timestamps spread over years, owners and Prefect ids), then
VACUUM ANALYZEd as autovacuum would have done. The measured job type has its share of that history
(1/50). Two paths are measured, interleaved across the three databases in blocks: the plain lock,
and the lock with the once-per-period pre-check (a new period each time, so it always runs).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from functools import partial
from itertools import count

from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import URL

from bench import dbs
from bench.context import Context
from bench.lock_roundtrip import lock_cycle
from bench.report import Row, check, fmt_ms
from bench.stats import interleave, summary
from prefect_nightly_jobs import LockPolicy, Status, acquire_job_lock, already_succeeded_for_period
from prefect_nightly_jobs.database import make_engine
from prefect_nightly_jobs.models import job_execution

SIZES = (0, 100_000, 1_000_000)
JOB = "job_07"  # one of the 50 loaded job types
PRE = "job_08"
TARGET = 1.2

_LOAD = text(
    """
    INSERT INTO job_execution (job_type, status, period, started_at, heartbeat_at, completed_at,
                               error_message, owner, flow_run_id, task_run_id, attempt)
    SELECT 'job_' || lpad((g % 50)::text, 2, '0'),
           s.status,
           date '2000-01-01' + (g / 150),
           t.started,
           CASE WHEN g % 3 = 0 THEN t.started + interval '60 seconds' END,
           t.started + (random() * interval '10 minutes'),
           CASE s.status
               WHEN 'FAILURE' THEN 'RuntimeError: upstream API answered 503 (request ' || g || ')'
               WHEN 'SKIPPED' THEN 'already succeeded for period '
                                   || (date '2000-01-01' + (g / 150))::text
           END,
           'worker-' || (g % 7) || ':' || (1000 + g % 5000),
           md5(g::text)::uuid::text,
           md5((g + 1)::text)::uuid::text,
           1 + (g % 20 = 0)::int
    FROM generate_series(1, :n) AS g,
         LATERAL (SELECT CASE WHEN g % 100 < 85 THEN 'SUCCESS'
                              WHEN g % 100 < 94 THEN 'SKIPPED'
                              ELSE 'FAILURE' END AS status) AS s,
         LATERAL (SELECT timestamptz '2000-01-01 00:00:00+00' + (g / 150) * interval '1 day'
                         + (random() * interval '1 hour') AS started) AS t
    """
)


def load(url: URL, rows: int) -> None:
    with dbs.engine_for(url) as engine:
        if rows:
            with engine.begin() as conn:
                conn.execute(_LOAD, {"n": rows})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE job_execution")
        with engine.connect() as conn:
            found = conn.execute(select(func.count()).select_from(job_execution)).scalar_one()
    check(found == rows, f"bulk load: expected {rows} rows, found {found}")


def precheck_cycle(engine: Engine, policy: LockPolicy, periods: count[int]) -> None:
    """The nightly shape: once-per-period pre-check on a period with no SUCCESS yet."""
    period = date(2100, 1, 1) + timedelta(days=next(periods))
    result = acquire_job_lock(
        engine, PRE, policy=policy, period=period, pre_check=already_succeeded_for_period
    )
    if not result.acquired:
        raise AssertionError(f"{PRE}: pre-check skipped a new period {period}: {result.reason}")
    with result.lease:
        pass


def _new_rows(engine: Engine, job_type: str, since: date | None = None) -> dict[str, int]:
    where = [job_execution.c.job_type == job_type, job_execution.c.owner.not_like("worker-%")]
    with engine.connect() as conn:
        rows = conn.execute(
            select(job_execution.c.status, func.count()).where(*where).group_by("status")
        ).all()
    return {str(s): int(n) for s, n in rows}


def run(ctx: Context) -> list[Row]:
    policy = LockPolicy()
    iterations = max(ctx.iterations // 2, 100)
    with (
        dbs.pg_database() as u0,
        dbs.pg_database() as u1,
        dbs.pg_database() as u2,
    ):
        urls = dict(zip(SIZES, (u0, u1, u2), strict=True))
        for size, url in urls.items():
            load(url, size)
        engines = {size: make_engine(url) for size, url in urls.items()}
        try:
            contenders: dict[str, Callable[[], object]] = {}
            for size, engine in engines.items():
                contenders[f"plain/{size}"] = partial(lock_cycle, engine, JOB, policy)
                contenders[f"pre/{size}"] = partial(precheck_cycle, engine, policy, count())
            interleave(contenders, ctx.warmup, block=25)
            samples = interleave(contenders, iterations, block=25)
            total = ctx.warmup + iterations
            for size, engine in engines.items():
                for job in (JOB, PRE):
                    got = _new_rows(engine, job)
                    check(
                        got == {Status.SUCCESS.value: total},
                        f"{size} rows, {job}: expected {total} new SUCCESS rows, found {got}",
                    )
        finally:
            for engine in engines.values():
                engine.dispose()
    rows = []
    for kind, label in (("plain", "lock"), ("pre", "lock + once-per-period pre-check")):
        stats = {size: summary(samples[f"{kind}/{size}"]) for size in SIZES}
        empty, million = stats[0]["p50"], stats[1_000_000]["p50"]
        rows.append(
            Row(
                key="5" if kind == "plain" else "5p",
                what=f"{label}, p50 at 0 / 100k / 1M history rows (n={iterations})",
                result=" / ".join(fmt_ms(stats[s]["p50"]) for s in SIZES),
                reference=f"empty {fmt_ms(empty)}",
                ratio=million / empty,
                target=TARGET,
                data={str(s): stats[s] for s in SIZES},
            )
        )
    return rows
