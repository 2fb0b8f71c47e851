"""The exit codes of every command (CONTRACT §7), under one name each.

`run` uses them all; `validate`, `plan`, `report` and `tasks` use the same numbers for the same
meanings (1: some line not done or would fail; 3: credentials rejected). Logged and written to
metrics as plain ints.
"""

from __future__ import annotations

import enum
import signal


class ExitCode(enum.IntEnum):
    OK = 0  # every line succeeded (or was already done); validate: every line valid
    SOME_FAILED = 1  # finished; some lines failed, were invalid or skipped
    USAGE = 2  # could not start: options, credentials, input, a locked --out
    ABORTED = 3  # auth rejected, --abort-failure-ratio passed, an outage outlasted its limit
    BROKEN = 4  # outcomes could not be written while running
    SIGINT = 128 + signal.SIGINT  # 130
    SIGTERM = 128 + signal.SIGTERM  # 143

    @classmethod
    def interrupted_by(cls, signum: int) -> ExitCode:
        """The code of a run stopped by signal `signum` (SIGINT or SIGTERM)."""
        return cls(128 + signum)
