"""jobctl as a real process: exit codes, one line on stderr, no traceback, no password."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from tests import REPO_ROOT
from tests.cli.conftest import copy_project, run_jobctl, subprocess_env, url_text

SECRET = "s3cret-Pa55"
UNREACHABLE = f"postgresql://app:{SECRET}@127.0.0.1:1/app"


def assert_one_clean_line(
    result: subprocess.CompletedProcess[str], *, code: int, says: str
) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and says in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert SECRET not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("args", "env", "code", "says"),
    [
        (("status",), {"DATABASE_URL": UNREACHABLE}, 4, "database unavailable at postgresql"),
        (("nightly",), {"DATABASE_URL": UNREACHABLE}, 4, "database unavailable"),
        (("status",), {}, 3, "the jobs package 'jobs' is not found in"),
        (("new", "Bad-Name"), {}, 6, "not a lowercase identifier"),
        (("new", "good_name"), {}, 6, "no jobs package 'jobs' in"),
    ],
)
def test_errors_are_one_line_with_their_exit_code(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], code: int, says: str
) -> None:
    # The database errors are seen from the reference project; the others from an empty directory.
    cwd = REPO_ROOT if "DATABASE_URL" in env else tmp_path
    result = run_jobctl(*args, cwd=cwd, env=subprocess_env(**env))
    assert_one_clean_line(result, code=code, says=says)


def test_nothing_to_unlock_exits_5(tmp_path: Path, sqlite_url: URL) -> None:
    env = subprocess_env(DATABASE_URL=url_text(sqlite_url))
    result = run_jobctl("unlock", "import_events", "--reason", "stuck", cwd=REPO_ROOT, env=env)
    assert_one_clean_line(result, code=5, says="has no RUNNING execution: nothing to unlock")


def test_console_script_and_module_are_the_same_cli(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("jobctl")
    assert script.is_file(), "the jobctl console script is not installed"
    via_script = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    via_module = run_jobctl("--help", cwd=tmp_path, env=subprocess_env())
    assert via_script.returncode == via_module.returncode == 0
    assert via_script.stdout == via_module.stdout
    assert "Usage: jobctl" in via_script.stdout
    usage = run_jobctl("status", "--bogus", cwd=tmp_path, env=subprocess_env())
    assert usage.returncode == 2 and "No such option" in usage.stderr
    assert "Traceback" not in usage.stderr


def test_a_job_module_that_does_not_import_is_one_line(tmp_path: Path) -> None:
    copy = copy_project(tmp_path / "copy")
    broken = copy / "jobs" / "purge_expired.py"
    broken.write_text(broken.read_text() + '\nraise RuntimeError("half-written job")\n')
    env = subprocess_env(PYTHONPATH=str(copy))
    listed = run_jobctl("list", cwd=copy, env=env)
    assert_one_clean_line(
        listed, code=3, says="the job catalog does not import: RuntimeError: half-written job"
    )
