"""`batchsms validate`: read and check every line, no network.

Prints each problem as `line N: path: message`, then a one-line summary; with `--out`, writes one
outcome record per non-blank line (`valid` or `invalid`), holding the journal's lock as `run`
does. Exit 0 when every line is valid, else 1.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from batchsms.commands.outputs import check_output
from batchsms.errors import ExitCode
from batchsms.journal.outcomes import (
    CheckStatus,
    Outcome,
    OutcomeWriter,
    lock_outcomes,
    new_run_id,
    utc_now,
)
from batchsms.journal.records import invalid_outcome
from batchsms.lines.bodies import checked_lines
from batchsms.lines.reader import InvalidLine, format_problems


@dataclass(frozen=True, slots=True)
class ValidateConfig:
    """Everything `validate` was asked to do."""

    input: str
    out: Path | None = None
    patch: str | None = None  # read by the CLI into `defaults`; named here to be checked
    defaults: Mapping[str, Any] = field(default_factory=dict)


def main(config: ValidateConfig) -> ExitCode:
    """`batchsms validate`: `--out` checked against the inputs, then every line."""
    check_output("--out", config.out, [("the input", config.input), ("--patch", config.patch)])
    return run_validate(config.input, config.out, config.defaults)


def run_validate(source: str, out: Path | None, defaults: Mapping[str, Any],
                 stdout: IO[str] | None = None) -> ExitCode:
    if stdout is None:  # looked up now, not at import: sys.stdout may have been replaced
        stdout = sys.stdout
    valid = invalid = 0
    with ExitStack() as held:  # closed in reverse: the writer, then the lock
        writer: OutcomeWriter | None = None
        if out is not None:
            # a journal in use by a run is not written into: its records would mix with the run's
            lock = lock_outcomes(out)
            # an unreadable input refuses (exit 2) before a record: no --out is left behind
            held.callback(lambda: lock.close(unused=writer is None))
        items = checked_lines(source, defaults)
        if out is not None:
            writer = OutcomeWriter(out)
            held.callback(writer.close)
        run_id = new_run_id()
        for item in items:
            if isinstance(item, InvalidLine):
                invalid += 1
                stdout.write("\n".join(format_problems(item)) + "\n")
                outcome = invalid_outcome(run_id, item)
            else:
                valid += 1
                outcome = Outcome(run_id, item.number, item.task_id, item.ref, CheckStatus.VALID,
                                  body_sha256=item.sha256, finished_at=utc_now())
            if writer is not None:
                writer.write(outcome)
    total = valid + invalid
    stdout.write(f"{total} lines: {valid} valid, {invalid} invalid\n")
    stdout.flush()
    return ExitCode.OK if invalid == 0 else ExitCode.SOME_FAILED
