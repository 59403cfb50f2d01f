"""What a job run ended as, and the nightly run's report. Plain data: no Prefect, no database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from prefect_nightly_jobs.errors import JobsError
from prefect_nightly_jobs.models import Status


class SkipKind(StrEnum):
    """Why a job did not run. Dependents of a job skipped for a kind in ``BLOCKS_DEPENDENTS`` are
    skipped too: its work for the period is not done."""

    DISABLED = "disabled"
    UPSTREAM_FAILED = "upstream_failed"
    UPSTREAM_RUNNING = "upstream_running"
    ALREADY_RUNNING = "already_running"
    ALREADY_DONE = "already_done"
    PRE_CHECK = "pre_check"

    @property
    def after_failure(self) -> bool:
        """Not run because something failed, as opposed to skipped as intended (disabled, done
        for the period, running elsewhere, a pre-check's reason): the UI and the CLI show the
        two apart."""
        return self is SkipKind.UPSTREAM_FAILED


@dataclass(frozen=True)
class Blocker:
    """The upstream that keeps a job from running in this flow run, and why."""

    job_type: str
    kind: SkipKind  # UPSTREAM_FAILED or UPSTREAM_RUNNING

    def reason(self) -> str:
        if self.kind == SkipKind.UPSTREAM_RUNNING:
            return f"upstream {self.job_type} is still running in another run"
        return f"upstream {self.job_type} failed"


@dataclass(frozen=True)
class JobOutcome:
    """One job's result. ``reason`` is the skip reason or the error; ``execution_id`` the row
    in ``job_execution`` that records it (None only when the database could not be written)."""

    job_type: str
    status: Status
    reason: str | None
    execution_id: int | None
    duration_s: float
    skip_kind: SkipKind | None = None

    def describe(self) -> str:
        """``SUCCESS``, ``SKIPPED: reason`` or ``FAILURE: error``, as the CLI prints it."""
        return f"{self.status}: {self.reason}" if self.reason else str(self.status)


@dataclass
class NightlyReport:
    period: date
    outcomes: list[JobOutcome] = field(default_factory=list)
    flow_run_id: str | None = None

    @property
    def failed(self) -> bool:
        return any(o.status == Status.FAILURE for o in self.outcomes)

    def outcome(self, job_type: str) -> JobOutcome:
        return next(o for o in self.outcomes if o.job_type == job_type)

    def summary(self) -> str:
        """One line such as ``3 jobs for 2026-11-29: 2 SUCCESS, 1 SKIPPED``."""
        counts: dict[str, int] = {}
        for o in self.outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing ran"
        return f"{len(self.outcomes)} jobs for {self.period.isoformat()}: {parts}"


@dataclass
class BackfillReport:
    """A run over a range of periods (``--from``/``--to``): one report per period, in order."""

    reports: list[NightlyReport] = field(default_factory=list)
    flow_run_id: str | None = None

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.reports)

    @property
    def outcomes(self) -> list[JobOutcome]:
        return [o for r in self.reports for o in r.outcomes]

    def summary(self) -> str:
        """One line such as ``3 periods 2026-11-01..2026-11-03: 1 with failures (2026-11-02)``."""
        if not self.reports:
            return "no period"
        span = f"{self.reports[0].period.isoformat()}..{self.reports[-1].period.isoformat()}"
        failed = [r.period.isoformat() for r in self.reports if r.failed]
        verdict = f"{len(failed)} with failures ({', '.join(failed)})" if failed else "no failure"
        return f"{len(self.reports)} periods {span}: {verdict}"


class JobFailedError(JobsError):
    """A job failed; ``outcome`` (one job), ``report`` (the nightly run) or ``backfill`` (a run
    over a range of periods) has the details.

    It is the data of the Failed Prefect states this project returns, so that code asking Prefect
    for the result of a failed run gets this exception rather than a TypeError.
    """

    def __init__(
        self,
        message: str,
        *,
        outcome: JobOutcome | None = None,
        report: NightlyReport | None = None,
        backfill: BackfillReport | None = None,
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.report = report
        self.backfill = backfill
