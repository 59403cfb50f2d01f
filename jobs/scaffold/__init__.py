"""`jobctl new`: add a job in one step, or change nothing.

Everything is validated first (name, dependencies, the project's marker lines), every file's new
content is computed in memory, and only then are the files written, all or none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jobs.errors import ScaffoldError
from jobs.scaffold import edits, names, templates
from jobs.scaffold.files import FileChange, apply_changes, planned_edit, planned_file
from jobs.scaffold.project import (
    IMPORTS_MARKER,
    JOB_TYPES_MARKER,
    JOBS_MARKER,
    Project,
    find_root,
    read_project,
)


@dataclass(frozen=True)
class NewJob:
    name: str
    project: Project
    changes: list[FileChange]
    notes: dict[Path, str]

    @property
    def files(self) -> list[tuple[str, str, str]]:
        """(``created`` | ``modified``, path relative to the project root, what it is for)."""
        return [
            (
                "created" if c.created else "modified",
                self.project.relative(c.path),
                self.notes.get(c.path, ""),
            )
            for c in self.changes
        ]


def plan_new_job(
    start: Path,
    name: str,
    *,
    depends_on: str | None = None,
    description: str | None = None,
    once_per_period: bool = False,
) -> NewJob:
    """Validate everything and compute every file's new content; writes nothing."""
    names.check_name_syntax(name)  # a bad name is reported even outside a project
    project = read_project(find_root(start))
    names.validate_name(name, project)
    upstream = names.validate_depends_on(name, names.parse_depends_on(depends_on), project)
    text = names.validate_description(description, name)
    member = name.upper()
    by_value = {value: key for key, value in project.members.items()}
    missing = [up for up in upstream if up not in by_value]
    if missing:
        raise ScaffoldError(
            f"--depends-on: {', '.join(missing)} has no member in class JobType "
            "(jobs/job_types.py): add it there first"
        )

    job_types = project.job_types_file
    types_text = edits.insert_above_marker(
        job_types.read_text(encoding="utf-8"),
        JOB_TYPES_MARKER,
        f"{member} = {templates.python_string(name)}",
        project.relative(job_types),
    )
    init = project.catalog_init
    init_text = edits.insert_catalog_import(
        init.read_text(encoding="utf-8"), IMPORTS_MARKER, name, project.relative(init)
    )
    init_text = edits.insert_above_marker(
        init_text, JOBS_MARKER, f"{name},", project.relative(init)
    )
    module = templates.render_job_module(
        name,
        member,
        [by_value[up] for up in upstream],
        text,
        once_per_period=once_per_period,
    )
    job_module = project.catalog_dir / f"{name}.py"
    test_module = project.tests_dir / f"test_{name}.py"
    changes = [
        planned_edit(job_types, types_text),
        planned_file(job_module, module),
        planned_edit(init, init_text),
    ]
    tests_init = project.tests_dir / "__init__.py"
    if not tests_init.exists():
        changes.append(planned_file(tests_init, templates.TESTS_PACKAGE))
    changes.append(planned_file(test_module, templates.render_test_module(name)))
    notes = {
        job_types: f"JobType.{member}",
        job_module: "the job: write its logic between the markers",
        init: "registered: import and JOBS entry (runs last among ties)",
        test_module: "runs it through Prefect on PostgreSQL and SQLite, expects SUCCESS",
    }
    return NewJob(name=name, project=project, changes=changes, notes=notes)


def create_job(
    start: Path,
    name: str,
    *,
    depends_on: str | None = None,
    description: str | None = None,
    once_per_period: bool = False,
) -> NewJob:
    """Plan, then write every file or none (``ScaffoldError`` says which, and that all was kept)."""
    plan = plan_new_job(
        start,
        name,
        depends_on=depends_on,
        description=description,
        once_per_period=once_per_period,
    )
    apply_changes(plan.changes)
    return plan


__all__ = ["NewJob", "create_job", "plan_new_job"]
