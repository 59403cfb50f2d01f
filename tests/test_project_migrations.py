"""The project's own migrations beside the plugin's: two histories, two version tables, one
database; and a host project that runs the plugin's history from its own alembic.ini."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import URL

from jobs.models import Base
from prefect_nightly_jobs import schema
from prefect_nightly_jobs.database import make_engine
from tests import REPO_ROOT

BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path, url: URL | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if url is not None:
        env["DATABASE_URL"] = url.render_as_string(hide_password=False)
    done = subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done


def _version(url: URL, table: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table": table})
            heads = set(ctx.get_current_heads())
            conn.rollback()
        return heads
    finally:
        engine.dispose()


def _tables(url: URL) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_the_reference_project_history_has_one_head_and_matches_its_models(
    empty_url: URL,
) -> None:
    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    assert len(ScriptDirectory.from_config(cfg).get_heads()) == 1
    engine = make_engine(empty_url)
    try:
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            command.downgrade(cfg, "base")
            command.upgrade(cfg, "head")
            conn.commit()
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, type_, _: (
                        type_ != "table" or name in Base.metadata.tables
                    ),
                },
            )
            assert list(compare_metadata(ctx, Base.metadata)) == []
            conn.rollback()
    finally:
        engine.dispose()


def test_plugin_and_project_histories_apply_beside_each_other(empty_url: URL) -> None:
    """The project's `alembic upgrade head` and `jobctl db upgrade`, in either order, each keep
    to their own version table and leave the other's untouched."""
    first = _run(["alembic", "upgrade", "head"], REPO_ROOT, empty_url)
    assert "Running upgrade  -> 0001" in first.stderr
    assert _version(empty_url, "alembic_version") == {"0001"}
    _run(["jobctl", "db", "upgrade"], REPO_ROOT, empty_url)
    assert _version(empty_url, "alembic_version") == {"0001"}
    assert _version(empty_url, schema.VERSION_TABLE) == schema.head_revisions()
    again = _run(["alembic", "upgrade", "head"], REPO_ROOT, empty_url)
    assert "Running upgrade" not in again.stderr  # nothing left to do, nothing broken
    current = _run(["jobctl", "db", "current"], REPO_ROOT, empty_url)
    assert current.stdout.strip() == "nightly_jobs_0003 (at head)"
    tables = _tables(empty_url)
    assert {"job_execution", "imported_event", "daily_event_rollup"} <= tables


def test_a_host_runs_the_plugin_history_from_its_own_alembic_ini(
    empty_url: URL, tmp_path: Path
) -> None:
    """A project with its own Alembic environment adds one section to its alembic.ini and runs
    `alembic --name nightly_jobs upgrade head`: the plugin's scripts are package data."""
    host = tmp_path / "host"
    shutil.copytree(REPO_ROOT / "migrations", host / "migrations")
    shutil.copytree(REPO_ROOT / "jobs", host / "jobs")
    ini = (REPO_ROOT / "alembic.ini").read_text()
    ini += "\n[nightly_jobs]\nscript_location = prefect_nightly_jobs:migrations\n"
    (host / "alembic.ini").write_text(ini)
    _run(["alembic", "upgrade", "head"], host, empty_url)
    _run(["alembic", "--name", "nightly_jobs", "upgrade", "head"], host, empty_url)
    assert _version(empty_url, "alembic_version") == {"0001"}
    assert _version(empty_url, schema.VERSION_TABLE) == schema.head_revisions()
    _run(["alembic", "--name", "nightly_jobs", "downgrade", "base"], host, empty_url)
    assert _version(empty_url, "alembic_version") == {"0001"}, "the host history was touched"
    assert "job_execution" not in _tables(empty_url)


def test_a_host_section_may_name_its_database(empty_url: URL, tmp_path: Path) -> None:
    """`sqlalchemy.url` in the host's [nightly_jobs] section wins over the DATABASE_URL default:
    the plugin's table goes into the host's database, not into a stray jobs.sqlite3."""
    host = tmp_path / "host"
    host.mkdir()
    url = empty_url.render_as_string(hide_password=False).replace("%", "%%")
    section = "[nightly_jobs]\nscript_location = prefect_nightly_jobs:migrations\n"
    (host / "alembic.ini").write_text(f"{section}sqlalchemy.url = {url}\n")
    _run(["alembic", "--name", "nightly_jobs", "upgrade", "head"], host, None)
    assert _version(empty_url, schema.VERSION_TABLE) == schema.head_revisions()
    assert not (host / "jobs.sqlite3").exists()
