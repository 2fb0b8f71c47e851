"""The progress bar: done/total, rate, ETA and failures so far, on a terminal only.

Drawn by `rich` (well kept, handles redraws and terminal width). It is fed by the pipeline's
per-outcome callback and never writes anything when stderr is not a terminal or with
`--no-progress`. The total is counted up front for plain files (a fast newline count); for
standard input or gzip it is unknown and the bar shows only what is done.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from batchsms.journal.outcomes import Outcome, Status
from batchsms.lines.reader import GZIP_MAGIC


def count_lines(source: str, regular: bool) -> int | None:
    """Line count of a plain file, or None when it cannot be known cheaply (not `regular`, as
    `CheckedLines.regular` says: a stream, stdin or a FIFO, whose lines reading would take from
    the run)."""
    if not regular:
        return None
    try:
        with Path(source).open("rb") as f:
            if f.read(2) == GZIP_MAGIC:
                return None
            f.seek(0)
            total, last = 0, b"\n"
            while chunk := f.read(1 << 20):
                total += chunk.count(b"\n")
                last = chunk[-1:]
            return total + (last != b"\n")
    except OSError:
        return None


def wanted(flag: bool | None, stream: TextIO) -> bool:
    """`--progress/--no-progress`, defaulting to "only on a terminal"."""
    return stream.isatty() if flag is None else flag and stream.isatty()


# A stopped run (Ctrl-C, deadline, abort) still writes a record for every line it did not
# send: those lines are not done, so the bar does not advance for them.
_NOT_REACHED = frozenset({"interrupted", "deadline", "aborted"})


class ProgressBar:
    """Counts outcomes into a rich progress bar: lines done, and of them failed and invalid."""

    def __init__(self, progress: Progress, total: int | None) -> None:
        self._progress = progress
        self._task = progress.add_task("sending", total=total, failed=0, invalid=0)
        self._failed = self._invalid = 0

    def __call__(self, outcome: Outcome) -> None:
        if outcome.status is Status.SKIPPED and outcome.error_code in _NOT_REACHED:
            return
        self._failed += outcome.status is Status.FAILED
        self._invalid += outcome.status is Status.INVALID
        self._progress.update(self._task, advance=1, failed=self._failed,
                              invalid=self._invalid)


class _RateColumn(ProgressColumn):
    """Lines finished per second, as rich measures it."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} lines/s" if task.speed else "", style="progress.data.speed")


@contextmanager
def progress_bar(source: str, regular: bool,
                 stream: TextIO = sys.stderr) -> Iterator[ProgressBar]:
    progress = Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(),
        MofNCompleteColumn(), TaskProgressColumn(), _RateColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(),
        TextColumn("[red]{task.fields[failed]} failed[/] {task.fields[invalid]} invalid"),
        console=Console(file=stream), transient=False, refresh_per_second=4,
        redirect_stdout=False, redirect_stderr=True)  # log lines print above the bar
    with progress:
        yield ProgressBar(progress, count_lines(source, regular))
