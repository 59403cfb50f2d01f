"""3. Prefect overhead: a flow of 200 locked no-op jobs vs the same flow of 200 plain tasks.

One child process (a clean Prefect client pointing at the shared ``prefect server start``, the app
database a fresh PostgreSQL database) runs both flows in alternation, a few times each. The locked
flow is the product's nightly body (``flows.nightly.run_registry``) over 200 ``@background_job``
no-ops. The plain flow calls 200 plain Prefect tasks in the same order, the same way (inline,
``return_state=True``), with the same task options as the jobs (no cache policy, no persisted
result) and the same summary artifact, so the difference is the jobs layer and its lock.

Two more numbers explain the difference: the Prefect server's CPU time per flow (the server shares
the machine's two cores with the flow), and a third flow, the locked one with the per-outcome
Prefect event switched off in this child only, which shows what that event costs (the plugin
always emits it: issue 11 requires it).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bench import dbs
from bench.context import Context
from bench.prefect_server import PROJECT_ROOT, SERVER_SESSIONS, client_environ, session_cpu_s
from bench.report import BenchError, Row, check

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

JOBS = 200
TARGET = 1.15
PERIOD = date(2030, 1, 1)
CHILD_TIMEOUT_S = 900


def run(ctx: Context) -> list[Row]:
    reps = 2 if ctx.quick else 4
    api_url = ctx.prefect_api()
    with (
        dbs.pg_database() as url,
        tempfile.TemporaryDirectory(prefix="jobs-bench-client-") as home,
    ):
        env = client_environ(api_url, Path(home))
        env.pop("PREFECT_LOGGING_LEVEL")  # INFO, as in real use: both flows' lines go to the API
        env["DATABASE_URL"] = url.render_as_string(hide_password=False)
        env["BENCH_SERVER_SESSION"] = str(SERVER_SESSIONS[api_url])
        done = subprocess.run(
            [sys.executable, "-m", "bench.task_overhead", str(reps), env["BENCH_SERVER_SESSION"]],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"measurement 3 child failed: {done.stderr.strip()[-3000:]}")
        samples = json.loads(done.stdout.strip().splitlines()[-1])
    locked, plain = statistics.median(samples["locked"]), statistics.median(samples["plain"])
    quiet = statistics.median(samples["quiet"])
    lock = statistics.median(samples["lock_calls"])
    server = {name: statistics.median(cpu) * 1000 / JOBS for name, cpu in samples["server"].items()}
    return [
        Row(
            key="3",
            what=f"flow of {JOBS} locked no-op jobs vs {JOBS} plain tasks (median of {reps} runs)",
            result=f"{locked:.2f} s ({locked / JOBS * 1000:.1f} ms/job)",
            reference=f"plain {plain:.2f} s ({plain / JOBS * 1000:.1f} ms/task)",
            ratio=locked / plain,
            target=TARGET,
            note=(
                "same process and Prefect server, flows alternated; app database on PostgreSQL; "
                f"of the locked flow, {lock / JOBS * 1000:.1f} ms/job are the lock's own calls "
                "(acquire + finish). Prefect server CPU per job: locked "
                f"{server['locked']:.1f} ms, plain {server['plain']:.1f} ms, locked without the "
                f"outcome event {server['quiet']:.1f} ms; that flow took {quiet:.2f} s "
                f"({quiet / plain:.2f}x plain)"
            ),
            data={
                "locked_s": samples["locked"],
                "plain_s": samples["plain"],
                "quiet_s": samples["quiet"],
                "lock_calls_s": samples["lock_calls"],
                "server_cpu_s": samples["server"],
            },
        )
    ]


def _time_the_lock() -> list[float]:
    """Add up the time spent in the lock's calls (acquire, finish), to explain the difference."""
    from prefect_nightly_jobs import task
    from prefect_nightly_jobs.lease import Lease

    spent = [0.0]
    acquire, finish = task.acquire_job_lock, Lease.finish  # type: ignore[attr-defined]

    def timed_acquire(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return acquire(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - started

    def timed_finish(self: Lease, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return finish(self, *args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - started

    task.acquire_job_lock = timed_acquire  # type: ignore[attr-defined]
    Lease.finish = timed_finish  # type: ignore[method-assign]
    return spent


def _settled_cpu(session: int, timeout_s: float = 15.0) -> float:
    """The server's CPU seconds once it is idle (under 10% of a core for 0.25 s)."""
    deadline = time.monotonic() + timeout_s
    cpu = session_cpu_s(session)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = session_cpu_s(session)
        if now - cpu < 0.025:
            return now
        cpu = now
    return cpu


def _child(reps: int, server_session: int) -> None:
    from prefect import Task, flow
    from prefect.artifacts import create_markdown_artifact
    from prefect.cache_policies import NO_CACHE
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from sqlalchemy import func, select

    from prefect_nightly_jobs import task
    from prefect_nightly_jobs.context import JobContext
    from prefect_nightly_jobs.engines import shared_engine
    from prefect_nightly_jobs.models import Status, job_execution
    from prefect_nightly_jobs.nightly_flow import run_registry
    from prefect_nightly_jobs.registry import Registry
    from prefect_nightly_jobs.task import background_job

    def noop_job(ctx: JobContext) -> None:
        """Does nothing."""

    def noop() -> None:
        """Does nothing."""

    lock_s = _time_the_lock()
    jobs = [background_job(f"bench_noop_{i:03d}")(noop_job) for i in range(JOBS)]
    registry = Registry(job.spec for job in jobs)
    plain_tasks = [
        Task(fn=noop, name=f"plain_noop_{i:03d}", cache_policy=NO_CACHE, persist_result=False)
        for i in range(JOBS)
    ]

    @flow(name="bench-locked", persist_result=False)
    def locked_flow() -> Any:
        return run_registry(registry, PERIOD)

    @flow(name="bench-plain", persist_result=False)
    def plain_flow() -> int:
        states = [t(return_state=True) for t in plain_tasks]
        completed = sum(1 for s in states if s.is_completed())
        create_markdown_artifact(f"{completed} tasks", key="bench-plain")
        return completed

    def run_locked() -> None:
        state = cast("State[Any]", locked_flow(return_state=True))
        check(state.is_completed(), f"locked flow ended {state.name}: {state.message}")

    def run_quiet() -> None:
        emit = task.emit_outcome  # type: ignore[attr-defined]
        task.emit_outcome = lambda *args, **kwargs: None  # type: ignore[attr-defined]
        try:
            run_locked()
        finally:
            task.emit_outcome = emit  # type: ignore[attr-defined]

    def run_plain() -> None:
        state = plain_flow(return_state=True)
        check(state.is_completed(), f"plain flow ended {state.name}: {state.message}")
        done = state.result()
        check(done == JOBS, f"plain flow: {done} of {JOBS} tasks completed")

    # Prefect's flow-run heartbeat thread sleeps in whole seconds and each flow joins it at the
    # end, which rounds every flow's wall time up to the next second: 2.1 s of work reads 3.1 s.
    # Per flow, the same for both flows; off here so that the per-job difference shows.
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        run_locked()  # warm-up: first flow run, engine, migrations check, lock rows created
        run_plain()
        order = [("locked", run_locked), ("plain", run_plain), ("quiet", run_quiet)]
        samples: dict[str, Any] = {name: [] for name, _ in order}
        samples["lock_calls"] = []
        samples["server"] = {name: [] for name, _ in order}
        server_cpu = _settled_cpu(server_session)  # each flow starts on an idle server
        for rep in range(reps):
            for name, fn in order if rep % 2 == 0 else order[::-1]:
                lock_s[0] = 0.0
                server_before = server_cpu
                started = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - started)
                # What the server did for this flow, including what it still had queued at the end.
                server_cpu = _settled_cpu(server_session)
                samples["server"][name].append(server_cpu - server_before)
                if name == "locked":
                    samples["lock_calls"].append(lock_s[0])
    with shared_engine().connect() as conn:
        counts: dict[str, int] = dict(
            conn.execute(
                select(job_execution.c.status, func.count()).group_by(job_execution.c.status)
            ).all()
        )
    expected = {Status.SUCCESS.value: JOBS * (2 * reps + 1)}
    check(counts == expected, f"job rows: expected {expected}, found {counts}")
    print(json.dumps(samples))


if __name__ == "__main__":
    _child(int(sys.argv[1]), int(sys.argv[2]))
