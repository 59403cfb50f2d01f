"""What `jobctl nightly` and `jobctl history --chart` print: plain text when piped (asserted
exactly), and on a terminal the live progress of the run (a rich console forced to be one)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from io import StringIO

import pytest
from rich.console import Console
from sqlalchemy import insert
from sqlalchemy.engine import URL

from prefect_nightly_jobs.cli import render
from prefect_nightly_jobs.database import make_engine
from prefect_nightly_jobs.models import job_execution
from tests.cli.conftest import Invoke

PERIOD = "2026-11-20"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# `jobctl nightly` piped, with an empty feed: one failure, its dependent not run, one success.
# Durations (always under ten seconds here) and the flow run id are the only values that vary.
NIGHTLY_PIPED = """\
Nightly run for 2026-11-20
┏━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━┓
┃ job           ┃ status                    ┃ duration ┃ error / reason                                                                   ┃ execution ┃
┡━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━┩
│ import_events │ FAILURE                   │ 0.00s    │ FileNotFoundError: no events file for 2026-11-20: expected feed/2026-11-20.jsonl │ 1         │
│ daily_rollup  │ SKIPPED (upstream_failed) │ 0.00s    │ upstream import_events failed                                                    │ 2         │
│ purge_expired │ SUCCESS                   │ 0.00s    │                                                                                  │ 3         │
└───────────────┴───────────────────────────┴──────────┴──────────────────────────────────────────────────────────────────────────────────┴───────────┘
period 2026-11-20: 1 succeeded, 1 skipped, 1 failed; not run after a failure: daily_rollup (flow run <id>)
"""


def _trimmed(text: str) -> str:
    """Without the spaces rich pads the title lines with to the table's width."""
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def _normalised(text: str) -> str:
    text = re.sub(r"\b\d\.\d\ds\b", "0.00s", text)
    return _trimmed(UUID.sub("<id>", text))


@pytest.fixture
def failing_feed(job_env: URL, monkeypatch: pytest.MonkeyPatch) -> None:
    # Relative to the test's working directory (job_env's clean cwd): the message is the same
    # in every run, so the whole table can be compared.
    monkeypatch.setenv("IMPORT_EVENTS_SOURCE", "feed")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_nightly_piped_is_the_plain_table_and_nothing_else(cli: Invoke, failing_feed: None) -> None:
    result = cli("nightly", "--period", PERIOD)
    assert result.exit_code == 1, result.output
    assert not ANSI.search(result.stdout), "no colour or cursor codes in a pipe"
    assert _normalised(result.stdout) == NIGHTLY_PIPED


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_nightly_on_a_terminal_shows_progress_then_the_same_table(
    cli: Invoke, failing_feed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    screen = StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100, color_system="truecolor")
    monkeypatch.setattr(render, "progress_console", lambda: terminal)
    result = cli("nightly", "--period", PERIOD)
    assert result.exit_code == 1, result.output
    assert _normalised(result.stdout) == NIGHTLY_PIPED, "progress never reaches stdout"
    drawn = ANSI.sub("", screen.getvalue())
    # Which job is running, done / total, elapsed; then one line per finished job.
    for frame in (
        "running import_events",
        "0/3 jobs",
        "running daily_rollup",
        "1/3 jobs",
        "running purge_expired",
        "2/3 jobs",
        "3/3 jobs",
    ):
        assert frame in drawn, f"{frame!r} never drawn:\n{drawn}"
    assert re.search(r"\d:\d\d:\d\d", drawn), "no elapsed time"
    finished = [line.strip() for line in drawn.splitlines() if re.search(r"\d\.\d\ds$", line)]
    assert [re.sub(r"\d\.\d\ds$", "", line).strip() for line in finished] == [
        "FAILURE import_events",
        "SKIPPED (upstream_failed) daily_rollup",
        "SUCCESS purge_expired",
    ]
    assert "\x1b[" in screen.getvalue(), "a terminal gets colours and cursor moves"


def test_nightly_draws_nothing_when_stderr_is_not_a_terminal(cli: Invoke) -> None:
    assert render.progress_console() is None  # pytest captures stderr: not a terminal


def _add(url: URL, *rows: tuple[str, float]) -> None:
    """Executions of daily_rollup, one a day from 2026-11-01, each ``(status, seconds)``."""
    engine = make_engine(url)
    start = datetime(2026, 11, 2, 0, 0, 5, tzinfo=UTC)
    try:
        with engine.begin() as conn:
            for day, (status, duration) in enumerate(rows):
                begun = start + timedelta(days=day)
                conn.execute(
                    insert(job_execution).values(
                        job_type="daily_rollup",
                        status=status,
                        period=date(2026, 11, 1) + timedelta(days=day),
                        started_at=begun,
                        completed_at=begun + timedelta(seconds=duration),
                        skip_kind="disabled" if status == "SKIPPED" else None,
                    )
                )
    finally:
        engine.dispose()


CHART = """\
Durations of daily_rollup, oldest first
┏━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┓
┃ id ┃ period     ┃ started              ┃ status  ┃ duration ┃                                          ┃
┡━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┩
│  1 │ 2026-11-01 │ 2026-11-02 00:00:05Z │ SUCCESS │    1.00s │ ██████████                               │
│  2 │ 2026-11-02 │ 2026-11-03 00:00:05Z │ SUCCESS │    1.00s │ ██████████                               │
│  4 │ 2026-11-04 │ 2026-11-05 00:00:05Z │ FAILURE │    0.50s │ █████                                    │
│  5 │ 2026-11-05 │ 2026-11-06 00:00:05Z │ SUCCESS │    2.00s │ ████████████████████                     │
│  6 │ 2026-11-06 │ 2026-11-07 00:00:05Z │ SUCCESS │    4.00s │ ████████████████████████████████████████ │
└────┴────────────┴──────────────────────┴─────────┴──────────┴──────────────────────────────────────────┘
last run 4.00s: 4.0x the median of the 4 before (1.00s)
"""


def test_history_chart_piped_exactly(cli: Invoke, app_db: URL) -> None:
    _add(
        app_db,
        ("SUCCESS", 1.0),
        ("SUCCESS", 1.0),
        ("SKIPPED", 0.0),  # did no work: not a duration worth drawing
        ("FAILURE", 0.5),
        ("SUCCESS", 2.0),
        ("SUCCESS", 4.0),
    )
    result = cli("history", "daily_rollup", "--chart")
    assert result.exit_code == 0, result.output
    assert not ANSI.search(result.stdout)
    assert _trimmed(result.stdout) == CHART
    last_three = cli("history", "daily_rollup", "--chart", "--limit", "3")
    lines = _trimmed(last_three.stdout).splitlines()
    assert [line.split("│")[1].strip() for line in lines[4:-2]] == ["4", "5", "6"]


def test_history_chart_on_a_terminal_is_coloured_by_status(
    cli: Invoke, app_db: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    _add(app_db, ("SUCCESS", 1.0), ("FAILURE", 2.0))
    screen = StringIO()
    terminal = Console(file=screen, force_terminal=True, width=120, color_system="standard")
    monkeypatch.setattr(render, "console", lambda: terminal)
    result = cli("history", "daily_rollup", "--chart")
    assert result.exit_code == 0, result.output
    drawn = screen.getvalue()
    green_bar, red_bar = "\x1b[32;49m█", "\x1b[31;49m█"  # foreground on the default background
    rows = [line for line in drawn.splitlines() if "2026-11-0" in line]
    assert len(rows) == 2
    assert green_bar in rows[0] and red_bar not in rows[0]
    assert red_bar in rows[1] and green_bar not in rows[1]


def test_history_chart_needs_one_job_and_no_json(cli: Invoke, app_db: URL) -> None:
    no_name = cli("history", "--chart")
    assert no_name.exit_code == 2
    assert "--chart draws one job: give its NAME" in no_name.stderr
    both = cli("history", "daily_rollup", "--chart", "--json")
    assert both.exit_code == 2
    assert "use either --chart or --json" in both.stderr
