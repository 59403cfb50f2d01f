"""Mutual exclusion proven with real processes released together by a barrier."""

from __future__ import annotations

import multiprocessing as mp
import queue
from collections import Counter

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from prefect_nightly_jobs.database import make_engine
from tests import workers

CTX = mp.get_context("spawn")
RACE = {"postgresql": (16, 10), "sqlite": (8, 10)}  # processes, rounds


def _collect(results: mp.Queue[tuple[object, ...]], count: int) -> list[tuple[object, ...]]:
    out = []
    for _ in range(count):
        try:
            out.append(results.get(timeout=120))
        except queue.Empty:
            pytest.fail(f"only {len(out)} of {count} results arrived: a worker hung or died")
    return out


def _run(procs: list[mp.process.BaseProcess]) -> None:
    for p in procs:
        p.start()


def _join(procs: list[mp.process.BaseProcess]) -> None:
    for p in procs:
        p.join(60)
        if p.is_alive():
            p.kill()
        assert p.exitcode == 0, f"worker exited with {p.exitcode}"


@pytest.mark.timeout(240)
def test_exactly_one_winner_per_round(db_url: URL, backend: str) -> None:
    processes, rounds = RACE[backend]
    start, decided = CTX.Barrier(processes), CTX.Barrier(processes)
    results: mp.Queue[tuple[object, ...]] = CTX.Queue()
    url = db_url.render_as_string(hide_password=False)
    procs = [
        CTX.Process(target=workers.race_rounds, args=(url, "race", rounds, start, decided, results))
        for _ in range(processes)
    ]
    _run(procs)
    got = _collect(results, processes * rounds)
    _join(procs)
    winners = Counter(round_no for round_no, _, won in got if won)
    print(f"{backend}: {processes} processes x {rounds} rounds, winners per round {dict(winners)}")
    assert winners == dict.fromkeys(range(rounds), 1)

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            statuses = dict(
                conn.execute(
                    text("SELECT status, count(*) FROM job_execution GROUP BY status")
                ).all()
            )
            conn.rollback()
    finally:
        engine.dispose()
    assert statuses == {"SUCCESS": rounds, "SKIPPED": rounds * (processes - 1)}


@pytest.mark.timeout(240)
def test_fuzz_counter_matches_acquisitions(db_url: URL) -> None:
    processes, iterations = 6, 25
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE fuzz_counter (value INTEGER NOT NULL)"))
            conn.execute(text("INSERT INTO fuzz_counter VALUES (0)"))
    finally:
        engine.dispose()
    start = CTX.Barrier(processes)
    results: mp.Queue[tuple[object, ...]] = CTX.Queue()
    url = db_url.render_as_string(hide_password=False)
    procs = [
        CTX.Process(target=workers.fuzz_counter, args=(url, "fuzz", iterations, start, results))
        for _ in range(processes)
    ]
    _run(procs)
    got = _collect(results, processes)
    _join(procs)
    acquired = sum(int(a) for a, _ in got)  # type: ignore[call-overload]
    skipped = sum(int(s) for _, s in got)  # type: ignore[call-overload]
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            final = conn.execute(text("SELECT value FROM fuzz_counter")).scalar_one()
            success = conn.execute(
                text("SELECT count(*) FROM job_execution WHERE status = 'SUCCESS'")
            ).scalar_one()
            conn.rollback()
    finally:
        engine.dispose()
    print(f"fuzz: {acquired} acquisitions, {skipped} skips, counter {final}")
    assert acquired + skipped == processes * iterations
    assert acquired > 0 and skipped > 0, "the fuzz never contended: it proves nothing"
    assert final == acquired == success
