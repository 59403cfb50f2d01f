"""Dependency order and dispatch rules, without Prefect or a database."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from prefect_nightly_jobs.dispatch import run_in_order
from prefect_nightly_jobs.errors import DependencyError
from prefect_nightly_jobs.models import Status
from prefect_nightly_jobs.outcome import Blocker, JobOutcome
from prefect_nightly_jobs.registry import JobSpec, Registry


def registry(*jobs: tuple[str, tuple[str, ...]]) -> Registry:
    return Registry(JobSpec(job_type=name, depends_on=ups) for name, ups in jobs)


def names(reg: Registry) -> list[str]:
    return [spec.job_type for spec in reg.ordered()]


DIAMOND = registry(("d", ("b", "c")), ("c", ("a",)), ("b", ("a",)), ("a", ()))
CHAIN = registry(("third", ("second",)), ("first", ()), ("second", ("first",)))


def test_chain_runs_upstream_first() -> None:
    assert names(CHAIN) == ["first", "second", "third"]


def test_diamond_ties_in_registration_order() -> None:
    # b and c are both ready after a: c was registered before b, so c goes first.
    assert names(DIAMOND) == ["a", "c", "b", "d"]


def test_independent_jobs_keep_registration_order() -> None:
    assert names(registry(("z", ()), ("m", ()), ("a", ()))) == ["z", "m", "a"]
    assert names(registry(("late", ("early",)), ("other", ()), ("early", ()))) == [
        "other",
        "early",
        "late",
    ]


def test_cycle_is_named_before_anything_runs() -> None:
    cyclic = registry(("a", ("c",)), ("b", ("a",)), ("c", ("b",)), ("free", ()))
    with pytest.raises(DependencyError, match=r"dependency cycle: (\w+ -> ){3}\w+") as err:
        cyclic.ordered()
    cycle = err.value.message.split(": ")[1].split(" -> ")
    assert cycle[0] == cycle[-1] and sorted(cycle[:-1]) == ["a", "b", "c"]


def test_self_dependency_and_unknown_dependency() -> None:
    with pytest.raises(DependencyError, match="job 'a' depends on itself"):
        registry(("a", ("a",))).ordered()
    with pytest.raises(DependencyError, match="job 'b' depends on unknown job 'nope'"):
        registry(("a", ()), ("b", ("nope",))).ordered()


# --- dispatch -----------------------------------------------------------------------------------


class Recorder:
    """A launcher running fake jobs on threads, recording start/end events in order."""

    def __init__(
        self, fail: frozenset[str] = frozenset(), body: Callable[[str], None] | None = None
    ) -> None:
        self.fail = fail
        self.body = body
        self.events: list[tuple[str, str]] = []
        self.upstream_failed: dict[str, str | None] = {}
        self.blockers: dict[str, Blocker | None] = {}
        self.running = 0
        self.max_running = 0
        self._lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=8)

    def _run(self, spec: JobSpec, blocker: Blocker | None) -> JobOutcome:
        with self._lock:
            self.events.append(("start", spec.job_type))
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            if blocker is not None:
                status, reason = Status.SKIPPED, blocker.reason()
            elif spec.job_type in self.fail:
                status, reason = Status.FAILURE, "boom"
            else:
                if self.body is not None:
                    self.body(spec.job_type)
                status, reason = Status.SUCCESS, None
            return JobOutcome(spec.job_type, status, reason, None, 0.0)
        finally:
            with self._lock:
                self.running -= 1
                self.events.append(("end", spec.job_type))

    def launch(self, spec: JobSpec, blocker: Blocker | None) -> Future[JobOutcome]:
        self.upstream_failed[spec.job_type] = blocker.job_type if blocker else None
        self.blockers[spec.job_type] = blocker
        return self.pool.submit(self._run, spec, blocker)

    def starts(self) -> list[str]:
        return [name for kind, name in self.events if kind == "start"]


def assert_upstreams_ended_first(reg: Registry, events: list[tuple[str, str]]) -> None:
    for spec in reg:
        start = events.index(("start", spec.job_type))
        for up in spec.depends_on:
            assert events.index(("end", up)) < start, f"{spec.job_type} started before {up} ended"


def test_sequential_dispatch_follows_the_order_exactly() -> None:
    rec = Recorder()
    outcomes = run_in_order(DIAMOND.ordered(), rec.launch, max_parallel=1)
    assert rec.starts() == ["a", "c", "b", "d"]
    assert rec.max_running == 1
    assert [o.job_type for o in outcomes] == ["a", "c", "b", "d"]


def test_parallel_dispatch_overlaps_branches_and_keeps_order() -> None:
    # b and c can only both pass the barrier if they run at the same time.
    meet = threading.Barrier(2, timeout=10)
    rec = Recorder(body=lambda name: meet.wait() if name in {"b", "c"} else None)
    outcomes = run_in_order(DIAMOND.ordered(), rec.launch, max_parallel=2)
    assert {o.status for o in outcomes} == {Status.SUCCESS}
    assert rec.max_running == 2
    assert_upstreams_ended_first(DIAMOND, rec.events)


def test_parallel_never_exceeds_the_limit() -> None:
    wide = registry(*((f"j{i}", ()) for i in range(9)), ("after", tuple(f"j{i}" for i in range(9))))
    meet = threading.Barrier(3, timeout=10)  # groups of exactly three must run together
    rec = Recorder(body=lambda name: meet.wait() if name != "after" else None)
    outcomes = run_in_order(wide.ordered(), rec.launch, max_parallel=3)
    assert rec.max_running == 3
    assert rec.starts()[:3] == ["j0", "j1", "j2"], "ready jobs start in registration order"
    assert rec.starts()[-1] == "after"
    assert [o.status for o in outcomes] == [Status.SUCCESS] * 10


def test_failure_skips_the_whole_downstream_chain_only() -> None:
    reg = registry(
        ("a", ()),
        ("b", ("a",)),
        ("c", ("b",)),
        ("side", ()),
        ("join", ("c", "side")),
    )
    rec = Recorder(fail=frozenset({"a"}))
    outcomes = {o.job_type: o for o in run_in_order(reg.ordered(), rec.launch, max_parallel=1)}
    assert outcomes["a"].status == Status.FAILURE
    assert rec.upstream_failed == {"a": None, "b": "a", "c": "a", "side": None, "join": "a"}
    assert outcomes["side"].status == Status.SUCCESS
    for name in ("b", "c", "join"):
        assert (outcomes[name].status, outcomes[name].reason) == (
            Status.SKIPPED,
            "upstream a failed",
        )


def test_diamond_with_one_failed_branch() -> None:
    rec = Recorder(fail=frozenset({"b"}))
    outcomes = {o.job_type: o for o in run_in_order(DIAMOND.ordered(), rec.launch, max_parallel=2)}
    assert outcomes["c"].status == Status.SUCCESS, "the other branch still runs"
    assert outcomes["d"].reason == "upstream b failed"


def test_max_parallel_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        run_in_order(CHAIN.ordered(), Recorder().launch, max_parallel=0)
