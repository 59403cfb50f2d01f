"""Line insertions at the ``# <jobctl:…>`` markers, shaped so ruff and ruff format stay clean."""

from __future__ import annotations

import re

from jobs.errors import ScaffoldError

# A one-line first-party import; the catalog's job imports sit among these, sorted by module.
_FIRST_PARTY_IMPORT = re.compile(r"from (?P<module>jobs(?:\.\w+)+) import [\w ,]+\s*")
_NATURAL = re.compile(r"\d+|\D")


def _marker_index(lines: list[str], marker: str, filename: str) -> int:
    found = [i for i, line in enumerate(lines) if line.strip() == marker]
    if len(found) != 1:
        raise ScaffoldError(
            f"{filename} must contain the line `{marker}` exactly once, found {len(found)}: "
            "restore it"
        )
    return found[0]


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def insert_above_marker(text: str, marker: str, new_line: str, filename: str) -> str:
    """Insert ``new_line`` (indented like the marker) right above the marker line."""
    lines = text.splitlines(keepends=True)
    at = _marker_index(lines, marker, filename)
    lines.insert(at, f"{_indent(lines[at])}{new_line}\n")
    return "".join(lines)


def natural_key(module: str) -> tuple[tuple[int, int], ...]:
    """The order ruff's isort gives module names: digit runs compare as numbers, the rest by code
    point (so ``b2`` < ``b10`` and ``a1`` < ``a_`` < ``ab``)."""
    return tuple(
        (ord("0"), int(part)) if part.isdigit() else (ord(part), 0)
        for part in _NATURAL.findall(module.lower())
    )


def insert_catalog_import(text: str, marker: str, module: str, filename: str) -> str:
    """Add ``from jobs.catalog.<module> import <module>`` at its sorted place in the run of
    first-party imports that ends at the marker (the marker stays right after the last import)."""
    lines = text.splitlines(keepends=True)
    at = _marker_index(lines, marker, filename)
    end = at  # the import block may be separated from the marker by blank lines
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    start = end
    while start > 0 and _FIRST_PARTY_IMPORT.fullmatch(lines[start - 1]):
        start -= 1
    new_module = f"jobs.catalog.{module}"
    position = end if start < end else at
    for i in range(start, end):
        match = _FIRST_PARTY_IMPORT.fullmatch(lines[i])
        assert match is not None  # the loop above only kept matching lines
        if natural_key(match["module"]) > natural_key(new_module):
            position = i
            break
    lines.insert(position, f"from {new_module} import {module}\n")
    return "".join(lines)
