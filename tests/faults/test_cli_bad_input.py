"""Bad input through the real `jobctl` (a subprocess, as a user runs it).

Each case: exit code ≠ 0, one line "error: …" naming the problem and the fix, no traceback, no
password, and nothing written: the app database keeps its row counts, the working directory (or the
project copy) its files. The cases run concurrently (each is a Python process of ~1-3 s) once per
module; the tests then look at what each one did.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL

from prefect_nightly_jobs import testing
from prefect_nightly_jobs.database import make_engine
from tests.cli.conftest import copy_project, run_jobctl, subprocess_env, url_text
from tests.faults.pgcluster import PASSWORD, ThrowawayCluster

pytestmark = pytest.mark.faults

SECRET = "Xyzzy-s3cret-42"  # the password of every made-up URL below: must never be printed
WRONG = "not-the-Passw0rd"
UNREACHABLE = f"postgresql://app:{SECRET}@127.0.0.1:1/app"
APP_TABLES = ("job_execution", "job_lock", "imported_event", "daily_event_rollup")


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    code: int
    says: str
    env: dict[str, str] = field(default_factory=dict)
    # Where it runs: an empty directory, or a copy of the project edited by ``edit``.
    edit: Callable[[Path], None] | None = None
    db: str = "app"  # app (migrated, counted) | empty (not migrated) | wrong_password | none


def _replace(path: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        target = root / path
        source = target.read_text()
        assert old in source, f"{old!r} not in {path}: the fault test is out of date"
        target.write_text(source.replace(old, new, 1))

    return edit


def _no_edit(root: Path) -> None:
    """A plain copy of the project (for `jobctl new`)."""


CASES: dict[str, Case] = {
    "url-without-scheme-separator": Case(
        ("nightly",),
        3,
        "DATABASE_URL is not a valid database URL",
        env={"DATABASE_URL": f"postgres//app:{SECRET}@db.internal/app"},
        db="none",
    ),
    "url-unsupported-driver": Case(
        ("status",),
        3,
        "DATABASE_URL uses unsupported driver 'mysql'",
        env={"DATABASE_URL": f"mysql://root:{SECRET}@db/app"},
        db="none",
    ),
    "database-unreachable": Case(
        ("run", "import_events"),
        4,
        "database unavailable at postgresql+psycopg://app:***@127.0.0.1:1/app",
        env={"DATABASE_URL": UNREACHABLE},
        db="none",
    ),
    "wrong-password": Case(
        ("nightly",), 4, 'password authentication failed for user "postgres"', db="wrong_password"
    ),
    "migrations-not-applied": Case(("nightly",), 4, "the job tables are not migrated", db="empty"),
    "threshold-zero": Case(
        ("nightly",),
        3,
        "STALE_JOB_THRESHOLD_MS must be a positive integer",
        env={"STALE_JOB_THRESHOLD_MS": "0"},
    ),
    "threshold-negative": Case(
        ("run", "import_events"),
        3,
        "STALE_JOB_THRESHOLD_MS must be a positive integer",
        env={"STALE_JOB_THRESHOLD_MS": "-5000"},
    ),
    "threshold-not-a-number": Case(
        ("nightly",),
        3,
        "STALE_JOB_THRESHOLD_MS must be a positive integer (milliseconds",
        env={"STALE_JOB_THRESHOLD_MS": "5m"},
    ),
    "heartbeat-half-the-threshold": Case(
        ("nightly",),
        3,
        "JOB_HEARTBEAT_INTERVAL_MS (5000) must be less than half",
        env={"STALE_JOB_THRESHOLD_MS": "10000", "JOB_HEARTBEAT_INTERVAL_MS": "5000"},
    ),
    "enabled-flag-invalid": Case(
        ("nightly",),
        3,
        "IMPORT_EVENTS_ENABLED must be one of true/false",
        env={"IMPORT_EVENTS_ENABLED": "maybe"},
    ),
    "unknown-timezone": Case(
        ("nightly",),
        3,
        "SYNC_CRON_TIMEZONE 'Mars/Olympus_Mons' is not a known IANA timezone",
        env={"SYNC_CRON_TIMEZONE": "Mars/Olympus_Mons"},
    ),
    "dependency-cycle": Case(
        ("nightly",),
        3,
        "cycle",
        edit=_replace(
            "jobs/import_events.py",
            "    once_per_period=True,\n)",
            '    once_per_period=True,\n    depends_on=["daily_rollup"],\n)',
        ),
    ),
    "unknown-dependency": Case(
        ("nightly",),
        3,
        "no_such_job",
        edit=_replace(
            "jobs/purge_expired.py",
            "    retries=2,",
            '    depends_on=["no_such_job"],\n    retries=2,',
        ),
    ),
    "duplicate-job-type": Case(
        ("nightly",),
        3,
        "'import_events' is declared twice",
        edit=_replace("jobs/purge_expired.py", '    "purge_expired",', '    "import_events",'),
    ),
    "run-unknown-job": Case(("run", "import_event"), 3, "unknown job 'import_event'"),
    "run-malformed-period": Case(
        ("run", "import_events", "--period", "2026-13-01"), 3, "period '2026-13-01' is not a date"
    ),
    "nightly-malformed-period": Case(
        ("nightly", "--period", "yesterday"), 3, "period 'yesterday' is not a date"
    ),
    "new-bad-name": Case(
        ("new", "Sync-Users"), 6, "is not a lowercase identifier", edit=_no_edit, db="none"
    ),
    "new-sql-name": Case(
        ("new", "x'; DROP TABLE job_execution; --"),
        6,
        "is not a lowercase identifier",
        edit=_no_edit,
        db="none",
    ),
    "new-existing-name": Case(
        ("new", "daily_rollup"), 6, "job 'daily_rollup' already exists", edit=_no_edit, db="none"
    ),
    "new-path-name": Case(("new", "../evil"), 6, "looks like a path", edit=_no_edit, db="none"),
    "new-keyword": Case(("new", "lambda"), 6, "is a Python keyword", edit=_no_edit, db="none"),
}


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _counts(url: URL) -> dict[str, int]:
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            return {
                t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
                for t in sorted(tables)
            }
    finally:
        engine.dispose()


@dataclass
class Ran:
    case: Case
    result: Any
    cwd: Path
    files_before: dict[str, str]
    files_after: dict[str, str]
    counts_before: dict[str, int]
    counts_after: dict[str, int]


@pytest.fixture(scope="module")
def ran(
    nightly_pg_template: str,
    throwaway_cluster: ThrowawayCluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Ran]]:
    app = testing.create_pg_database(template=nightly_pg_template)
    empty = testing.create_pg_database()
    throwaway_cluster.ensure_started()
    guarded = throwaway_cluster.create_database()
    guarded_engine = make_engine(guarded)
    try:
        from prefect_nightly_jobs import schema

        schema.upgrade(guarded_engine)
    finally:
        guarded_engine.dispose()
    db_urls = {
        "app": app,
        "empty": empty,
        "wrong_password": guarded.set(password=WRONG),
        "none": None,
    }
    counted = {"app": app, "empty": empty, "wrong_password": guarded, "none": None}

    def one(name: str) -> Ran:
        case = CASES[name]
        base = tmp_path_factory.mktemp(name)
        # Every case runs inside a project, as a user would: a copy of the reference one.
        cwd = copy_project(base / "project")
        extra = {"PYTHONPATH": str(cwd)}
        if case.edit is not None:
            case.edit(cwd)
        url = db_urls[case.db]
        env = {
            # Never the shared Prefect server or a real one: a case that got that far has failed.
            "PREFECT_HOME": str(base / "prefect-home"),
            "PREFECT_API_URL": "http://127.0.0.1:9/api",
            **({"DATABASE_URL": url_text(url)} if url is not None else {}),
            **extra,
            **case.env,
        }
        target = counted[case.db]
        counts_before = _counts(target) if target is not None else {}
        files_before = _files(cwd)
        result = run_jobctl(*case.args, cwd=cwd, env=subprocess_env(**env), timeout=120)
        return Ran(
            case=case,
            result=result,
            cwd=cwd,
            files_before=files_before,
            files_after=_files(cwd),
            counts_before=counts_before,
            counts_after=_counts(target) if target is not None else {},
        )

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            yield dict(zip(CASES, pool.map(one, CASES), strict=True))
    finally:
        testing.drop_pg_database(app)
        testing.drop_pg_database(empty)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_code_nothing_written(ran: dict[str, Ran], name: str) -> None:
    done = ran[name]
    out, err = done.result.stdout, done.result.stderr
    assert done.result.returncode == done.case.code, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    assert done.case.says in lines[0], lines[0]
    # "naming the fix": every message says what to do, after a colon or in parentheses.
    fix = r"(must be|(: |\()(use|give|run|pick|fix|rename|lower|check|set|see|remove|register)\b)"
    assert re.search(fix, lines[0]), lines[0]
    assert "Traceback" not in out + err
    for secret in (SECRET, WRONG, PASSWORD):
        assert secret not in out + err
    assert done.files_after == done.files_before, "files were written or changed"
    assert done.counts_after == done.counts_before, "the database was written to"


def test_migrations_not_applied_leaves_the_database_empty(ran: dict[str, Ran]) -> None:
    done = ran["migrations-not-applied"]
    assert done.counts_after == {}, "a table was created in the unmigrated database"
    assert "run `jobctl db upgrade`" in done.result.stderr


def test_invalid_cron_is_reported_by_check_and_writes_nothing(pg_url: URL, tmp_path: Path) -> None:
    """SYNC_CRON_SCHEDULE is only used by the deployment: `prefect deploy` refuses it with one
    line (tests/e2e) and `jobctl check` reports it among its checks."""
    before = _counts(pg_url)
    project = copy_project(tmp_path / "project")
    files = sorted(project.rglob("*"))
    result = run_jobctl(
        "check",
        cwd=project,
        env=subprocess_env(DATABASE_URL=url_text(pg_url), SYNC_CRON_SCHEDULE="61 * * * *"),
        timeout=120,
    )
    # The table wraps long cells onto the next row: read it without its borders.
    out = " ".join((result.stdout + result.stderr).replace("│", " ").split())
    assert result.returncode == 1, out
    assert "SYNC_CRON_SCHEDULE '61 * * * *' is not a valid cron expression" in out
    assert "e.g. '0 0 * * *' (daily at midnight)" in out
    assert "1 check(s) failed: schedule" in out
    assert "Traceback" not in out
    assert _counts(pg_url) == before
    assert sorted(project.rglob("*")) == files, "check wrote a file"
