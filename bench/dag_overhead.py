"""8. A nightly run of 500 no-op jobs in a dependency graph of width 25, MAX_PARALLEL_JOBS=8,
locked vs the same graph of plain Prefect tasks.

Like 3, one child process (the shared ``prefect server start``, the app database a fresh
PostgreSQL database) runs both flows in alternation. 20 levels of 25 jobs; a job depends on two of
the level above (its own column and the next). The locked flow is the product's nightly body
(``run_registry``, jobs submitted to the flow's task runner, at most 8 at once); the plain flow
runs plain tasks through the same dispatcher (``dispatch.run_in_order``, 8 at once, submitted to
the same task runner) and publishes an artifact too, so the difference is the jobs layer.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import Future
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bench import dbs
from bench.context import Context
from bench.prefect_server import PROJECT_ROOT, client_environ
from bench.report import BenchError, Row, check

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

WIDTH = 25
LEVELS = 20
PARALLEL = 8
TARGET = 1.2
PERIOD = date(2030, 1, 2)
CHILD_TIMEOUT_S = 1500


def graph() -> list[tuple[str, tuple[str, ...]]]:
    """(job type, its dependencies) in registration order."""
    jobs: list[tuple[str, tuple[str, ...]]] = []
    for level in range(LEVELS):
        for col in range(WIDTH):
            above = [f"dag_{level - 1:02d}_{c:02d}" for c in (col, (col + 1) % WIDTH)]
            ups = tuple(above) if level else ()
            jobs.append((f"dag_{level:02d}_{col:02d}", ups))
    return jobs


def run(ctx: Context) -> list[Row]:
    reps = 1 if ctx.quick else 3
    api_url = ctx.prefect_api()
    with (
        dbs.pg_database() as url,
        tempfile.TemporaryDirectory(prefix="jobs-bench-client-") as home,
    ):
        env = client_environ(api_url, Path(home))
        env.pop("PREFECT_LOGGING_LEVEL")  # INFO, as in real use
        env["DATABASE_URL"] = url.render_as_string(hide_password=False)
        env["MAX_PARALLEL_JOBS"] = str(PARALLEL)
        done = subprocess.run(
            [sys.executable, "-m", "bench.dag_overhead", str(reps)],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"measurement 8 child failed: {done.stderr.strip()[-3000:]}")
        samples = json.loads(done.stdout.strip().splitlines()[-1])
    locked, plain = statistics.median(samples["locked"]), statistics.median(samples["plain"])
    jobs = WIDTH * LEVELS
    return [
        Row(
            key="8",
            what=(
                f"nightly run of {jobs} no-op jobs, graph width {WIDTH}, MAX_PARALLEL_JOBS="
                f"{PARALLEL}, locked vs plain tasks (median of {reps})"
            ),
            result=f"{locked:.2f} s ({locked / jobs * 1000:.1f} ms/job)",
            reference=f"plain {plain:.2f} s ({plain / jobs * 1000:.1f} ms/task)",
            ratio=locked / plain,
            target=TARGET,
            note="same process and Prefect server, flows alternated; app database on PostgreSQL",
            data={"locked_s": samples["locked"], "plain_s": samples["plain"]},
        )
    ]


def _child(reps: int) -> None:
    import time

    from prefect import Task, flow
    from prefect.artifacts import create_markdown_artifact
    from prefect.cache_policies import NO_CACHE
    from prefect.futures import PrefectFuture
    from sqlalchemy import func, select

    from prefect_nightly_jobs.context import JobContext
    from prefect_nightly_jobs.dispatch import run_in_order
    from prefect_nightly_jobs.engines import shared_engine
    from prefect_nightly_jobs.models import Status, job_execution
    from prefect_nightly_jobs.nightly_flow import run_registry
    from prefect_nightly_jobs.outcome import Blocker, JobOutcome
    from prefect_nightly_jobs.registry import JobSpec, Registry
    from prefect_nightly_jobs.settings import get_settings
    from prefect_nightly_jobs.task import background_job

    def noop_job(ctx: JobContext) -> None:
        """Does nothing."""

    def noop() -> None:
        """Does nothing."""

    check(get_settings().max_parallel_jobs == PARALLEL, "MAX_PARALLEL_JOBS not set")
    shape = graph()
    registry = Registry(background_job(name, depends_on=ups)(noop_job).spec for name, ups in shape)
    plain_specs = [JobSpec(name, depends_on=ups) for name, ups in shape]
    plain_tasks = {
        name: Task(fn=noop, name=name, cache_policy=NO_CACHE, persist_result=False)
        for name, _ in shape
    }

    def plain_launch(spec: JobSpec, _blocked: Blocker | None) -> Future[JobOutcome]:
        done: Future[JobOutcome] = Future()

        def finished(run: PrefectFuture[Any]) -> None:
            run.wait()
            ok = run.state.is_completed()
            status = Status.SUCCESS if ok else Status.FAILURE
            done.set_result(JobOutcome(spec.job_type, status, None, None, 0.0))

        plain_tasks[spec.job_type].submit().add_done_callback(finished)
        return done

    @flow(name="bench-dag-locked", persist_result=False)
    def locked_flow() -> Any:
        return run_registry(registry, PERIOD)

    @flow(name="bench-dag-plain", persist_result=False)
    def plain_flow() -> int:
        outcomes = run_in_order(plain_specs, plain_launch, max_parallel=PARALLEL)
        completed = sum(1 for o in outcomes if o.status == Status.SUCCESS)
        create_markdown_artifact(f"{completed} tasks", key="bench-dag-plain")
        return completed

    def run_locked() -> None:
        state = cast("State[Any]", locked_flow(return_state=True))
        check(state.is_completed(), f"locked flow ended {state.name}: {state.message}")

    def run_plain() -> None:
        state = plain_flow(return_state=True)
        check(state.is_completed(), f"plain flow ended {state.name}: {state.message}")
        check(state.result() == len(shape), "plain flow: not every task completed")

    run_locked()  # warm-up
    run_plain()
    samples: dict[str, list[float]] = {"locked": [], "plain": []}
    order = [("locked", run_locked), ("plain", run_plain)]
    for rep in range(reps):
        for name, fn in order if rep % 2 == 0 else order[::-1]:
            started = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - started)
    with shared_engine().connect() as conn:
        counts: dict[str, int] = dict(
            conn.execute(
                select(job_execution.c.status, func.count()).group_by(job_execution.c.status)
            ).all()
        )
    expected = {Status.SUCCESS.value: len(shape) * (reps + 1)}
    check(counts == expected, f"job rows: expected {expected}, found {counts}")
    print(json.dumps(samples))


if __name__ == "__main__":
    _child(int(sys.argv[1]))
