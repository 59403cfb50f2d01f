"""Alembic environment for the plugin's table.

The plugin keeps its own version table (``nightly_jobs_alembic_version``) and only ever looks at
its own table, so it lives beside the host application's migrations in the same database.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection

from prefect_nightly_jobs.schema import VERSION_TABLE, include_name, target_metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        version_table=VERSION_TABLE,
        include_name=include_name,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection: Any = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Run from the `alembic` command line: log like alembic does, and answer bad configuration or an
    # unreachable database with one line instead of a traceback.
    from logging.config import fileConfig

    from prefect_nightly_jobs.database import engine_from_settings, make_engine, translated_errors
    from prefect_nightly_jobs.errors import JobsError
    from prefect_nightly_jobs.settings import load_settings

    config = context.config
    if config.config_file_name is not None and config.file_config.has_section("loggers"):
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    try:
        # A host's alembic.ini may name the database in the section that runs these scripts
        # (`alembic --name nightly_jobs …`); otherwise DATABASE_URL, as everywhere else.
        url = context.config.get_main_option("sqlalchemy.url")
        engine = make_engine(url) if url else engine_from_settings(load_settings())
        try:
            with translated_errors(engine.url), engine.connect() as conn:
                _run(conn)
                conn.commit()
        finally:
            engine.dispose()
    except JobsError as err:
        raise SystemExit(f"error: {err}") from None


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
run_migrations_online()
