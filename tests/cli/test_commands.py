"""Every jobctl command in-process (CliRunner) on PostgreSQL and SQLite, success and failure."""

from __future__ import annotations

import json
from datetime import date

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from prefect_nightly_jobs import LockAcquired, LockPolicy, Origin, Status, acquire_job_lock
from prefect_nightly_jobs.lock import record_outcome
from tests.cli.conftest import Invoke

POLICY = LockPolicy(stale_after_ms=60_000, heartbeat_every_ms=10_000)
DAY = date(2026, 11, 20)
COMMANDS = ["new", "list", "check", "status", "history", "unlock", "run", "nightly", "deployments"]


def hold(engine: Engine, job_type: str) -> LockAcquired:
    result = acquire_job_lock(
        engine, job_type, policy=POLICY, period=DAY, origin=Origin(owner="worker-7:4242")
    )
    assert isinstance(result, LockAcquired), result
    return result


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(cli: Invoke, command: str) -> None:
    result = cli(command, "--help")
    assert result.exit_code == 0, result.output
    assert f"Usage: jobctl {command}" in result.stdout
    assert len(result.stdout.split()) > 30  # a real explanation, not just the usage line


def test_top_level_help_lists_commands_and_exit_codes(cli: Invoke) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.stdout
    assert "Exit codes" in result.stdout


@pytest.mark.usefixtures("clean_env")
def test_list_shows_jobs_in_run_order_with_their_flags(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAILY_ROLLUP_ENABLED", "off")
    result = cli("list")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.index("import_events") < out.index("daily_rollup") < out.index("purge_expired")
    assert "no (DAILY_ROLLUP_ENABLED)" in out
    rollup_line = next(line for line in out.splitlines() if "daily_rollup " in line)
    assert "import_events" in rollup_line  # its dependency


@pytest.mark.usefixtures("clean_env")
def test_bad_settings_stop_every_command_with_one_line(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PURGE_EXPIRED_ENABLED", "sometimes")
    for command in ("list", "status", "history", "run purge_expired", "nightly"):
        result = cli(*command.split())
        assert result.exit_code == 3, (command, result.output)
        assert "PURGE_EXPIRED_ENABLED must be one of" in one_error_line(result.stderr)
    monkeypatch.delenv("PURGE_EXPIRED_ENABLED")
    monkeypatch.setenv("STALE_JOB_THRESHOLD_MS", "-5")
    result = cli("status")
    assert result.exit_code == 3
    assert "STALE_JOB_THRESHOLD_MS must be a positive integer" in one_error_line(result.stderr)
    monkeypatch.delenv("STALE_JOB_THRESHOLD_MS")
    monkeypatch.setenv("DATABASE_URL", "mysql://root:hunter2@db/app")
    result = cli("status")
    assert result.exit_code == 3
    line = one_error_line(result.stderr)
    assert "unsupported driver 'mysql'" in line and "hunter2" not in line


def test_check_passes_on_a_migrated_database(cli: Invoke, app_db: URL) -> None:
    result = cli("check")
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.stdout
    for name in ("settings", "jobs", "schedule", "timezone", "database", "migrations", "tables"):
        assert name in result.stdout


def test_check_fails_on_a_bad_cron_and_says_so(
    cli: Invoke, app_db: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNC_CRON_SCHEDULE", "every night")
    result = cli("check")
    assert result.exit_code == 1
    schedule = next(line for line in result.stdout.splitlines() if "schedule" in line)
    assert "FAIL" in schedule and "not a valid cron expression" in schedule
    assert "1 check(s) failed: schedule" in result.stderr


def test_status_shows_last_and_running_executions(cli: Invoke, app_db: URL, engine: Engine) -> None:
    hold(engine, "import_events").lease.succeed()
    record_outcome(engine, "daily_rollup", Status.SKIPPED, "upstream import_events failed")
    running = hold(engine, "purge_expired")
    try:
        table = cli("status")
        as_json = cli("status", "--json")
    finally:
        running.lease.succeed()
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert "SUCCESS" in next(line for line in lines if "import_events" in line)
    assert "upstream import_events failed" in next(line for line in lines if "daily_rollup" in line)
    assert "never run" in next(line for line in lines if "purge_expired" in line)
    assert f"execution {running.execution.id} on worker-7:4242" in table.stdout

    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    jobs = {job["job_type"]: job for job in data["jobs"]}
    assert list(jobs) == ["import_events", "daily_rollup", "purge_expired"]
    assert jobs["import_events"]["last"]["status"] == "SUCCESS"
    assert jobs["import_events"]["last"]["period"] == DAY.isoformat()
    assert jobs["daily_rollup"]["last"]["message"] == "upstream import_events failed"
    assert jobs["purge_expired"]["last"] is None
    live = jobs["purge_expired"]["running"]
    assert live["id"] == running.execution.id and live["status"] == "RUNNING"
    assert live["heartbeat_age_s"] >= 0 and live["owner"] == "worker-7:4242"
    assert all(job["registered"] for job in data["jobs"])


def test_history_is_newest_first_with_filters(cli: Invoke, app_db: URL, engine: Engine) -> None:
    hold(engine, "import_events").lease.succeed()
    hold(engine, "import_events").lease.fail("ValueError: bad feed line 3")
    record_outcome(engine, "daily_rollup", Status.SKIPPED, "upstream import_events failed")

    everything = json.loads(cli("history", "--json").stdout)["executions"]
    assert [(e["job_type"], e["status"]) for e in everything] == [
        ("daily_rollup", "SKIPPED"),
        ("import_events", "FAILURE"),
        ("import_events", "SUCCESS"),
    ]
    only = json.loads(cli("history", "import_events", "-n", "1", "--json").stdout)["executions"]
    assert [(e["status"], e["message"]) for e in only] == [
        ("FAILURE", "ValueError: bad feed line 3")
    ]
    skipped = cli("history", "--status", "skipped")
    assert skipped.exit_code == 0
    assert "daily_rollup" in skipped.stdout and "FAILURE" not in skipped.stdout
    assert "no executions recorded yet for purge_expired" in cli("history", "purge_expired").stdout

    unknown = cli("history", "nope")
    assert unknown.exit_code == 3
    assert "unknown job 'nope'" in one_error_line(unknown.stderr)
    assert cli("history", "--status", "LOST").exit_code == 2
    assert cli("history", "--limit", "0").exit_code == 2


def test_unlock_releases_a_running_job_once(cli: Invoke, app_db: URL, engine: Engine) -> None:
    running = hold(engine, "purge_expired")
    result = cli("unlock", "purge_expired", "--reason", "worker host died")
    assert result.exit_code == 0, result.output
    assert f"released execution {running.execution.id} of purge_expired" in result.stdout
    assert "released by operator: worker host died" in result.stdout
    assert not running.lease.succeed().recorded  # fenced: the operator's FAILURE stays

    row = json.loads(cli("history", "purge_expired", "--json").stdout)["executions"][0]
    assert (row["status"], row["message"]) == ("FAILURE", "released by operator: worker host died")

    again = cli("unlock", "purge_expired", "--reason", "again")
    assert again.exit_code == 5
    assert "nothing to unlock" in one_error_line(again.stderr)
    assert cli("unlock", "purge_expired").exit_code == 2  # --reason is required
    empty = cli("unlock", "purge_expired", "--reason", " ")
    assert empty.exit_code == 5 and "must not be empty" in empty.stderr


@pytest.mark.parametrize(
    "command", ["status", "history --json", "unlock import_events -r x", "check", "run nope"]
)
@pytest.mark.usefixtures("clean_env")
def test_unreachable_database_is_one_line_without_the_password(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pw-123-secret@127.0.0.1:1/app")
    result = cli(*command.split())
    assert "pw-123-secret" not in result.stdout + result.stderr
    if command == "check":  # a report, not an error: the database line says FAIL
        # (libpq's own words vary by version, and the table wraps them.)
        assert result.exit_code == 1
        assert "2 check(s) failed: database, migrations" in result.stderr
    elif command == "run nope":  # an unknown job is refused before the database is touched
        assert result.exit_code == 3 and "unknown job 'nope'" in one_error_line(result.stderr)
    else:
        assert result.exit_code == 4, result.output
        line = one_error_line(result.stderr)
        assert "database unavailable at postgresql+psycopg://app:***@127.0.0.1:1/app" in line


def test_unmigrated_postgresql_is_one_line_with_the_fix(
    cli: Invoke, nightly_pg_template: str, clean_env: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect_nightly_jobs import testing

    url = testing.create_pg_database()
    try:
        monkeypatch.setenv("DATABASE_URL", url.render_as_string(hide_password=False))
        result = cli("status")
    finally:
        testing.drop_pg_database(url)
    assert result.exit_code == 4
    assert "run `jobctl db upgrade`" in one_error_line(result.stderr)


def test_a_job_removed_from_the_catalog_stays_visible(
    cli: Invoke, app_db: URL, engine: Engine
) -> None:
    record_outcome(engine, "retired_job", Status.FAILURE, "RuntimeError: last words")
    stuck = hold(engine, "retired_job")
    try:
        status = json.loads(cli("status", "--json").stdout)
        history = cli("history", "retired_job", "--json")
        released = cli("unlock", "retired_job", "--reason", "job was removed")
    finally:
        stuck.lease.succeed()
    retired = next(job for job in status["jobs"] if job["job_type"] == "retired_job")
    assert retired["registered"] is False and retired["running"]["id"] == stuck.execution.id
    assert [e["status"] for e in json.loads(history.stdout)["executions"]] == ["RUNNING", "FAILURE"]
    assert released.exit_code == 0
    assert "note: 'retired_job' is not a registered job" in released.stdout
