"""structlog set-up: events to stderr, `console` for people, `json` for machines
(docs/reference.md §9).

Configured once per command from the CLI; nothing else in the package configures logging.
Secrets never reach a log call (credentials have redacting reprs and are never passed to `log`).
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO, cast

import structlog


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is at the time: while the progress bar is shown, rich
    puts its own proxy there, which prints each log line above the bar instead of through it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


# What `--quiet` still shows below warning level: the end of the run, as a person needs it
# (and where its undo file is: a console prints that line whatever --quiet says).
QUIET_KEEPS = frozenset({"run.finished", "undo.written"})


def _quiet(_logger: object, method: str, event: structlog.typing.EventDict
           ) -> structlog.typing.EventDict:
    """`--quiet`: drop info/debug events (retries, progress) except the final summary."""
    if method in ("debug", "info") and event.get("event") not in QUIET_KEEPS:
        raise structlog.DropEvent
    return event


def configure(fmt: str | None, stream: TextIO | None = None, level: int = logging.INFO,
              *, quiet: bool = False) -> str:
    """`fmt` is "console", "json" or None (console on a terminal, else json); returns the
    format chosen. With `quiet`, only warnings, errors and the final summary are logged."""
    out = stream or cast(TextIO, _CurrentStderr())
    if fmt is None:
        fmt = "console" if out.isatty() else "json"
    processors: list[structlog.typing.Processor] = [_quiet] if quiet else []
    processors += [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Tracebacks never show frame locals: a frame may hold a secret key.
    if fmt == "json":
        processors += [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)),
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors.append(structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    return fmt
