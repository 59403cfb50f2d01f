"""The Prefect UI as a person reads it, in a real browser: Debian's chromium driven by Selenium
through Debian's chromium-driver (nothing is downloaded), against the session's real
`prefect server start`, after one nightly deployment run whose jobs end FAILURE, SKIPPED because
that upstream failed, and SUCCESS (``mixed_nightly_run``).

What a user checks: the flow run's state and message; one task run per job with its state
name and colour (Failed red, UpstreamFailed orange, Completed green); the failure's message;
the ``nightly-report`` artifact with the execution ids of the rows; the deployment's cron
schedule and concurrency limit. Every page leaves a screenshot in UI_SCREENSHOTS_DIR (default: a
temp dir); ``make screenshots`` points it at docs/images, so the docs show what this test saw.

The flow run page draws its graph with WebGL, in software here, which makes every WebDriver
command on that page slow (about 0.7 s on a busy 2-core machine): the page is read with a few
scripts that wait inside the page, not with one command per element.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from sqlalchemy import select

from prefect_nightly_jobs.database import make_engine
from prefect_nightly_jobs.models import job_execution
from tests.e2e.conftest import DEPLOYMENT, MixedRun, PrefectServer

pytestmark = [pytest.mark.e2e, pytest.mark.ui]

INSTALL = "apt-get install -y chromium chromium-driver"
SCREENSHOTS_ENV = "UI_SCREENSHOTS_DIR"
WAIT_S = 60  # a page of the UI on a loaded 2-core machine; every wait is bounded
WINDOW = (1280, 1120)

# What the run must look like in the UI, per job: (state name, state type as the UI styles it).
EXPECTED_TASK_STATES = {
    "import_events": ["Failed", "failed"],
    "daily_rollup": ["UpstreamFailed", "crashed"],
    "purge_expired": ["Completed", "completed"],
}

# Helpers every page script can use. badge(el): [name, type] of the state badge inside el.
_PRELUDE = """
const all = (css, root = document) => [...root.querySelectorAll(css)];
const text = el => (el ? el.innerText.trim() : null);
const badge = el => {
  const tag = el && el.querySelector('.state-badge');
  if (!tag) return null;
  const types = [...tag.classList].filter(c => c.startsWith('state--')).map(c => c.slice(7));
  return types.length === 1 ? [text(tag), types[0]] : null;
};
const labelled = label => all('.p-key-value').find(kv => {
  const name = kv.querySelector('.p-key-value__label');
  return name && text(name) === label;
});
"""

_POLL = """
const [body, timeoutMs, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
const check = new Function(body);
const started = Date.now();
(function tick() {
  let found = null;
  try { found = check(); } catch (e) { found = null; }
  if (found) return done(found);
  if (Date.now() - started > timeoutMs) return done(null);
  setTimeout(tick, 200);
})();
"""


def seen(driver: WebDriver, script: str, timeout_s: float) -> Any:
    """What ``script`` (a JS function body, with the helpers above) returns once it returns
    something truthy, polled inside the page for at most ``timeout_s``; else None."""
    return driver.execute_async_script(_POLL, _PRELUDE + script, timeout_s * 1000)


def shown(driver: WebDriver, script: str, what: str) -> Any:
    """``seen`` within WAIT_S seconds, or an AssertionError with what the page says."""
    found = seen(driver, script, WAIT_S)
    if not found:
        page = driver.execute_script("return document.body ? document.body.innerText : '';")
        raise AssertionError(
            f"not seen within {WAIT_S}s: {what} (at {driver.current_url}); the page said:\n"
            f"{str(page)[:3000]}"
        )
    return found


def click(driver: WebDriver, script: str, what: str) -> None:
    """Click (as a user, through WebDriver) the element ``script`` returns once it is there."""
    target = shown(driver, script, what)
    assert isinstance(target, WebElement), f"{what}: not an element"
    target.click()


def open_tab(driver: WebDriver, tab_id: str) -> None:
    """Click the tab until it is the active one: a click that lands while the page is still
    rendering (just after navigating back to it) is lost, and one click would then wait in vain."""
    tab = f"return document.querySelector('li.p-tab#{tab_id}');"
    active = f"return document.querySelector('li.p-tab#{tab_id}.p-tab__active');"
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            click(driver, tab, f"tab {tab_id}")
        except StaleElementReferenceException:
            continue  # re-rendered between finding and clicking: find it again
        if seen(driver, active, 3):
            return
    shown(driver, active, f"tab {tab_id} selected")  # fails, with what the page says


def _system_binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    # Not a skip: a missing browser must fail the suite (make test installs it).
    pytest.fail(f"{names[0]} is not installed: run `{INSTALL}` (as root), or `make test`")


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless chromium. Both paths are given, so Selenium Manager never fetches a driver."""
    options = webdriver.ChromeOptions()
    options.binary_location = _system_binary("chromium", "chromium-browser")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
    ):
        options.add_argument(argument)
    service = Service(executable_path=_system_binary("chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S + 10)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get(SCREENSHOTS_ENV)
    folder = Path(configured) if configured else tmp_path_factory.mktemp("ui-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(driver: WebDriver, folder: Path, name: str, css: str) -> None:
    """The page's main area (without the navigation bar), as docs/images/<name> shows it."""
    area = shown(driver, f"return document.querySelector('{css}');", css)
    target = folder / name
    area.screenshot(str(target))
    assert target.stat().st_size > 0


def execution_rows(run: MixedRun) -> list[Any]:
    engine = make_engine(run.app_db)
    try:
        with engine.connect() as conn:
            query = select(job_execution).where(
                job_execution.c.flow_run_id == run.flow_run.flow_run_id
            )
            return list(conn.execute(query.order_by(job_execution.c.id)))
    finally:
        engine.dispose()


def test_flow_run_page_shows_each_job_state_and_the_failure(
    browser: WebDriver, prefect_server: PrefectServer, mixed_nightly_run: MixedRun, shots: Path
) -> None:
    run = mixed_nightly_run.flow_run
    rows = {row.job_type: row for row in execution_rows(mixed_nightly_run)}
    browser.get(f"{prefect_server.ui_url}/runs/flow-run/{run.flow_run_id}")
    heading = shown(
        browser, "return badge(document.querySelector('.page-heading-flow-run__meta'));", "state"
    )
    assert heading == ["Failed", "failed"], "the night failed: one job did"

    # One task run per job; its state's name, and its type, which sets its colour in the graph
    # and in every list: the job not run is neither green like a success nor red like a failure.
    open_tab(browser, "task-runs")
    listed = shown(
        browser,
        """
        const items = all('.state-list-item');
        if (items.length !== 3 || items.some(i => !badge(i))) return null;
        return {
          count: text(document.querySelector('.flow-run-task-runs__count')),
          runs: items.map(i => [text(i.querySelector('a')), badge(i)]),
        };
        """,
        "three task runs with their states",
    )
    by_job = {name.rsplit("-", 1)[0]: state for name, state in listed["runs"]}
    assert by_job == EXPECTED_TASK_STATES
    assert listed["count"] == "3 Task runs\n(1 Completed, 1 Failed, 1 Crashed)"
    screenshot(browser, shots, "flow-run.png", ".p-layout-default")

    # The flow run's message names the failed job ("See More" shows all of it).
    open_tab(browser, "details")
    see_more = shown(
        browser,
        """
        const kv = labelled('State Message');
        if (!kv) return null;
        return all('*', kv).find(e => text(e) === 'See More') || 'none';
        """,
        "the state message",
    )
    if isinstance(see_more, WebElement):
        see_more.click()
    expected = "3 jobs for 2026-11-29: 1 FAILURE, 1 SKIPPED, 1 SUCCESS; failed: import_events"
    assert run.message == expected
    message = shown(
        browser,
        f"""
        const value = text(labelled('State Message').querySelector('.p-key-value__value'));
        return value && value.includes({expected!r}) ? value : null;
        """,
        "the whole state message",
    )
    assert message.startswith(expected)

    # The failure, on the failed job's own page: its state and the error of its row.
    error = rows["import_events"].error_message
    assert error.startswith("FileNotFoundError: no events file for 2026-11-29: expected ")
    reason = rows["daily_rollup"].error_message
    assert reason == "upstream import_events failed"
    for job, state, lines in (
        (
            "import_events",
            ["Failed", "failed"],
            [f"[import_events] FAILURE: {error}", f"Finished in state Failed('{error}')"],
        ),
        ("daily_rollup", ["UpstreamFailed", "crashed"], [f"[daily_rollup] SKIPPED: {reason}"]),
    ):
        open_tab(browser, "task-runs")
        click(
            browser,
            f"return all('.state-list-item a').find(a => text(a).startsWith('{job}-'));",
            f"the link to {job}'s task run",
        )
        page = shown(
            browser,
            f"""
            const head = document.querySelector('.page-heading-task-run');
            if (!head || !text(head).includes('{job}-') || !badge(head)) return null;
            const logs = all('.log-row__content').map(text);
            return logs.length ? {{state: badge(head), logs}} : null;
            """,
            f"{job}'s task run page and its logs",
        )
        assert page["state"] == state
        for line in lines:
            assert any(log.startswith(line) for log in page["logs"]), (line, page["logs"])
        browser.back()


def test_artifact_shows_the_report_with_execution_ids(
    browser: WebDriver, prefect_server: PrefectServer, mixed_nightly_run: MixedRun, shots: Path
) -> None:
    run = mixed_nightly_run.flow_run
    rows = execution_rows(mixed_nightly_run)
    browser.get(f"{prefect_server.ui_url}/runs/flow-run/{run.flow_run_id}")
    open_tab(browser, "artifacts")
    click(
        browser,
        "return all('a').find(a => text(a.querySelector('.artifact-card__title')) === "
        "'nightly-report');",
        "the nightly-report card",
    )
    table = shown(
        browser,
        """
        const table = document.querySelector('.p-layout-well table');
        if (!table || all('tbody tr', table).length !== 3) return null;
        return {
          header: all('th', table).map(text),
          rows: all('tbody tr', table).map(tr => all('td', tr).map(text)),
        };
        """,
        "the nightly-report table",
    )
    assert table["header"] == ["job", "status", "execution id", "duration", "reason / error"]
    assert [(r[0], r[1], r[2], r[4]) for r in table["rows"]] == [
        ("import_events", "FAILURE", str(rows[0].id), rows[0].error_message),
        ("daily_rollup", "SKIPPED (upstream_failed)", str(rows[1].id), rows[1].error_message),
        ("purge_expired", "SUCCESS", str(rows[2].id), ""),
    ]
    assert all(r[3].endswith("s") for r in table["rows"]), "a duration per job"
    screenshot(browser, shots, "artifact.png", ".p-layout-well")


def test_deployment_page_shows_cron_schedule_and_concurrency_limit(
    browser: WebDriver, prefect_server: PrefectServer, mixed_nightly_run: MixedRun, shots: Path
) -> None:
    found = prefect_server.api("GET", f"/deployments/name/{DEPLOYMENT}")
    night = prefect_server.flow_run(mixed_nightly_run.flow_run.flow_run_id)["name"]
    browser.get(f"{prefect_server.ui_url}/deployments/deployment/{found.json()['id']}")
    details = shown(
        browser,
        f"""
        const schedule = text(document.querySelector('.deployment-schedule-card__content'));
        const limit = labelled('Concurrency Limit');
        // Loaded: the work pool link and the night's run in the list, with its state.
        const pool = all('a').some(a => text(a) === 'nightly-pool');
        const run = all('.state-list-item').find(i => text(i).includes({night!r}));
        if (!schedule || !limit || !pool || !run || !badge(run)) return null;
        return [schedule, text(limit.querySelector('.p-key-value__value')), badge(run)];
        """,
        "the schedule, the concurrency limit and the night's run",
    )
    assert details == ["At 12:00 AM every day", "1", ["Failed", "failed"]]
    screenshot(browser, shots, "deployment.png", ".p-layout-well")

    # The cron expression itself, as the schedule's editor shows it (closed without saving).
    click(browser, "return document.querySelector('.deployment-schedule__menu button');", "menu")
    click(browser, "return all('.p-overflow-menu-item').find(b => text(b) === 'Edit');", "Edit")
    editor = shown(
        browser,
        """
        const dialog = document.querySelector('[role=dialog]');
        const cron = dialog && all('input.p-text-input__control', dialog).find(i => i.value);
        return cron ? {cron: cron.value, utc: text(dialog).includes('UTC'), field: cron} : null;
        """,
        "the schedule editor's cron field",
    )
    assert (editor["cron"], editor["utc"]) == ("0 0 * * *", True)
    editor["field"].send_keys(Keys.ESCAPE)
