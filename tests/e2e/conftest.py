"""A real Prefect deployment for end-to-end tests: server, process work pool, `prefect deploy`
from prefect.yaml, workers, and flow runs started with `prefect deployment run`.

Reusable pieces (fault tests build on them):

- ``prefect_server`` (session): ``prefect server start`` on a free port, its own PREFECT_HOME,
  with its UI at ``.ui_url``; ``.cli(...)`` runs the ``prefect`` CLI against it, ``.flow_run(id)``
  reads a run through the API;
- ``deployment`` (session): the work pool created and prefect.yaml deployed; its name;
- ``start_worker`` (function): ``start_worker(env={...})`` starts ``prefect worker start`` with
  extra environment (e.g. DATABASE_URL); every worker is stopped after the test;
- ``run_deployment(server, name, ...)``: ``prefect deployment run … --watch`` with a bound, returns
  the flow run id and its final state; ``trigger_deployment`` (no wait) and ``wait_for_flow_run``
  (bounded polling) for tests that start several runs at once;
- ``mixed_nightly_run`` (session): one deployment run whose jobs end FAILURE, SKIPPED (upstream
  failed) and SUCCESS, kept for every test that looks at such a night (its worker is stopped).

Every wait is bounded; every process is stopped with its whole process tree.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import URL

from prefect_nightly_jobs import testing
from tests import REPO_ROOT
from tests.e2e.held import app, app_db, hold, worker_env  # noqa: F401 - shared fixtures
from tests.e2e.procs import Managed, descendants

WORK_POOL = "nightly-pool"
DEPLOYMENT = "nightly/jobs"
RECONCILE = "reconcile/reconcile"
# The reconcile deployment's interval here; it is deployed paused, tests that need it resume it.
RECONCILE_S = 5
SERVER_START_TIMEOUT_S = 150
CLI_TIMEOUT_S = 180
# What Prefect's own client retries: a busy server (its SQLite locked) answers 503.
API_RETRY_CODES = frozenset({429, 502, 503})
API_ATTEMPTS = 6
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(home: Path) -> dict[str, str]:
    """The environment of every process: no Prefect or project settings from outside, except
    what the test sets; quick worker polling; no UI, no telemetry."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_")
        and not k.endswith("_ENABLED")
        and k
        not in {
            "DATABASE_URL",
            "STALE_JOB_THRESHOLD_MS",
            "JOB_HEARTBEAT_INTERVAL_MS",
            "SYNC_CRON_SCHEDULE",
            "SYNC_CRON_TIMEZONE",
            "MAX_PARALLEL_JOBS",
            "RECONCILE_INTERVAL_SECONDS",
            "JOB_DISPATCH",
            "IMPORT_EVENTS_SOURCE",
        }
    }
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "PREFECT_HOME": str(home),
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
            # Scheduled runs of a resumed deployment appear within seconds, not a minute.
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@dataclass
class PrefectServer:
    api_url: str
    ui_url: str
    home: Path
    logs: Path
    env: dict[str, str]
    process: Managed
    workers: list[Managed] = field(default_factory=list)

    def cli(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float = CLI_TIMEOUT_S,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``prefect <args>`` against this server (non-interactive), bounded."""
        done = subprocess.run(
            [str(VENV_BIN / "prefect"), "--no-prompt", *args],
            env={**self.env, **(env or {})},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"prefect {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def api(self, method: str, path: str, json: Any = None, check: bool = True) -> httpx.Response:
        """One API call, retried while the server answers busy (as Prefect's client does)."""
        for attempt in range(API_ATTEMPTS):
            response = httpx.request(method, f"{self.api_url}{path}", json=json, timeout=30)
            if response.status_code not in API_RETRY_CODES or attempt == API_ATTEMPTS - 1:
                break
            time.sleep(0.5 * 2**attempt)
        if check:
            response.raise_for_status()
        return response

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"/flow_runs/{flow_run_id}").json())

    def deployment_id(self, name: str) -> str:
        return str(self.api("GET", f"/deployments/name/{name}").json()["id"])

    def set_paused(self, name: str, paused: bool) -> None:
        """Pause (its scheduled runs are deleted) or resume a deployment's schedules."""
        verb = "pause_deployment" if paused else "resume_deployment"
        self.api("POST", f"/deployments/{self.deployment_id(name)}/{verb}")

    def job_events(self, flow_run_id: str) -> list[dict[str, Any]]:
        """The plugin's events related to that flow run, read back from the events API."""
        response = self.api(
            "POST",
            "/events/filter",
            json={
                "filter": {
                    "event": {"prefix": ["prefect-nightly-jobs.job."]},
                    "related": {"id": [f"prefect.flow-run.{flow_run_id}"]},
                    "order": "ASC",
                },
                "limit": 50,
            },
        )
        return list(response.json()["events"])

    def task_runs(self, flow_run_id: str) -> list[dict[str, Any]]:
        response = self.api(
            "POST", "/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}}
        )
        return list(response.json())


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    home = tmp_path_factory.mktemp("prefect-home")
    logs = tmp_path_factory.mktemp("prefect-logs")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = base_env(home)
    # The UI too (the browser test reads it); it must be told where its API is.
    ui_env = {**env, "PREFECT_UI_ENABLED": "true", "PREFECT_UI_API_URL": api_url}
    process = Managed(
        "server",
        [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=ui_env,
        cwd=home,
        log=logs / "server.log",
    )
    server = PrefectServer(
        api_url=api_url,
        ui_url=f"http://127.0.0.1:{port}",
        home=home,
        logs=logs,
        env={**env, "PREFECT_API_URL": api_url},
        process=process,
    )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            assert process.alive(), f"prefect server exited:\n{process.tail()}"
            try:
                if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"prefect server not up:\n{process.tail()}"
            time.sleep(0.5)
        yield server
    finally:
        for worker in server.workers:
            worker.stop()
        process.stop()


@pytest.fixture(scope="session")
def deployment(prefect_server: PrefectServer) -> str:
    """The process work pool and the nightly deployment from prefect.yaml."""
    prefect_server.cli("work-pool", "create", WORK_POOL, "--type", "process")
    prefect_server.cli("deploy", "--all", env={"RECONCILE_INTERVAL_SECONDS": str(RECONCILE_S)})
    found = prefect_server.api("GET", f"/deployments/name/{DEPLOYMENT}", check=False)
    assert found.status_code == 200, f"{DEPLOYMENT} was not deployed: {found.text}"
    # Its runs would occupy the workers of every test: only the reconcile tests resume it.
    prefect_server.set_paused(RECONCILE, True)
    return DEPLOYMENT


def launch_worker(
    server: PrefectServer,
    env: Mapping[str, str] | None = None,
    name: str | None = None,
    limit: int = 1,
) -> Managed:
    """``prefect worker start`` on the nightly pool; the caller stops it (``server`` does too)."""
    label = name or f"worker-{len(server.workers) + 1}"
    worker = Managed(
        label,
        [
            str(VENV_BIN / "prefect"),
            "worker",
            "start",
            "--pool",
            WORK_POOL,
            "--name",
            label,
            "--limit",
            str(limit),
        ],
        env={**server.env, **(env or {})},
        cwd=server.home,
        log=server.logs / f"{label}.log",
    )
    server.workers.append(worker)
    return worker


@pytest.fixture
def start_worker(
    prefect_server: PrefectServer, deployment: str
) -> Iterator[Callable[..., Managed]]:
    """``start_worker(env={...}, name=..., limit=...)``: a process worker on the nightly pool."""
    started: list[Managed] = []

    def start(
        env: Mapping[str, str] | None = None, name: str | None = None, limit: int = 1
    ) -> Managed:
        worker = launch_worker(prefect_server, env, name, limit)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
        prefect_server.workers.remove(worker)


@dataclass
class FlowRunResult:
    flow_run_id: str
    state_type: str
    state_name: str
    message: str | None
    output: str


def _deployment_run_args(
    name: str, params: Mapping[str, Any] | None, job_env: Mapping[str, str] | None
) -> list[str]:
    args = ["deployment", "run", name]
    for key, value in (params or {}).items():
        args += ["--param", f"{key}={json.dumps(value)}"]
    if job_env:
        args += ["--job-variable", f"env={json.dumps(dict(job_env))}"]
    return args


def _flow_run_id(output: str) -> str:
    found = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert found, f"no flow run id in:\n{output[-3000:]}"
    return found.group(1)


def _result(server: PrefectServer, flow_run_id: str, output: str) -> FlowRunResult:
    state = server.flow_run(flow_run_id)["state"]
    return FlowRunResult(
        flow_run_id=flow_run_id,
        state_type=state["type"],
        state_name=state["name"],
        message=state.get("message"),
        output=output,
    )


def trigger_deployment(
    server: PrefectServer,
    name: str = DEPLOYMENT,
    *,
    params: Mapping[str, Any] | None = None,
    job_env: Mapping[str, str] | None = None,
) -> str:
    """``prefect deployment run NAME`` without waiting; the new flow run's id."""
    done = server.cli(*_deployment_run_args(name, params, job_env))
    return _flow_run_id(done.stdout + done.stderr)


def wait_for_flow_run(
    server: PrefectServer, flow_run_id: str, timeout_s: float = 150
) -> FlowRunResult:
    """Poll the API until the flow run is in a final state (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = server.flow_run(flow_run_id)["state"]
        if state["type"] in {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}:
            return _result(server, flow_run_id, "")
        assert time.monotonic() < deadline, f"flow run {flow_run_id} still {state['name']}"
        time.sleep(0.5)


def run_deployment(
    server: PrefectServer,
    name: str = DEPLOYMENT,
    *,
    params: Mapping[str, Any] | None = None,
    job_env: Mapping[str, str] | None = None,
    timeout_s: int = 150,
) -> FlowRunResult:
    """``prefect deployment run NAME --watch`` (bounded); the run's final state from the API."""
    args = [*_deployment_run_args(name, params, job_env), "--watch"]
    args += ["--watch-timeout", str(timeout_s)]
    done = server.cli(*args, timeout=timeout_s + 30, check=False)
    output = done.stdout + done.stderr
    return _result(server, _flow_run_id(output), output)


MIXED_PERIOD = "2026-11-29"


@dataclass
class MixedRun:
    """A finished nightly deployment run: import_events FAILURE (its feed has no file for the
    period), daily_rollup SKIPPED "upstream import_events failed", purge_expired SUCCESS."""

    app_db: URL
    flow_run: FlowRunResult
    feed: Path
    worker_log: str


@pytest.fixture(scope="session")
def mixed_nightly_run(
    prefect_server: PrefectServer,
    deployment: str,
    nightly_pg_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MixedRun]:
    """One run for the whole session (a deployment run costs seconds of CI): its worker is
    stopped as soon as the run ends, so that it never picks up another test's runs."""
    night_db = testing.create_pg_database(template=nightly_pg_template)
    feed = tmp_path_factory.mktemp("empty-feed")
    worker = launch_worker(
        prefect_server,
        env={"DATABASE_URL": night_db.render_as_string(hide_password=False)},
        name="mixed-night",
    )
    try:
        run_id = trigger_deployment(
            prefect_server,
            params={"period": MIXED_PERIOD},
            job_env={"IMPORT_EVENTS_SOURCE": str(feed)},
        )
        result = wait_for_flow_run(prefect_server, run_id)
        # The flow-run process still sends its last log lines after its final state: stopping
        # the worker now would kill it first, and the UI would show a run without logs.
        deadline = time.monotonic() + 60
        while descendants(worker.pid):
            assert time.monotonic() < deadline, (
                f"the flow-run process did not exit:\n{worker.tail()}"
            )
            time.sleep(0.2)
        log = worker.tail(200)
    finally:
        worker.stop()
        prefect_server.workers.remove(worker)
    yield MixedRun(app_db=night_db, flow_run=result, feed=feed, worker_log=log)
    testing.drop_pg_database(night_db)
