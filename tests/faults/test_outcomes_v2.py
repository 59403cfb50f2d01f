"""Regression tests for outcomes the old core (28e0dc7) got wrong.

- A body that raises SystemExit (or another BaseException) with MAX_PARALLEL_JOBS > 1 hung the
  nightly flow forever: now the flow ends, the job is FAILURE and its dependents are SKIPPED.
- An ambiguous commit (the SUCCESS commit lands, its reply is lost) was reported as "lock lost" and
  Failed while the row said SUCCESS: now the row is read back and the run is SUCCESS everywhere.
- After a database outage longer than the threshold, the run said "was reaped or released while
  running" although nothing had reaped or released it: now the message says what happened.
- A dead run of a job that was then disabled stayed RUNNING forever: `jobctl reap` and the nightly
  flow's start-up sweep end it.

Real databases and real processes; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.client.schemas.objects import State, StateType
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from prefect_nightly_jobs import testing
from prefect_nightly_jobs.database import make_engine
from prefect_nightly_jobs.lease import LockPolicy
from prefect_nightly_jobs.lock import acquire_job_lock
from prefect_nightly_jobs.models import Status
from prefect_nightly_jobs.nightly_flow import report_from_state, run_registry
from prefect_nightly_jobs.outcome import NightlyReport
from prefect_nightly_jobs.reaper import sweep
from prefect_nightly_jobs.registry import Registry
from prefect_nightly_jobs.task import BackgroundJob, JobContext, background_job
from tests import REPO_ROOT
from tests.cli.conftest import run_jobctl, subprocess_env
from tests.faults import children as child
from tests.faults.conftest import Children
from tests.faults.helpers import SPAWN, executions, expect, url_str
from tests.faults.pgcluster import PASSWORD, ThrowawayCluster
from tests.jobtools import run_task
from tests.prefect_api import task_states

pytestmark = pytest.mark.faults

PERIOD = date(2026, 11, 28)
OLD_LIE = "reaped or released"  # what the old code said after any long silence


# --- shared helpers ------------------------------------------------------------------------------


@contextlib.contextmanager
def jobs_database(
    monkeypatch: pytest.MonkeyPatch, url: URL, *, stale_ms: int, heartbeat_ms: int | None = None
) -> Iterator[None]:
    """Job tasks of this process use ``url`` (fresh process-wide engine and settings); no
    connection of that engine may stay checked out."""
    from prefect_nightly_jobs import engines
    from prefect_nightly_jobs.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", url_str(url))
    monkeypatch.setenv("STALE_JOB_THRESHOLD_MS", str(stale_ms))
    if heartbeat_ms is not None:
        monkeypatch.setenv("JOB_HEARTBEAT_INTERVAL_MS", str(heartbeat_ms))
    get_settings.cache_clear()
    engines.dispose_engines()
    pool = engines.shared_engine().pool
    try:
        yield
        # Counted by the pool itself: checkout events do not pair up when dead connections are
        # replaced at checkout.
        out = pool.checkedout()  # type: ignore[attr-defined]
        assert out == 0, f"{out} connection(s) of the jobs engine still checked out"
    finally:
        engines.dispose_engines()
        get_settings.cache_clear()


@pytest.fixture
def prefect_env(
    prefect_harness: None, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> pytest.MonkeyPatch:
    """The session's Prefect test server, no project variables from outside; the monkeypatch
    to hand to ``jobs_database``."""
    return monkeypatch


def run_nightly_flow(jobs: list[BackgroundJob]) -> tuple[State[Any], NightlyReport]:
    registry = Registry(job.spec for job in jobs)

    @flow(name="test-nightly-v2", persist_result=False)
    def test_nightly() -> State[Any]:
        return run_registry(registry, PERIOD)

    state = test_nightly(return_state=True)
    return state, report_from_state(state)


# --- 5. a body that raises SystemExit or another BaseException ---------------------------------


class Boom(BaseException):
    """Neither an Exception nor SystemExit: what a library's own control-flow exception may be."""


def _raising(name: str, error: BaseException) -> BackgroundJob:
    def body(ctx: JobContext) -> None:
        raise error

    return background_job(name)(body)


def _fine(name: str, *ups: str) -> BackgroundJob:
    def body(ctx: JobContext) -> None:
        ctx.session.execute(text("SELECT 1"))

    return background_job(name, depends_on=ups)(body)


BASE_EXCEPTIONS = [
    pytest.param(SystemExit(3), "SystemExit: 3", id="SystemExit"),
    pytest.param(Boom("kaboom"), "Boom: kaboom", id="custom-BaseException"),
]


def _run_base_exception_flow(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, parallel: int, error: BaseException
) -> tuple[State[Any], NightlyReport]:
    from prefect_nightly_jobs.settings import get_settings

    monkeypatch.setenv("MAX_PARALLEL_JOBS", str(parallel))
    get_settings.cache_clear()
    jobs = [_raising("bx_exit", error), _fine("bx_dependent", "bx_exit"), _fine("bx_free")]
    try:
        return run_nightly_flow(jobs)
    except BaseException as err:
        rows = {
            j.job_type: [(r.status, r.error_message) for r in executions(engine, j.job_type)]
            for j in jobs
        }
        pytest.fail(f"the flow raised {type(err).__name__}({err}) instead of ending; rows: {rows}")


def _assert_base_exception_outcomes(
    engine: Engine,
    state: State[Any],
    report: NightlyReport,
    error: BaseException,
    row_message: str,
) -> None:
    assert state.type == StateType.FAILED, state
    assert state.message is not None and state.message.endswith("failed: bx_exit"), state.message
    outcomes = {o.job_type: o for o in report.outcomes}
    assert outcomes["bx_exit"].status == Status.FAILURE
    assert outcomes["bx_dependent"].status == Status.SKIPPED
    assert outcomes["bx_dependent"].reason == "upstream bx_exit failed"
    assert (outcomes["bx_free"].status, outcomes["bx_free"].reason) == (Status.SUCCESS, None)

    (failed,) = executions(engine, "bx_exit")
    assert (failed.status, failed.error_message) == (Status.FAILURE, row_message)
    assert failed.completed_at is not None
    (skipped,) = executions(engine, "bx_dependent")
    assert (skipped.status, skipped.error_message) == (Status.SKIPPED, "upstream bx_exit failed")
    (free,) = executions(engine, "bx_free")
    assert (free.status, free.error_message) == (Status.SUCCESS, None)

    assert report.flow_run_id is not None
    prefect_side = task_states(report.flow_run_id)
    assert (prefect_side["bx_dependent"].name, prefect_side["bx_dependent"].message) == (
        "UpstreamFailed",
        "upstream bx_exit failed",
    )
    assert prefect_side["bx_free"].type == StateType.COMPLETED
    # Contained: the job's own outcome, with the row's message, in both systems.
    ended = prefect_side["bx_exit"]
    assert (ended.type, ended.message) == (StateType.FAILED, row_message)
    assert outcomes["bx_exit"].reason == row_message
    assert outcomes["bx_exit"].execution_id == failed.id


@pytest.mark.prefect
@pytest.mark.timeout(60)
@pytest.mark.parametrize(("error", "row_message"), BASE_EXCEPTIONS)
def test_base_exception_in_parallel_flow_ends_the_flow(
    job_env: URL,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    row_message: str,
) -> None:
    """MAX_PARALLEL_JOBS=2: the old dispatcher waited forever for a future that never resolved
    (the timeout marker turns that hang into a failure)."""
    state, report = _run_base_exception_flow(engine, monkeypatch, 2, error)
    _assert_base_exception_outcomes(engine, state, report, error, row_message)


@pytest.mark.prefect
@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("error", "row_message"),
    BASE_EXCEPTIONS,
)
def test_base_exception_in_sequential_flow_ends_the_flow(
    job_env: URL,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    row_message: str,
) -> None:
    """MAX_PARALLEL_JOBS=1 (each job inline in the flow's thread): the same outcomes."""
    state, report = _run_base_exception_flow(engine, monkeypatch, 1, error)
    _assert_base_exception_outcomes(engine, state, report, error, row_message)


# --- 6. ambiguous commit: the SUCCESS commit lands, its reply is lost ---------------------------

SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102
COMMIT_QUERY = b"Q" + (4 + len(b"COMMIT\x00")).to_bytes(4, "big") + b"COMMIT\x00"
READY_FOR_QUERY = b"Z\x00\x00\x00\x05"


class _Pair:
    """One proxied connection: the client's socket and ours to the server."""

    def __init__(self, client: socket.socket, server: socket.socket, client_port: int) -> None:
        self.client = client
        self.server = server
        self.client_port = client_port
        self.swallow = threading.Event()  # the server's next reply never reaches the client

    def close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv()
            with contextlib.suppress(OSError):
                sock.close()


class PgProxy:
    """A TCP proxy on 127.0.0.1 in front of a PostgreSQL server, run by this test's threads.

    ``drop_commit_reply(port)``: the next COMMIT (a simple Query message) of the client connected
    from ``port`` reaches the server; the server's reply is swallowed and the client's connection
    closed, as when the network fails right after the commit: an ambiguous commit.
    Clients must not use SSL (``sslmode=disable``) so that the stream can be read.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._armed: set[int] = set()
        self._pairs: list[_Pair] = []
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._cut = threading.Event()
        self.dropped = threading.Event()
        self.swallowed: list[bytes] = []  # the replies that never reached their client
        self.errors: list[BaseException] = []

    def url(self, real: URL) -> URL:
        return real.set(host="127.0.0.1", port=self.port).update_query_dict(
            {"sslmode": "disable", "gssencmode": "disable"}
        )

    def drop_commit_reply(self, client_port: int) -> None:
        with self._lock:
            assert any(p.client_port == client_port for p in self._pairs), "not a proxied client"
            self._armed.add(client_port)

    def cut(self) -> None:
        """A network partition: every proxied connection is closed, new ones are refused."""
        self._cut.set()
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.close()

    def heal(self) -> None:
        self._cut.clear()

    def __enter__(self) -> PgProxy:
        self._spawn(self._accept_loop, "proxy-accept")
        return self

    def __exit__(self, *_: object) -> None:
        self._closing.set()
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.close()
        for thread in self._threads:
            thread.join(10)
            assert not thread.is_alive(), f"proxy thread {thread.name} did not end"
        self._listener.close()
        assert not self.errors, self.errors

    def _spawn(self, target: Any, name: str, *args: Any) -> None:
        thread = threading.Thread(target=self._guarded, args=(target, *args), name=name)
        thread.daemon = True
        self._threads.append(thread)
        thread.start()

    def _guarded(self, target: Any, *args: Any) -> None:
        try:
            target(*args)
        except OSError:
            pass  # a socket closed under a pump: that connection is over
        except Exception as err:
            self.errors.append(err)

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, (_, client_port) = self._listener.accept()
            except TimeoutError:
                continue
            if self._cut.is_set():
                client.close()
                continue
            client.settimeout(None)
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            pair = _Pair(client, server, int(client_port))
            with self._lock:
                self._pairs.append(pair)
            self._spawn(self._client_to_server, f"proxy-c2s-{client_port}", pair)
            self._spawn(self._server_to_client, f"proxy-s2c-{client_port}", pair)

    def _take_arm(self, pair: _Pair) -> bool:
        with self._lock:
            if pair.client_port in self._armed:
                self._armed.discard(pair.client_port)
                return True
            return False

    def _client_to_server(self, pair: _Pair) -> None:
        """Forward whole messages, so that a COMMIT is recognized whatever the chunking."""
        pending = b""
        startup_done = False
        try:
            while data := pair.client.recv(65536):
                pending += data
                ready = b""
                while True:
                    if not startup_done:  # untyped: length, then a request code
                        if len(pending) < 8 or len(pending) < int.from_bytes(pending[:4], "big"):
                            break
                        size = int.from_bytes(pending[:4], "big")
                        code = int.from_bytes(pending[4:8], "big")
                        startup_done = code not in {SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST}
                    else:  # typed: one byte, then a length that counts itself
                        if len(pending) < 5 or len(pending) < 1 + int.from_bytes(
                            pending[1:5], "big"
                        ):
                            break
                        size = 1 + int.from_bytes(pending[1:5], "big")
                        if pending[:size] == COMMIT_QUERY and self._take_arm(pair):
                            pair.swallow.set()  # before the server can possibly answer
                    ready += pending[:size]
                    pending = pending[size:]
                if ready:
                    pair.server.sendall(ready)
        finally:
            if not pair.swallow.is_set():
                pair.close()

    def _server_to_client(self, pair: _Pair) -> None:
        swallowed = b""
        try:
            while data := pair.server.recv(65536):
                if not pair.swallow.is_set():
                    pair.client.sendall(data)
                    continue
                swallowed += data
                if READY_FOR_QUERY in swallowed:  # the whole reply: the commit is done
                    self.swallowed.append(swallowed)
                    self.dropped.set()
                    return
        finally:
            pair.close()


def _client_port(conn: Connection) -> int:
    """The local port of a psycopg connection's socket (the proxy knows its clients by it)."""
    fd = conn.connection.dbapi_connection.pgconn.socket  # type: ignore[union-attr]
    with socket.socket(fileno=os.dup(fd)) as sock:
        return int(sock.getsockname()[1])


@pytest.fixture
def proxy(pg_url: URL) -> Iterator[PgProxy]:
    with PgProxy((pg_url.host or "127.0.0.1", pg_url.port or 5432)) as running:
        yield running


@pytest.fixture
def payload(pg_url: URL) -> Iterator[Engine]:
    """A direct engine (not through the proxy) on the test's database, with a payload table."""
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE payload (id integer PRIMARY KEY, note text NOT NULL)"))
    yield engine
    engine.dispose()


def _notes(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT note FROM payload ORDER BY id")).scalars())


JOB_AMBIGUOUS = "amb_commit"


@pytest.mark.timeout(60)
def test_ambiguous_success_commit_is_read_back_lease_level(
    pg_url: URL, proxy: PgProxy, payload: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Exactly what jobs/task.py does: the job's writes and SUCCESS in one transaction."""
    caplog.set_level(logging.WARNING, logger="jobs.lease")
    with testing.counted_engine(proxy.url(pg_url)) as (engine, counter):
        result = acquire_job_lock(engine, JOB_AMBIGUOUS, policy=LockPolicy(20_000, 5_000))
        assert result.acquired, result
        lease = result.lease
        with lease, Session(engine) as session:
            session.execute(text("INSERT INTO payload VALUES (1, 'written under the lock')"))
            proxy.drop_commit_reply(_client_port(session.connection()))
            outcome = lease.succeed_with(session.connection(), session.commit)
        assert counter.out == 0
    assert proxy.dropped.is_set(), "the COMMIT's reply was not intercepted"
    assert b"COMMIT" in proxy.swallowed[0]  # the server did commit (CommandComplete COMMIT)
    assert (outcome.status, outcome.recorded, outcome.detail) == (Status.SUCCESS, True, "")
    assert lease.outcome == outcome
    (row,) = executions(payload, JOB_AMBIGUOUS)
    assert (row.status, row.error_message) == (Status.SUCCESS, None)
    assert _notes(payload) == ["written under the lock"]
    assert "the SUCCESS commit's reply was lost; read back: SUCCESS" in caplog.text
    assert "lock lost" not in caplog.text


@pytest.mark.prefect
@pytest.mark.timeout(60)
def test_ambiguous_success_commit_through_the_prefect_task(
    prefect_env: pytest.MonkeyPatch,
    pg_url: URL,
    proxy: PgProxy,
    payload: Engine,
) -> None:
    """The real task path: the Prefect state is Completed, as the row says."""

    def body(ctx: JobContext) -> None:
        ctx.session.execute(text("INSERT INTO payload VALUES (1, 'written by the task')"))
        proxy.drop_commit_reply(_client_port(ctx.session.connection()))

    job = background_job(JOB_AMBIGUOUS)(body)
    with jobs_database(prefect_env, proxy.url(pg_url), stale_ms=20_000):
        run = run_task(job)
    assert proxy.dropped.is_set(), "the COMMIT's reply was not intercepted"
    assert run.state.type == StateType.COMPLETED, run.state
    (row,) = executions(payload, JOB_AMBIGUOUS)
    assert run.state.message == f"recorded as execution {row.id}"
    assert (row.status, row.error_message) == (Status.SUCCESS, None)
    assert row.task_run_id == run.task_run_id
    assert _notes(payload) == ["written by the task"]


# --- 7. after an outage longer than the threshold, messages say what happened -------------------

JOB_OUTAGE = "outage_job"
STALE_MS, BEAT_MS = 1500, 250
OUTAGE_S = STALE_MS / 1000 + 0.7  # longer than the threshold: the heartbeat is silent past it


@pytest.fixture
def cluster_engine(cluster_url: URL) -> Iterator[Engine]:
    engine = make_engine(cluster_url)
    yield engine
    engine.dispose()


@pytest.mark.prefect
@pytest.mark.timeout(60)
def test_outage_over_before_the_end_is_success_not_lock_lost(
    prefect_env: pytest.MonkeyPatch,
    throwaway_cluster: ThrowawayCluster,
    cluster_url: URL,
    cluster_engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server is down for longer than the threshold and back just before the body ends;
    nothing reaped or released the row. The old code failed the run (and wrote into the row)
    "lock lost: ... was reaped or released while running"; the run succeeded."""
    caplog.set_level(logging.WARNING, logger="jobs")

    def body(ctx: JobContext) -> None:
        cluster_engine.dispose()
        throwaway_cluster.stop()
        time.sleep(OUTAGE_S)
        throwaway_cluster.start()

    job = background_job(JOB_OUTAGE)(body)
    with jobs_database(prefect_env, cluster_url, stale_ms=STALE_MS, heartbeat_ms=BEAT_MS):
        run = run_task(job)
    assert "heartbeat failed" in caplog.text, "the outage did not silence the heartbeat"
    assert run.state.type == StateType.COMPLETED, run.state
    (row,) = executions(cluster_engine, JOB_OUTAGE)
    assert (row.status, row.error_message) == (Status.SUCCESS, None)
    assert OLD_LIE not in caplog.text
    assert "lock lost" not in caplog.text


@pytest.mark.prefect
@pytest.mark.timeout(60)
def test_outage_past_the_end_says_database_unreachable(
    prefect_env: pytest.MonkeyPatch,
    throwaway_cluster: ThrowawayCluster,
    cluster_url: URL,
    cluster_engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Down for longer than the threshold and still down when the body ends: the run cannot
    record its status and says so; the row is reaped once the server is back."""
    caplog.set_level(logging.WARNING, logger="jobs")

    def body(ctx: JobContext) -> None:
        cluster_engine.dispose()
        throwaway_cluster.stop()
        time.sleep(OUTAGE_S)

    job = background_job(JOB_OUTAGE)(body)
    with jobs_database(prefect_env, cluster_url, stale_ms=STALE_MS, heartbeat_ms=BEAT_MS):
        try:
            run = run_task(job)
        finally:
            throwaway_cluster.start()
    assert run.state.type == StateType.FAILED, run.state
    message = run.state.message or ""
    # The body wrote nothing, so the run ends with the lease's own update of SUCCESS, which
    # cannot be recorded; the cause is the unreachable database.
    assert re.fullmatch(
        r"final status SUCCESS not recorded: database unreachable for \d+s "
        r"\(connection failed: .*Connection refused\); "
        r"lease given up, the row will be reaped as stale",
        message,
    ), message
    assert OLD_LIE not in message and "lock lost" not in message
    assert OLD_LIE not in caplog.text
    assert PASSWORD not in message + caplog.text

    (left,) = executions(cluster_engine, JOB_OUTAGE)
    assert left.status == Status.RUNNING  # nothing could be written; the reaper ends it
    (reaped,) = sweep(cluster_engine, STALE_MS)
    assert reaped.execution_id == left.id
    (row,) = executions(cluster_engine, JOB_OUTAGE)
    assert row.status == Status.FAILURE
    assert row.error_message.startswith("abandoned: no heartbeat since "), row.error_message
    assert row.error_message == reaped.message


@pytest.mark.prefect
@pytest.mark.timeout(60)
def test_unreachable_past_the_threshold_and_reaped_says_the_rows_reason(
    prefect_env: pytest.MonkeyPatch,
    pg_url: URL,
    pg_engine: Engine,
    proxy: PgProxy,
) -> None:
    """The job's host loses the database (a partition, through the proxy) for longer than the
    threshold; another process reaps the row meanwhile. The run's message is the row's own
    reason, the one the reaper wrote."""
    reaped_by_other: list[Any] = []

    def body(ctx: JobContext) -> None:
        proxy.cut()
        time.sleep(OUTAGE_S)
        reaped_by_other.extend(sweep(pg_engine, STALE_MS))  # the server itself never went away
        proxy.heal()

    job = background_job(JOB_OUTAGE)(body)
    with jobs_database(prefect_env, proxy.url(pg_url), stale_ms=STALE_MS, heartbeat_ms=BEAT_MS):
        run = run_task(job)
    (reaped,) = reaped_by_other
    (row,) = executions(pg_engine, JOB_OUTAGE)
    assert row.id == reaped.execution_id
    assert row.status == Status.FAILURE
    assert row.error_message == reaped.message
    assert row.error_message.startswith("abandoned: no heartbeat since ")
    assert run.state.type == StateType.FAILED, run.state
    message = run.state.message or ""
    assert message == f"lock lost: execution {row.id} is already FAILURE: {reaped.message}"
    assert "database unreachable" not in message


# --- 8. a dead run of a job that is then disabled is reaped without acquiring it ----------------


def _dead_holder(children: Children, url: URL, job_type: str, stale_ms: int) -> int:
    """A child process takes the lease of ``job_type`` and is SIGKILLed: its row stays RUNNING."""
    started, release = SPAWN.Event(), SPAWN.Event()
    out: Any = SPAWN.Queue()
    proc = children.spawn(
        child.hold,
        name="dead-holder",
        url=url_str(url),
        job_type=job_type,
        stale_ms=stale_ms,
        heartbeat_ms=stale_ms // 5,
        started=started,
        release=release,
        out=out,
        log_path=None,
    )
    exec_id = int(expect(out, "started", 60)["id"])
    proc.kill()  # SIGKILL: no handler runs, the row is left RUNNING
    proc.join(10)
    assert proc.exitcode == -9, proc.exitcode
    return exec_id


JOB_DISABLED = "purge_expired"  # a catalog job: `jobctl` knows its flag


@pytest.mark.timeout(60)
def test_jobctl_reap_ends_a_dead_run_of_a_disabled_job(
    db_url: URL, engine: Engine, children: Children, tmp_path: Path
) -> None:
    stale_ms = 1000
    env = subprocess_env(
        DATABASE_URL=url_str(db_url),
        STALE_JOB_THRESHOLD_MS=str(stale_ms),
        PURGE_EXPIRED_ENABLED="false",
    )
    exec_id = _dead_holder(children, db_url, JOB_DISABLED, stale_ms)
    killed_at = time.monotonic()
    (row,) = executions(engine, JOB_DISABLED)
    assert row.status == Status.RUNNING
    time.sleep(max(0.0, killed_at + stale_ms / 1000 + 0.5 - time.monotonic()))

    reaped = run_jobctl("reap", cwd=REPO_ROOT, env=env, timeout=60)
    assert reaped.returncode == 0, (reaped.stdout, reaped.stderr)
    (row,) = executions(engine, JOB_DISABLED)
    assert (row.id, row.status) == (exec_id, Status.FAILURE)
    assert re.fullmatch(
        rf"abandoned: no heartbeat since \S+ \(STALE_JOB_THRESHOLD_MS={stale_ms}\)",
        row.error_message,
    ), row.error_message
    assert row.completed_at is not None
    assert reaped.stdout.splitlines() == [
        f"reaped execution {exec_id} of {JOB_DISABLED}: {row.error_message}"
    ], reaped.stdout
    assert "Traceback" not in reaped.stderr

    again = run_jobctl("reap", cwd=REPO_ROOT, env=env, timeout=60)
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert again.stdout.strip() == "nothing to reap: no RUNNING execution is stale"
    assert [r.status for r in executions(engine, JOB_DISABLED)] == [Status.FAILURE]


@pytest.mark.prefect
@pytest.mark.timeout(60)
def test_nightly_flow_reaps_a_dead_run_of_a_disabled_job_at_start(
    job_env: URL,
    engine: Engine,
    children: Children,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stale_ms = 2000  # job_env's STALE_JOB_THRESHOLD_MS
    exec_id = _dead_holder(children, job_env, "dz_disabled", stale_ms)
    killed_at = time.monotonic()
    monkeypatch.setenv("DZ_DISABLED_ENABLED", "false")
    time.sleep(max(0.0, killed_at + stale_ms / 1000 + 0.5 - time.monotonic()))
    (row,) = executions(engine, "dz_disabled")
    assert row.status == Status.RUNNING  # nothing ends it until someone reaps

    state, report = run_nightly_flow([_fine("dz_disabled"), _fine("dz_other", "dz_disabled")])
    assert state.type == StateType.COMPLETED, state
    outcomes = {o.job_type: (o.status, o.reason) for o in report.outcomes}
    assert outcomes == {
        "dz_disabled": (Status.SKIPPED, "disabled via DZ_DISABLED_ENABLED"),
        "dz_other": (Status.SUCCESS, None),
    }
    dead, skipped = executions(engine, "dz_disabled")
    assert (dead.id, dead.status) == (exec_id, Status.FAILURE)
    assert re.fullmatch(
        rf"abandoned: no heartbeat since \S+ \(STALE_JOB_THRESHOLD_MS={stale_ms}\)",
        dead.error_message,
    ), dead.error_message
    assert (skipped.status, skipped.error_message) == (
        Status.SKIPPED,
        "disabled via DZ_DISABLED_ENABLED",
    )
    assert dead.completed_at <= skipped.started_at, "reaped at start, before the jobs ran"
    assert f"[dz_disabled] reaped execution {exec_id}: {dead.error_message}" in caplog.text
