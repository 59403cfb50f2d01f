"""Migrations in the spirit of pytest-alembic, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import URL

from prefect_nightly_jobs import schema, testing
from prefect_nightly_jobs.database import make_engine
from prefect_nightly_jobs.errors import MigrationsNotAppliedError


def test_single_head() -> None:
    heads = ScriptDirectory.from_config(schema.alembic_config()).get_heads()
    assert len(heads) == 1, f"migrations have several heads: {heads}"


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "include_name": schema.include_name,
                "compare_type": True,
                "version_table": schema.VERSION_TABLE,
            },
        )
        diff = compare_metadata(ctx, schema.target_metadata())
        conn.rollback()
    return list(diff)


def test_up_down_up_and_models_match(empty_url: URL) -> None:
    engine = make_engine(empty_url)
    try:
        schema.upgrade(engine)
        assert schema.current_revisions(engine) == schema.head_revisions()
        assert _diff(engine) == [], "ORM models and migrated schema differ"
        schema.downgrade(engine, "base")
        assert schema.current_revisions(engine) == set()
        leftover = set(inspect(engine).get_table_names()) - {schema.VERSION_TABLE}
        assert leftover == set(), f"downgrade left tables behind: {leftover}"
        schema.upgrade(engine)
        assert _diff(engine) == []
    finally:
        engine.dispose()


def test_every_step_goes_down_and_up(empty_url: URL) -> None:
    engine = make_engine(empty_url)
    try:
        revisions = list(ScriptDirectory.from_config(schema.alembic_config()).walk_revisions())
        for rev in reversed(revisions):  # base → head, one step at a time, each undone and redone
            schema.upgrade(engine, rev.revision)
            schema.downgrade(engine, rev.down_revision or "base")  # type: ignore[arg-type]
            schema.upgrade(engine, rev.revision)
    finally:
        engine.dispose()


def test_own_version_table_beside_host_app(empty_url: URL) -> None:
    """The host application's alembic_version table is neither read nor touched."""
    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
            conn.exec_driver_sql("INSERT INTO alembic_version VALUES ('hostapp123')")
            conn.exec_driver_sql("CREATE TABLE host_orders (id INTEGER PRIMARY KEY)")
        schema.upgrade(engine)
        assert _diff(engine) == [], "autogenerate must ignore the host application's tables"
        with engine.connect() as conn:
            host = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one()
            conn.rollback()
        assert host == "hostapp123"
        assert schema.VERSION_TABLE in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_unmigrated_database_is_a_clear_error_on_postgresql(nightly_pg_template: str) -> None:
    url = testing.create_pg_database()
    engine = make_engine(url)
    try:
        with pytest.raises(MigrationsNotAppliedError, match="run `jobctl db upgrade`"):
            schema.ensure_schema(engine)
    finally:
        engine.dispose()
        testing.drop_pg_database(url)


def test_embedded_sqlite_creates_its_schema(tmp_path: Path) -> None:
    url = testing.create_sqlite_database(tmp_path)
    engine = make_engine(url)
    try:
        schema.ensure_schema(engine)
        assert schema.current_revisions(engine) == schema.head_revisions()
        assert "job_execution" in set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
