"""A held lock: the RUNNING execution, its heartbeat, and the fenced final status."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from types import TracebackType
from typing import Literal, Self

from sqlalchemy import Connection, Engine, bindparam, exc, select, update

from jobs import interrupts
from jobs.clock import db_now
from jobs.database import describe_db_error, one_statement
from jobs.errors import LockLostError
from jobs.heartbeat import Heartbeat
from jobs.models import ERROR_MESSAGE_LIMIT, Status, status_is
from jobs.models import job_execution as _exec
from jobs.settings import DEFAULT_STALE_MS, mask_url

log = logging.getLogger("jobs.lease")
# Fenced: only a row that is still this run's and RUNNING gets its final status. Built once, as the
# lock's statements are (jobs/lock.py): building it on every finish cost more than its round trip.
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


@dataclass(frozen=True)
class FinishOutcome:
    """``recorded`` is False when the row was no longer ours (fenced) or the database was away."""

    recorded: bool
    status: Status
    detail: str = ""


class Lease:
    """The RUNNING execution this process holds. Use as a context manager around the job body:
    SUCCESS on return, FAILURE with the message on exception, FAILURE "interrupted" on SIGTERM,
    KeyboardInterrupt or cancellation. Leaving raises ``LockLostError`` if the row was taken away.
    """

    def __init__(self, engine: Engine, execution: Execution, policy: LockPolicy) -> None:
        self.engine = engine
        self.execution = execution
        self.policy = policy
        self.label = f"[{execution.job_type}]"
        self._heartbeat: Heartbeat | None = None
        self._finished: FinishOutcome | None = None
        self._finish_lock = threading.Lock()
        self._interrupted = False

    # -- liveness -------------------------------------------------------------------------
    def start_heartbeat(self) -> None:
        if self._heartbeat is None:
            self._heartbeat = Heartbeat(
                self.engine,
                self.execution.id,
                self.policy.heartbeat_every_ms,
                label=self.label,
            )
            self._heartbeat.start()

    def stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()

    def still_held(self) -> bool:
        """Cheap check for long jobs: False once a heartbeat found the row reaped or released, or
        when no heartbeat got through for a whole threshold (others may have reaped it)."""
        if self._finished is not None:
            return False
        hb = self._heartbeat
        if hb is None:
            return True
        silent_s = time.monotonic() - hb.last_ok
        return not hb.lost.is_set() and silent_s < self.policy.stale_after_ms / 1000.0

    # -- the end --------------------------------------------------------------------------
    def finish(
        self, status: Literal[Status.SUCCESS, Status.FAILURE], error: str | None = None
    ) -> FinishOutcome:
        """Write the final status only if the row is still RUNNING (fencing); idempotent."""
        with self._finish_lock:
            if self._finished is not None:
                return self._finished
            self.stop_heartbeat()
            self._finished = self._write_final(status, error)
            return self._finished

    def _write_final(self, status: Status, error: str | None) -> FinishOutcome:
        params = {
            "execution_id": self.execution.id,
            "status": status.value,
            "error_message": clean_message(error) if error is not None else None,
        }
        deadline = time.monotonic() + self.policy.finish_retry_s
        delay = _RETRY_FIRST_S
        while True:
            try:
                with one_statement(self.engine) as conn:
                    if conn.execute(_FINISH, params).rowcount == 1:
                        return FinishOutcome(True, status)
                    now = conn.execute(
                        select(_exec.c.status, _exec.c.error_message).where(
                            _exec.c.id == self.execution.id
                        )
                    ).first()
            except (exc.OperationalError, exc.InterfaceError) as err:
                if time.monotonic() + delay > deadline:
                    reason = describe_db_error(err, self.engine.url)
                    detail = (
                        f"final status {status} not recorded, database unavailable for "
                        f"{self.policy.finish_retry_s:g}s: {reason}"
                    )
                    log.error("%s %s; the row will be reaped as stale", self.label, detail)
                    return FinishOutcome(False, status, detail)
                log.warning(
                    "%s recording %s failed, retrying in %.1fs: %s",
                    self.label,
                    status,
                    delay,
                    describe_db_error(err, self.engine.url),
                )
                time.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            current = f"{now.status}: {now.error_message}" if now is not None else "gone"
            detail = f"lock lost: execution {self.execution.id} is already {current}"
            if not self._interrupted:
                log.error("%s %s; this run's %s was not recorded", self.label, detail, status)
            return FinishOutcome(False, status, detail)

    def succeed_with(self, conn: Connection, commit: Callable[[], None]) -> FinishOutcome:
        """Write SUCCESS inside the caller's open transaction on ``conn``, then ``commit()`` it.

        The job's own writes and its SUCCESS commit together or not at all: a run whose row was
        reaped or released, even a moment ago, gets ``recorded=False`` and must roll back instead
        of committing work done without the lock. If ``commit`` raises, nothing is marked finished
        and the exception propagates (the context manager then records the FAILURE).
        """
        with self._finish_lock:
            if self._finished is not None:
                return self._finished
            self.stop_heartbeat()
            params = {
                "execution_id": self.execution.id,
                "status": Status.SUCCESS.value,
                "error_message": None,
            }
            if conn.execute(_FINISH, params).rowcount != 1:
                now = conn.execute(
                    select(_exec.c.status, _exec.c.error_message).where(
                        _exec.c.id == self.execution.id
                    )
                ).first()
                current = f"{now.status}: {now.error_message}" if now is not None else "gone"
                detail = f"lock lost: execution {self.execution.id} is already {current}"
                log.error("%s %s; the run's changes are rolled back", self.label, detail)
                self._finished = FinishOutcome(False, Status.SUCCESS, detail)
                return self._finished
            commit()
            self._finished = FinishOutcome(True, Status.SUCCESS)
            return self._finished

    def succeed(self) -> FinishOutcome:
        return self.finish(Status.SUCCESS)

    def fail(self, error: str) -> FinishOutcome:
        return self.finish(Status.FAILURE, error)

    def interrupt(self, why: str = "interrupted") -> FinishOutcome:
        """Called on SIGTERM (from any thread): end the row now, before the process goes away."""
        self._interrupted = True
        return self.finish(Status.FAILURE, why)

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
        elif isinstance(exc_value, Exception):
            outcome = self.finish(Status.FAILURE, describe_exception(exc_value))
        else:  # KeyboardInterrupt, SystemExit, asyncio cancellation, Prefect's TerminationSignal
            self._interrupted = True
            outcome = self.finish(Status.FAILURE, f"interrupted ({type(exc_value).__name__})")
        if not outcome.recorded and not self._interrupted:
            raise LockLostError(outcome.detail) from exc_value
