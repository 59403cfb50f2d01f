"""The README's "Supported versions" table is the one the last `make matrix` results render."""

from __future__ import annotations

from pathlib import Path

from matrix import results
from matrix.combos import COMBOS


def test_readme_table_is_rendered_from_the_last_matrix_results() -> None:
    recorded = results.load()
    assert set(recorded) == {combo.name for combo in COMBOS}, "run `make matrix`"
    rendered = results.table(recorded, [combo.name for combo in COMBOS])
    assert results.current_table(results.README.read_text(encoding="utf-8")) == rendered


def test_table_shows_each_session_with_its_versions_and_outcome(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    entry = {
        "python": "3.11.7",
        "postgres": "14.22",
        "packages": {"prefect": "3.4.5", "typer": "0.12.4"},
        "result": "fail",
        "tests": "3 passed, 1 failed",
        "date": "2026-12-01",
    }
    results.record("oldest", entry, path)
    results.record("latest", {**entry, "result": "pass", "tests": "4 passed"}, path)
    rendered = results.table(results.load(path), ["latest", "oldest", "missing"]).splitlines()
    assert len(rendered) == 4
    assert rendered[2].startswith("| `latest` | 3.11.7 | 14.22 | 3.4.5 | — |")
    assert rendered[2].endswith("| pass (4 passed) | 2026-12-01 |")
    assert "| fail (3 passed, 1 failed) |" in rendered[3]
    readme = f"intro\n{results.BEGIN}\nold\n{results.END}\nafter"
    assert results.current_table(results.readme_with_table(readme, "new")) == "new"
