"""Per-job overhead of the lock on Prefect: a locked no-op job vs a plain ``@task`` no-op.

    python -m bench.prefect_overhead [--n 50] [--database-url URL]

Both run N times in one flow, in the same process, interleaved (plain, locked, plain, ...) so that
drift of the machine hits both alike. Also times the bare lock (acquire + finish, no Prefect).
Without PREFECT_API_URL the flow runs on Prefect's ephemeral server; without --database-url on a
fresh SQLite file in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import date

PERIOD = date(2026, 1, 1)


def _stats(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[int(len(ms) * 0.9) - 1]
    median, mean = statistics.median(ms), statistics.fmean(ms)
    return f"median {median:7.1f} ms   mean {mean:7.1f} ms   p90 {p90:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="prefect-overhead-")
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{workdir}/bench.sqlite3"

    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.runtime import flow_run

    from prefect_nightly_jobs.engines import lock_policy, shared_engine
    from prefect_nightly_jobs.local_prefect import local_prefect, settle
    from prefect_nightly_jobs.lock import acquire_job_lock
    from prefect_nightly_jobs.task import JobContext, background_job

    @task(cache_policy=NO_CACHE, persist_result=False)
    def plain_noop() -> None:
        return None

    @background_job("bench_noop")
    def locked_noop(ctx: JobContext) -> None:
        return None

    @flow(name="bench-overhead", persist_result=False)
    def overhead(n: int) -> tuple[dict[str, list[float]], str]:
        engine = shared_engine()
        policy = lock_policy()
        for _ in range(5):  # warm-up: imports, connections, first task runs
            plain_noop()
            locked_noop.run(period=PERIOD)
        samples: dict[str, list[float]] = {"plain": [], "locked": [], "lock only": []}
        for _ in range(n):
            start = time.perf_counter()
            plain_noop()
            samples["plain"].append(time.perf_counter() - start)
            start = time.perf_counter()
            state = locked_noop.run(period=PERIOD)
            samples["locked"].append(time.perf_counter() - start)
            assert state.is_completed() and state.name == "Completed", state
            start = time.perf_counter()
            result = acquire_job_lock(engine, "bench_lock_only", policy=policy, period=PERIOD)
            assert result.acquired
            with result.lease:
                pass
            samples["lock only"].append(time.perf_counter() - start)
        return samples, str(flow_run.id)

    with local_prefect() as ephemeral:
        samples, run_id = overhead(args.n)
        if ephemeral:
            settle(run_id, 2 * (args.n + 5))
    backend = shared_engine().dialect.name
    print(f"{args.n} runs each, app database: {backend}")
    for name, values in samples.items():
        print(f"  {name:10s} {_stats(values)}")
    extra = statistics.median(samples["locked"]) - statistics.median(samples["plain"])
    print(f"  locked job - plain task (medians): {extra * 1000:.1f} ms per job")


if __name__ == "__main__":
    main()
