"""`jobctl run` and `jobctl nightly` through Prefect (the session's test server) on PostgreSQL and
SQLite: what they print, their exit codes, and the rows they leave."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from tests.cli.conftest import Invoke

PERIOD = "2026-11-20"


def statuses(cli: Invoke, *args: str) -> list[tuple[str, str, str | None]]:
    rows = json.loads(cli("history", *args, "--json").stdout)["executions"]
    return [(r["job_type"], r["status"], r["message"]) for r in rows]


def test_run_prints_success_then_skips_then_force_runs(cli: Invoke, job_env: URL) -> None:
    first = cli("run", "import_events", "--period", PERIOD)
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines()[0] == "SUCCESS"

    again = cli("run", "import_events", "--period", PERIOD)
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[0].startswith(
        f"SKIPPED: already succeeded for period {PERIOD}"
    )
    forced = cli("run", "import_events", "--period", PERIOD, "--force")
    assert forced.exit_code == 0 and forced.stdout.splitlines()[0] == "SUCCESS"
    assert [s for _, s, _ in statuses(cli, "import_events")] == ["SUCCESS", "SKIPPED", "SUCCESS"]


def test_run_failure_exits_1_with_the_error(
    cli: Invoke, job_env: URL, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IMPORT_EVENTS_SOURCE", str(tmp_path / "empty-feed"))
    result = cli("run", "import_events", "--period", PERIOD)
    assert result.exit_code == 1, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("FAILURE: FileNotFoundError: no events file for 2026-11-20")
    assert statuses(cli, "import_events")[0][1] == "FAILURE"


def test_run_refuses_unknown_job_and_bad_period(cli: Invoke, job_env: URL) -> None:
    unknown = cli("run", "import_event")
    assert unknown.exit_code == 3
    assert "unknown job 'import_event'" in unknown.stderr
    bad = cli("run", "import_events", "--period", "2026-02-30")
    assert bad.exit_code == 3
    assert "is not a date: use YYYY-MM-DD" in bad.stderr
    assert statuses(cli) == []  # nothing ran


def test_nightly_runs_every_job_and_prints_a_summary(cli: Invoke, job_env: URL) -> None:
    result = cli("nightly", "--period", PERIOD)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.index("import_events") < out.index("daily_rollup") < out.index("purge_expired")
    assert out.count("SUCCESS") == 3
    assert f"period {PERIOD}: 3 succeeded, 0 skipped, 0 failed" in out
    assert [s for _, s, _ in statuses(cli)] == ["SUCCESS"] * 3


def test_nightly_exits_1_when_a_job_failed(
    cli: Invoke, job_env: URL, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IMPORT_EVENTS_SOURCE", str(tmp_path / "empty-feed"))
    result = cli("nightly", "--period", PERIOD)
    assert result.exit_code == 1, result.output
    assert "1 succeeded, 1 skipped, 1 failed" in result.stdout
    assert ("daily_rollup", "SKIPPED", "upstream import_events failed") in statuses(cli)
