"""Fixtures of the fault suite: child processes that are always reaped, a throwaway cluster."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from multiprocessing.process import BaseProcess
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from prefect_nightly_jobs import schema, testing
from prefect_nightly_jobs.database import make_engine
from tests.faults.helpers import SPAWN
from tests.faults.pgcluster import ThrowawayCluster


class Children:
    """Processes started by a test; whatever is still alive at the end is killed."""

    def __init__(self) -> None:
        self.started: list[BaseProcess] = []

    def start(self, proc: BaseProcess) -> BaseProcess:
        proc.start()
        self.started.append(proc)
        return proc

    def spawn(
        self, target: Callable[..., None], *, name: str | None = None, **kwargs: Any
    ) -> BaseProcess:
        """Start ``target(**kwargs)`` in a new (spawned) process."""
        return self.start(SPAWN.Process(target=target, kwargs=kwargs, name=name))

    def join_all(self, timeout: float) -> None:
        for proc in self.started:
            proc.join(timeout)
            assert not proc.is_alive(), f"child {proc.name} still alive after {timeout}s"

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.is_alive():
                with contextlib.suppress(OSError):
                    proc.kill()
                proc.join(10)


@pytest.fixture
def children() -> Iterator[Children]:
    kids = Children()
    try:
        yield kids
    finally:
        kids.cleanup()


@pytest.fixture(scope="session")
def throwaway_cluster() -> Iterator[ThrowawayCluster]:
    """A PostgreSQL cluster of our own (password auth) that tests may stop and restart."""
    cluster = ThrowawayCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def cluster_url(throwaway_cluster: ThrowawayCluster) -> Iterator[URL]:
    """A fresh migrated database on the throwaway cluster, which is running again afterwards."""
    url = throwaway_cluster.create_database()
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
    finally:
        engine.dispose()
    yield url
    # A test that stopped the cluster and failed half-way must not break the next one.
    throwaway_cluster.ensure_started()


@pytest.fixture
def pg_engine(pg_url: URL) -> Iterator[Engine]:
    """Like ``engine``, on PostgreSQL only: for faults that need a server to break."""
    with testing.counted_engine(pg_url) as (eng, counter):
        yield eng
        assert counter.out == 0, f"{counter.out} connection(s) still checked out after the test"
