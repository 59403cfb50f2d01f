"""Fixtures for `jobctl` tests: the CLI in-process (typer's CliRunner), as a real subprocess,
and the app database wired in through DATABASE_URL as a user would."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL
from typer.testing import CliRunner, Result

from prefect_nightly_jobs.cli import app
from prefect_nightly_jobs.engines import dispose_engines
from prefect_nightly_jobs.settings import get_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SUBPROCESS_TIMEOUT_S = 240
Invoke = Callable[..., Result]


def copy_project(destination: Path) -> Path:
    """A copy of this checkout's files (tracked, plus new ones not ignored), as a user's clone
    would have them: no .venv, no caches, no databases."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():  # a deleted but still tracked file is skipped
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def url_text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@pytest.fixture
def cli() -> Iterator[Invoke]:
    """``cli("status", "--json")`` runs jobctl in this process, stdout and stderr apart."""
    # click < 8.2 mixes stderr into stdout unless told not to; 8.2 removed the option.
    apart = "mix_stderr" in inspect.signature(CliRunner.__init__).parameters
    runner = CliRunner(**({"mix_stderr": False} if apart else {}))

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args), prog_name="jobctl")

    yield invoke
    # Commands that run jobs keep a process-wide engine and settings: the next test may point
    # DATABASE_URL elsewhere.
    get_settings.cache_clear()
    dispose_engines()


@pytest.fixture
def app_db(db_url: URL, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> URL:
    """DATABASE_URL set to this test's fresh migrated database (PostgreSQL or SQLite)."""
    monkeypatch.setenv("DATABASE_URL", url_text(db_url))
    get_settings.cache_clear()
    return db_url


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a child jobctl: this one minus project settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_ENABLED")
        and k
        not in {
            "DATABASE_URL",
            "STALE_JOB_THRESHOLD_MS",
            "JOB_HEARTBEAT_INTERVAL_MS",
            "SYNC_CRON_SCHEDULE",
            "SYNC_CRON_TIMEZONE",
            "MAX_PARALLEL_JOBS",
            "RECONCILE_INTERVAL_SECONDS",
            "PYTHONPATH",
        }
    }
    env.update(extra)
    return env


def jobctl_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect_nightly_jobs", *args]


def run_jobctl(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = SUBPROCESS_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """jobctl as a real process (exit codes, stderr, no traceback), every wait bounded."""
    return subprocess.run(
        jobctl_command(*args),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def prefect_api(prefect_harness: None) -> str:
    """The URL of the session's Prefect test server, for child jobctl processes: they use it
    instead of each starting a server of their own."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the Prefect test harness did not set PREFECT_API_URL"
    return str(url)
