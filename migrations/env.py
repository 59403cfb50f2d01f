"""Alembic environment for this application's own tables: the models on ``Base``.

The plugin's table (job_execution, with its version table nightly_jobs_alembic_version) has
migrations of its own (`jobctl db upgrade`): autogenerate compares only the tables of
``Base.metadata`` and never proposes to drop the plugin's. The database is DATABASE_URL (the
plugin's settings, .env included), or the connection the plugin's pytest fixtures hand over;
alembic.ini holds no URL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, exc

from jobs.models import Base

target_metadata = Base.metadata


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Tables found in the database that are not this application's are left alone."""
    if type_ == "table":
        return name in target_metadata.tables
    return True


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_name=include_name,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters a table by copying
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:  # the plugin's pytest fixtures migrate a test database this way
        _run(connection)
        return
    # Run from the `alembic` command line: log like alembic does, and answer bad settings or an
    # unreachable database with one line instead of a traceback.
    from logging.config import fileConfig

    from prefect_nightly_jobs import JobsError, engine_from_settings, load_settings

    if context.config.config_file_name is not None:
        fileConfig(context.config.config_file_name, disable_existing_loggers=False)
    try:
        engine = engine_from_settings(load_settings())
    except JobsError as err:
        raise SystemExit(f"error: {err}") from None
    try:
        try:
            conn = engine.connect()
        except exc.OperationalError as err:
            where = engine.url.render_as_string(hide_password=True)
            reason = (str(err.orig or err).strip().splitlines() or ["no reason given"])[0]
            raise SystemExit(
                f"error: database unavailable at {where}: {reason} "
                "(check DATABASE_URL and that the server is running)"
            ) from None
        with conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
run_migrations_online()
