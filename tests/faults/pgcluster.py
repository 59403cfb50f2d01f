"""A throwaway PostgreSQL cluster that a test may stop, restart and break at will.

The shared server at TEST_DATABASE_URL is used by everybody's tests at the same time: it is never
restarted. This cluster lives in a temp dir, on a free port, with password (scram) authentication
so that tests can also check that a password never leaks into a message.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import URL

# The throwaway cluster's password; tests assert it never appears in any message or log.
PASSWORD = "Sw0rdfish-7d1c"


def _bindir() -> Path:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    try:
        out = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
        if (Path(out) / "initdb").exists():
            return Path(out)
    except (OSError, subprocess.CalledProcessError):
        pass
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise RuntimeError("no initdb found: install PostgreSQL to run the fault suite")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayCluster:
    """initdb + pg_ctl in a temp dir; ``start``/``stop``/``restart`` wait until done."""

    def __init__(self) -> None:
        self.bindir = _bindir()
        self.root = Path(tempfile.mkdtemp(prefix="jobs-fault-pg."))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        # initdb refuses to run as root: run the server binaries as the postgres user.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.root, "postgres")
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self._as:
            shutil.chown(pwfile, "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
        )
        pwfile.unlink()

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._as, str(self.bindir / tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )

    @property
    def options(self) -> str:
        return (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=60"
        )

    def start(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
            "-o", self.options, "start",
        )  # fmt: skip

    def ensure_started(self) -> None:
        """Start the server unless it is running (a test that stopped it may have failed)."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "status")
            return
        self.start()

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "30", "-m", mode, "stop")

    def restart(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
            "-m", "fast", "-o", self.options, "restart",
        )  # fmt: skip

    def url(self, database: str = "postgres", password: str = PASSWORD) -> URL:
        return URL.create(
            "postgresql+psycopg",
            username="postgres",
            password=password,
            host="127.0.0.1",
            port=self.port,
            database=database,
        )

    def create_database(self) -> URL:
        name = f"jobs_fault_{uuid.uuid4().hex[:10]}"
        admin = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            admin.dispose()
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
