"""`jobctl nightly` on a terminal: which job is running, done / total, elapsed, while it runs.

Drawn on stderr (stdout keeps only the final table), and only on a terminal: piped or redirected,
nothing here is shown. While the display is up, Prefect's console log lines are printed through
it, so they scroll above it instead of tearing it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from prefect_nightly_jobs import progress
from prefect_nightly_jobs.cli import render
from prefect_nightly_jobs.outcome import JobOutcome


class NightlyProgress:
    """A ``progress.ProgressListener`` that draws one bar for the run, with the running jobs.

    The display starts with the run's first event, not before: until then Prefect may start a
    local server whose process writes to the terminal directly, under any display.
    """

    def __init__(self, console: Console) -> None:
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("jobs"),
            TimeElapsedColumn(),
            console=console,
            transient=True,  # the final table replaces it
            redirect_stdout=False,
            redirect_stderr=True,
        )
        self._task: TaskID | None = None
        self._running: list[str] = []
        self._logs = ExitStack()

    def _describe(self) -> str:
        if self._running:
            return f"running {', '.join(self._running)}"
        done = self._task is not None and self.bar.tasks[0].finished
        return "finishing" if done else "waiting"

    def run_started(self, job_types: Sequence[str]) -> None:
        self._running.clear()
        if self._task is None:
            self.bar.start()
            self._logs.enter_context(_logs_through(self.bar.console))
            self._task = self.bar.add_task(self._describe(), total=len(job_types))
        else:  # another run in the same process counts afresh
            self.bar.reset(self._task, total=len(job_types), description=self._describe())
        self.bar.refresh()

    def job_started(self, job_type: str) -> None:
        self._running.append(job_type)
        self._update()

    def job_finished(self, outcome: JobOutcome) -> None:
        if outcome.job_type in self._running:
            self._running.remove(outcome.job_type)
        # One line per finished job stays above the bar: the run reads as it goes.
        line = Text.assemble(
            render.outcome_text(outcome.status, outcome.skip_kind),
            " ",
            outcome.job_type,
            f" {render.seconds(outcome.duration_s)}",
        )
        self.bar.console.print(line)
        self._update(advance=1)

    def _update(self, advance: int = 0) -> None:
        if self._task is not None:
            self.bar.update(self._task, description=self._describe(), advance=advance)
            self.bar.refresh()

    def stop(self) -> None:
        """Give Prefect's log lines their stream back, then erase the display."""
        self._logs.close()
        if self._task is not None:
            self.bar.stop()


class _AboveTheDisplay(logging.Handler):
    """Stands in for one of Prefect's console handlers: the same lines, printed through the
    display's console so that they scroll above it."""

    def __init__(self, original: logging.Handler, console: Console) -> None:
        super().__init__(original.level)
        self.original = original
        self.console = console
        self.filters = list(original.filters)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # Text, not a str: a "[job_type]" prefix is not rich markup.
            self.console.print(Text(self.original.format(record)), soft_wrap=True)
        except Exception:  # noqa: BLE001 - as logging.Handler.emit does
            self.handleError(record)


@contextmanager
def _logs_through(console: Console) -> Iterator[None]:
    """Meanwhile, Prefect's console handlers (rich consoles of their own on stderr) print
    through ``console``; they are put back afterwards."""
    loggers = [logging.getLogger(), *map(logging.getLogger, list(logging.root.manager.loggerDict))]
    swapped: dict[logging.Handler, logging.Handler] = {}
    touched: list[logging.Logger] = []
    for logger in loggers:
        for index, handler in enumerate(list(getattr(logger, "handlers", []))):
            if isinstance(getattr(handler, "console", None), Console):
                stand_in = swapped.setdefault(handler, _AboveTheDisplay(handler, console))
                logger.handlers[index] = stand_in
                touched.append(logger)
    try:
        yield
    finally:
        originals = {stand_in: handler for handler, stand_in in swapped.items()}
        for logger in touched:
            logger.handlers = [originals.get(h, h) for h in logger.handlers]


@contextmanager
def shown_on(console: Console | None) -> Iterator[None]:
    """Show the progress of the runs started in this block on ``console`` (None: show nothing,
    as when stderr is not a terminal)."""
    if console is None or not console.is_terminal:
        yield
        return
    display = NightlyProgress(console)
    try:
        with progress.listening(display):
            yield
    finally:
        display.stop()
