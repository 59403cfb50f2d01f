"""9. Heartbeats of 200 leases held at once in one process: UPDATE statements per interval and
the latency of one beat, on PostgreSQL (9) and on a SQLite file (9s).

Every lease is entered (its heartbeat registered) and held for HOLD_S. The beater's statements are
counted at the cursor (SQLAlchemy's ``before_cursor_execute`` in the heartbeat thread) and each
beat (one UPDATE for every due lease, its commit, and a read of the missing ones if any) is timed.
Correct when every lease was beaten in every interval and all 200 end SUCCESS; the target is one
statement per interval for all leases, not one per lease.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import URL

from bench import dbs
from bench.context import Context
from bench.report import Row, check, fmt_ms
from bench.stats import percentile
from prefect_nightly_jobs import LockAcquired, LockPolicy, Status, acquire_job_lock
from prefect_nightly_jobs.heartbeat import _Beater
from prefect_nightly_jobs.lease import Lease

LEASES = 200
POLICY = LockPolicy(stale_after_ms=5_000, heartbeat_every_ms=250)
HOLD_S = 10.0
TARGET = 1.0  # statements per interval, for all leases together


@contextmanager
def _beats_observed() -> Iterator[dict[str, list[Any]]]:
    """The heartbeat thread's statements (by their first word) and each beat's duration."""
    seen: dict[str, list[Any]] = {"statements": [], "beats": []}

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if threading.current_thread().name.startswith("heartbeat:"):
            seen["statements"].append((time.perf_counter(), statement.split(None, 1)[0].upper()))

    original = _Beater._beat

    def timed(self: _Beater, due: list[Any]) -> None:
        started = time.perf_counter()
        try:
            original(self, due)
        finally:
            if due:
                seen["beats"].append((started, len(due), (time.perf_counter() - started) * 1000.0))

    event.listen(Engine, "before_cursor_execute", on_execute)
    _Beater._beat = timed  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        _Beater._beat = original  # type: ignore[method-assign]
        event.remove(Engine, "before_cursor_execute", on_execute)


def _measure(url: URL, leases_n: int, hold_s: float) -> dict[str, Any]:
    with dbs.engine_for(url, pool_size=5) as engine, _beats_observed() as seen:
        leases: list[Lease] = []
        for i in range(leases_n):
            result = acquire_job_lock(engine, f"bench_beat_{i:03d}", policy=POLICY)
            check(isinstance(result, LockAcquired), f"lease {i} not acquired: {result}")
            assert isinstance(result, LockAcquired)
            leases.append(result.lease.__enter__())
        started = time.perf_counter()
        time.sleep(hold_s)
        held_s = time.perf_counter() - started
        held = sum(lease.still_held() for lease in leases)
        beats = [lease._heartbeat.beats for lease in leases if lease._heartbeat is not None]
        for lease in leases:
            lease.__exit__(None, None, None)
        ended = sum(
            1
            for lease in leases
            if lease.outcome is not None
            and lease.outcome.recorded
            and lease.outcome.status == Status.SUCCESS
        )
    intervals = held_s / (POLICY.heartbeat_every_ms / 1000.0)
    window = started, started + held_s  # all leases held, none being acquired or ended
    kinds = [kind for at, kind in seen["statements"] if window[0] <= at <= window[1]]
    updates = kinds.count("UPDATE")
    check(ended == leases_n and held == leases_n, f"{leases_n - ended} leases not ended SUCCESS")
    check(
        min(beats) >= int(intervals) - 2,
        f"a lease missed beats: {min(beats)} beats in {intervals:.0f} intervals",
    )
    full = [ms for at, n, ms in seen["beats"] if n == leases_n and window[0] <= at <= window[1]]
    check(bool(full), "no beat covered every lease")
    return {
        "intervals": intervals,
        "updates": updates,
        "other_statements": {k: kinds.count(k) for k in sorted(set(kinds)) if k != "UPDATE"},
        "updates_per_s": updates / held_s,
        "per_interval": updates / intervals,
        "beat_ms": full,
        "beat_p50": percentile(full, 50),
        "beat_p99": percentile(full, 99),
        "min_beats": min(beats),
    }


def _row(key: str, backend: str, m: dict[str, Any]) -> Row:
    return Row(
        key=key,
        what=f"{LEASES} leases in one process, {backend}: heartbeat statements, beat latency",
        result=(
            f"{m['updates_per_s']:.1f} UPDATE/s = {m['per_interval']:.2f} per interval; "
            f"beat p50 / p99 {fmt_ms(m['beat_p50'])} / {fmt_ms(m['beat_p99'])}"
        ),
        reference=f"1 interval = {POLICY.heartbeat_every_ms} ms; every lease beaten "
        f"{m['min_beats']}+ times in {m['intervals']:.0f} intervals",
        ratio=m["per_interval"],
        target=TARGET,
        unit="statements/interval",
        data={k: v for k, v in m.items() if k != "beat_ms"} | {"beat_ms": m["beat_ms"][:200]},
    )


def run(ctx: Context) -> list[Row]:
    hold_s = 4.0 if ctx.quick else HOLD_S
    with dbs.pg_database() as url:
        pg = _measure(url, LEASES, hold_s)
    with dbs.sqlite_database() as url:
        lite = _measure(url, LEASES, hold_s)
    rows = [_row("9", "PostgreSQL", pg), _row("9s", "SQLite file", lite)]
    rows[0].note = (
        "the heartbeat thread's statements counted at the cursor while all leases are held; "
        "one beat = one UPDATE of every due lease, then its commit (SQLite also sends the "
        f"BEGIN IMMEDIATE: {lite['other_statements']} besides {lite['updates']} UPDATEs); "
        "beat latency = that UPDATE and commit for all leases"
    )
    return rows
