"""`jobctl new` planning on a small project tree: the project's jobs are read without importing
anything, validation refuses before anything is written, only new files are planned, and a failing
write removes every file it made."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_nightly_jobs.errors import ScaffoldError
from prefect_nightly_jobs.project import PACKAGE_ENV
from prefect_nightly_jobs.scaffold import create_job, create_layout, plan_new_job
from prefect_nightly_jobs.scaffold.files import apply_changes
from prefect_nightly_jobs.scaffold.names import MAX_NAME_LENGTH
from prefect_nightly_jobs.scaffold.project import read_project

REPO_ROOT = Path(__file__).resolve().parents[2]

PYPROJECT = '[project]\nname = "proj"\n\n[tool.prefect-nightly-jobs]\njobs = "jobs"\n'

PACKAGE = '''\
"""Jobs."""

from jobs.helpers import registry

VERSION = 1
'''

JOB = """\
from prefect_nightly_jobs import JobContext, background_job


@background_job("{name}", depends_on=[{deps}])
def {name}(ctx: JobContext) -> None:
    pass
"""


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every directory (None), relative to ``root``."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(autouse=True)
def _no_package_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PACKAGE_ENV, raising=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    jobs = root / "jobs"
    jobs.mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "pyproject.toml").write_text(PYPROJECT)
    (jobs / "__init__.py").write_text(PACKAGE)
    (jobs / "helpers.py").write_text("def registry() -> None:\n    pass\n")
    (jobs / "models.py").write_text('"""Models."""\n')
    (jobs / "import_events.py").write_text(JOB.format(name="import_events", deps=""))
    (jobs / "daily_rollup.py").write_text(JOB.format(name="daily_rollup", deps='"import_events"'))
    return root


def test_jobs_are_read_from_the_source_without_importing_it(project: Path) -> None:
    jobs = project / "jobs"
    # Importing this module would fail: the scaffolder only parses it.
    (jobs / "legacy.py").write_text(
        "import prefect_nightly_jobs as pnj\n\n"
        'raise RuntimeError("never imported")\n\n\n'
        '@pnj.background_job("renamed_job", depends_on=("import_events",))\n'
        "def old(ctx: object) -> None: ...\n\n\n"
        "@pnj.background_job(KIND)\n"  # not a literal: its type is unknown, it is skipped
        "def dynamic(ctx: object) -> None: ...\n"
    )
    (jobs / "group").mkdir()
    (jobs / "group" / "__init__.py").write_text(JOB.format(name="grouped", deps="UPSTREAM"))
    (jobs / "group" / "deeper.py").write_text(JOB.format(name="not_discovered", deps=""))
    found = read_project(project / "tests")  # the root is found upward, from pyproject.toml
    assert found.root == project.resolve()
    assert found.package == "jobs"
    assert [(j.job_type, j.module.name, j.depends_on) for j in found.jobs] == [
        ("daily_rollup", "daily_rollup.py", ("import_events",)),
        ("grouped", "__init__.py", None),  # depends_on is not a list of literals
        ("import_events", "import_events.py", ()),
        ("renamed_job", "legacy.py", ("import_events",)),
    ]
    assert {"registry", "VERSION"} <= found.package_names


def test_outside_a_project_new_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match=r"no jobs package 'jobs' in .*run `jobctl init`"):
        plan_new_job(tmp_path, "fine_name")


def test_plan_adds_two_files_and_the_tests_package(project: Path) -> None:
    plan = plan_new_job(
        project / "tests", "audit_log", depends_on="daily_rollup", once_per_period=True
    )
    texts = {c.path.relative_to(project.resolve()).as_posix(): c.text for c in plan.changes}
    assert list(texts) == ["jobs/audit_log.py", "tests/__init__.py", "tests/test_audit_log.py"]
    assert all(change.created for change in plan.changes)  # never an edit
    module = texts["jobs/audit_log.py"]
    assert "from prefect_nightly_jobs import JobContext, background_job\n" in module
    assert '@background_job(\n    "audit_log",\n    depends_on=["daily_rollup"],\n' in module
    assert "once_per_period=True," in module and "def audit_log(ctx: JobContext)" in module
    assert "Enable flag: AUDIT_LOG_ENABLED" in module
    assert ">>> your job logic starts here >>>" in module
    assert "<<< your job logic ends here <<<" in module
    test = texts["tests/test_audit_log.py"]
    assert "def test_audit_log_succeeds(nightly_env: object) -> None:" in test
    assert 'run_job("audit_log", period=PERIOD)' in test
    assert "assertions about what the job did go here" in test
    (project / "tests" / "__init__.py").write_text("")
    again = plan_new_job(project, "audit_log")
    assert [c.path.name for c in again.changes] == ["audit_log.py", "test_audit_log.py"]


def test_the_jobs_package_follows_the_configuration(project: Path) -> None:
    (project / "pyproject.toml").write_text(PYPROJECT.replace('"jobs"', '"app.jobs"'))
    (project / "app").mkdir()
    (project / "jobs").rename(project / "app" / "jobs")
    job = create_job(project / "app", "audit_log", depends_on="import_events")
    assert job.module == "app/jobs/audit_log.py" and job.test == "tests/test_audit_log.py"
    assert (project / "app" / "jobs" / "audit_log.py").is_file()


@pytest.mark.parametrize(
    ("name", "depends_on", "description", "message"),
    [
        ("Sync", None, None, "not a lowercase identifier"),
        ("sync-users", None, None, "not a lowercase identifier"),
        ("2fast", None, None, "not a lowercase identifier"),
        ("_private", None, None, "not a lowercase identifier"),
        ("", None, None, "empty"),
        (" sync", None, None, "padded with spaces"),
        ("../evil", None, None, "looks like a path"),
        ("jobs/x", None, None, "looks like a path"),
        ("sub.module", None, None, "looks like a path"),
        ("class", None, None, "Python keyword"),
        ("match", None, None, "Python keyword"),
        ("list", None, None, "shadow the Python builtin"),
        ("import_events", None, None, r"job 'import_events' already exists \(in jobs/"),
        ("models", None, None, "jobs/models.py already exists"),
        ("helpers", None, None, "jobs/helpers.py already exists"),
        ("registry", None, None, "clashes with a name in jobs/__init__.py"),
        ("x" * (MAX_NAME_LENGTH + 1), None, None, "characters long"),
        ("new_job", "nope", None, "unknown job 'nope'"),
        ("new_job", "new_job", None, "cannot depend on itself"),
        ("new_job", "import_events,import_events", None, "twice"),
        ("new_job", "import_events,", None, "empty entry"),
        ("new_job", None, "two\nlines", "one line"),
        ("new_job", None, "x" * 501, "keep it under 500"),
    ],
)
def test_bad_input_is_refused_and_nothing_changes(
    project: Path, name: str, depends_on: str | None, description: str | None, message: str
) -> None:
    before = snapshot(project)
    with pytest.raises(ScaffoldError, match=message) as raised:
        create_job(project, name, depends_on=depends_on, description=description)
    assert "\n" not in raised.value.message
    assert snapshot(project) == before


def test_files_in_the_way_broken_modules_and_cycles_are_refused(project: Path) -> None:
    (project / "tests" / "test_taken.py").write_text("")
    (project / "jobs" / "pkg_job").mkdir()
    before = snapshot(project)
    with pytest.raises(ScaffoldError, match=r"tests/test_taken.py already exists"):
        create_job(project, "taken")
    with pytest.raises(ScaffoldError, match=r"jobs/pkg_job already exists"):
        create_job(project, "pkg_job")
    assert snapshot(project) == before

    # A job that already names the new one as upstream closes a cycle through it.
    (project / "jobs" / "import_events.py").write_text(
        JOB.format(name="import_events", deps='"later"')
    )
    before = snapshot(project)
    with pytest.raises(ScaffoldError, match=r"dependency cycle: .*later.*import_events"):
        create_job(project, "later", depends_on="daily_rollup")
    assert snapshot(project) == before

    (project / "jobs" / "half_written.py").write_text("def broken(:\n")
    with pytest.raises(ScaffoldError, match=r"jobs/half_written.py line 1 does not parse"):
        create_job(project, "fine_name")
    (project / "jobs" / "half_written.py").unlink()

    (project / "tests" / "test_taken.py").unlink()
    (project / "tests").rmdir()
    (project / "tests").write_text("")  # a file where the tests directory should be
    before = snapshot(project)
    with pytest.raises(ScaffoldError, match=r"^tests exists and is not a directory"):
        create_job(project, "fine_name")
    assert snapshot(project) == before


def test_a_failing_write_removes_every_file_it_made(project: Path) -> None:
    (project / "tests").rmdir()
    before = snapshot(project)
    plan = plan_new_job(project, "audit_log")
    calls: list[Path] = []

    def flaky(source: Path, target: Path) -> None:
        calls.append(target)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        source.replace(target)

    with pytest.raises(ScaffoldError, match=r"writing failed, every file was restored: .*No space"):
        apply_changes(plan.changes, replace=flaky)
    assert len(calls) == 3  # two files were already in place when the third failed
    assert snapshot(project) == before  # the tests directory it made is gone too
    assert not list(project.rglob("*.jobctl-tmp"))


def test_a_file_that_appears_after_planning_stops_the_write(project: Path) -> None:
    plan = plan_new_job(project, "audit_log")
    (project / "tests" / "test_audit_log.py").write_text("# written meanwhile\n")
    before = snapshot(project)
    with pytest.raises(ScaffoldError, match="appeared while writing: nothing was changed"):
        apply_changes(plan.changes)
    assert snapshot(project) == before


def ruff(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_files_are_ruff_clean_even_at_the_limits(tmp_path: Path) -> None:
    """The longest allowed name, long dependency lists and an awkward description still give
    files that ruff and ruff format accept unchanged, with the configuration `jobctl init` writes
    and with this repository's stricter one (test_init.py also runs mypy)."""
    project = create_layout(tmp_path / "app").root
    a, b = "a" * MAX_NAME_LENGTH, "b" * MAX_NAME_LENGTH
    longest = "j" * (MAX_NAME_LENGTH - 1) + "z"
    description = 'He said "it\'s done" \u2013 caf\u00e9 \U0001f600 ' * 12
    create_job(project, "first", description="short")
    create_job(project, a, depends_on="first")
    create_job(project, b, depends_on=f"first,{a}")
    create_job(
        project,
        longest,
        depends_on=",".join(["first", a, b]),
        description=description,
        once_per_period=True,
    )
    ruff("check", "--no-cache", ".", cwd=project)
    ruff("format", "--check", "--no-cache", ".", cwd=project)
    strict = str(REPO_ROOT / "pyproject.toml")
    ruff("check", "--no-cache", "--config", strict, "jobs", "tests", cwd=project)
    ruff("format", "--check", "--no-cache", "--config", strict, ".", cwd=project)
    module = ast.parse((project / "jobs" / f"{longest}.py").read_text())
    constant = next(
        node.value
        for node in module.body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "DESCRIPTION"
    )
    assert ast.literal_eval(constant) == description.strip()
