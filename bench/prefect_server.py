"""A real ``prefect server start`` for the benchmarks: own PREFECT_HOME in a temp dir, a free
loopback port, its database on the same PostgreSQL server as the lock (a database of its own)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench import dbs
from bench.report import BenchError

START_TIMEOUT_S = 180.0
PREFECT_BIN = Path(sys.executable).with_name("prefect")
PROJECT_ROOT = Path(__file__).resolve().parent.parent  # children run `python -m bench.…` here
# API URL -> the server's session id (its pid): a measurement can add up the server's CPU time.
SERVER_SESSIONS: dict[str, int] = {}


def session_cpu_s(session_id: int) -> float:
    """CPU seconds (user + system) of every live process of a session, from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[3]) == session_id:  # field 6 of stat(5), after pid and comm
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environ(**extra: str) -> dict[str, str]:
    """The current environment without any PREFECT_* (no profile or API of the caller leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(extra)
    return env


def client_environ(api_url: str, home: Path) -> dict[str, str]:
    return clean_environ(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )


def _wait_healthy(proc: subprocess.Popen[bytes], api_url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"prefect server exited with {proc.returncode}: {_tail(log)}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise BenchError(f"prefect server not healthy after {START_TIMEOUT_S:.0f}s: {_tail(log)}")


def _tail(log: Path) -> str:
    return " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    # The server runs in its own session (started below), so its group id is its pid.
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


@contextmanager
def prefect_server() -> Iterator[str]:
    """Start a Prefect server backed by a fresh PostgreSQL database; yield its API URL."""
    with (
        dbs.pg_database(migrated=False) as db_url,
        tempfile.TemporaryDirectory(prefix="jobs-bench-prefect-") as tmp,
    ):
        home = Path(tmp)
        port = free_port()
        api_url = f"http://127.0.0.1:{port}/api"
        server_db = db_url.set(drivername="postgresql+asyncpg").render_as_string(
            hide_password=False
        )
        env = clean_environ(
            PREFECT_HOME=str(home / "server"),
            PREFECT_SERVER_DATABASE_CONNECTION_URL=server_db,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_UI_ENABLED="false",
            PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        )
        log = home / "server.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(PREFECT_BIN), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            _wait_healthy(proc, api_url, log)
            SERVER_SESSIONS[api_url] = proc.pid
            yield api_url
        finally:
            SERVER_SESSIONS.pop(api_url, None)
            _stop(proc)
