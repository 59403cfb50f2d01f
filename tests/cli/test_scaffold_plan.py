"""`jobctl new` planning on a small project tree: validation refuses before anything is written,
insertions land where ruff wants them, and a failing write restores every file."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.errors import ScaffoldError
from jobs.scaffold import create_job, plan_new_job
from jobs.scaffold.edits import insert_catalog_import
from jobs.scaffold.files import apply_changes
from jobs.scaffold.project import IMPORTS_MARKER, find_root
from tests.cli.conftest import copy_project

JOB_TYPES = '''\
"""Job types."""

from enum import StrEnum


class JobType(StrEnum):
    IMPORT_EVENTS = "import_events"
    DAILY_ROLLUP = "daily_rollup"
    # <jobctl:job-types>
'''

CATALOG = '''\
"""Catalog."""

from __future__ import annotations

from jobs.catalog.daily_rollup import daily_rollup
from jobs.catalog.import_events import import_events
from jobs.registry import Registry
from jobs.task import BackgroundJob

# <jobctl:imports>

JOBS: tuple[BackgroundJob, ...] = (
    import_events,
    daily_rollup,
    # <jobctl:jobs>
)


def registry() -> Registry:
    return Registry(job.spec for job in JOBS)
'''

JOB = """\
from jobs.job_types import JobType
from jobs.task import JobContext, background_job


@background_job(JobType.{member}, depends_on=[{deps}])
def {name}(ctx: JobContext) -> None:
    pass
"""


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    catalog = root / "jobs" / "catalog"
    catalog.mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "jobs" / "job_types.py").write_text(JOB_TYPES)
    (catalog / "__init__.py").write_text(CATALOG)
    (catalog / "import_events.py").write_text(
        JOB.format(member="IMPORT_EVENTS", deps="", name="import_events")
    )
    (catalog / "daily_rollup.py").write_text(
        JOB.format(
            member="DAILY_ROLLUP",
            deps="JobType.IMPORT_EVENTS",
            name="daily_rollup",
        )
    )
    return root


def test_root_is_found_from_a_subdirectory(project: Path, tmp_path: Path) -> None:
    deep = project / "tests" / "a" / "b"
    deep.mkdir(parents=True)
    assert find_root(deep) == project.resolve()
    with pytest.raises(ScaffoldError, match="no project found"):
        find_root(tmp_path)


def test_plan_edits_every_file_in_place(project: Path) -> None:
    plan = plan_new_job(
        project / "tests", "audit_log", depends_on="daily_rollup", once_per_period=True
    )
    texts = {c.path.relative_to(project.resolve()).as_posix(): c.text for c in plan.changes}
    assert list(texts) == [
        "jobs/job_types.py",
        "jobs/catalog/audit_log.py",
        "jobs/catalog/__init__.py",
        "tests/jobs/__init__.py",
        "tests/jobs/test_audit_log.py",
    ]
    assert texts["jobs/job_types.py"].endswith(
        '    DAILY_ROLLUP = "daily_rollup"\n    AUDIT_LOG = "audit_log"\n    # <jobctl:job-types>\n'
    )
    catalog = texts["jobs/catalog/__init__.py"]
    assert (
        "from jobs.catalog.audit_log import audit_log\n"
        "from jobs.catalog.daily_rollup import daily_rollup\n" in catalog
    )
    assert "    daily_rollup,\n    audit_log,\n    # <jobctl:jobs>\n" in catalog
    module = texts["jobs/catalog/audit_log.py"]
    assert "JobType.AUDIT_LOG," in module and "depends_on=[JobType.DAILY_ROLLUP]," in module
    assert "once_per_period=True," in module and "def audit_log(ctx: JobContext)" in module
    assert ">>> your job logic starts here >>>" in module
    assert 'run_job("audit_log", period=PERIOD)' in texts["tests/jobs/test_audit_log.py"]


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
        ("jobs/catalog/x", None, None, "looks like a path"),
        ("sub.module", None, None, "looks like a path"),
        ("class", None, None, "Python keyword"),
        ("match", None, None, "Python keyword"),
        ("list", None, None, "shadow the Python builtin"),
        ("import_events", None, None, "already exists"),
        ("registry", None, None, "clashes with a name in jobs/catalog/__init__.py"),
        ("x" * 38, None, None, "characters long"),
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


def test_existing_files_and_cycles_are_refused(project: Path) -> None:
    (project / "tests" / "jobs").mkdir()
    (project / "tests" / "jobs" / "test_taken.py").write_text("")
    (project / "jobs" / "catalog" / "helpers.py").write_text("")
    before = snapshot(project)
    with pytest.raises(ScaffoldError, match=r"tests/jobs/test_taken.py already exists"):
        create_job(project, "taken")
    with pytest.raises(ScaffoldError, match=r"jobs/catalog/helpers.py already exists"):
        create_job(project, "helpers")
    # A graph that is already cyclic is named, not written into.
    rollup = project / "jobs" / "catalog" / "import_events.py"
    rollup.write_text(
        rollup.read_text().replace("depends_on=[]", "depends_on=[JobType.DAILY_ROLLUP]")
    )
    (project / "jobs" / "catalog" / "daily_rollup.py").write_text(
        JOB.format(member="DAILY_ROLLUP", deps="JobType.IMPORT_EVENTS", name="daily_rollup")
    )
    before = snapshot(project)
    with pytest.raises(ScaffoldError, match=r"dependency cycle: .*import_events.*daily_rollup"):
        create_job(project, "later", depends_on="daily_rollup")
    assert snapshot(project) == before


@pytest.mark.parametrize(
    ("path", "text", "message"),
    [
        (
            "jobs/catalog/__init__.py",
            CATALOG.replace("    # <jobctl:jobs>\n", ""),
            "no `# <jobctl:jobs>`",
        ),
        (
            "jobs/catalog/__init__.py",
            CATALOG.replace("JOBS:", "JOBS ::"),
            r"line \d+ does not parse",
        ),
        ("jobs/job_types.py", JOB_TYPES + "    # <jobctl:job-types>\n", "exactly once, found 2"),
        ("jobs/job_types.py", JOB_TYPES.replace("JobType", "Kinds"), "no `class JobType`"),
    ],
)
def test_missing_marker_or_broken_file_is_refused(
    project: Path, path: str, text: str, message: str
) -> None:
    (project / path).write_text(text)
    before = snapshot(project)
    with pytest.raises(ScaffoldError, match=message):
        create_job(project, "fine_name")
    assert snapshot(project) == before


def test_a_failing_write_restores_every_file(project: Path) -> None:
    before = snapshot(project)
    plan = plan_new_job(project, "audit_log")
    calls: list[Path] = []

    def flaky(source: Path, target: Path) -> None:
        calls.append(target)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        source.replace(target)

    with pytest.raises(ScaffoldError, match=r"writing failed, every file was restored: .*No space"):
        apply_changes(plan.changes, replace=flaky)
    assert len(calls) == 4  # three files were already in place when the fourth failed
    assert snapshot(project) == before
    assert not (project / "tests" / "jobs").exists()  # the directory it made is gone too
    assert not list(project.rglob("*.jobctl-tmp"))


def test_a_file_changed_after_planning_stops_the_write(project: Path) -> None:
    plan = plan_new_job(project, "audit_log")
    catalog = project / "jobs" / "catalog" / "__init__.py"
    catalog.write_text(CATALOG + "\n# edited meanwhile\n")
    before = snapshot(project)
    with pytest.raises(ScaffoldError, match="changed while writing"):
        apply_changes(plan.changes)
    assert snapshot(project) == before


def test_catalog_imports_are_inserted_in_ruff_order(tmp_path: Path) -> None:
    existing = ["a", "a1", "a_b", "aaz", "b2", "b10"]
    text = "".join(f"from jobs.catalog.{m} import {m}\n" for m in existing)
    text += f"from jobs.registry import Registry\n\n{IMPORTS_MARKER}\n"
    for module in ["a0", "a_", "a_c", "aa", "b3", "b11", "c", "aaa_b"]:
        text = insert_catalog_import(text, IMPORTS_MARKER, module, "catalog")
    used = ", ".join(line.split()[-1] for line in text.splitlines() if line.startswith("from"))
    path = tmp_path / "catalog.py"
    path.write_text(text + f"\nprint({used})\n")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "ruff", "check", "--isolated", "--select", "I"),
            *("--config", "lint.isort.known-first-party = ['jobs']", str(path)),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_files_are_ruff_clean_even_at_the_limits(tmp_path: Path) -> None:
    """The longest allowed name, long dependency lists and an awkward description still give
    files that ruff and ruff format accept unchanged (the full copy test also runs mypy)."""
    project = copy_project(tmp_path / "copy")
    longest = "j" * 36 + "z"
    description = 'He said "it\'s done" \u2013 caf\u00e9 \U0001f600 ' * 12
    create_job(project, "a" * 37, description="short")
    create_job(project, "b" * 37, depends_on="import_events,daily_rollup," + "a" * 37)
    create_job(
        project,
        longest,
        depends_on=",".join(["import_events", "daily_rollup", "a" * 37, "b" * 37]),
        description=description,
        once_per_period=True,
    )
    for args in (["check", "--no-cache"], ["format", "--check", "--no-cache"]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *args, "."],
            cwd=project,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    module = ast.parse((project / "jobs" / "catalog" / f"{longest}.py").read_text())
    constant = next(
        node.value
        for node in module.body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "DESCRIPTION"
    )
    assert ast.literal_eval(constant) == description.strip()
