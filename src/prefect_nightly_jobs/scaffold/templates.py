"""The files `jobctl new` writes. Rendered output is ruff-, ruff-format- and mypy --strict-clean
as is; the scaffold tests run those tools on a generated job to keep it that way."""

from __future__ import annotations

from string import Template

from prefect_nightly_jobs.settings import enabled_flag_name

LINE_LENGTH = 100

JOB_MODULE = Template('''\
"""The `$name` job (created by `jobctl new`).

Write the job's logic between the marked lines of the function below. Around it, the plugin
checks the job's enable flag, takes the job's lock, records the outcome in job_execution and in
Prefect, and commits `ctx.session` when the function returns (rolls it back if it raises).
Enable flag: $flag (unset means enabled).
"""

from __future__ import annotations

from prefect_nightly_jobs import JobContext, background_job

$description_constant


@background_job(
    $job_type,$depends_on
    description=DESCRIPTION,
    once_per_period=$once_per_period,
)
def $name(ctx: JobContext) -> None:
    # >>> your job logic starts here >>>
    # ctx.session: SQLAlchemy session on the app database (raise to record FAILURE)
    # ctx.period: the date this run is for
    # ctx.logger: logs with the job's name as prefix, through Prefect's run logger
    # ctx.still_held(): False once the lock was lost (check it in long loops, then stop)
    ctx.logger.info("nothing to do yet for period %s", ctx.period.isoformat())
    # <<< your job logic ends here <<<
''')

# Only the standard library and the plugin are imported: ruff sorts these the same whether the
# plugin is a third-party package (an application) or first-party (the plugin's own repository).
TEST_MODULE = Template('''\
"""Test of the `$name` job (created by `jobctl new`).

It runs the job through Prefect, with its lock, on a fresh migrated database (SQLite, and
PostgreSQL too when TEST_DATABASE_URL is set) and expects SUCCESS. Add assertions about what the
job did at the marked line.
"""

from __future__ import annotations

from datetime import date

from prefect_nightly_jobs import Status, engine_from_settings, load_settings, run_job
from prefect_nightly_jobs.testing import rows

PERIOD = date(2026, 1, 15)


def test_${name}_succeeds(nightly_env: object) -> None:
    # nightly_env (the prefect-nightly-jobs pytest plugin): DATABASE_URL is this test's fresh
    # database, with the plugin's tables and this project's migrations; Prefect is a test server.
    outcome = run_job($job_type, period=PERIOD)
    assert outcome.status == Status.SUCCESS, outcome.reason
    engine = engine_from_settings(load_settings())
    try:
        executions = rows(engine, $job_type)
        assert [(row.id, row.status, row.period) for row in executions] == [
            (outcome.execution_id, Status.SUCCESS, PERIOD)
        ]
        # >>> assertions about what the job did go here (query through engine.connect()) >>>
    finally:
        engine.dispose()
''')

TESTS_PACKAGE = '"""This project\'s tests: one module per job (`jobctl new` writes them)."""\n'


def python_string(text: str) -> str:
    """A string literal that ruff format leaves alone: ASCII only (no ambiguous-character
    warnings), double quotes unless the text holds more double than single quotes (ruff's rule)."""
    quote = "'" if text.count('"') > text.count("'") else '"'
    out = []
    for ch in text:
        if ch in (quote, "\\"):
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return quote + "".join(out) + quote


def _chunks(text: str, width: int) -> list[str]:
    """Pieces of ``text`` whose literals fit in ``width``, split after spaces when possible."""
    pieces: list[str] = []
    current = ""
    for ch in text:
        if current and len(python_string(current + ch)) > width:
            cut = current.rfind(" ") + 1
            if 0 < cut < len(current):
                pieces.append(current[:cut])
                current = current[cut:]
            else:
                pieces.append(current)
                current = ""
        current += ch
    pieces.append(current)
    return pieces


def description_constant(description: str) -> str:
    """``DESCRIPTION = "..."``, split into implicitly concatenated lines when it is too long."""
    single = f"DESCRIPTION = {python_string(description)}"
    if len(single) <= LINE_LENGTH:
        return single
    body = "\n".join(f"    {python_string(c)}" for c in _chunks(description, LINE_LENGTH - 4))
    return f"DESCRIPTION = (\n{body}\n)"


def render_job_module(
    name: str, depends_on: list[str], description: str, *, once_per_period: bool
) -> str:
    deps = ""
    if depends_on:
        line = f"    depends_on=[{', '.join(python_string(d) for d in depends_on)}],"
        if len(line) <= LINE_LENGTH:
            deps = "\n" + line
        else:  # one per line, with the trailing comma ruff format keeps exploded
            inner = "".join(f"\n        {python_string(d)}," for d in depends_on)
            deps = f"\n    depends_on=[{inner}\n    ],"
    return JOB_MODULE.substitute(
        name=name,
        job_type=python_string(name),
        flag=enabled_flag_name(name),
        depends_on=deps,
        description_constant=description_constant(description),
        once_per_period="True" if once_per_period else "False",
    )


def render_test_module(name: str) -> str:
    return TEST_MODULE.substitute(name=name, job_type=python_string(name))
