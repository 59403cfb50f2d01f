import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from tests.faults.test_outcomes_v2 import Boom, _raising, _fine, run_nightly_flow
from tests.faults.helpers import executions

@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("n", ["1", "2"])
@pytest.mark.parametrize("err", [Boom("kaboom"), KeyboardInterrupt(), SystemExit(3)], ids=["boom","kbd","sysexit"])
def test_probe(job_env: URL, engine: Engine, monkeypatch, n, err) -> None:
    from jobs.settings import get_settings
    monkeypatch.setenv("MAX_PARALLEL_JOBS", n)
    get_settings.cache_clear()
    jobs = [_raising("bx_exit", err), _fine("bx_dependent", "bx_exit"), _fine("bx_free")]
    try:
        state, report = run_nightly_flow(jobs)
        print("STATE", state.type, state.message)
    except BaseException as e:
        print("RAISED", type(e).__name__, e)
    for j in ("bx_exit", "bx_dependent", "bx_free"):
        print("ROWS", j, [(r.status, r.error_message) for r in executions(engine, j)])
