"""`jobctl new` on a copy of this repository's reference application, end to end: it only adds
files, they pass ruff, ruff format, mypy --strict and their own generated test unchanged, and the
job shows up in `jobctl list` and runs in `jobctl nightly` (discovered, never registered).

Every child runs in the copy: the plugin finds the project (and imports its ``jobs`` package) from
the working directory, never from this checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from prefect_nightly_jobs.project import PACKAGE_ENV
from prefect_nightly_jobs.testing import admin_url
from tests.cli.conftest import REPO_ROOT, Invoke, copy_project, subprocess_env, url_text

JOB = "audit_trail"
DESCRIPTION = "Write the day's audit trail."
ADDED = {f"jobs/{JOB}.py", f"tests/test_{JOB}.py"}


def run_in(copy: Path, *command: str, env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(
        command, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def jobctl(copy: Path, *args: str, env: dict[str, str]) -> str:
    return run_in(copy, sys.executable, "-m", "prefect_nightly_jobs", *args, env=env)


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".mypy_cache" not in p.parts and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def scaffolded(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, str, dict[str, bytes]]:
    """A copy of the project with one job added by `jobctl new`, run from a subdirectory; the
    copy's files before the command."""
    copy = copy_project(tmp_path_factory.mktemp("project") / "copy")
    before = snapshot(copy)
    out = jobctl(
        copy / "tests",  # the project root is found upward
        "new",
        JOB,
        "--depends-on",
        "daily_rollup",
        "--description",
        DESCRIPTION,
        "--once-per-period",
        env=subprocess_env(),
    )
    return copy, out, before


def test_new_only_adds_the_job_and_its_test_then_says_what_to_run(
    scaffolded: tuple[Path, str, dict[str, bytes]],
) -> None:
    copy, out, before = scaffolded
    after = snapshot(copy)
    assert set(after) - set(before) == ADDED
    assert {path: after[path] for path in before} == before  # no file was edited
    listed = [line.split()[:2] for line in out.splitlines() if line.startswith("  created")]
    assert listed == [["created", path] for path in sorted(ADDED)]
    assert "no migration: a new job type needs no database entry" in out
    assert "add models to jobs/models.py" in out
    assert f"pytest tests/test_{JOB}.py" in out and f"jobctl run {JOB}" in out
    module = (copy / "jobs" / f"{JOB}.py").read_text()
    assert f'@background_job(\n    "{JOB}",\n    depends_on=["daily_rollup"],\n' in module


def test_generated_code_passes_ruff_and_mypy_unchanged(
    scaffolded: tuple[Path, str, dict[str, bytes]],
) -> None:
    copy, _, _ = scaffolded
    env = subprocess_env()
    files = sorted(ADDED)
    run_in(copy, sys.executable, "-m", "ruff", "check", "--no-cache", *files, env=env)
    run_in(copy, sys.executable, "-m", "ruff", "format", "--check", "--no-cache", *files, env=env)
    cache = REPO_ROOT / ".mypy_cache"
    if cache.is_dir():  # `make test` ran mypy just before: start from its cache, much faster
        shutil.copytree(cache, copy / ".mypy_cache", dirs_exist_ok=True)
    # Only the generated files are judged here (the rest of the copy has `make typecheck`).
    out = run_in(copy, sys.executable, "-m", "mypy", "--follow-imports=silent", *files, env=env)
    assert "Success: no issues found" in out


def test_generated_test_passes_on_both_backends(
    scaffolded: tuple[Path, str, dict[str, bytes]],
) -> None:
    copy, _, _ = scaffolded
    # The copy's own test session starts its own Prefect test server (the plugin's fixtures).
    env = subprocess_env(TEST_DATABASE_URL=url_text(admin_url()))
    env.pop(PACKAGE_ENV, None)
    out = run_in(
        copy,
        sys.executable,
        "-m",
        "pytest",
        f"tests/test_{JOB}.py",
        "-q",
        "-p",
        "no:cacheprovider",
        env=env,
    )
    assert "2 passed" in out, out


def test_new_job_is_listed_after_its_upstream_and_runs_nightly(
    scaffolded: tuple[Path, str, dict[str, bytes]], prefect_api: str, tmp_path: Path
) -> None:
    copy, _, _ = scaffolded
    env = subprocess_env(PREFECT_API_URL=prefect_api)
    env.pop(PACKAGE_ENV, None)
    listed = jobctl(copy, "list", env=env)
    rows = [line for line in listed.splitlines() if line.startswith("│")]
    position = {
        job: next(i for i, row in enumerate(rows) if f" {job} " in row)
        for job in ("import_events", "daily_rollup", "purge_expired", JOB)
    }
    assert position["import_events"] < position["daily_rollup"] < position[JOB], listed
    assert "daily_rollup" in rows[position[JOB]] and DESCRIPTION in rows[position[JOB]]

    database = URL.create("sqlite", database=str(tmp_path / "nightly.sqlite3"))
    env["DATABASE_URL"] = url_text(database)
    run_in(copy, sys.executable, "-m", "alembic", "upgrade", "head", env=env)  # the app's tables
    nightly = subprocess.run(
        [sys.executable, "-m", "prefect_nightly_jobs", "nightly", "--period", "2026-01-15"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert nightly.returncode == 0, nightly.stdout + nightly.stderr
    line = next(line for line in nightly.stdout.splitlines() if f" {JOB} " in line)
    assert "SUCCESS" in line
    assert "4 succeeded, 0 skipped, 0 failed" in nightly.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["Audit"], "not a lowercase identifier"),
        (["jobs/x"], "looks like a path"),
        (["../x"], "looks like a path"),
        (["lambda"], "Python keyword"),
        ([JOB], "already exists"),
        (["daily_rollup"], "already exists"),
        (["models"], "jobs/models.py already exists"),
        (["later", "--depends-on", "nope"], "unknown job 'nope'"),
        (["later", "--depends-on", "later"], "cannot depend on itself"),
        (["later", "--depends-on", "import_events,,daily_rollup"], "empty entry"),
        (["later", "--description", "two\nlines"], "one line"),
    ],
)
def test_refused_new_changes_nothing_in_the_project(
    scaffolded: tuple[Path, str, dict[str, bytes]],
    cli: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    says: str,
) -> None:
    copy, _, _ = scaffolded
    before = snapshot(copy)
    monkeypatch.delenv(PACKAGE_ENV, raising=False)
    monkeypatch.chdir(copy / "jobs")
    result = cli("new", *args)
    assert result.exit_code == 6, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
    assert snapshot(copy) == before
