"""Running jobs in dependency order, at most N at a time, passing upstream failures downstream.

No Prefect here: ``launch`` starts one job and returns a future of its outcome (the nightly flow
submits a Prefect task), so the ordering rules are testable with plain threads.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from prefect_nightly_jobs import progress
from prefect_nightly_jobs.interrupts import is_interruption
from prefect_nightly_jobs.models import Status
from prefect_nightly_jobs.outcome import Blocker, JobOutcome, SkipKind
from prefect_nightly_jobs.registry import JobSpec

Launch = Callable[[JobSpec, Blocker | None], "Future[JobOutcome]"]
"""Start ``spec``; a blocker names the failed (or busy) upstream: the job records a skip."""

# How often the dispatcher wakes while it waits, so that a signal reaches the main thread.
_WAKE_S = 1.0


def _result(spec: JobSpec, done: Future[JobOutcome]) -> JobOutcome:
    """The job's outcome; a launch that raised (even a BaseException) is that job's FAILURE, so
    that its dependents are skipped and the flow goes on instead of waiting forever."""
    try:
        return done.result()
    except BaseException as err:  # noqa: BLE001 - the dispatcher must always reach the end
        return JobOutcome(
            job_type=spec.job_type,
            status=Status.FAILURE,
            reason=f"{type(err).__name__}: {err}",
            execution_id=None,
            duration_s=0.0,
        )


def _blocks_dependents(spec: JobSpec, outcome: JobOutcome) -> Blocker | None:
    if outcome.status == Status.FAILURE:
        return Blocker(spec.job_type, SkipKind.UPSTREAM_FAILED)
    if outcome.skip_kind == SkipKind.ALREADY_RUNNING:
        # Not done, only started by another run: its dependents would read half its work.
        return Blocker(spec.job_type, SkipKind.UPSTREAM_RUNNING)
    return None


def run_in_order(
    ordered: Sequence[JobSpec], launch: Launch, *, max_parallel: int = 1
) -> list[JobOutcome]:
    """Run every job of ``ordered`` (a topological order) and return the outcomes in that order.

    A job starts only once all its upstreams have finished; among ready jobs the earliest in
    ``ordered`` starts first, so ``max_parallel=1`` runs exactly in ``ordered`` order. A job whose
    upstream failed, or was skipped because its own upstream failed, is still launched (so that it
    records its skip in both systems) with the blocker. The same goes for an upstream skipped
    because another run is running it: it is not done for the period yet, so its dependents are
    skipped; the other run runs them after it.
    """
    if max_parallel < 1:
        raise ValueError("max_parallel must be at least 1")
    waiting = list(ordered)
    outcomes: dict[str, JobOutcome] = {}
    blocked: dict[str, Blocker] = {}  # job → the upstream that keeps its dependents from running
    running: dict[Future[JobOutcome], JobSpec] = {}
    finished: queue.SimpleQueue[Future[JobOutcome]] = queue.SimpleQueue()
    progress.run_started([spec.job_type for spec in ordered])
    while waiting or running:
        for spec in list(waiting):
            if len(running) >= max_parallel:
                break
            if any(up not in outcomes for up in spec.depends_on):
                continue
            waiting.remove(spec)
            blocker = next((blocked[u] for u in spec.depends_on if u in blocked), None)
            if blocker is not None:
                # Failure travels down the whole chain, whatever the skipped job itself reports.
                blocked[spec.job_type] = blocker
            progress.job_started(spec.job_type)
            try:
                future = launch(spec, blocker)
            except BaseException as err:
                if is_interruption(err):
                    raise  # Ctrl-C, cancellation: the whole run stops
                future = Future()
                future.set_exception(err)  # recorded as this job's failure
            running[future] = spec
            future.add_done_callback(finished.put)
        if not running:  # pragma: no cover - impossible for a topological order
            raise RuntimeError(f"jobs left that can never start: {[s.job_type for s in waiting]}")
        done = _next_done(finished)
        spec = running.pop(done)
        outcome = _result(spec, done)
        outcomes[spec.job_type] = outcome
        progress.job_finished(outcome)
        if spec.job_type not in blocked and (blocker := _blocks_dependents(spec, outcome)):
            blocked[spec.job_type] = blocker
    return [outcomes[spec.job_type] for spec in ordered]


def _next_done(finished: queue.SimpleQueue[Future[JobOutcome]]) -> Future[JobOutcome]:
    while True:
        try:
            return finished.get(timeout=_WAKE_S)
        except queue.Empty:
            continue
