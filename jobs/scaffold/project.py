"""The project ``jobctl new`` edits, read statically (with ``ast``), never imported.

Reading the files rather than importing ``jobs.catalog`` matters: the installed ``jobs`` package may
be another checkout than the directory being edited, and a half-written job must not break the
scaffolder that is about to add the next one.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from jobs.errors import ScaffoldError

JOB_TYPES_MARKER = "# <jobctl:job-types>"
IMPORTS_MARKER = "# <jobctl:imports>"
JOBS_MARKER = "# <jobctl:jobs>"
CATALOG_PREFIX = "jobs.catalog."


@dataclass(frozen=True)
class CatalogJob:
    job_type: str
    module: str
    # None when the decorator's depends_on is not a literal list the scaffolder can read.
    depends_on: tuple[str, ...] | None


@dataclass(frozen=True)
class Project:
    root: Path
    members: dict[str, str]  # JobType member name -> job type string
    jobs: list[CatalogJob]  # in registration order (the JOBS tuple)
    catalog_names: frozenset[str]  # other names bound at the top of jobs/catalog/__init__.py

    @property
    def job_types_file(self) -> Path:
        return self.root / "jobs" / "job_types.py"

    @property
    def catalog_dir(self) -> Path:
        return self.root / "jobs" / "catalog"

    @property
    def catalog_init(self) -> Path:
        return self.catalog_dir / "__init__.py"

    @property
    def tests_dir(self) -> Path:
        return self.root / "tests" / "jobs"

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root))


def find_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` that holds ``jobs/catalog/``."""
    here = start.resolve()
    for candidate in (here, *here.parents):
        if (candidate / "jobs" / "catalog" / "__init__.py").is_file():
            return candidate
    raise ScaffoldError(
        f"no project found at or above {here} (no jobs/catalog/__init__.py): "
        "run `jobctl new` inside the project"
    )


def _parse(path: Path, root: Path) -> ast.Module:
    where = path.relative_to(root)
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(where))
    except FileNotFoundError:
        raise ScaffoldError(
            f"{where} is missing: restore it (e.g. `git checkout {where}`)"
        ) from None
    except SyntaxError as err:
        raise ScaffoldError(
            f"{where} line {err.lineno} does not parse ({err.msg}): fix it first"
        ) from None


def _require_marker(path: Path, root: Path, marker: str, where: str) -> None:
    if not any(line.strip() == marker for line in path.read_text(encoding="utf-8").splitlines()):
        raise ScaffoldError(f"{path.relative_to(root)} has no `{marker}` line: put it back {where}")


def _members(tree: ast.Module) -> dict[str, str]:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "JobType":
            found: dict[str, str] = {}
            for stmt in node.body:
                if (
                    isinstance(stmt, ast.Assign)
                    and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Name)
                    and isinstance(stmt.value, ast.Constant)
                    and isinstance(stmt.value.value, str)
                ):
                    found[stmt.targets[0].id] = stmt.value.value
            return found
    raise ScaffoldError("jobs/job_types.py defines no `class JobType`: restore it")


def _job_type_of(node: ast.expr, members: dict[str, str]) -> str | None:
    """``JobType.X`` or a string literal, as the job type string; None if not literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "JobType"
    ):
        return members.get(node.attr)
    return None


def _decorator_call(func: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.Call | None:
    for deco in func.decorator_list:
        if isinstance(deco, ast.Call):
            target = deco.func
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
            if name == "background_job":
                return deco
    return None


def _read_job(path: Path, root: Path, module: str, members: dict[str, str]) -> CatalogJob:
    if not path.is_file():
        return CatalogJob(job_type=module, module=module, depends_on=None)
    tree = _parse(path, root)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == module:
            call = _decorator_call(node)
            if call is None:
                break
            job_type = (_job_type_of(call.args[0], members) if call.args else None) or module
            deps: tuple[str, ...] | None = ()
            for kw in call.keywords:
                if kw.arg != "depends_on":
                    continue
                if not isinstance(kw.value, ast.List | ast.Tuple):
                    deps = None
                    break
                names = [_job_type_of(elt, members) for elt in kw.value.elts]
                deps = None if None in names else tuple(n for n in names if n is not None)
            return CatalogJob(job_type=job_type, module=module, depends_on=deps)
    return CatalogJob(job_type=module, module=module, depends_on=None)


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


def read_project(root: Path) -> Project:
    """Everything the scaffolder needs to validate a new job, or a ScaffoldError naming the fix."""
    job_types = root / "jobs" / "job_types.py"
    init = root / "jobs" / "catalog" / "__init__.py"
    members = _members(_parse(job_types, root))
    tree = _parse(init, root)
    _require_marker(job_types, root, JOB_TYPES_MARKER, "as the last line of class JobType")
    _require_marker(init, root, IMPORTS_MARKER, "right after the last job import")
    _require_marker(init, root, JOBS_MARKER, "as the last line inside JOBS = (...)")
    modules: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(CATALOG_PREFIX):
            modules.append((node.module or "").removeprefix(CATALOG_PREFIX))
    registered = _registration_order(tree) or modules
    jobs = [_read_job(init.parent / f"{m}.py", root, m, members) for m in registered]
    return Project(
        root=root,
        members=members,
        jobs=jobs,
        catalog_names=frozenset(_bound_names(tree) - set(modules)),
    )


def _registration_order(tree: ast.Module) -> list[str]:
    for node in tree.body:
        target: ast.expr | None = None
        if isinstance(node, ast.AnnAssign):
            target = node.target
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if (
            isinstance(target, ast.Name)
            and target.id == "JOBS"
            and isinstance(value, ast.Tuple | ast.List)
        ):
            return [elt.id for elt in value.elts if isinstance(elt, ast.Name)]
    return []
