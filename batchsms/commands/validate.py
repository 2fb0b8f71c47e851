"""`batchsms validate`: read and check every line, no network.

Prints each problem as `line N: path: message`, then a one-line summary; with `--out`, writes one
outcome record per non-blank line (`valid` or `invalid`), holding the journal's lock as `run`
does. Exit 0 when every line is valid, else 1.

`--json` prints, instead, one JSON object per invalid line (`line`, `task_id`, `ref`, `errors`:
the outcome record's `{path, message}` list) and last one `{"summary": {...}}` object (counts):
a script reads the problems and the totals from one stream, and tells them apart by their key.
`--quiet` leaves the problems out and prints the summary alone. Task ids on more than one
line are a notice on stderr (`validate.repeated_task_ids`, a warning: how many, and the first
examples with their lines; lines/repeats.py) and a count in the summary object.
`--log-format` is that of everything on stderr: a refusal to start, with `json` given, is one
`validate.refused` event.
structlog (~0.2 s to import, with rich) is loaded only when such an event is logged: a
validation that has nothing to say on stderr does not pay for it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from batchsms.commands.outputs import check_output
from batchsms.errors import ExitCode, UsageError
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
from batchsms.lines.repeats import RepeatedIds


@dataclass(frozen=True, slots=True)
class ValidateConfig:
    """Everything `validate` was asked to do."""

    input: str
    out: Path | None = None
    patch: str | None = None  # read by the CLI into `defaults`; named here to be checked
    defaults: Mapping[str, Any] = field(default_factory=dict)
    json: bool = False  # one object per invalid line, then a summary object
    quiet: bool = False  # the summary only (and warnings on stderr)
    log_format: str | None = None  # of stderr: "console", "json", None (console on a terminal)
    op: str = "update"  # `--op`: the operation of lines that name none
    rules: Mapping[str, Any] | None = None  # `--rules`: a speed-limit line's default body


def main(config: ValidateConfig | Callable[[], ValidateConfig], *,
         log_format: str | None = None) -> ExitCode:
    """`batchsms validate`: `--out` checked against the inputs, then every line.

    `config` may be a function making it (the CLI's: reading `--patch` may refuse), called here
    so that with `log_format` "json" (as given, not as chosen) every refusal is an event."""
    try:
        if callable(config):
            config = config()
        check_output("--out", config.out, [("the input", config.input),
                                           ("--patch", config.patch)])
        return run_validate(config.input, config.out, config.defaults, as_json=config.json,
                            quiet=config.quiet, log_format=config.log_format, op=config.op,
                            rules=config.rules)
    except UsageError as exc:
        if log_format != "json":
            raise
        notice("json", "error", "validate.refused", error=str(exc),
               exit_code=int(ExitCode.USAGE))
        return ExitCode.USAGE


def notice(log_format: str | None, level: str, event: str, *, quiet: bool = False,
           **fields: Any) -> None:
    """Log one event on stderr in `log_format`; `quiet` drops an info event."""
    if quiet and level in ("debug", "info"):
        return
    import structlog  # here: see the module's docstring

    from batchsms.commands import logs

    logs.configure(log_format, quiet=quiet)
    getattr(structlog.get_logger("batchsms"), level)(event, **fields)


def run_validate(source: str, out: Path | None, defaults: Mapping[str, Any],
                 stdout: IO[str] | None = None, *, as_json: bool = False,
                 quiet: bool = False, log_format: str | None = None, op: str = "update",
                 rules: Mapping[str, Any] | None = None) -> ExitCode:
    if stdout is None:  # looked up now, not at import: sys.stdout may have been replaced
        stdout = sys.stdout
    show = _problem_printer(stdout, as_json=as_json, quiet=quiet)
    repeats = RepeatedIds()
    see = repeats.see
    valid = invalid = 0
    with ExitStack() as held:  # closed in reverse: the writer, then the lock
        writer: OutcomeWriter | None = None
        if out is not None:
            # a journal in use by a run is not written into: its records would mix with the run's
            lock = lock_outcomes(out)
            # an unreadable input refuses (exit 2) before a record: no --out is left behind
            held.callback(lambda: lock.close(unused=writer is None))
        items = checked_lines(source, defaults, default_op=op, rules=rules)
        if out is not None:
            writer = OutcomeWriter(out)
            held.callback(writer.close)
        run_id = new_run_id()
        for item in items:
            if isinstance(item, InvalidLine):
                invalid += 1
                show(item)
                outcome = invalid_outcome(run_id, item)
                if item.task_id is not None:
                    see(item.task_id, item.number)
            else:
                valid += 1
                see(item.task_id, item.number)
                outcome = Outcome(run_id, item.number, item.task_id, item.ref, CheckStatus.VALID,
                                  body_sha256=item.sha256, finished_at=utc_now(), op=item.op)
            if writer is not None:
                writer.write(outcome)
    total = valid + invalid
    repeated = repeats.notice()
    if repeated is not None:
        stdout.flush()  # the problems first, where both go to one terminal
        notice(log_format, "warning", "validate.repeated_task_ids", **repeated)
    if as_json:
        stdout.write(orjson.dumps({"summary": {
            "lines": total, "valid": valid, "invalid": invalid,
            "repeated_task_ids": repeats.ids}}).decode() + "\n")
    else:
        stdout.write(f"{total} lines: {valid} valid, {invalid} invalid\n")
    stdout.flush()
    return ExitCode.OK if invalid == 0 else ExitCode.SOME_FAILED


def _problem_printer(stdout: IO[str], *, as_json: bool,
                     quiet: bool) -> Callable[[InvalidLine], object]:
    """How an invalid line is shown: its problems as text, one JSON object, or not at all."""
    if quiet:
        return lambda _item: None
    if as_json:
        return lambda item: stdout.write(orjson.dumps({
            "line": item.number, "task_id": item.task_id, "ref": item.ref,
            "errors": [problem.as_dict() for problem in item.errors]}).decode() + "\n")
    return lambda item: stdout.write("\n".join(format_problems(item)) + "\n")
