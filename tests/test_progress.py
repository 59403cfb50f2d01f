"""What the dispatcher reports to progress listeners (jobctl nightly's display), without Prefect."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future

import pytest

from prefect_nightly_jobs import progress
from prefect_nightly_jobs.dispatch import run_in_order
from prefect_nightly_jobs.models import Status
from prefect_nightly_jobs.outcome import Blocker, JobOutcome, SkipKind
from prefect_nightly_jobs.registry import JobSpec, Registry

JOBS = Registry(
    [
        JobSpec(job_type="fetch", depends_on=()),
        JobSpec(job_type="build", depends_on=("fetch",)),
        JobSpec(job_type="tidy", depends_on=()),
    ]
).ordered()


def launch(spec: JobSpec, blocked_by: Blocker | None) -> Future[JobOutcome]:
    """fetch fails; its dependent is skipped with the blocker; the rest succeed."""
    if blocked_by is not None:
        status, reason, kind = Status.SKIPPED, blocked_by.reason(), blocked_by.kind
    elif spec.job_type == "fetch":
        status, reason, kind = Status.FAILURE, "RuntimeError: no feed", None
    else:
        status, reason, kind = Status.SUCCESS, None, None
    done: Future[JobOutcome] = Future()
    done.set_result(JobOutcome(spec.job_type, status, reason, 1, 0.0, kind))
    return done


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def run_started(self, job_types: Sequence[str]) -> None:
        self.events.append(("run", *job_types))

    def job_started(self, job_type: str) -> None:
        self.events.append(("start", job_type))

    def job_finished(self, outcome: JobOutcome) -> None:
        self.events.append(("end", outcome.job_type, outcome.status, str(outcome.skip_kind)))


class Broken(Recorder):
    def job_started(self, job_type: str) -> None:
        raise RuntimeError("the display fell over")


def test_each_job_is_reported_starting_and_finishing_in_order() -> None:
    heard = Recorder()
    with progress.listening(heard):
        run_in_order(JOBS, launch)
    assert heard.events == [
        ("run", "fetch", "build", "tidy"),
        ("start", "fetch"),
        ("end", "fetch", Status.FAILURE, "None"),
        ("start", "build"),
        ("end", "build", Status.SKIPPED, SkipKind.UPSTREAM_FAILED.value),
        ("start", "tidy"),
        ("end", "tidy", Status.SUCCESS, "None"),
    ]


def test_a_listener_that_raises_is_dropped_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken, heard = Broken(), Recorder()
    with (
        caplog.at_level(logging.WARNING, logger="prefect_nightly_jobs.progress"),
        progress.listening(broken),
        progress.listening(heard),
    ):
        outcomes = run_in_order(JOBS, launch)
    assert [o.status for o in outcomes] == [Status.FAILURE, Status.SKIPPED, Status.SUCCESS]
    assert broken.events == [("run", "fetch", "build", "tidy")], "dropped at its first failure"
    assert len(heard.events) == 7, "the others still hear everything"
    assert [r.getMessage() for r in caplog.records] == [
        f"progress listener {broken!r} failed; it is dropped"
    ]


def test_nobody_listens_once_the_block_ends() -> None:
    heard = Recorder()
    with progress.listening(heard):
        pass
    run_in_order(JOBS, launch)
    assert heard.events == []
