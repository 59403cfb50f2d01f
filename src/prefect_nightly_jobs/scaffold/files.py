"""All-or-nothing file writes: every new content goes to a temp file first, then each is renamed
into place; if anything fails, the files already replaced get their old bytes back and the new ones
are removed, so the project is left exactly as it was."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prefect_nightly_jobs.errors import ScaffoldError

NEW_FILE_MODE = 0o644


@dataclass(frozen=True)
class FileChange:
    path: Path
    text: str
    # None: the file must not exist yet; bytes: its content when the change was planned.
    original: bytes | None
    mode: int = NEW_FILE_MODE

    @property
    def created(self) -> bool:
        return self.original is None


def planned_edit(path: Path, text: str) -> FileChange:
    return FileChange(path, text, path.read_bytes(), path.stat().st_mode & 0o7777)


def planned_file(path: Path, text: str) -> FileChange:
    return FileChange(path, text, None)


def first_taken(paths: list[Path]) -> tuple[Path, str] | None:
    """The first path that is in the way of creating ``paths`` and why: the file itself exists
    (``"exists"``, a dangling symlink too), or one of its folders is a file
    (``"exists and is not a directory"``)."""
    for path in paths:
        for parent in reversed(path.parents):
            if parent.exists() and not parent.is_dir():
                return parent, "exists and is not a directory"
        if path.exists() or path.is_symlink():
            return path, "exists"
    return None


Replace = Callable[[Path, Path], None]


def _write_temp(target: Path, data: bytes, mode: int) -> Path:
    """A sibling temp file (same file system, so the rename is atomic) holding ``data``."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".jobctl-tmp", dir=target.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    temp = Path(name)
    temp.chmod(mode)
    return temp


def _rename(source: Path, target: Path) -> None:
    source.replace(target)


def apply_changes(changes: list[FileChange], *, replace: Replace = _rename) -> None:
    """Write every change or none. ``replace`` is the rename step (a seam for fault tests)."""
    made_dirs: list[Path] = []
    temps: dict[Path, Path] = {}
    done: list[FileChange] = []
    try:
        for change in changes:
            # A file that appeared or changed since planning means someone else is editing: stop.
            if change.created and change.path.exists():
                raise ScaffoldError(f"{change.path} appeared while writing: nothing was changed")
            if not change.created and change.path.read_bytes() != change.original:
                raise ScaffoldError(f"{change.path} changed while writing: nothing was changed")
            for parent in reversed(change.path.parents):
                if not parent.exists():
                    parent.mkdir()
                    made_dirs.append(parent)
            temps[change.path] = _write_temp(change.path, change.text.encode(), change.mode)
        for change in changes:
            replace(temps[change.path], change.path)
            del temps[change.path]
            done.append(change)
    except BaseException as err:
        problems = _roll_back(done, temps, made_dirs)
        if not isinstance(err, Exception) or (isinstance(err, ScaffoldError) and not problems):
            raise  # Ctrl-C stays Ctrl-C, after the restore
        detail = err.message if isinstance(err, ScaffoldError) else f"{type(err).__name__}: {err}"
        if problems:
            raise ScaffoldError(
                f"writing failed ({detail}) and restoring failed too ({'; '.join(problems)}): "
                "check these files with `git status`"
            ) from err
        raise ScaffoldError(f"writing failed, every file was restored: {detail}") from err


def _roll_back(done: list[FileChange], temps: dict[Path, Path], made_dirs: list[Path]) -> list[str]:
    problems: list[str] = []
    for temp in temps.values():
        temp.unlink(missing_ok=True)
    for change in reversed(done):
        try:
            if change.original is None:
                change.path.unlink(missing_ok=True)
            else:
                _write_temp(change.path, change.original, change.mode).replace(change.path)
        except OSError as err:
            problems.append(f"{change.path}: {err}")
    for directory in reversed(made_dirs):
        try:
            directory.rmdir()
        except OSError as err:
            problems.append(f"{directory}: {err}")
    return problems
