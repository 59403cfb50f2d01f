"""`jobctl new` on a copy of this project, end to end: the files it writes pass ruff, ruff format,
mypy --strict and their own generated test unchanged, and the job shows up in `jobctl list` and
runs in `jobctl nightly`.

The copy's code runs with ``python -m jobs`` from the copy, PYTHONPATH set to it: the installed
(editable) ``jobs`` points at this checkout, so every child first proves which package it runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from tests.cli.conftest import (
    REPO_ROOT,
    Invoke,
    copy_project,
    run_jobctl,
    subprocess_env,
    url_text,
)
from tests.dbtools import admin_url

JOB = "audit_trail"
DESCRIPTION = "Write the day's audit trail."


def copy_env(copy: Path, **extra: str) -> dict[str, str]:
    return subprocess_env(PYTHONPATH=str(copy), **extra)


def run_in(copy: Path, *command: str, env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(
        command, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A copy of the project with one job added by `jobctl new`, run from a subdirectory."""
    copy = copy_project(tmp_path_factory.mktemp("project") / "copy")
    where = run_in(
        copy,
        sys.executable,
        "-c",
        "import jobs, flows; print(jobs.__file__); print(flows.__file__)",
        env=copy_env(copy),
    )
    assert where.split() == [
        str(copy / "jobs" / "__init__.py"),
        str(copy / "flows" / "__init__.py"),
    ]
    result = run_jobctl(
        "new",
        JOB,
        "--depends-on",
        "daily_rollup",
        "--description",
        DESCRIPTION,
        "--once-per-period",
        cwd=copy / "tests",  # the project root is found upward
        env=copy_env(copy),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return copy, result.stdout


def test_new_writes_and_lists_every_file_then_the_next_commands(
    scaffolded: tuple[Path, str],
) -> None:
    copy, out = scaffolded
    written = [
        ("modified", "jobs/job_types.py"),
        ("created", f"jobs/catalog/{JOB}.py"),
        ("modified", "jobs/catalog/__init__.py"),
        ("created", f"tests/jobs/test_{JOB}.py"),
    ]
    listed = [line.split()[:2] for line in out.splitlines() if line.startswith("  ")]
    for action, path in written:
        assert [action, path] in listed
        assert (copy / path).is_file()
    assert "no migration: a new job type needs no database entry" in out
    assert f"jobctl run {JOB}" in out
    assert f"make pytest PYTEST_ARGS=tests/jobs/test_{JOB}.py" in out
    assert (
        f'{JOB.upper()} = "{JOB}"\n    # <jobctl:job-types>'
        in (copy / "jobs" / "job_types.py").read_text()
    )
    changed = subprocess.run(
        ["git", "diff", "--no-index", "--stat", str(REPO_ROOT / "jobs"), str(copy / "jobs")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    ).stdout
    assert "job_types.py" in changed and "catalog/__init__.py" in changed


def test_generated_code_passes_ruff_and_mypy_unchanged(scaffolded: tuple[Path, str]) -> None:
    copy, _ = scaffolded
    env = copy_env(copy)
    run_in(copy, sys.executable, "-m", "ruff", "check", "--no-cache", ".", env=env)
    run_in(copy, sys.executable, "-m", "ruff", "format", "--check", "--no-cache", ".", env=env)
    cache = REPO_ROOT / ".mypy_cache"
    if cache.is_dir():  # `make test` ran mypy just before: start from its cache, much faster
        shutil.copytree(cache, copy / ".mypy_cache", dirs_exist_ok=True)
    test_file = f"tests/jobs/test_{JOB}.py"
    out = run_in(copy, sys.executable, "-m", "mypy", "jobs", "flows", test_file, env=env)
    assert "Success: no issues found" in out


def test_generated_test_passes_on_both_backends(scaffolded: tuple[Path, str]) -> None:
    copy, _ = scaffolded
    # The copy's own test session starts its own Prefect test server (tests/conftest.py).
    env = copy_env(copy, TEST_DATABASE_URL=url_text(admin_url()))
    out = run_in(
        copy,
        sys.executable,
        "-m",
        "pytest",
        f"tests/jobs/test_{JOB}.py",
        "-q",
        "-p",
        "no:cacheprovider",
        env=env,
    )
    assert "2 passed" in out, out


def test_new_job_is_listed_in_order_and_runs_nightly(
    scaffolded: tuple[Path, str], prefect_api: str, tmp_path: Path
) -> None:
    copy, _ = scaffolded
    env = copy_env(copy, PREFECT_API_URL=prefect_api)
    listed = run_jobctl("list", cwd=copy, env=env)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("│") for line in listed.stdout.splitlines() if line.startswith("│")]
    order = [cells[2].strip() for cells in rows if cells[2].strip()]
    # After its upstream; among jobs ready at the same time, last (it was registered last).
    assert order == ["import_events", "daily_rollup", "purge_expired", JOB]
    row = next(line for line in listed.stdout.splitlines() if f" {JOB} " in line)
    assert "daily_rollup" in row and DESCRIPTION in row

    database = URL.create("sqlite", database=str(tmp_path / "nightly.sqlite3"))
    env["DATABASE_URL"] = url_text(database)
    nightly = run_jobctl("nightly", "--period", "2026-01-15", cwd=tmp_path, env=env)
    assert nightly.returncode == 0, nightly.stdout + nightly.stderr
    line = next(line for line in nightly.stdout.splitlines() if f" {JOB} " in line)
    assert "SUCCESS" in line
    assert "4 succeeded, 0 skipped, 0 failed" in nightly.stdout


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".mypy_cache" not in p.parts and "__pycache__" not in p.parts
    }


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["Audit"], "not a lowercase identifier"),
        (["jobs/catalog/x"], "looks like a path"),
        (["../x"], "looks like a path"),
        (["lambda"], "Python keyword"),
        ([JOB], "already exists"),
        (["daily_rollup"], "already exists"),
        (["later", "--depends-on", "nope"], "unknown job 'nope'"),
        (["later", "--depends-on", "later"], "cannot depend on itself"),
        (["later", "--depends-on", "import_events,,daily_rollup"], "empty entry"),
        (["later", "--description", "two\nlines"], "one line"),
    ],
)
def test_refused_new_changes_nothing_in_the_project(
    scaffolded: tuple[Path, str],
    cli: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    says: str,
) -> None:
    copy, _ = scaffolded
    before = snapshot(copy)
    monkeypatch.chdir(copy / "jobs" / "catalog")
    result = cli("new", *args)
    assert result.exit_code == 6, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
    assert snapshot(copy) == before
