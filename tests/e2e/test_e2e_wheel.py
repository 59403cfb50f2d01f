"""The user's path, from the built artifacts: a wheel and an sdist are built; the wheel goes into a
fresh virtualenv outside this repository; a new project is created there with `jobctl init`, given
two jobs with `jobctl new`, migrated, run with `jobctl nightly`, tested with its own `pytest`, and
deployed with `prefect deploy --all` to a real server where a process worker runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from prefect_nightly_jobs import testing
from prefect_nightly_jobs.database import make_engine
from prefect_nightly_jobs.models import Status, job_execution
from tests import REPO_ROOT
from tests.e2e.conftest import PrefectServer, base_env, run_deployment
from tests.e2e.procs import Managed

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

PERIOD = "2026-11-28"
# Not the reference project's pool and deployment, which share this test server.
POOL = "wheel-pool"
DEPLOYMENT = "wheel-jobs"


def _run(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture
def empty_pg() -> Iterator[URL]:
    url = testing.create_pg_database()
    yield url
    testing.drop_pg_database(url)


def _build(out: Path) -> tuple[Path, Path]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    build = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), "."]
    _run(build, REPO_ROOT, env)
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


def _check_wheel(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"prefect_nightly_jobs"}, f"the wheel must hold one package, not {tops}"
    assert "prefect_nightly_jobs/migrations/env.py" in names
    assert "prefect_nightly_jobs/migrations/versions/0001_job_execution.py" in names
    assert "prefect_nightly_jobs/py.typed" in names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "jobctl = prefect_nightly_jobs.cli:main" in text
    assert "prefect_nightly_jobs = prefect_nightly_jobs.testing.plugin" in text


def test_a_fresh_project_from_the_wheel(
    prefect_server: PrefectServer, empty_pg: URL, tmp_path: Path
) -> None:
    wheel, _sdist = _build(tmp_path / "dist")
    _check_wheel(wheel)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, dict(os.environ))
    bin_ = venv / "bin"
    # The README's command, with pip; --no-compile: byte-compiling all of Prefect was 40% of it.
    _run(
        [str(bin_ / "pip"), "install", "--quiet", "--no-compile", str(wheel), "pytest"],
        tmp_path,
        dict(os.environ),
        900,
    )

    project = tmp_path / "shop"
    project.mkdir()
    env = base_env(tmp_path / "prefect-home")
    env["PATH"] = f"{bin_}{os.pathsep}{env['PATH']}"
    env["DATABASE_URL"] = empty_pg.render_as_string(hide_password=False)
    env["TEST_DATABASE_URL"] = testing.admin_url().render_as_string(hide_password=False)
    for command in (
        ["jobctl", "init"],
        ["jobctl", "new", "first", "--description", "The first job."],
        ["jobctl", "new", "second", "--depends-on", "first", "--description", "After first."],
        ["jobctl", "db", "upgrade"],
        ["alembic", "upgrade", "head"],
    ):
        _run([str(bin_ / command[0]), *command[1:]], project, env)
    nightly = _run([str(bin_ / "jobctl"), "nightly", "--period", PERIOD], project, env)
    assert "2 succeeded, 0 skipped, 0 failed" in nightly.stdout, nightly.stdout
    engine = make_engine(empty_pg)
    try:
        with engine.connect() as conn:
            ran = conn.execute(
                select(job_execution.c.job_type, job_execution.c.status).order_by(
                    job_execution.c.id
                )
            ).all()
            conn.rollback()
    finally:
        engine.dispose()
    assert [(r.job_type, r.status) for r in ran] == [
        ("first", Status.SUCCESS),
        ("second", Status.SUCCESS),
    ]

    tests = _run([str(bin_ / "pytest"), "-q", "-p", "no:cacheprovider"], project, env, 600)
    assert " passed" in tests.stdout and "failed" not in tests.stdout, tests.stdout

    # Deploy it: its own pool, so that the reference project's deployment is left alone.
    config = project / "prefect.yaml"
    text = config.read_text()
    assert "name: nightly-pool" in text and "- name: jobs" in text
    config.write_text(
        text.replace("nightly-pool", POOL)
        .replace("- name: jobs", f"- name: {DEPLOYMENT}")
        # Not the session's reconcile/reconcile, which other tests keep paused.
        .replace("- name: reconcile", "- name: wheel-reconcile")
    )
    server_env = {**env, "PREFECT_API_URL": prefect_server.api_url}
    prefect = str(bin_ / "prefect")
    _run(
        [prefect, "--no-prompt", "work-pool", "create", POOL, "--type", "process"],
        project,
        server_env,
    )
    _run([prefect, "--no-prompt", "deploy", "--all"], project, server_env)
    worker = Managed(
        "wheel-worker",
        [prefect, "worker", "start", "--pool", POOL, "--name", "wheel-worker", "--limit", "1"],
        env=server_env,
        cwd=project,
        log=tmp_path / "wheel-worker.log",
    )
    try:
        deployed = run_deployment(
            prefect_server, f"nightly/{DEPLOYMENT}", params={"period": "2026-11-29"}
        )
    finally:
        worker.stop()
    assert deployed.state_type == "COMPLETED", f"{deployed.output[-2000:]}\n{worker.tail()}"
    engine = make_engine(empty_pg)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(job_execution.c.job_type, job_execution.c.status)
                .where(job_execution.c.flow_run_id == deployed.flow_run_id)
                .order_by(job_execution.c.id)
            ).all()
            conn.rollback()
    finally:
        engine.dispose()
    assert [(r.job_type, r.status) for r in rows] == [
        ("first", Status.SUCCESS),
        ("second", Status.SUCCESS),
    ]
