"""Bad configuration fails at start-up with one line that names the variable and the fix."""

from __future__ import annotations

import socket

import pytest

from prefect_nightly_jobs.database import engine_from_settings, make_engine, normalize_url
from prefect_nightly_jobs.errors import ConfigurationError, DatabaseError
from prefect_nightly_jobs.schema import ensure_schema
from prefect_nightly_jobs.settings import (
    Settings,
    job_enabled,
    load_settings,
    mask_url,
    validate_enabled_flags,
)


def _error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.usefixtures("clean_env")
def test_defaults() -> None:
    settings = load_settings()
    assert settings.database_url.get_secret_value() == "sqlite:///jobs.sqlite3"
    assert settings.stale_job_threshold_ms == 300_000
    assert settings.heartbeat_interval_ms == 60_000
    assert settings.sync_cron_schedule == "0 0 * * *"
    assert settings.max_parallel_jobs == 1


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"STALE_JOB_THRESHOLD_MS": "abc"},
            "STALE_JOB_THRESHOLD_MS must be a positive integer (milliseconds, at least 10)",
        ),
        (
            {"STALE_JOB_THRESHOLD_MS": "0"},
            "STALE_JOB_THRESHOLD_MS must be a positive integer (milliseconds, at least 10)",
        ),
        (
            {"STALE_JOB_THRESHOLD_MS": "2"},
            "STALE_JOB_THRESHOLD_MS must be a positive integer (milliseconds, at least 10)",
        ),
        ({"STALE_JOB_THRESHOLD_MS": "-5"}, "got '-5'"),
        (
            {"JOB_HEARTBEAT_INTERVAL_MS": "x"},
            "JOB_HEARTBEAT_INTERVAL_MS must be a positive integer",
        ),
        (
            {"STALE_JOB_THRESHOLD_MS": "1000", "JOB_HEARTBEAT_INTERVAL_MS": "500"},
            "JOB_HEARTBEAT_INTERVAL_MS (500) must be less than half of STALE_JOB_THRESHOLD_MS",
        ),
        ({"SYNC_CRON_TIMEZONE": "Mars/Olympus"}, "not a known IANA timezone"),
        ({"MAX_PARALLEL_JOBS": "0"}, "MAX_PARALLEL_JOBS must be an integer from 1 to 64"),
        (
            {"MAX_PARALLEL_JOBS": "65"},
            "MAX_PARALLEL_JOBS must be an integer from 1 to 64, got '65'",
        ),
    ],
)
def test_invalid_values(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    assert expected in _error(monkeypatch, **env)


@pytest.mark.usefixtures("clean_env")
def test_empty_template_values_mean_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_CRON_SCHEDULE", "")
    monkeypatch.setenv("DATABASE_URL", " ")
    settings = load_settings()
    assert settings.sync_cron_schedule == "0 0 * * *"
    assert settings.database_url.get_secret_value() == "sqlite:///jobs.sqlite3"


def test_dotenv_is_read(clean_env: object, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".env").write_text("STALE_JOB_THRESHOLD_MS=90000\nIMPORT_ENABLED=off\n")  # type: ignore[operator]
    assert load_settings().stale_job_threshold_ms == 90_000
    assert job_enabled("import") is False
    monkeypatch.setenv("IMPORT_ENABLED", "YES")  # the real environment wins over .env
    assert job_enabled("import") is True


@pytest.mark.parametrize("value", ["true", "1", "yes", "ON", "True", ""])
def test_enabled_values(value: str) -> None:
    assert job_enabled("daily_rollup", {"DAILY_ROLLUP_ENABLED": value}) is True


@pytest.mark.parametrize("value", ["false", "0", "no", "OFF"])
def test_disabled_values(value: str) -> None:
    assert job_enabled("daily_rollup", {"DAILY_ROLLUP_ENABLED": value}) is False


@pytest.mark.usefixtures("clean_env")
def test_invalid_enabled_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAILY_ROLLUP_ENABLED", "maybe")
    with pytest.raises(ConfigurationError) as info:
        validate_enabled_flags(["daily_rollup"])
    assert str(info.value) == (
        "DAILY_ROLLUP_ENABLED must be one of true/false/1/0/yes/no/on/off (any case), got 'maybe'"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:s3cret@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_url_normalization(url: str, expected: str) -> None:
    assert normalize_url(url).drivername == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "DATABASE_URL is not a valid database URL"),
        ("mysql://root:s3cret@h/db", "unsupported driver 'mysql'"),
        ("postgresql+asyncpg://u:s3cret@h/db", "unsupported driver"),
        ("sqlite://", "in-memory SQLite"),
    ],
)
def test_bad_urls_are_one_line_without_password(url: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        normalize_url(url)
    assert expected in str(info.value)
    assert "s3cret" not in str(info.value)
    assert "\n" not in str(info.value)


def test_mask_url_even_when_malformed() -> None:
    assert mask_url("postgresql://bob:pa:ss@w@rd@host/db").count("***") == 1
    assert "pa:ss" not in mask_url("postgresql://bob:pa:ss@host/db")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_database_is_one_clear_line() -> None:
    url = f"postgresql://app:hunter2@127.0.0.1:{_free_port()}/app"
    engine = engine_from_settings(Settings(database_url=url))  # type: ignore[arg-type]
    try:
        with pytest.raises(DatabaseError) as info:
            ensure_schema(engine)
    finally:
        engine.dispose()
    message = str(info.value)
    assert message.startswith("database unavailable at postgresql+psycopg://app:***@127.0.0.1:")
    assert "check DATABASE_URL" in message
    assert "hunter2" not in message and "\n" not in message
    assert isinstance(info.value.__cause__, Exception)


def test_unknown_database_name_is_one_clear_line(nightly_pg_template: str) -> None:
    from prefect_nightly_jobs.testing import admin_url

    engine = make_engine(admin_url().set(database="no_such_db_here", password="hunter2"))
    try:
        with pytest.raises(DatabaseError, match="no_such_db_here") as info:
            ensure_schema(engine)
    finally:
        engine.dispose()
    assert "hunter2" not in str(info.value)
