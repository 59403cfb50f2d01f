"""11. Scale-out: a nightly run of 12 jobs of 5 s each (graph width 3) with JOB_DISPATCH=deployments
on 1 process worker vs 3 process workers of one work pool (each worker runs one flow run at once).

The project is copied to a temp directory whose jobs package holds the 12 sleeping jobs; there
`jobctl deployments` writes their deployments into prefect.yaml and `prefect deploy --all` deploys
them to the shared ``prefect server start``. The nightly flow itself runs in a child process (not
on the pool, so that it takes no worker's slot), MAX_PARALLEL_JOBS=3. Each run is timed from the
flow's start to its end. Correct when every job ran once, as a flow run of its own, each after
its upstreams had finished.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.engine import URL

from bench import dbs
from bench.context import Context
from bench.prefect_server import PREFECT_BIN, client_environ
from bench.report import BenchError, Row, check
from prefect_nightly_jobs.models import Status, job_execution

WIDTH = 3
LEVELS = 4
SLEEP_S = 5.0
TARGET = 0.45
POOL = "nightly-pool"  # the reference prefect.yaml's pool, which the copy keeps
PROJECT = Path(__file__).resolve().parent.parent
JOBCTL = Path(sys.executable).with_name("jobctl")
RUN_TIMEOUT_S = 900
CLI_TIMEOUT_S = 300

NIGHTLY = """
import json, sys, time
from datetime import date
from prefect_nightly_jobs import nightly
started = time.perf_counter()
state = nightly(period=date.fromisoformat(sys.argv[1]), dispatch="deployments", return_state=True)
print(json.dumps({"seconds": time.perf_counter() - started, "state": state.name,
                  "message": state.message}))
"""


def _jobs_module(levels: int, sleep_s: float) -> str:
    lines = [
        '"""Benchmark jobs: a graph of sleeping jobs (bench/scaleout.py)."""',
        "",
        "import time",
        "",
        "from prefect_nightly_jobs import JobContext, background_job",
        "",
        "",
        "def _sleep(ctx: JobContext) -> None:",
        f"    time.sleep({sleep_s})",
        "",
        "",
    ]
    for level in range(levels):
        for col in range(WIDTH):
            ups = [f"sleep_{level - 1}_{c}" for c in (col, (col + 1) % WIDTH)] if level else []
            lines.append(
                f'sleep_{level}_{col} = background_job("sleep_{level}_{col}", '
                f"depends_on={ups!r})(_sleep)"
            )
    return "\n".join(lines) + "\n"


def _project_copy(into: Path, levels: int, sleep_s: float) -> Path:
    tree = into / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("flows", "migrations"):
        shutil.copytree(PROJECT / name, tree / name, ignore=ignore)
    for name in ("alembic.ini", "pyproject.toml", "prefect.yaml"):
        shutil.copy(PROJECT / name, tree / name)
    (tree / "jobs").mkdir()
    (tree / "jobs" / "__init__.py").write_text('"""Sleeping jobs."""\n')
    shutil.copy(PROJECT / "jobs" / "models.py", tree / "jobs" / "models.py")
    (tree / "jobs" / "sleepers.py").write_text(_jobs_module(levels, sleep_s))
    return tree


def _cli(argv: list[str], env: dict[str, str], cwd: Path, *, check_rc: bool = True) -> str:
    done = subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if check_rc and done.returncode != 0:
        raise BenchError(f"{' '.join(argv[:3])} exited {done.returncode}: {done.stderr[-1500:]}")
    return done.stdout


def _workers_online(api_url: str, names: list[str], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = httpx.post(f"{api_url}/work_pools/{POOL}/workers/filter", json={}, timeout=10)
        online = {w["name"] for w in response.json() if w.get("status") == "ONLINE"}
        if set(names) <= online:
            return
        time.sleep(0.5)
    raise BenchError(f"workers {names} not online after {timeout_s:.0f}s")


def _run_with(
    workers: int, *, tree: Path, env: dict[str, str], api_url: str, period: date, home: Path
) -> dict[str, object]:
    names = [f"bench-scale-{workers}-{i}" for i in range(workers)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name in names:
            log = (home / f"{name}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [
                        str(PREFECT_BIN),
                        "worker",
                        "start",
                        "--pool",
                        POOL,
                        "--name",
                        name,
                        "--limit",
                        "1",
                    ],
                    env=env,
                    cwd=home,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        _workers_online(api_url, names)
        done = subprocess.run(
            [sys.executable, "-c", NIGHTLY, period.isoformat()],
            env=env,
            cwd=tree,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"the nightly flow failed: {done.stderr[-2000:]}")
        result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
        check(result["state"] == "Completed", f"the nightly flow ended {result}")
        return result
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _check_rows(url: URL, period: date, jobs: int) -> None:
    with dbs.engine_for(url) as engine, engine.connect() as conn:
        rows = list(conn.execute(select(job_execution).where(job_execution.c.period == period)))
    check(len(rows) == jobs, f"{len(rows)} rows for {jobs} jobs on {period}")
    check(all(r.status == Status.SUCCESS.value for r in rows), "a job did not succeed")
    check(len({r.job_type for r in rows}) == jobs, "a job ran twice")
    check(len({r.flow_run_id for r in rows}) == jobs, "two jobs shared a flow run")
    ended = {r.job_type: r.completed_at for r in rows}
    for r in rows:
        level, col = (int(x) for x in r.job_type.split("_")[1:])
        if level:
            for up in (col, (col + 1) % WIDTH):
                upstream = ended[f"sleep_{level - 1}_{up}"]
                check(r.started_at >= upstream, f"{r.job_type} started before its upstream ended")


def run(ctx: Context) -> list[Row]:
    levels, sleep_s = (2, 2.0) if ctx.quick else (LEVELS, SLEEP_S)
    jobs = levels * WIDTH
    api_url = ctx.prefect_api()
    with (
        dbs.pg_database() as url,
        tempfile.TemporaryDirectory(prefix="jobs-bench-scale-") as tmp,
    ):
        root = Path(tmp)
        tree = _project_copy(root, levels, sleep_s)
        env = client_environ(api_url, root / "home")
        env.update(
            DATABASE_URL=url.render_as_string(hide_password=False),
            MAX_PARALLEL_JOBS=str(WIDTH),
            PREFECT_WORKER_QUERY_SECONDS="1",
            PYTHONPATH=str(tree),
        )
        _cli([str(JOBCTL), "deployments"], env, tree)
        _cli([str(PREFECT_BIN), "--no-prompt", "work-pool", "create", POOL, "--type",
              "process"], env, tree, check_rc=False)  # fmt: skip
        _cli([str(PREFECT_BIN), "--no-prompt", "deploy", "--all"], env, tree)
        one = _run_with(1, tree=tree, env=env, api_url=api_url, period=date(2030, 2, 1), home=root)
        three = _run_with(
            WIDTH, tree=tree, env=env, api_url=api_url, period=date(2030, 2, 2), home=root
        )
        _check_rows(url, date(2030, 2, 1), jobs)
        _check_rows(url, date(2030, 2, 2), jobs)
    one_s, three_s = float(str(one["seconds"])), float(str(three["seconds"]))
    return [
        Row(
            key="11",
            what=(
                f"scale-out: {jobs} jobs x {sleep_s:g} s (width {WIDTH}), JOB_DISPATCH=deployments,"
                f" {WIDTH} process workers vs 1"
            ),
            result=f"{WIDTH} workers {three_s:.1f} s",
            reference=f"1 worker {one_s:.1f} s",
            ratio=three_s / one_s,
            target=TARGET,
            note=(
                f"each job once, as its own flow run, after its upstreams (checked); floor: "
                f"{levels} levels x {sleep_s:g} s = {levels * sleep_s:g} s with {WIDTH} workers, "
                f"{jobs * sleep_s:g} s with 1; the rest is Prefect starting flow runs"
            ),
            data={"one_worker_s": one_s, "three_workers_s": three_s},
        )
    ]
