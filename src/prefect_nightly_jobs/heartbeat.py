"""The liveness signal of running executions: beats that the jobs cannot starve.

Per process and database, one beater: a thread with its own engine (one connection, never from the
jobs' pool) that refreshes every lease's heartbeat in one statement per interval. Each statement is
bounded (``statement_timeout``, ``lock_timeout`` and ``tcp_user_timeout`` on PostgreSQL, the busy
timeout on SQLite), and rows locked by someone else are skipped (``SKIP LOCKED``), so one lease's
trouble never stops another's beats and no beat outlives its interval.

A beat that finds a row no longer RUNNING is the database saying the lease is lost. A beat that
cannot get through is only silence: see ``Lease.still_held``.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from sqlalchemy import BigInteger, Engine, bindparam, exc, select, update
from sqlalchemy.engine import URL

from prefect_nightly_jobs.clock import db_now
from prefect_nightly_jobs.database import describe_db_error, is_busy, make_engine, write_transaction
from prefect_nightly_jobs.models import Status, status_is
from prefect_nightly_jobs.models import job_execution as _table

log = logging.getLogger("prefect_nightly_jobs.heartbeat")

# A beater with no lease left keeps its thread and connection this long for the next one.
_LINGER_S = 10.0
# SQLite: a beat waits this long at most for a job that holds the write lock, then skips.
_SQLITE_BUSY_MS = 500
_IDS = bindparam("ids", type_=BigInteger(), expanding=True)
_RUNNING_IDS = select(_table.c.id).where(_table.c.id.in_(_IDS), status_is(Status.RUNNING))
# PostgreSQL: rows whose lock someone else holds (a job finishing, an operator, a reaper) are
# skipped this time instead of making every lease of the process wait.
_BEAT_PG = (
    update(_table)
    .where(_table.c.id.in_(_RUNNING_IDS.with_for_update(skip_locked=True).scalar_subquery()))
    .values(heartbeat_at=db_now())
    .returning(_table.c.id)
)
_BEAT_SQLITE = (
    update(_table)
    .where(_table.c.id.in_(_IDS), status_is(Status.RUNNING))
    .values(heartbeat_at=db_now())
    .returning(_table.c.id)
)


def beat_timeout_ms(interval_ms: int) -> int:
    """How long one beat may take: never longer than its interval (nor than 5 s)."""
    return max(100, min(interval_ms, 5000))


class Heartbeat:
    """One lease's liveness: registered with its database's beater until stopped."""

    def __init__(self, url: URL, execution_id: int, interval_ms: int, *, label: str) -> None:
        self.execution_id = execution_id
        self.interval_ms = interval_ms
        self.label = label
        self.lost = threading.Event()
        self.last_ok = time.monotonic()
        self.beats = 0
        self.skipped = 0
        self.failures = 0
        self._stopped = threading.Event()
        self._beater = _beater_for(url, interval_ms)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def start(self) -> None:
        self._beater.add(self)

    def stop(self) -> None:
        """No beat of this execution is sent after this returns."""
        self._stopped.set()
        self._beater.remove(self)


class _Beater:
    """The thread that beats for every lease of one database and interval in this process."""

    def __init__(self, url: URL, interval_ms: int) -> None:
        self.url = url
        self.interval = interval_ms / 1000.0
        self.timeout_ms = beat_timeout_ms(interval_ms)
        self._leases: dict[int, Heartbeat] = {}
        self._cond = threading.Condition()
        # Held while a beat is in flight, so that remove() can wait for it to end.
        self._in_flight = threading.Lock()
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None
        self._failing = False

    def add(self, heartbeat: Heartbeat) -> None:
        with self._cond:
            self._leases[heartbeat.execution_id] = heartbeat
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name=f"heartbeat:{self.url.database}", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def remove(self, heartbeat: Heartbeat) -> None:
        with self._cond:
            self._leases.pop(heartbeat.execution_id, None)
        # A beat already in flight ends within its timeout; wait for it (bounded, with margin).
        if threading.current_thread() is not self._thread and self._in_flight.acquire(
            timeout=self.timeout_ms / 1000.0 + 5.0
        ):
            self._in_flight.release()

    def _run(self) -> None:
        next_beat = time.monotonic() + self.interval
        while True:
            with self._cond:
                idle_until = time.monotonic() + _LINGER_S
                while not self._leases:
                    left = idle_until - time.monotonic()
                    if left <= 0:
                        self._retire()
                        return
                    self._cond.wait(left)
                    next_beat = time.monotonic() + self.interval
                # add() notifies to end an idle wait, never to beat early.
                while (left := next_beat - time.monotonic()) > 0:
                    self._cond.wait(left)
                due = [hb for hb in self._leases.values() if not hb.stopped]
            next_beat = time.monotonic() + self.interval
            with self._in_flight:
                try:
                    self._beat([hb for hb in due if not hb.stopped])
                except Exception:  # one bad beat must never end every lease's heartbeat
                    log.exception("heartbeat failed unexpectedly; retrying at the next interval")

    def _retire(self) -> None:
        """No lease for a while: close the connection and end the thread (under ``_cond``)."""
        _forget(self)
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        self._thread = None  # the next add() starts a new thread

    def _beat(self, due: list[Heartbeat]) -> None:
        if not due:
            return
        if self._engine is None:
            self._engine = make_engine(
                self.url,
                pool_size=1,
                statement_timeout_ms=self.timeout_ms,
                busy_timeout_ms=min(self.timeout_ms, _SQLITE_BUSY_MS),
            )
        ids = [hb.execution_id for hb in due]
        sent = time.monotonic()
        try:
            beaten, running = self._send(self._engine, ids)
        except exc.DBAPIError as err:  # any driver error (a read-only failover included)
            if is_busy(err):  # SQLite: a job holds the write lock; its flock proves it alive
                for hb in due:
                    hb.skipped += 1
                return
            self._failed(due, describe_db_error(err, self.url))
            return
        if self._failing:
            log.warning("heartbeats recovered for %s", ", ".join(hb.label for hb in due))
            self._failing = False
        for hb in due:
            if hb.execution_id in beaten:
                hb.beats += 1
                hb.last_ok = sent
            elif hb.execution_id in running:
                hb.skipped += 1  # its row is locked by someone else for now
            elif not hb.stopped:
                log.error(
                    "%s lock lost: execution %d is no longer RUNNING (reaped or released)",
                    hb.label,
                    hb.execution_id,
                )
                hb.lost.set()
                self.remove(hb)  # from the beater thread itself: no wait

    @staticmethod
    def _send(engine: Engine, ids: list[int]) -> tuple[set[int], set[int]]:
        """(rows beaten, rows still RUNNING but not beaten)."""
        beat = _BEAT_PG if engine.dialect.name == "postgresql" else _BEAT_SQLITE
        # An explicit transaction, not autocommit: once per interval the round trips cost nothing,
        # and the fault tests hold a beat's COMMIT to keep its rows locked.
        with write_transaction(engine) as conn:
            beaten = set(conn.execute(beat, {"ids": ids}).scalars())
        missing = [i for i in ids if i not in beaten]
        if not missing:
            return beaten, set()
        with engine.connect() as conn:
            running = set(conn.execute(_RUNNING_IDS, {"ids": missing}).scalars())
            conn.rollback()
        return beaten, running

    def _failed(self, due: list[Heartbeat], reason: str) -> None:
        for hb in due:
            hb.failures += 1
        if not self._failing:
            log.warning(
                "heartbeat failed for %s, retrying every %.1fs: %s",
                ", ".join(hb.label for hb in due),
                self.interval,
                reason,
            )
        self._failing = True


_beaters: dict[tuple[URL, int], _Beater] = {}
_guard = threading.Lock()


def _beater_for(url: URL, interval_ms: int) -> _Beater:
    key = (url, interval_ms)  # a URL is an immutable, hashable tuple
    with _guard:
        beater = _beaters.get(key)
        if beater is None:
            beater = _beaters[key] = _Beater(url, interval_ms)
        return beater


def _forget(beater: _Beater) -> None:
    with _guard:
        for key, known in list(_beaters.items()):
            if known is beater:
                del _beaters[key]


def _after_fork_in_child() -> None:
    # A forked child has none of the parent's beater threads.
    global _beaters  # noqa: PLW0603 - the process-wide registry, replaced only after fork
    _beaters = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
