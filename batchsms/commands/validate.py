"""`batchsms validate`: read and check every line, no network.

Prints each problem as `line N: path: message`, then a one-line summary; with `--out`, writes one
outcome record per non-blank line (`valid` or `invalid`). Exit 0 when every line is valid, else 1.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from batchsms.exitcodes import ExitCode
from batchsms.outcomes import (
    CheckStatus,
    Outcome,
    OutcomeWriter,
    invalid_outcome,
    new_run_id,
    utc_now,
)
from batchsms.outputs import check_output
from batchsms.plan import checked_lines
from batchsms.records import InvalidLine, format_problems


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
    items = checked_lines(source, defaults)  # an unreadable input stops us before --out exists
    writer = OutcomeWriter(out) if out is not None else None
    run_id = new_run_id()
    valid = invalid = 0
    try:
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
    finally:
        if writer is not None:
            writer.close()
    total = valid + invalid
    stdout.write(f"{total} lines: {valid} valid, {invalid} invalid\n")
    stdout.flush()
    return ExitCode.OK if invalid == 0 else ExitCode.SOME_FAILED
