"""A held lock: the RUNNING execution, its heartbeat, and the fenced final status."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Literal, Self

from sqlalchemy import Connection, Engine, bindparam, exc, select, update

from prefect_nightly_jobs import interrupts
from prefect_nightly_jobs.clock import db_now
from prefect_nightly_jobs.database import describe_db_error, one_statement
from prefect_nightly_jobs.errors import FinalStatusNotRecordedError, LockLostError
from prefect_nightly_jobs.heartbeat import Heartbeat
from prefect_nightly_jobs.liveness import HeldLease
from prefect_nightly_jobs.models import ERROR_MESSAGE_LIMIT, Status, status_is
from prefect_nightly_jobs.models import job_execution as _exec
from prefect_nightly_jobs.settings import DEFAULT_STALE_MS, mask_url

log = logging.getLogger("prefect_nightly_jobs.lease")
# Fenced: only a row that is still this run's and RUNNING gets its final status.
_FINISH = (
    update(_exec)
    .where(_exec.c.id == bindparam("execution_id"), status_is(Status.RUNNING))
    .values(completed_at=db_now())
)
_RETRY_FIRST_S = 0.1
_RETRY_MAX_S = 2.0


def clean_message(text: str, limit: int = ERROR_MESSAGE_LIMIT) -> str:
    """Make any exception text storable: valid UTF-8, no NUL (PostgreSQL refuses it), no URL
    password (the row is shown to operators), bounded."""
    # Only what can be stored is cleaned (plus room for a URL that straddles the cut), so a
    # megabyte of text costs no more than a page.
    window = text[: limit + 256]
    safe = mask_url(window.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\\0"))
    if len(safe) <= limit and len(window) == len(text):
        return safe
    keep = limit - 40
    dropped = len(safe) - keep + len(text) - len(window)
    return safe[:keep] + f" … [truncated {dropped} characters]"


def describe_exception(err: BaseException) -> str:
    """``Type: message`` for the row, even for an exception whose ``__str__`` raises: the final
    status must never depend on the job's exception being printable."""
    try:
        text = str(err)
    except Exception:  # noqa: BLE001 - whatever a foreign __str__ raises, the row gets ended
        text = "<exception str() failed>"
    return f"{type(err).__name__}: {text}"


@dataclass(frozen=True)
class LockPolicy:
    """Timing of the lock: when a silent RUNNING row is stale, and how often a live one beats."""

    stale_after_ms: int = DEFAULT_STALE_MS
    heartbeat_every_ms: int = DEFAULT_STALE_MS // 5

    def __post_init__(self) -> None:
        if self.stale_after_ms <= 0 or not 0 < self.heartbeat_every_ms * 2 < self.stale_after_ms:
            raise ValueError(
                "heartbeat_every_ms must be positive and less than half of stale_after_ms"
            )

    @property
    def finish_retry_s(self) -> float:
        # Retrying longer than the threshold is pointless: by then the row may be reaped anyway.
        return self.stale_after_ms / 1000.0


@dataclass(frozen=True)
class Execution:
    id: int
    job_type: str
    period: date | None
    started_at: datetime


class Finish(StrEnum):
    """How the final write went."""

    RECORDED = "recorded"
    LOCK_LOST = "lock_lost"  # the row was no longer this run's (reaped or released)
    UNREACHABLE = "unreachable"  # the database could not be reached within the threshold


@dataclass(frozen=True)
class FinishOutcome:
    """The run's final status; ``detail`` says why it was not recorded, ``message`` is the text
    that the row holds (or would hold) for a FAILURE."""

    status: Status
    result: Finish = Finish.RECORDED
    detail: str = ""
    message: str | None = None

    @property
    def recorded(self) -> bool:
        return self.result == Finish.RECORDED


_Fatal = (exc.OperationalError, exc.InterfaceError)


class Lease:
    """The RUNNING execution this process holds. Use as a context manager around the job body:
    SUCCESS on return, FAILURE with the message on exception, FAILURE "interrupted" on SIGTERM,
    KeyboardInterrupt or cancellation. Leaving raises ``LockLostError`` if the row was taken away,
    ``FinalStatusNotRecordedError`` if the database stayed unreachable.
    """

    def __init__(
        self,
        engine: Engine,
        execution: Execution,
        policy: LockPolicy,
        *,
        held: HeldLease | None = None,
    ) -> None:
        self.engine = engine
        self.execution = execution
        self.policy = policy
        self.label = f"[{execution.job_type}]"
        self._held = held
        self._heartbeat: Heartbeat | None = None
        self._finished: FinishOutcome | None = None
        self._finish_lock = threading.Lock()
        self._interrupted = False
        self._success_sent = False
        self._job_connection: Any = None
        self._finishing: threading.Thread | None = None

    # -- liveness -------------------------------------------------------------------------
    def start_heartbeat(self) -> None:
        if self._heartbeat is None:
            self._heartbeat = Heartbeat(
                self.engine.url,
                self.execution.id,
                self.policy.heartbeat_every_ms,
                label=self.label,
            )
            self._heartbeat.start()

    def stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()

    def still_held(self) -> bool:
        """Advice for long jobs: False once the database said the row is no longer ours, or (where
        only heartbeats prove liveness) after a whole threshold without one getting through."""
        if self._finished is not None:
            return False
        hb = self._heartbeat
        if hb is None:
            return True
        if hb.lost.is_set():
            return False
        if self._held is not None:
            return True  # SQLite: nobody can reap the row while this process holds its flock
        return time.monotonic() - hb.last_ok < self.policy.stale_after_ms / 1000.0

    def watch_connection(self, dbapi_connection: Any) -> None:
        """The job's own connection: on SIGTERM it is rolled back first, so that the job's open
        transaction (on SQLite, the write lock) cannot keep the final status from being written."""
        self._job_connection = dbapi_connection

    # -- the end --------------------------------------------------------------------------
    def finish(
        self, status: Literal[Status.SUCCESS, Status.FAILURE], error: str | None = None
    ) -> FinishOutcome:
        """Write the final status only if the row is still RUNNING (fencing); idempotent."""
        with self._finishing_in_this_thread():
            if self._finished is None:
                self.stop_heartbeat()
                self._finished = self._write_final(status, error)
                self._release()
            return self._finished

    @contextlib.contextmanager
    def _finishing_in_this_thread(self) -> Iterator[None]:
        """Hold the finish lock; a SIGTERM that arrives meanwhile in this thread waits for the end
        of the write (see ``interrupts``) instead of deadlocking on this lock."""
        with self._finish_lock:
            self._finishing = threading.current_thread()
            try:
                yield
            finally:
                self._finishing = None
        interrupts.deliver_deferred()

    def finishing_here(self) -> bool:
        """Whether the current thread is in the middle of writing this lease's final status."""
        return self._finishing is threading.current_thread()

    def _release(self) -> None:
        if self._held is not None:
            self._held.release()

    def _current(self, conn: Connection) -> tuple[str, str]:
        row = conn.execute(
            select(_exec.c.status, _exec.c.error_message).where(_exec.c.id == self.execution.id)
        ).first()
        return (row.status, row.error_message or "") if row is not None else ("gone", "")

    def _settled(self, status: Status, current: tuple[str, str]) -> FinishOutcome:
        """The fenced write found the row already final: say what happened to it."""
        now, message = current
        if now == Status.SUCCESS and self._success_sent:
            # Only this run writes SUCCESS on its row: our commit landed, its reply was lost.
            log.warning("%s the SUCCESS commit's reply was lost; read back: SUCCESS", self.label)
            return FinishOutcome(Status.SUCCESS)
        detail = f"lock lost: execution {self.execution.id} is already {now}"
        detail += f": {message}" if message else ""
        if not self._interrupted:
            log.error("%s %s; this run's %s was not recorded", self.label, detail, status)
        return FinishOutcome(status, Finish.LOCK_LOST, detail, detail)

    def _write_final(self, status: Status, error: str | None) -> FinishOutcome:
        message = clean_message(error) if error is not None else None
        params = {
            "execution_id": self.execution.id,
            "status": status.value,
            "error_message": message,
        }
        started = time.monotonic()
        deadline = started + self.policy.finish_retry_s
        delay = _RETRY_FIRST_S
        while True:
            try:
                with one_statement(self.engine) as conn:
                    if conn.execute(_FINISH, params).rowcount == 1:
                        return FinishOutcome(status, message=message)
                    current = self._current(conn)
                return self._settled(status, current)
            except _Fatal as err:
                reason = describe_db_error(err, self.engine.url)
                if time.monotonic() + delay > deadline or interrupts.signal_pending():
                    detail = (
                        f"final status {status} not recorded: database unreachable for "
                        f"{time.monotonic() - started:.0f}s ({reason}); lease given up, the row "
                        "will be reaped as stale"
                    )
                    log.error("%s %s", self.label, detail)
                    return FinishOutcome(status, Finish.UNREACHABLE, detail, detail)
                log.warning(
                    "%s recording %s failed, retrying in %.1fs: %s",
                    self.label,
                    status,
                    delay,
                    reason,
                )
                time.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)

    def succeed_with(self, conn: Connection, commit: Callable[[], None]) -> FinishOutcome:
        """Write SUCCESS inside the caller's open transaction on ``conn``, then ``commit()`` it.

        The job's own writes and its SUCCESS commit together or not at all: a run whose row was
        reaped or released, even a moment ago, gets a LOCK_LOST outcome and must roll back instead
        of committing work done without the lock. A commit whose reply is lost is resolved by
        reading the row back; if that is impossible too, the exception propagates and leaving the
        lease resolves it (the fenced FAILURE write finds SUCCESS if the commit landed).
        """
        with self._finishing_in_this_thread():
            if self._finished is not None:
                return self._finished
            self.stop_heartbeat()
            params = {
                "execution_id": self.execution.id,
                "status": Status.SUCCESS.value,
                "error_message": None,
            }
            if conn.execute(_FINISH, params).rowcount != 1:
                self._finished = self._settled(Status.SUCCESS, self._current(conn))
                self._release()
                return self._finished
            self._success_sent = True
            try:
                commit()
            except _Fatal:
                if self._read_back() != Status.SUCCESS:
                    raise
                log.warning(
                    "%s the SUCCESS commit's reply was lost; read back: SUCCESS", self.label
                )
            self._finished = FinishOutcome(Status.SUCCESS)
            self._release()
            return self._finished

    def _read_back(self) -> str | None:
        """The row's status after an ambiguous commit, or None if the database stays away."""
        deadline = time.monotonic() + self.policy.finish_retry_s
        delay = _RETRY_FIRST_S
        while True:
            try:
                with self.engine.connect() as conn:
                    status, _ = self._current(conn)
                    conn.rollback()
                    return status
            except _Fatal:
                if time.monotonic() + delay > deadline or interrupts.signal_pending():
                    return None
                time.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)

    def succeed(self) -> FinishOutcome:
        return self.finish(Status.SUCCESS)

    def fail(self, error: str) -> FinishOutcome:
        return self.finish(Status.FAILURE, error)

    def interrupt(self, why: str = "interrupted") -> FinishOutcome:
        """Called on SIGTERM (from any thread): end the row now, before the process goes away."""
        self._interrupted = True
        self._abort_job_transaction()
        return self.finish(Status.FAILURE, why)

    def _abort_job_transaction(self) -> None:
        job = self._job_connection
        try:
            if isinstance(job, sqlite3.Connection):
                job.interrupt()  # a statement in progress, if any, ends now
                job.rollback()  # and the write lock goes with the transaction
            elif job is not None:
                job.cancel()  # psycopg: thread-safe; the transaction dies with the process
        except Exception as err:  # noqa: BLE001 - the final status matters more than this
            log.warning("%s could not abort the job's transaction: %s", self.label, err)

    @property
    def outcome(self) -> FinishOutcome | None:
        return self._finished

    def __enter__(self) -> Self:
        interrupts.register(self)
        self.start_heartbeat()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        interrupts.unregister(self)
        if exc_value is None:
            outcome = self.finish(Status.SUCCESS)
        elif not interrupts.is_interruption(exc_value):
            outcome = self.finish(Status.FAILURE, describe_exception(exc_value))
        else:  # KeyboardInterrupt, asyncio cancellation, Prefect's TerminationSignal
            self._interrupted = True
            outcome = self.finish(Status.FAILURE, f"interrupted ({type(exc_value).__name__})")
        if self._interrupted or outcome.recorded:
            return
        if outcome.result == Finish.LOCK_LOST:
            raise LockLostError(outcome.detail) from exc_value
        raise FinalStatusNotRecordedError(outcome.detail) from exc_value
