"""6. Cold start: ``jobctl nightly`` with 10 no-op jobs on the embedded default vs a plain Prefect
flow of 10 tasks, both as fresh processes.

The project (jobs/, flows/, migrations/) is copied to a temp directory whose jobs package holds 10
no-op jobs instead of the examples; ``jobctl`` runs with that copy first on its path. Embedded
default on both sides: no DATABASE_URL (the app database is the SQLite file jobs.sqlite3 in the
working directory) and no PREFECT_API_URL (each process starts Prefect's temporary local server).
Both share one fresh PREFECT_HOME and working directory; one warm-up run each creates Prefect's
database and the app database, as any first run on a machine does. Then they alternate.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.context import Context
from bench.prefect_server import clean_environ
from bench.report import BenchError, Row, check

JOBS = 10
TARGET = 1.3
RUN_TIMEOUT_S = 300
PROJECT = Path(__file__).resolve().parent.parent
JOBCTL = Path(sys.executable).with_name("jobctl")
WHAT = f"cold start: `jobctl nightly`, {JOBS} no-op jobs vs plain flow of {JOBS} tasks"

NOOP_MODULE = f'''"""Benchmark jobs: {JOBS} jobs that do nothing (bench/cold_start.py)."""

from prefect_nightly_jobs import JobContext, background_job


def _noop(ctx: JobContext) -> None:
    """Does nothing."""


''' + "".join(f'noop_{i:02d} = background_job("noop_{i:02d}")(_noop)\n' for i in range(JOBS))

PLAIN_FLOW = f'''"""A plain Prefect flow of {JOBS} no-op tasks, as a user would write it."""

from prefect import flow, task


def _noop() -> None:
    """Does nothing."""


TASKS = [task(_noop, name=f"noop_{{i:02d}}") for i in range({JOBS})]


@flow(name="plain")
def plain() -> None:
    for t in TASKS:
        t()


if __name__ == "__main__":
    plain()
'''


def _project_copy(into: Path) -> Path:
    source = Path(os.environ.get("BENCH_PROJECT_TREE", PROJECT))
    tree = into / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("flows", "migrations"):
        shutil.copytree(source / name, tree / name, ignore=ignore)
    for name in ("alembic.ini", "pyproject.toml"):
        shutil.copy(source / name, tree / name)
    # The jobs package holds the no-op jobs only (the models, for the project's migrations).
    (tree / "jobs").mkdir()
    (tree / "jobs" / "__init__.py").write_text('"""No-op jobs."""\n')
    shutil.copy(source / "jobs" / "models.py", tree / "jobs" / "models.py")
    (tree / "jobs" / "noops.py").write_text(NOOP_MODULE)
    (into / "plain_flow.py").write_text(PLAIN_FLOW)
    return tree


def _timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(
            f"{' '.join(argv[-2:])} exited {done.returncode}: {done.stderr.strip()[-1500:]}"
        )
    return elapsed, done.stdout


def run(ctx: Context) -> list[Row]:
    source = Path(os.environ.get("BENCH_PROJECT_TREE", PROJECT))
    if not (source / "src" / "prefect_nightly_jobs" / "cli").is_dir():
        return [
            Row(
                key="6",
                what=WHAT,
                result="",
                status="not run",
                note="this tree has no jobctl yet (src/prefect_nightly_jobs/cli)",
            )
        ]
    reps = 2 if ctx.quick else 3
    with tempfile.TemporaryDirectory(prefix="jobs-bench-cold-") as tmp:
        root = Path(tmp)
        tree = _project_copy(root)
        workdir = root / "work"
        workdir.mkdir()
        env = clean_environ(
            PREFECT_HOME=str(root / "prefect-home"),
            PYTHONPATH=str(tree),  # the copy's jobs package
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        env.pop("DATABASE_URL", None)
        ours = [str(JOBCTL), "nightly"]
        plain = [sys.executable, str(root / "plain_flow.py")]
        out = ""

        def jobctl() -> float:
            nonlocal out
            elapsed, out = _timed(ours, env, workdir)
            check(f"{JOBS} succeeded, 0 skipped, 0 failed" in out, f"jobctl nightly: {out!r}")
            return elapsed

        def plain_flow() -> float:
            return _timed(plain, env, workdir)[0]

        jobctl()  # warm-up: Prefect's database in PREFECT_HOME, the app's SQLite file
        plain_flow()
        samples: dict[str, list[float]] = {"jobctl": [], "plain": []}
        for rep in range(reps):
            pair = [("jobctl", jobctl), ("plain", plain_flow)]
            for name, fn in pair if rep % 2 == 0 else pair[::-1]:
                samples[name].append(fn())
        with sqlite3.connect(workdir / "jobs.sqlite3") as db:
            counts = dict(db.execute("SELECT status, count(*) FROM job_execution GROUP BY 1"))
        expected = {"SUCCESS": JOBS * (reps + 1)}
        check(counts == expected, f"app database rows: expected {expected}, found {counts}")
    ours_s, plain_s = statistics.median(samples["jobctl"]), statistics.median(samples["plain"])
    return [
        Row(
            key="6",
            what=WHAT,
            result=f"{ours_s:.2f} s (median of {reps})",
            reference=f"plain {plain_s:.2f} s",
            ratio=ours_s / plain_s,
            target=TARGET,
            note="fresh processes; embedded default (SQLite app database, temporary local "
            "Prefect server started by each process); shared PREFECT_HOME, warmed once",
            data={"jobctl_s": samples["jobctl"], "plain_s": samples["plain"]},
        )
    ]
