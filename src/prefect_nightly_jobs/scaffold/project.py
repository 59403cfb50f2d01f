"""The application `jobctl new` adds to, read statically (with ``ast``), never imported.

Reading the files rather than importing the jobs package matters: a half-written job must not break
the scaffolder that is about to add the next one, and importing a job module would run its code.
The job types are the string literals that start ``background_job("...")`` calls in the modules the
plugin discovers (every module of the jobs package, and the ``__init__`` of its subpackages).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from prefect_nightly_jobs.errors import ConfigurationError, ScaffoldError
from prefect_nightly_jobs.project import TOOL, find_project

DECORATOR = "background_job"
TESTS_DIR = "tests"


@dataclass(frozen=True)
class FoundJob:
    job_type: str
    module: Path  # the file whose ``background_job("...")`` call declares it
    # None when the call's depends_on is not a literal list of strings the scaffolder can read.
    depends_on: tuple[str, ...] | None


@dataclass(frozen=True)
class Project:
    root: Path
    package: str  # the jobs package, e.g. ``jobs`` or ``myapp.jobs``
    jobs: list[FoundJob]  # in discovery order: modules by name, calls in source order
    package_names: frozenset[str]  # names bound at the top of the package's ``__init__.py``

    @property
    def jobs_dir(self) -> Path:
        return self.root.joinpath(*self.package.split("."))

    @property
    def tests_dir(self) -> Path:
        return self.root / TESTS_DIR

    @property
    def job_types(self) -> list[str]:
        return [job.job_type for job in self.jobs]

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def read_project(start: Path) -> Project:
    """The project at or above ``start`` (its pyproject.toml), or a ScaffoldError naming the fix."""
    try:
        found = find_project(start)
    except ConfigurationError as err:
        raise ScaffoldError(err.message) from None
    root = found.root
    jobs_dir = found.jobs_dir
    if not jobs_dir.is_dir():
        raise ScaffoldError(
            f"no jobs package {found.package!r} in {root} (expected the directory "
            f"{jobs_dir.relative_to(root).as_posix()}/, [tool.{TOOL}] jobs in pyproject.toml): "
            "run `jobctl init` there first, or run `jobctl new` inside the project"
        )
    jobs: list[FoundJob] = []
    package_names: frozenset[str] = frozenset()
    for module in job_modules(jobs_dir):
        tree = _parse(module, root)
        if module == jobs_dir / "__init__.py":
            package_names = frozenset(_bound_names(tree))
        jobs.extend(_declared_jobs(tree, module))
    return Project(root=root, package=found.package, jobs=jobs, package_names=package_names)


def job_modules(jobs_dir: Path) -> list[Path]:
    """The files whose jobs the plugin discovers, in its import order: the package, then its
    modules and subpackages by name."""
    found: dict[str, Path] = {}
    for entry in jobs_dir.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix == ".py" and entry.name != "__init__.py":
            found[entry.stem] = entry
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            found[entry.name] = entry / "__init__.py"
    modules = [found[name] for name in sorted(found)]
    init = jobs_dir / "__init__.py"
    return [init, *modules] if init.is_file() else modules


def _parse(path: Path, root: Path) -> ast.Module:
    where = path.relative_to(root).as_posix()
    try:
        return ast.parse(path.read_bytes(), filename=where)
    except SyntaxError as err:
        raise ScaffoldError(
            f"{where} line {err.lineno} does not parse ({err.msg}): fix it first"
        ) from None
    except OSError as err:
        raise ScaffoldError(f"{where} cannot be read ({err.strerror}): fix it first") from None


def _is_decorator_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    target = node.func
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    return name == DECORATOR


def _string(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _declared_jobs(tree: ast.Module, module: Path) -> list[FoundJob]:
    jobs: list[FoundJob] = []
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    for call in sorted(calls, key=lambda c: (c.lineno, c.col_offset)):
        if not _is_decorator_call(call):
            continue
        keywords = {kw.arg: kw.value for kw in call.keywords if kw.arg is not None}
        job_type = _string(call.args[0] if call.args else keywords.get("job_type"))
        if job_type is None:
            continue  # not a literal: the scaffolder cannot know this job's type
        deps: tuple[str, ...] | None = ()
        value = keywords.get("depends_on")
        if value is not None:
            names = (
                [_string(elt) for elt in value.elts]
                if isinstance(value, ast.List | ast.Tuple)
                else [None]
            )
            deps = None if None in names else tuple(n for n in names if n is not None)
        jobs.append(FoundJob(job_type=job_type, module=module, depends_on=deps))
    return jobs


def _bound_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names
