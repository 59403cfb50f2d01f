"""Running jobs in dependency order, at most N at a time, passing upstream failures downstream.

No Prefect here: ``launch`` starts one job and returns a future of its outcome (the nightly flow
submits a Prefect task), so the ordering rules are testable with plain threads.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from jobs.models import Status
from jobs.outcome import JobOutcome
from jobs.registry import JobSpec

Launch = Callable[[JobSpec, str | None], "Future[JobOutcome]"]
"""Start ``spec``; the second argument names a failed (or busy) upstream: record a skip."""


STILL_RUNNING = "is still running in another run"


def _running_elsewhere(outcome: JobOutcome) -> bool:
    """Skipped by the lock because another run holds it (not disabled, not already done)."""
    return outcome.status == Status.SKIPPED and (outcome.reason or "").startswith("already running")


def _first_failed(spec: JobSpec, failed_because: dict[str, str]) -> str | None:
    return next((failed_because[u] for u in spec.depends_on if u in failed_because), None)


def run_in_order(
    ordered: Sequence[JobSpec], launch: Launch, *, max_parallel: int = 1
) -> list[JobOutcome]:
    """Run every job of ``ordered`` (a topological order) and return the outcomes in that order.

    A job starts only once all its upstreams have finished; among ready jobs the earliest in
    ``ordered`` starts first, so ``max_parallel=1`` runs exactly in ``ordered`` order. A job whose
    upstream failed, or was skipped because its own upstream failed, is still launched (so that it
    records its skip in both systems) with the name of the job that failed. The same goes for an
    upstream skipped because another run is running it: it is not done for the period yet, so its
    dependents are skipped with "<job> is still running in another run" (a job type has no spaces,
    so the task tells the two apart); the other run runs them after it.
    """
    if max_parallel < 1:
        raise ValueError("max_parallel must be at least 1")
    waiting = list(ordered)
    outcomes: dict[str, JobOutcome] = {}
    failed_because: dict[str, str] = {}  # job → the failed (or busy) job that blocks downstreams
    running: dict[Future[JobOutcome], JobSpec] = {}
    finished: queue.SimpleQueue[Future[JobOutcome]] = queue.SimpleQueue()
    while waiting or running:
        for spec in list(waiting):
            if len(running) >= max_parallel:
                break
            if any(up not in outcomes for up in spec.depends_on):
                continue
            waiting.remove(spec)
            blocker = next(
                (failed_because[u] for u in spec.depends_on if u in failed_because), None
            )
            if blocker is not None:
                # Failure travels down the whole chain, whatever the skipped job itself reports.
                failed_because[spec.job_type] = blocker
            future = launch(spec, blocker)
            running[future] = spec
            future.add_done_callback(finished.put)
        if not running:  # pragma: no cover - impossible for a topological order
            raise RuntimeError(f"jobs left that can never start: {[s.job_type for s in waiting]}")
        done = finished.get()
        spec = running.pop(done)
        outcome = done.result()
        outcomes[spec.job_type] = outcome
        if outcome.status == Status.FAILURE:
            failed_because[spec.job_type] = spec.job_type
        elif _running_elsewhere(outcome):
            # Not done, only started by another run: its dependents would read half its work.
            failed_because[spec.job_type] = f"{spec.job_type} {STILL_RUNNING}"
    return [outcomes[spec.job_type] for spec in ordered]
