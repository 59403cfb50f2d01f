"""The import contracts of pyproject.toml ([tool.importlinter]) hold, and would catch a breach:
the library never imports the application; the application imports only the library's root."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PYTHONPATH": f"{root / 'src'}:{root}", "PATH": str(LINT_IMPORTS.parent)},
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of what the contracts look at: the library, the application, the configuration."""
    for name in ("src", "jobs", "flows"):
        shutil.copytree(REPO_ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_contracts_hold(tree: Path) -> None:
    done = _lint(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 2 kept, 0 broken." in done.stdout


def test_library_importing_the_application_is_caught(tree: Path) -> None:
    reaper = tree / "src" / "prefect_nightly_jobs" / "reaper.py"
    reaper.write_text(reaper.read_text() + "\nimport jobs.models  # noqa\n")
    done = _lint(tree)
    assert done.returncode != 0
    assert "prefect_nightly_jobs.reaper -> jobs.models" in done.stdout


def test_application_importing_a_private_module_is_caught(tree: Path) -> None:
    job = tree / "jobs" / "purge_expired.py"
    job.write_text(job.read_text() + "\nfrom prefect_nightly_jobs.lease import Lease  # noqa\n")
    done = _lint(tree)
    assert done.returncode != 0
    assert "jobs.purge_expired -> prefect_nightly_jobs.lease" in done.stdout
