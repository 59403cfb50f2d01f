"""7. One stuck beat: 20 leases held at once in one process while one lease's row is locked by an
outside transaction for three thresholds, and another process keeps trying to take the other 19.

Correct when no lease is lost: the blocked row's beats are skipped (its row lock is someone
else's), the other leases keep beating, every contender is SKIPPED, and all 20 end SUCCESS.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine, text

from bench import dbs
from bench.context import Context
from bench.report import Row, check
from prefect_nightly_jobs import LockAcquired, LockPolicy, Status, acquire_job_lock
from prefect_nightly_jobs.lease import Lease

LEASES = 20
POLICY = LockPolicy(stale_after_ms=2_000, heartbeat_every_ms=300)
BLOCKED_S = 3 * POLICY.stale_after_ms / 1000


def _hold_row(engine: Engine, execution_id: int, seconds: float, held: threading.Event) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("SELECT id FROM job_execution WHERE id = :id FOR UPDATE"), {"id": execution_id}
        )
        held.set()
        time.sleep(seconds)


def run(ctx: Context) -> list[Row]:
    with dbs.pg_database() as url, dbs.engine_for(url) as engine, dbs.engine_for(url) as other:
        leases: list[Lease] = []
        for i in range(LEASES):
            result = acquire_job_lock(engine, f"bench_stuck_{i}", policy=POLICY)
            check(isinstance(result, LockAcquired), f"lease {i} not acquired: {result}")
            assert isinstance(result, LockAcquired)
            leases.append(result.lease.__enter__())
        held = threading.Event()
        blocker = threading.Thread(
            target=_hold_row, args=(other, leases[0].execution.id, BLOCKED_S, held)
        )
        blocker.start()
        check(held.wait(10), "the outside transaction did not lock the row")
        attempts = skipped = 0
        while blocker.is_alive():
            for i in range(1, LEASES):
                attempts += 1
                skipped += not acquire_job_lock(other, f"bench_stuck_{i}", policy=POLICY).acquired
            time.sleep(0.2)
        blocker.join()
        time.sleep(POLICY.heartbeat_every_ms * 2 / 1000)  # the blocked lease beats again
        held_after = sum(lease.still_held() for lease in leases)
        for lease in leases:
            lease.__exit__(None, None, None)
        recorded = sum(
            1
            for lease in leases
            if lease.outcome is not None
            and lease.outcome.recorded
            and lease.outcome.status == Status.SUCCESS
        )
    lost = LEASES - recorded
    check(skipped == attempts, f"{attempts - skipped} of {attempts} contenders took a live lease")
    return [
        Row(
            key="7",
            what=f"{LEASES} leases in one process, one row locked {BLOCKED_S:g}s (3 thresholds)",
            result=f"{lost} lost",
            reference=f"{attempts} contender attempts, all SKIPPED; {held_after} still held",
            ratio=float(lost),
            target=0.0,
            unit="lost",
            note="a lost lease is one not ended SUCCESS by its own fenced write",
            data={"lost": lost, "attempts": attempts, "skipped": skipped},
        )
    ]
