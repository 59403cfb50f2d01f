"""Validation of what `jobctl new` is given, before any file is touched."""

from __future__ import annotations

import builtins
import keyword
import re
import unicodedata

from prefect_nightly_jobs.dag import find_cycle
from prefect_nightly_jobs.errors import ScaffoldError
from prefect_nightly_jobs.models import JOB_TYPE_LENGTH
from prefect_nightly_jobs.scaffold.project import Project

_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")
# The job's module, function and test are named after it; at this length every generated line
# (``def test_<name>_succeeds(nightly_env: object) -> None:`` is the longest) fits in 100 columns.
MAX_NAME_LENGTH = min(JOB_TYPE_LENGTH, 52)
MAX_DESCRIPTION_LENGTH = 500


def check_name_syntax(name: str) -> str:
    """A new job's name on its own: a lowercase Python identifier that shadows nothing."""
    shown = name[:80]
    if not name or name != name.strip():
        raise ScaffoldError(
            f"job name {shown!r} is empty or padded with spaces: give e.g. sync_users"
        )
    if any(sep in name for sep in ("/", "\\", ".")) or name.startswith("~"):
        raise ScaffoldError(
            f"job name {shown!r} looks like a path: give a bare name such as sync_users"
        )
    if not _IDENTIFIER.fullmatch(name):
        raise ScaffoldError(
            f"job name {shown!r} is not a lowercase identifier: use letters a-z, digits and "
            "underscores, starting with a letter (e.g. sync_users)"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ScaffoldError(
            f"job name {shown!r} is {len(name)} characters long: use at most {MAX_NAME_LENGTH}"
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise ScaffoldError(f"job name {name!r} is a Python keyword: pick another name")
    if hasattr(builtins, name):
        raise ScaffoldError(
            f"job name {name!r} would shadow the Python builtin {name!r}: pick another name"
        )
    return name


def validate_name(name: str, project: Project) -> str:
    """A new job's name in this project: valid, and not taken by a job or a file."""
    check_name_syntax(name)
    if name in project.job_types:
        where = next(job.module for job in project.jobs if job.job_type == name)
        raise ScaffoldError(
            f"job {name!r} already exists (in {project.relative(where)}): pick another name"
        )
    if name in project.package_names:
        init = project.relative(project.jobs_dir / "__init__.py")
        raise ScaffoldError(f"job name {name!r} clashes with a name in {init}: pick another name")
    for path in (
        project.jobs_dir / f"{name}.py",
        project.jobs_dir / name,
        project.tests_dir / f"test_{name}.py",
    ):
        if path.exists() or path.is_symlink():
            raise ScaffoldError(
                f"{project.relative(path)} already exists: pick another name or remove that file"
            )
    return name


def parse_depends_on(raw: str | None) -> list[str]:
    """``"a, b"`` → ``["a", "b"]``; a blank entry or a repeated name is an error."""
    if raw is None or not raw.strip():
        return []
    names = [part.strip() for part in raw.split(",")]
    if any(not part for part in names):
        raise ScaffoldError(
            f"--depends-on {raw!r} has an empty entry: give names separated by commas, e.g. a,b"
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ScaffoldError(f"--depends-on names {', '.join(repeated)} twice: list each job once")
    return names


def validate_depends_on(name: str, depends_on: list[str], project: Project) -> tuple[str, ...]:
    """Every upstream is a job of the project, and the graph with the new job has no cycle."""
    known = project.job_types
    for up in depends_on:
        if up == name:
            raise ScaffoldError(
                f"--depends-on: job {name!r} cannot depend on itself (a cycle): remove it"
            )
        if up not in known:
            listed = ", ".join(known) or "none yet"
            raise ScaffoldError(
                f"--depends-on: unknown job {up[:80]!r}: use jobs of this project ({listed})"
            )
    # Only a job that already names the new one as upstream can close a cycle through it; a graph
    # that is cyclic already is named too, rather than written into.
    graph: dict[str, tuple[str, ...]] = {}
    for job in project.jobs:
        graph.setdefault(job.job_type, job.depends_on or ())
    graph[name] = tuple(depends_on)
    cycle = find_cycle(graph)
    if cycle is not None:
        raise ScaffoldError(
            f"--depends-on: dependency cycle: {' -> '.join(cycle)}: "
            "remove one of these depends_on entries"
        )
    return tuple(depends_on)


def validate_description(description: str | None, name: str) -> str:
    if description is None or not description.strip():
        return f"TODO: say what {name} does."
    text = description.strip()
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise ScaffoldError(
            "--description must be one line of printable text: remove newlines and control "
            "characters"
        )
    if len(text) > MAX_DESCRIPTION_LENGTH:
        raise ScaffoldError(
            f"--description is {len(text)} characters long: keep it under "
            f"{MAX_DESCRIPTION_LENGTH} (details belong in the job's docstring)"
        )
    return text
