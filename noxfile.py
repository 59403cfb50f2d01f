"""The compatibility matrix: ``make matrix`` (or ``nox -s oldest``) runs every session of
matrix/combos.py in a fresh uv virtualenv with its pins, against a PostgreSQL of its major, and
records the outcome in matrix/results.json (the README's "Supported versions" table).

Each session runs the suite without the fault tests (the slowest, and version-independent:
they break processes and connections) and one end-to-end deployment test (a real Prefect server,
work pool, worker and deployment run).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree

import nox

sys.path.insert(0, str(Path(__file__).resolve().parent))  # nox does not put its directory there
from matrix import postgres, results
from matrix.combos import COMBOS, Combo

nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = True

E2E_TEST = "tests/e2e/test_e2e_nightly.py::test_deployment_run_completes_as_recorded"
# Compares the README with the results this run is writing: checked by `make test` afterwards.
TABLE_TEST = (
    "tests/test_matrix_table.py::test_readme_table_is_rendered_from_the_last_matrix_results"
)
VERSIONS = (
    "import json, importlib.metadata as m; "
    f"print(json.dumps({{p: m.version(p) for p in {results.PACKAGES!r}}}))"
)


def interpreter(version: str) -> str:
    """``pythonX.Y`` on PATH if it runs (a pyenv shim may not), else pyenv's own copy."""
    found = shutil.which(f"python{version}")
    runs = found and subprocess.run([found, "--version"], capture_output=True, check=False)
    if found and runs and runs.returncode == 0:
        return found
    pyenv = sorted((Path.home() / ".pyenv/versions").glob(f"{version}.*/bin/python{version}"))
    return str(pyenv[-1]) if pyenv else f"python{version}"  # nox reports it missing


def _pytest(session: nox.Session, url: str, *args: str) -> tuple[bool, str]:
    """Run pytest; whether it passed, and its counts as read from its JUnit report."""
    # Not session.create_tmp(): it points TMPDIR inside this repository, and tests that build a
    # project in tmp_path would then find this repository's pyproject.toml above it.
    report = Path(tempfile.mkdtemp(prefix="matrix-junit-")) / "junit.xml"
    session.run(
        "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={report}", *args,
        env={"TEST_DATABASE_URL": url}, success_codes=range(0, 6),
    )  # fmt: skip
    if not report.exists():
        return False, "pytest wrote no report"
    root = ElementTree.parse(report).getroot()  # noqa: S314 (pytest's own report)
    suite = root.find("testsuite")
    assert suite is not None
    counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    bad = counts["failures"] + counts["errors"]
    passed = counts["tests"] - bad - counts["skipped"]
    summary = f"{passed} passed" + (f", {bad} failed" if bad else "")
    summary += f", {counts['skipped']} skipped" if counts["skipped"] else ""
    return counts["tests"] > 0 and bad == 0, summary


def _run(session: nox.Session, combo: Combo) -> None:
    started = time.monotonic()
    session.install("-e", ".[dev]", *combo.pins, *combo.extra)
    versions = session.run("python", "-c", VERSIONS, silent=True)
    assert isinstance(versions, str)
    entry = {
        "python": session.run("python", "-c", "import platform; print(platform.python_version())",
                              silent=True).strip(),  # type: ignore[union-attr]
        "packages": json.loads(versions.strip().splitlines()[-1]),
        "extra": list(combo.extra),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "result": "fail",
        "tests": "not run",
    }  # fmt: skip
    try:
        with postgres.cluster(combo.postgres) as url:
            entry["postgres"] = subprocess.run(
                [str(postgres.bindir(combo.postgres) / "postgres"), "--version"],
                capture_output=True, text=True, check=True,
            ).stdout.split()[-1]  # fmt: skip
            suite_ok, suite = _pytest(session, url, "-n", "2", "--dist", "loadfile",
                                      "-m", "not faults and not e2e and not ui",
                                      "--deselect", TABLE_TEST)  # fmt: skip
            entry["tests"] = suite
            e2e_ok, e2e = _pytest(session, url, "-m", "e2e", E2E_TEST)
            entry["tests"] = f"{suite}; e2e: {e2e}"
        entry["result"] = "pass" if suite_ok and e2e_ok else "fail"
        if entry["result"] != "pass":
            session.error(f"{combo.name}: {entry['tests']}")
    finally:
        entry.setdefault("postgres", str(combo.postgres))
        entry["seconds"] = round(time.monotonic() - started)
        results.record(combo.name, entry)


def _session(combo: Combo) -> Callable[[nox.Session], None]:
    def run(session: nox.Session) -> None:
        _run(session, combo)

    run.__doc__ = f"Python {combo.python}, PostgreSQL {combo.postgres}: {', '.join(combo.pins)}"
    return run


for _combo in COMBOS:
    nox.session(name=_combo.name, python=interpreter(_combo.python))(_session(_combo))
