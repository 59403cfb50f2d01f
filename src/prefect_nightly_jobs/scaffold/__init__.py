"""`jobctl new` and `jobctl init`: add files in one step, or change nothing.

Both only ever create files, never edit one. Everything is validated first (names, dependencies,
that no file would be overwritten), every file's content is computed in memory, and only then are
the files written, all or none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect_nightly_jobs.errors import ScaffoldError
from prefect_nightly_jobs.scaffold import names, templates
from prefect_nightly_jobs.scaffold.files import FileChange, apply_changes, first_taken, planned_file
from prefect_nightly_jobs.scaffold.layout import Layout, create_layout, plan_layout
from prefect_nightly_jobs.scaffold.project import Project, read_project


@dataclass(frozen=True)
class NewJob:
    name: str
    project: Project
    changes: list[FileChange]
    notes: dict[Path, str]

    @property
    def files(self) -> list[tuple[str, str]]:
        """(path relative to the project root, what it is for), in writing order."""
        return [(self.project.relative(c.path), self.notes.get(c.path, "")) for c in self.changes]

    @property
    def module(self) -> str:
        return self.project.relative(self.changes[0].path)

    @property
    def test(self) -> str:
        return self.project.relative(self.changes[-1].path)


def plan_new_job(
    start: Path,
    name: str,
    *,
    depends_on: str | None = None,
    description: str | None = None,
    once_per_period: bool = False,
) -> NewJob:
    """Validate everything and compute every file's content; writes nothing."""
    names.check_name_syntax(name)  # a bad name is reported even outside a project
    project = read_project(start)
    names.validate_name(name, project)
    upstream = names.validate_depends_on(name, names.parse_depends_on(depends_on), project)
    text = names.validate_description(description, name)

    job_module = project.jobs_dir / f"{name}.py"
    test_module = project.tests_dir / f"test_{name}.py"
    module = templates.render_job_module(
        name, list(upstream), text, once_per_period=once_per_period
    )
    changes = [planned_file(job_module, module)]
    tests_init = project.tests_dir / "__init__.py"
    if not (tests_init.exists() or tests_init.is_symlink()):
        changes.append(planned_file(tests_init, templates.TESTS_PACKAGE))
    changes.append(planned_file(test_module, templates.render_test_module(name)))
    taken = first_taken([c.path for c in changes])
    if taken is not None:  # the names were checked: this is a folder that is a file
        path, why = taken
        raise ScaffoldError(f"{project.relative(path)} {why}: move it away first")
    notes = {
        job_module: "the job: write its logic between the markers",
        tests_init: "makes tests/ a package",
        test_module: "runs it through Prefect on a fresh database, expects SUCCESS",
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
    """Plan, then write every file or none (``ScaffoldError`` says why, and that none was kept)."""
    plan = plan_new_job(
        start,
        name,
        depends_on=depends_on,
        description=description,
        once_per_period=once_per_period,
    )
    apply_changes(plan.changes)
    return plan


__all__ = ["Layout", "NewJob", "create_job", "create_layout", "plan_layout", "plan_new_job"]
