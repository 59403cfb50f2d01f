"""A real first run, as `make run` does it: fresh SQLite file, ephemeral Prefect server, and not a
single ERROR line or traceback on stderr, including when the process exits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
from flows.nightly import run_nightly
report = run_nightly()
print(report.summary())
raise SystemExit(1 if report.failed else 0)
"""


def _project_free_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_") and not k.endswith("_ENABLED") and k != "DATABASE_URL"
    }
    env["PREFECT_HOME"] = str(home / "prefect-home")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_first_run_on_the_embedded_default_is_clean(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=tmp_path,
        env=_project_free_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 jobs for " in done.stdout and "3 SUCCESS" in done.stdout, done.stdout
    assert (tmp_path / "jobs.sqlite3").is_file(), "the default DATABASE_URL is a local SQLite file"
    noisy = [line for line in done.stderr.splitlines() if "ERROR" in line or "Traceback" in line]
    assert noisy == [], done.stderr[-3000:]
