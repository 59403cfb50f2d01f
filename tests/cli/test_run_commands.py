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


def test_nightly_backfill_runs_each_period_in_order_and_skips_what_succeeded(
    cli: Invoke, job_env: URL
) -> None:
    done = cli("run", "import_events", "--period", "2026-11-19")
    assert done.exit_code == 0, done.output
    result = cli("nightly", "--from", "2026-11-18", "--to", "2026-11-20")
    assert result.exit_code == 0, result.output
    out = result.stdout
    heads = [line for line in out.splitlines() if line.startswith("period ")]
    assert [h.split(":")[0] for h in heads] == [
        "period 2026-11-18",
        "period 2026-11-19",
        "period 2026-11-20",
    ]
    assert heads[1] == "period 2026-11-19: 2 succeeded, 1 skipped, 0 failed"
    assert out.count("Nightly run for 2026-11-") == 3
    last = out.splitlines()[-1]
    assert last.startswith("backfill 3 periods 2026-11-18..2026-11-20: no failure (flow run ")
    imports = json.loads(cli("history", "import_events", "--json").stdout)["executions"]
    assert [(r["period"], r["status"]) for r in reversed(imports)] == [
        ("2026-11-19", "SUCCESS"),  # the earlier `run`
        ("2026-11-18", "SUCCESS"),
        ("2026-11-19", "SKIPPED"),
        ("2026-11-20", "SUCCESS"),
    ]
    assert imports[1]["message"].startswith("already succeeded for period 2026-11-19")


def test_nightly_backfill_exits_1_when_a_period_failed(
    cli: Invoke, job_env: URL, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    feed = tmp_path / "feed"
    feed.mkdir()
    for day in ("2026-11-18", "2026-11-20"):  # nothing for the 19th: its import fails
        (feed / f"{day}.jsonl").write_text("", encoding="utf-8")
    monkeypatch.setenv("IMPORT_EVENTS_SOURCE", str(feed))
    result = cli("nightly", "--from", "2026-11-18", "--to", "2026-11-20")
    assert result.exit_code == 1, result.output
    assert "period 2026-11-19: 1 succeeded, 1 skipped, 1 failed" in result.stdout
    assert "period 2026-11-20: 3 succeeded, 0 skipped, 0 failed" in result.stdout
    assert "backfill 3 periods 2026-11-18..2026-11-20: 1 with failures (2026-11-19)" in (
        result.stdout
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--from", "2026-11-20", "--to", "2026-11-18"),
            "error: --from 2026-11-20 is after --to 2026-11-18 (period_from, period_to): "
            "give the earlier date first",
        ),
        (
            ("--from", "2026-11-18"),
            "error: a backfill needs both ends: give --from and --to (period_from and period_to)",
        ),
        (
            ("--period", "2026-11-18", "--from", "2026-11-18", "--to", "2026-11-19"),
            "error: --period and --from/--to exclude each other (period, period_from/period_to): "
            "give one period or one range",
        ),
        (
            ("--from", "2026-02-30", "--to", "2026-03-01"),
            "error: --from '2026-02-30' is not a date: use YYYY-MM-DD, e.g. 2026-11-28",
        ),
    ],
)
def test_nightly_refuses_a_bad_range_with_one_line(
    cli: Invoke, app_db: URL, args: tuple[str, ...], message: str
) -> None:
    result = cli("nightly", *args)
    assert result.exit_code == 3, result.output
    assert result.stderr.splitlines() == [message]
    assert statuses(cli) == []  # nothing ran
