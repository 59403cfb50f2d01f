"""Two `jobctl run` of the same job at once, as separate processes: one runs, the other is SKIPPED.

The job is test-only: `jobctl new` adds it to a copy of the project and its body (between the
markers the scaffolder writes) is replaced by one that waits at a gate. The test opens the gate only
after one process has finished, so the two runs overlap whatever the start-up times, and every
wait is bounded.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import URL

from prefect_nightly_jobs.database import make_engine
from prefect_nightly_jobs.models import job_execution as t
from tests.cli.conftest import copy_project, jobctl_command, run_jobctl, subprocess_env, url_text

JOB = "gated_job"
WAIT_S = 240.0
GATED_BODY = """\
    gate = Path(os.environ["GATED_JOB_GATE"])
    (gate / f"started-{os.getpid()}").touch()
    deadline = time.monotonic() + 240
    while not (gate / "open").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.05)
"""


def gated_project(directory: Path) -> Path:
    copy = copy_project(directory)
    made = run_jobctl("new", JOB, cwd=copy, env=subprocess_env(PYTHONPATH=str(copy)))
    assert made.returncode == 0, made.stderr
    module = copy / "jobs" / f"{JOB}.py"
    text = module.read_text()
    head, rest = text.split("    # >>> your job logic starts here >>>\n")
    _, tail = rest.split("    # <<< your job logic ends here <<<\n")
    head = head.replace(
        "from __future__ import annotations\n",
        "from __future__ import annotations\n\nimport os\nimport time\nfrom pathlib import Path\n",
    )
    module.write_text(head + GATED_BODY + tail)
    return copy


def test_two_concurrent_runs_one_runs_the_other_is_skipped(
    tmp_path: Path, db_url: URL, prefect_api: str
) -> None:
    copy = gated_project(tmp_path / "copy")
    gate = tmp_path / "gate"
    gate.mkdir()
    env = subprocess_env(
        PYTHONPATH=str(copy),
        DATABASE_URL=url_text(db_url),
        PREFECT_API_URL=prefect_api,
        GATED_JOB_GATE=str(gate),
    )
    command = jobctl_command("run", JOB, "--period", "2026-01-15")
    runs = [
        subprocess.Popen(
            command, cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + WAIT_S
        while all(run.poll() is None for run in runs):
            assert time.monotonic() < deadline, "neither run finished"
            time.sleep(0.1)
        first = next(run for run in runs if run.poll() is not None)
        second = next(run for run in runs if run is not first)
        out, err = first.communicate(timeout=WAIT_S)
        # The gate is still shut, so the first to finish cannot be the one that runs the body.
        assert first.returncode == 0, out + err
        assert out.startswith("SKIPPED: already running: execution "), out + err
        assert len(list(gate.glob("started-*"))) == 1  # the other one is inside the body
        (gate / "open").touch()
        out, err = second.communicate(timeout=WAIT_S)
        assert second.returncode == 0, out + err
        assert out.splitlines()[0] == "SUCCESS", out + err
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.communicate(timeout=30)

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            statuses = sorted(conn.execute(select(t.c.status).where(t.c.job_type == JOB)).scalars())
    finally:
        engine.dispose()
    assert statuses == ["SKIPPED", "SUCCESS"]
