"""Pre-deployment checks behind `jobctl check`: each returns OK/FAIL with one line of detail.

Every check runs even when an earlier one failed, unless it needs what that one would have
produced (no settings → no database check), so one run lists every problem at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import URL

from prefect_nightly_jobs import schema
from prefect_nightly_jobs.database import describe_db_error, engine_from_settings, normalize_url
from prefect_nightly_jobs.errors import JobsError
from prefect_nightly_jobs.project import find_project
from prefect_nightly_jobs.registry import Registry
from prefect_nightly_jobs.schedule import run_period, validate_schedule
from prefect_nightly_jobs.settings import Settings, load_settings, validate_enabled_flags


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def _ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, True, detail)


def _fail(name: str, detail: str) -> CheckResult:
    return CheckResult(name, False, detail)


def _sqlite_file(url: URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    return Path(url.database)


def check_database(settings: Settings) -> tuple[CheckResult, Engine | None]:
    """Reachable, and for the embedded SQLite default: not created by merely checking."""
    name = "database"
    try:
        url = normalize_url(settings.database_url.get_secret_value())
    except JobsError as err:
        return _fail(name, err.message), None
    shown = url.render_as_string(hide_password=True)
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        parent = path.resolve().parent
        if not parent.is_dir():
            return _fail(name, f"{shown}: directory {parent} does not exist: create it"), None
        return _ok(name, f"{shown}: file does not exist yet, created on first run"), None
    engine = engine_from_settings(settings)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            version = ".".join(str(p) for p in (conn.dialect.server_version_info or ()))
            conn.rollback()
    except Exception as err:  # noqa: BLE001 - any driver failure is this check's FAIL line
        engine.dispose()
        return _fail(name, f"{shown}: {describe_db_error(err, url)}"), None
    return _ok(name, f"{shown} ({engine.dialect.name} {version})".replace(" )", ")")), engine


def check_migrations(engine: Engine | None, settings: Settings) -> CheckResult:
    name = "migrations"
    heads = ", ".join(sorted(schema.head_revisions()))
    if engine is None:
        url = normalize_url(settings.database_url.get_secret_value())
        if _sqlite_file(url) is not None:
            return _ok(name, f"embedded SQLite migrates itself to {heads} on first run")
        return _fail(name, "not checked: the database is unreachable")
    try:
        current = schema.current_revisions(engine)
    except Exception as err:  # noqa: BLE001 - reported, not raised: this is a report
        return _fail(name, describe_db_error(err, engine.url))
    found = ", ".join(sorted(current)) or "none"
    if current == schema.head_revisions():
        return _ok(name, f"at head {heads}")
    if engine.dialect.name == "sqlite":
        return _ok(name, f"at {found}, upgraded to {heads} automatically on first run")
    return _fail(
        name,
        f"database at {found}, code expects {heads}: run `jobctl db upgrade` "
        f"with DATABASE_URL set to {engine.url.render_as_string(hide_password=True)}",
    )


def check_project_migrations(engine: Engine | None) -> Iterator[CheckResult]:
    """The project's own Alembic history (its alembic.ini), if it has one, is at head."""
    project = find_project()
    if engine is None or project.alembic_ini is None:
        return
    name = "project migrations"
    try:
        cfg = Config(str(project.alembic_ini))
        heads = set(ScriptDirectory.from_config(cfg).get_heads())
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
            conn.rollback()
    except Exception as err:  # noqa: BLE001 - reported, not raised: this is a report
        yield _fail(name, f"{project.alembic_ini.name}: {describe_db_error(err, engine.url)}")
        return
    if current == heads:
        yield _ok(
            name, f"at head {', '.join(sorted(heads)) or 'none'} ({project.alembic_ini.name})"
        )
    else:
        found = ", ".join(sorted(current)) or "none"
        yield _fail(
            name,
            f"database at {found}, project expects {', '.join(sorted(heads))}: run "
            f"`alembic upgrade head` in {project.root}",
        )


def check_job_tables(engine: Engine | None, registry: Registry | None) -> Iterator[CheckResult]:
    """The plugin's table exists."""
    if engine is None:
        return
    try:
        present = set(inspect(engine).get_table_names())
    except Exception as err:  # noqa: BLE001
        yield _fail("tables", describe_db_error(err, engine.url))
        return
    declared = sorted(schema.target_metadata().tables)
    missing = [t for t in declared if t not in present]
    if missing:
        fix = (
            "run `jobctl db upgrade`"
            if engine.dialect.name != "sqlite"
            else "they are created on first run"
        )
        result = _fail if engine.dialect.name != "sqlite" else _ok
        yield result("tables", f"missing {', '.join(missing)}: {fix}")
    else:
        yield _ok("tables", ", ".join(declared))


def run_checks(load_registry: Callable[[], Registry]) -> list[CheckResult]:
    results: list[CheckResult] = []
    try:
        settings: Settings | None = load_settings()
        assert settings is not None
        results.append(_ok("settings", f"DATABASE_URL={settings.masked_database_url}"))
    except JobsError as err:
        settings = None
        results.append(_fail("settings", err.message))

    registry: Registry | None = None
    try:
        registry = load_registry()
    except Exception as err:  # noqa: BLE001 - a broken job module is a FAIL line, not a traceback
        if isinstance(err, JobsError):
            results.append(_fail("jobs", err.message))
        else:
            why = f"{type(err).__name__}: {err}"
            results.append(_fail("jobs", f"the job catalog does not import: {why}"))
    if registry is not None:
        try:
            order = [spec.job_type for spec in registry.ordered()]
            results.append(_ok("jobs", f"{len(order)} in order: {' -> '.join(order) or 'none'}"))
        except JobsError as err:
            results.append(_fail("jobs", err.message))
        try:
            validate_enabled_flags(spec.job_type for spec in registry)
            disabled = [spec.enabled_flag for spec in registry if not spec.enabled()]
            detail = f"disabled: {', '.join(disabled)}" if disabled else "all enabled"
            results.append(_ok("enable flags", detail))
        except JobsError as err:
            results.append(_fail("enable flags", err.message))

    if settings is None:
        for name in ("schedule", "timezone", "database"):
            results.append(_fail(name, "not checked: fix the settings first"))
        return results

    timezone = settings.sync_cron_timezone  # validated with the settings
    try:
        cron = validate_schedule(settings)
        results.append(_ok("schedule", f"{cron!r} in {settings.sync_cron_timezone}"))
        # Which period a manual run now would be for: the last interval that has ended.
        timezone += f" (a run now is for {run_period(settings).isoformat()})"
    except JobsError as err:
        results.append(_fail("schedule", err.message))
    results.append(_ok("timezone", timezone))

    database, engine = check_database(settings)
    results.append(database)
    try:
        results.append(check_migrations(engine, settings))
        results.extend(check_job_tables(engine, registry))
        results.extend(check_project_migrations(engine))
    finally:
        if engine is not None:
            engine.dispose()
    return results
