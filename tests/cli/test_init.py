"""`jobctl init`: the layout of an application, written all or nothing and never over a file.

The generated tree passes ruff, ruff format and mypy --strict as written; with two jobs added by
`jobctl new` it still does, and its tests, its migrations and `jobctl list` work from it. This
repository's reference application is that layout: its files are compared with what `init` writes.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefect_nightly_jobs.project import PACKAGE_ENV
from prefect_nightly_jobs.scaffold import plan_layout
from tests.cli.conftest import Invoke, subprocess_env

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOL_TIMEOUT_S = 300
LAYOUT = [
    "pyproject.toml",
    ".gitignore",
    "jobs/__init__.py",
    "jobs/models.py",
    "flows/__init__.py",
    "flows/nightly.py",
    "flows/reconcile.py",
    "alembic.ini",
    "migrations/env.py",
    "migrations/script.py.mako",
    "migrations/versions/.gitkeep",
    "prefect.yaml",
    "tests/__init__.py",
]
# The reference application's files that must be exactly what `jobctl init` writes.
REFERENCE_FILES = [
    "flows/nightly.py",
    "flows/reconcile.py",
    "migrations/env.py",
    "migrations/script.py.mako",
    "alembic.ini",
]


def listing(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every directory (None) under ``root``, relative to it."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
        if "__pycache__" not in p.parts and ".mypy_cache" not in p.parts
    }


def run(
    *command: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        env=env if env is not None else subprocess_env(),
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )


def ok(*command: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = run(*command, cwd=cwd, env=env)
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def check_tools(project: Path, mypy_cache: Path) -> None:
    """ruff, ruff format and mypy --strict, as the generated pyproject.toml configures them."""
    ok(sys.executable, "-m", "ruff", "check", "--no-cache", ".", cwd=project)
    ok(sys.executable, "-m", "ruff", "format", "--check", "--no-cache", ".", cwd=project)
    out = ok(sys.executable, "-m", "mypy", "--cache-dir", str(mypy_cache), cwd=project)
    assert "Success: no issues found" in out


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for the module: the second run reuses what the first learned of Prefect."""
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.fixture
def at(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """An empty working directory, no jobs-package override from the outer environment."""
    monkeypatch.delenv(PACKAGE_ENV, raising=False)
    where = tmp_path / "app"
    where.mkdir()
    monkeypatch.chdir(where)
    yield where


def test_init_writes_the_layout_then_says_what_to_run(cli: Invoke, at: Path) -> None:
    result = cli("init")
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]
    assert listed[: len(LAYOUT)] == LAYOUT
    assert sorted(p for p, data in listing(at).items() if data is not None) == sorted(LAYOUT)
    for step in ("jobctl new my_job", "jobctl db upgrade", "alembic upgrade head"):
        assert f"  {step} " in result.stdout
    assert "  jobctl nightly " in result.stdout and "  pytest " in result.stdout

    config = tomllib.loads((at / "pyproject.toml").read_text())
    assert config["project"]["name"] == "app"
    assert any(d.startswith("prefect-nightly-jobs") for d in config["project"]["dependencies"])
    assert config["tool"]["prefect-nightly-jobs"] == {"jobs": "jobs"}
    assert config["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
    assert config["tool"]["mypy"]["strict"] is True
    assert config["tool"]["ruff"]["line-length"] == 100
    ignored = (at / ".gitignore").read_text().splitlines()
    assert {"*.sqlite3", "*.sqlite3-*", ".venv/"} <= set(ignored)
    ini = (at / "alembic.ini").read_text()
    assert "script_location = %(here)s/migrations\nprepend_sys_path = .\n" in ini
    assert "sqlalchemy.url" not in ini
    env = (at / "migrations" / "env.py").read_text()
    assert "from jobs.models import Base\n" in env
    assert 'context.config.attributes.get("connection")' in env
    assert "engine_from_settings(load_settings())" in env
    assert (at / "flows" / "nightly.py").read_text().startswith('"""The nightly deployment')
    deployment = (at / "prefect.yaml").read_text()
    for needed in (
        "prefect_nightly_jobs.deployment.deployment_settings:",
        "entrypoint: flows/nightly.py:nightly",
        'cron: "{{ settings.cron }}"',
        'timezone: "{{ settings.timezone }}"',
        "limit: 1",
        "collision_strategy: CANCEL_NEW",
        "name: nightly-pool",
        "PREFECT_LOGGING_EXTRA_LOGGERS: prefect_nightly_jobs",
    ):
        assert needed in deployment


def test_the_generated_tree_passes_ruff_and_mypy_as_written(
    cli: Invoke, at: Path, mypy_cache: Path
) -> None:
    assert cli("init").exit_code == 0
    check_tools(at, mypy_cache)


def test_the_generated_application_imports_only_the_public_api(cli: Invoke, at: Path) -> None:
    """The root package, and prefect_nightly_jobs.testing in tests: never a private module."""
    assert cli("init").exit_code == 0
    assert cli("new", "a").exit_code == 0
    for path in sorted(at.rglob("*.py")):
        allowed = {"prefect_nightly_jobs"}
        if path.parts[len(at.parts)] == "tests":
            allowed.add("prefect_nightly_jobs.testing")
        for node in ast.walk(ast.parse(path.read_text())):
            modules = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for module in modules:
                if module.split(".")[0] == "prefect_nightly_jobs":
                    assert module in allowed, f"{path.relative_to(at)} imports {module}"


def test_the_reference_application_is_what_init_generates(tmp_path: Path) -> None:
    layout = plan_layout(tmp_path / "fresh")
    generated = {layout.relative(c.path): c.text for c in layout.changes}
    for name in REFERENCE_FILES:
        reference = REPO_ROOT / name
        assert reference.is_file(), f"{name} is missing from the reference application"
        assert reference.read_text() == generated[name], (
            f"{name} differs from what `jobctl init` writes: copy the generated one over it"
        )


@pytest.mark.parametrize(
    ("existing", "named"),
    [
        ("flows/nightly.py", "flows/nightly.py exists"),
        ("jobs/__init__.py", "jobs/__init__.py exists"),
        ("migrations/versions/.gitkeep", "migrations/versions/.gitkeep exists"),
        ("prefect.yaml", "prefect.yaml exists"),
        ("tests/__init__.py", "tests/__init__.py exists"),
        ("migrations", "migrations exists and is not a directory"),
    ],
)
def test_init_refuses_when_a_file_is_in_the_way_and_writes_nothing(
    cli: Invoke, at: Path, existing: str, named: str
) -> None:
    (at / existing).parent.mkdir(parents=True, exist_ok=True)
    (at / existing).write_text("# mine\n")
    before = listing(at)
    result = cli("init")
    assert result.exit_code == 6, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {named}: "), lines
    assert "nothing was written" in lines[0]
    assert listing(at) == before
    # The dry run validates the same way.
    assert cli("init", "--dry-run").exit_code == 6
    assert listing(at) == before


def test_dry_run_prints_the_plan_and_writes_nothing(cli: Invoke, at: Path) -> None:
    result = cli("init", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "nothing written" in result.stdout
    for name in LAYOUT:
        line = next(line for line in result.stdout.splitlines() if line.split()[:1] == [name])
        assert len(line.split()) > 1, f"{name} is listed without what it is for"
    assert listing(at) == {}
    assert cli("init", "--dry-run", "not/yet").exit_code == 0
    assert not (at / "not").exists()


def test_init_into_a_new_directory_starts_the_next_steps_with_cd(cli: Invoke, at: Path) -> None:
    result = cli("init", "nightly")
    assert result.exit_code == 0, result.output
    assert "  cd nightly " in result.stdout
    assert (at / "nightly" / "flows" / "nightly.py").is_file()


def test_an_existing_project_keeps_its_files_and_names_the_jobs_package(
    cli: Invoke, at: Path
) -> None:
    pyproject = '[project]\nname = "mine"\n\n[tool.prefect-nightly-jobs]\njobs = "myapp.jobs"\n'
    (at / "pyproject.toml").write_text(pyproject)
    (at / ".gitignore").write_text("secrets/\n")
    result = cli("init", str(at))
    assert result.exit_code == 0, result.output
    assert "pyproject.toml was kept" in result.stdout
    assert (at / "pyproject.toml").read_text() == pyproject
    assert (at / ".gitignore").read_text() == "secrets/\n"
    files = {p for p, data in listing(at).items() if data is not None}
    assert {"myapp/__init__.py", "myapp/jobs/__init__.py", "myapp/jobs/models.py"} <= files
    assert not (at / "jobs").exists()
    assert "from myapp.jobs.models import Base\n" in (at / "migrations" / "env.py").read_text()


@pytest.mark.parametrize(
    ("pyproject", "says"),
    [
        ("[tool.prefect-nightly-jobs\n", "pyproject.toml is not valid TOML"),
        ('[tool.prefect-nightly-jobs]\njobs = "my-jobs"\n', "is not a dotted Python name"),
        ('[tool.prefect-nightly-jobs]\nalembic_ini = "db/alembic.ini"\n', "remove that setting"),
    ],
)
def test_a_bad_configuration_is_refused(cli: Invoke, at: Path, pyproject: str, says: str) -> None:
    (at / "pyproject.toml").write_text(pyproject)
    before = listing(at)
    result = cli("init")
    assert result.exit_code == 6, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and says in lines[0], lines
    assert listing(at) == before


def test_init_then_new_gives_jobs_that_pass_the_tools_and_their_tests(
    cli: Invoke, at: Path, mypy_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("init").exit_code == 0
    first = cli("new", "a")
    assert first.exit_code == 0, first.output
    monkeypatch.chdir(at / "tests")  # `new` finds the project upward
    second = cli("new", "b", "--depends-on", "a", "--description", "After a.")
    assert second.exit_code == 0, second.output
    added = {p for p, data in listing(at).items() if data is not None} - set(LAYOUT)
    assert added == {"jobs/a.py", "jobs/b.py", "tests/test_a.py", "tests/test_b.py"}
    assert 'depends_on=["a"],' in (at / "jobs" / "b.py").read_text()
    check_tools(at, mypy_cache)

    env = subprocess_env(PREFECT_SERVER_ANALYTICS_ENABLED="false")
    listed = ok(sys.executable, "-m", "prefect_nightly_jobs", "list", cwd=at, env=env)
    rows = [line for line in listed.splitlines() if " a " in line or " b " in line]
    assert len(rows) == 2 and " a " in rows[0] and "After a." in rows[1], listed
    # The generated tests, run as the project runs them: SQLite, and PostgreSQL if configured.
    out = ok(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=at, env=env)
    backends = 2 if os.environ.get("TEST_DATABASE_URL") else 1
    assert f"{2 * backends} passed" in out, out


def test_migrations_cover_only_the_application_tables(cli: Invoke, at: Path) -> None:
    """`alembic` runs on DATABASE_URL, next to the plugin's table, and autogenerate proposes the
    application's new tables, never dropping the plugin's."""
    assert cli("init").exit_code == 0
    env = subprocess_env(DATABASE_URL=f"sqlite:///{at / 'app.sqlite3'}")
    alembic = (sys.executable, "-m", "alembic")
    ok(sys.executable, "-m", "prefect_nightly_jobs", "db", "upgrade", cwd=at, env=env)
    ok(*alembic, "upgrade", "head", cwd=at, env=env)
    ok(*alembic, "revision", "--autogenerate", "-m", "nothing", cwd=at, env=env)
    [empty] = (at / "migrations" / "versions").glob("*_nothing.py")
    assert "op." not in empty.read_text()  # job_execution is not the application's: left alone
    empty.unlink()

    models = at / "jobs" / "models.py"
    models.write_text(
        models.read_text().replace(
            "import DeclarativeBase", "import DeclarativeBase, Mapped, mapped_column"
        )
        + '\n\nclass Thing(Base):\n    __tablename__ = "thing"\n\n'
        "    id: Mapped[int] = mapped_column(primary_key=True)\n"
    )
    ok(*alembic, "revision", "--autogenerate", "-m", "thing", cwd=at, env=env)
    [revision] = (at / "migrations" / "versions").glob("*_thing.py")
    text = revision.read_text()
    assert "op.create_table('thing'" in text and "job_execution" not in text
    ok(*alembic, "upgrade", "head", cwd=at, env=env)

    broken = subprocess_env(DATABASE_URL="postgresql://nobody@127.0.0.1:1/app")
    failed = run(*alembic, "upgrade", "head", cwd=at, env=broken)
    assert failed.returncode != 0
    assert failed.stderr.strip().splitlines()[-1].startswith("error: database unavailable")
