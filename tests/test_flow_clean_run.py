"""A real first run, as `make run` does it: a copy of the reference project, a fresh SQLite file,
the plugin's and the project's migrations, an ephemeral Prefect server, and not a single ERROR
line or traceback on stderr, including when the process exits."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests import REPO_ROOT

BIN = Path(sys.executable).parent
APPLICATION = ["jobs", "flows", "migrations", "alembic.ini", "pyproject.toml"]


def _project_free_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_") and not k.endswith("_ENABLED") and k != "DATABASE_URL"
    }
    env["PREFECT_HOME"] = str(home / "prefect-home")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _copy_application(to: Path) -> None:
    for name in APPLICATION:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, to / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, to / name)


def test_first_run_on_the_embedded_default_is_clean(tmp_path: Path) -> None:
    _copy_application(tmp_path)
    env = _project_free_env(tmp_path)
    stderr = ""
    for command in (
        ["jobctl", "db", "upgrade"],
        ["alembic", "upgrade", "head"],
        ["jobctl", "nightly"],
    ):
        done = subprocess.run(
            [str(BIN / command[0]), *command[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert done.returncode == 0, f"{command}: {done.stderr[-3000:]}"
        if command[0] == "jobctl":
            stderr += done.stderr
    assert "3 succeeded, 0 skipped, 0 failed" in done.stdout, done.stdout
    assert (tmp_path / "jobs.sqlite3").is_file(), "the default DATABASE_URL is a local SQLite file"
    noisy = [line for line in stderr.splitlines() if "ERROR" in line or "Traceback" in line]
    assert noisy == [], stderr[-3000:]
