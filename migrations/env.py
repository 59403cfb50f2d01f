"""Alembic environment for this project's own tables (jobs/models.py).

The plugin's table (job_execution) has its own migrations and version table (`jobctl db upgrade`);
this history uses Alembic's default version table and never looks at the plugin's tables.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection

from jobs.models import Base
from prefect_nightly_jobs import JobsError, engine_from_settings, load_settings


def _own_tables_only(name: str | None, type_: str, parent_names: Any) -> bool:
    return type_ != "table" or name in Base.metadata.tables


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_name=_own_tables_only,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection: Any = context.config.attributes.get("connection")
    if connection is not None:  # given a connection (the plugin's pytest fixtures migrate so)
        _run(connection)
        return
    if context.config.config_file_name is not None:  # the `alembic` command: log as it does
        fileConfig(context.config.config_file_name, disable_existing_loggers=False)
    try:
        engine = engine_from_settings(load_settings())  # DATABASE_URL, never this project's files
        try:
            with engine.connect() as conn:
                _run(conn)
                conn.commit()
        finally:
            engine.dispose()
    except JobsError as err:
        raise SystemExit(f"error: {err}") from None


run_migrations_online()
