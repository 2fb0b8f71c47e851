"""`run` before its first request: how a refusal to start is told (`refusals`), what
`--dry-run` prints, the one check of its outputs, and the refusal of an input that is wrong as a
whole."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

import orjson
import structlog

from batchsms.commands import logs
from batchsms.commands.config import RunConfig
from batchsms.commands.outputs import check_output
from batchsms.commands.run.ending import metrics_after_refusal
from batchsms.engine.sender import Request
from batchsms.errors import ExitCode, UsageError
from batchsms.journal.outcomes import journal_files
from batchsms.lines.bodies import Planned, checked_lines
from batchsms.lines.reader import InvalidLine, format_problems, read_failure
from batchsms.transport.endpoint import resolve_endpoint

log = structlog.get_logger("batchsms")

LOOK_AHEAD = 100  # lines read before the run starts, to refuse a whole-file mistake


def dry_run(config: RunConfig, stdout: IO[str], stderr: IO[str],
            env: Mapping[str, str]) -> ExitCode:
    """Print what would be sent, one JSON object per valid line (with the line's `expect` when
    it has one); no network, no secrets. An endpoint or region that `run` would refuse (exit 2)
    is refused here too; none at all (or `--simulate`) is shown as `https://{endpoint}`."""
    named = config.endpoint or config.region or env.get("BATCHSMS_ENDPOINT")
    base = resolve_endpoint(config.endpoint, config.region, env) \
        if named and not config.simulate else "https://{endpoint}"
    invalid = 0
    for item in checked_lines(config.input, config.defaults, default_op=config.op,
                              rules=config.rules):
        if isinstance(item, InvalidLine):
            invalid += 1
            stderr.write("\n".join(format_problems(item)) + "\n")
            continue
        request = Request.write(item.op, item.task_id, item.body)
        shown = {
            "line": item.number, "method": request.method, "url": base + request.path,
            "ref": item.ref, "body_sha256": item.sha256, "body": orjson.Fragment(item.body)}
        if item.expect is not None:  # the run reads the task first, and writes only if it holds
            shown["expect"] = orjson.Fragment(item.expect)
        stdout.write(orjson.dumps(shown).decode() + "\n")
    stdout.flush()
    return ExitCode.OK if invalid == 0 else ExitCode.SOME_FAILED


@dataclass(frozen=True, slots=True)
class RunStart:
    """What `run` is told before its options are checked (cli.py reads it off the arguments):
    how to log, the files it reads and writes (checked once, `check_run_outputs`), and where a
    refusal's metrics go (`refusals`)."""

    input: str
    out: Path
    log_format: str | None  # as asked; None: console on a terminal, else json
    quiet: bool = False
    verbose: bool = False  # debug events too (task.invalid)
    dry_run: bool = False
    metrics_file: Path | None = None
    token_file: Path | None = None
    ca_bundle: str | None = None
    patch: str | None = None
    undo_file: Path | None = None
    timeline: Path | None = None


@contextmanager
def refusals(start: RunStart) -> Iterator[str]:
    """Around building the `RunConfig` and the run: logging set up as asked first (yields the
    format chosen, which the config records), so that a bad option is told in that format.

    A refusal to start (`UsageError`, exit 2) is raised on, for cli.py to print as one line,
    unless JSON logs were asked for: then it is one `run.refused` event, and swallowed (the
    caller returns exit 2). Either way, and after Ctrl-C at start-up (130), the metrics file is
    still written, so that an exit-code alert sees the run that did not start."""
    fmt = logs.configure(start.log_format, quiet=start.quiet,
                         level=logging.DEBUG if start.verbose else logging.INFO)
    refused: ExitCode | None = None
    try:
        yield fmt
    except UsageError as exc:
        refused = ExitCode.USAGE
        if start.log_format != "json":  # asked for, not just chosen because not a terminal
            raise
        # json logs stay JSON: the refusal is one event, not a line of text
        log.error("run.refused", error=str(exc), exit_code=int(refused))  # noqa: TRY400 - no trace
    except KeyboardInterrupt:  # before the run's own signal handling was in place
        refused = ExitCode.SIGINT
        raise
    finally:
        if refused is not None and not start.dry_run:
            metrics_after_refusal(
                start.metrics_file,
                run_inputs(start.input, start.token_file, start.ca_bundle, start.patch),
                start.out, refused)


def check_run_outputs(start: RunStart) -> None:
    """The one check of `run`'s outputs: `--out`, `--metrics-file`, `--undo-file`, none an
    input (the input, `--patch`, `--token-file`, `--ca-bundle`) nor the file of another, all
    writable (docs/reference.md §4). First of all, before `--patch` is read (it may be named as
    an output too); `--dry-run` writes none."""
    if start.dry_run:
        return
    inputs = run_inputs(start.input, start.token_file, start.ca_bundle, start.patch)
    check_output("--out", start.out, inputs)
    journal = journal_files(start.out)
    check_output("--metrics-file", start.metrics_file, [*inputs, *journal])
    check_output("--undo-file", start.undo_file,
                 [*inputs, *journal, ("--metrics-file", start.metrics_file)])
    check_output("--timeline", start.timeline,
                 [*inputs, *journal, ("--metrics-file", start.metrics_file),
                  ("--undo-file", start.undo_file)])


def run_inputs(source: str, token_file: Path | str | None,
               ca_bundle: Path | str | None,
               patch: Path | str | None = None) -> list[tuple[str, Path | str | None]]:
    """The files a run reads, as (what, path) pairs for `outputs.check_output`."""
    return [("the input", source), ("--patch", patch), ("--token-file", token_file),
            ("--ca-bundle", ca_bundle)]


EMPTY_INPUT = ("the input has no lines: nothing to do, and a nightly job whose input came out "
               "empty must not look healthy; pass --allow-empty if an empty input is fine")


def refuse_whole_file_mistakes(
        lines: Iterator[Planned | InvalidLine], *,
        allow_empty: bool = False) -> Iterator[Planned | InvalidLine]:
    """The same stream, after reading ahead up to `LOOK_AHEAD` lines: when every one of them is
    invalid, the file (or the options) is wrong as a whole, and the run refuses to start
    (exit 2) instead of writing a record per line. An input with no line at all is refused
    too, unless `allow_empty`. At most those lines are held."""
    head = list(itertools.islice(lines, LOOK_AHEAD))
    if not head and not allow_empty:
        raise UsageError(EMPTY_INPUT)
    if not head or not all(isinstance(item, InvalidLine) for item in head):
        return itertools.chain(head, lines)
    invalid = [item for item in head if isinstance(item, InvalidLine)]
    raise UsageError(f"{_likely_cause(invalid)}; the first {len(invalid)} line"
                     f"{'s are' if len(invalid) > 1 else ' is'} all invalid, nothing was sent "
                     f"(first: {next(format_problems(invalid[0]))}; "
                     "`batchsms validate` lists every problem)")


def _likely_cause(head: list[InvalidLine]) -> str:
    # A first line that is not a JSON object: a JSON array (`[` alone, or the whole array on
    # one line), a CSV header, a pretty-printed object... A corrupt gzip stream is none of those.
    if (failure := read_failure(head[-1])) is not None:
        return failure
    if head[0].errors[0].path == "line":
        return "input must be JSON Lines: one object per line (not a JSON array, not CSV)"
    if all(any(p.path == "body" and "no body" in p.message for p in item.errors)
           for item in head):
        return "the lines have no body and no --set/--patch gives one"
    return "no line is valid: is this the right file?"


def log_deadline(deadline: float | None) -> None:
    if deadline is not None:
        moment = datetime.fromtimestamp(deadline).astimezone()
        log.info("run.deadline_at", deadline=moment.isoformat(timespec="seconds"),
                 in_s=round(deadline - time.time()))
