"""2. Our lock against Prefect's own: ``concurrency(name, occupy=1, strict=True)`` acquire+release.

Both are measured in one child process (a clean Prefect client environment pointing at a real
``prefect server start``), interleaved in blocks. Prefect's limit lives in the server's database
on the same PostgreSQL server as our lock's database, so both mechanisms end in the same kind of
storage; what differs is the path to it (HTTP API + server vs. a direct SQL connection).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from bench import dbs
from bench.context import Context
from bench.prefect_server import PROJECT_ROOT, client_environ
from bench.report import BenchError, Row, check, fmt_ms
from bench.stats import summary

TARGET = 50.0
OURS = "bench_vs_prefect"
CHILD_TIMEOUT_S = 900


def run(ctx: Context) -> list[Row]:
    api_url = ctx.prefect_api()
    with (
        dbs.pg_database() as url,
        tempfile.TemporaryDirectory(prefix="jobs-bench-client-") as home,
    ):
        argv = [
            sys.executable,
            "-m",
            "bench.prefect_lock",
            url.render_as_string(hide_password=False),
            str(ctx.iterations),
            str(ctx.warmup),
        ]
        done = subprocess.run(
            argv,
            cwd=PROJECT_ROOT,
            env=client_environ(api_url, Path(home)),
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"measurement 2 child failed: {done.stderr.strip()[-2000:]}")
        samples = json.loads(done.stdout.strip().splitlines()[-1])
    ours, theirs = summary(samples["ours"]), summary(samples["prefect"])
    return [
        Row(
            key="2",
            what=(
                "ours vs Prefect concurrency(strict) acquire+release "
                f"(p50 / p99, n={ctx.iterations})"
            ),
            result=f"{fmt_ms(ours['p50'])} / {fmt_ms(ours['p99'])}",
            reference=f"Prefect {fmt_ms(theirs['p50'])} / {fmt_ms(theirs['p99'])}",
            ratio=theirs["p50"] / ours["p50"],
            target=TARGET,
            better="higher",
            note="ratio = Prefect p50 / ours p50; Prefect: `prefect server start` on loopback, "
            "its database on the same PostgreSQL server",
            data={"ours_ms": ours, "prefect_ms": theirs},
        )
    ]


def _child(url_text: str, iterations: int, warmup: int) -> None:
    """Runs inside the client environment; prints the samples as one JSON line."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency

    from bench.lock_roundtrip import check_all_succeeded, lock_cycle
    from bench.stats import interleave
    from prefect_nightly_jobs import LockPolicy, acquire_job_lock

    name = f"bench-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    policy = LockPolicy()
    url = make_url(url_text)
    with dbs.engine_for(url) as engine:
        # Both locks really exclude: a second taker is refused while the first holds.
        with concurrency(name, occupy=1, strict=True):
            try:
                with concurrency(name, occupy=1, strict=True, timeout_seconds=1):
                    raise BenchError("Prefect concurrency granted a second slot of a limit of 1")
            except TimeoutError:
                pass
        first = acquire_job_lock(engine, OURS, policy=policy)
        check(first.acquired, "our lock not acquired with nothing running")
        if first.acquired:
            with first.lease:
                second = acquire_job_lock(engine, OURS, policy=policy)
                check(not second.acquired, "our lock granted twice")

        def prefect_cycle() -> None:
            with concurrency(name, occupy=1, strict=True):
                pass

        contenders = {"prefect": prefect_cycle, "ours": lambda: lock_cycle(engine, OURS, policy)}
        interleave(contenders, warmup)
        samples = interleave(contenders, iterations)
        with get_client(sync_client=True) as client:
            limit = client.read_global_concurrency_limit_by_name(name)
        check(limit.active_slots == 0, f"Prefect limit still holds {limit.active_slots} slot(s)")
        with engine.connect() as conn:
            from sqlalchemy import text

            skipped = conn.execute(
                text("SELECT count(*) FROM job_execution WHERE status = 'SKIPPED'")
            ).scalar_one()
        check(skipped == 1, f"expected the one refused attempt as SKIPPED, found {skipped}")
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM job_execution WHERE status = 'SKIPPED'"))
        check_all_succeeded(engine, OURS, 1 + warmup + iterations)
    print(json.dumps(samples))


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
