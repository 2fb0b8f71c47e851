"""Where the engine's log events go: the CLI's structlog set-up, or the standard library's.

The CLI configures structlog once per command (commands/logs.py) and the engine's events go
through it as they always have. A library configures no logging (docs/reference.md §12): in a
user's script structlog is not configured, and its default would print every event to stdout,
mixed with the script's own output. There the events go to the standard library's
`logging.getLogger("batchsms")` instead, as httpx's do: silent unless the application sets up
logging (warnings reach stderr through logging's last resort), filtered by its levels.
"""

from __future__ import annotations

import logging

import structlog

_STDLIB = logging.getLogger("batchsms")


class Events:
    """`info`/`warning`/`debug` like a structlog logger, routed as the module says."""

    __slots__ = ()

    def _emit(self, level: int, method: str, event: str, fields: dict[str, object]) -> None:
        if structlog.is_configured():
            getattr(structlog.get_logger("batchsms"), method)(event, **fields)
        elif _STDLIB.isEnabledFor(level):
            shown = " ".join(f"{key}={value!r}" for key, value in fields.items())
            _STDLIB.log(level, "%s %s", event, shown)

    def debug(self, event: str, **fields: object) -> None:
        self._emit(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: object) -> None:
        self._emit(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: object) -> None:
        self._emit(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: object) -> None:
        self._emit(logging.ERROR, "error", event, fields)


log = Events()
