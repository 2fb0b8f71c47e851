"""`batchsms report`: what outcomes journals say about each line, across runs.

The package: this module checks the options and prints; `index.py` is the first pass (each
line's latest record), `figures.py` the second (the figures and the `--json` object, with
`over_time.py`), `text.py` the text output, `html.py` the `--html` page (with `svg.py`, its
charts, and `advice.py`, what to do next), `failed.py` `--input` judging and `--failed-to`;
`--undo-to` is undo.py's.

**What a line is.** A line is its task and its body, keyed by (`task_id`, `body_sha256`), not by
its line number (`--resume` goes by the number too: batchsms/resume.py), so an input that changes
from night to night (lines added, removed, reordered) is still judged right. A record without a
body hash (an `invalid` line: nothing was planned) is keyed by its line number and task id. Each
line's state is its *latest* record: the last whole record for that key in file order, files taken
in the order given (a later run appends later). One exception: a `skipped`/`already_succeeded` or
`unchanged` record (a later run passing over the line) does not replace an earlier `succeeded`
record, so the figures show the send that did the work. A line keyed by its number (invalid) is
retired when a later run has a record of the same task with a body: the line was fixed and sent.

**With `--input ORIGINAL`** (the runs' input, gzip or not, with the `--set`/`--patch` the runs
used), the lines are that file's non-blank lines: each is planned as `run` plans it, and it is
done only when the latest record of its (task, body) is; a line with no record at all (a crash,
a kill, a disk full cut the run short) is not done, and neither is a line that is invalid. When
not one line of the input has a record, the input (or its `--set`/`--patch`) is not the runs'
one: refused. Without `--input`, the lines are the keys the journals hold. An invalid line of
the input is matched to its record by its number (and task id, when it has one), so that the
statuses and `no_record` add up to the lines.

**Memory.** Two streaming passes over the journals: the first finds each key's latest record
(a dict of 16-byte keys: about 150 bytes per line), the second feeds only those records to the
figures. Cut or garbled lines (docs/reference.md §10) are counted and reported.

**Done.** A line is done when its latest record is `succeeded`, or `skipped` with
`already_succeeded` or `unchanged` (`--skip-unchanged`: already as wanted). Every other line
(`failed`, `invalid`, `skipped` by `aborted`, `deadline` or `interrupted`: never sent;
`skipped` as a `conflict`: the task was not as the line's `expect` said; with `--input`, no
record) is not done: it makes the exit code 1 and goes to `--failed-to`.

**Figures.** Latency percentiles are nearest-rank over the `elapsed_ms` of lines that were sent
(attempts > 0, whatever their status). "Failures" are `failed` and `invalid` lines, grouped by
`error_code`, each group with the message and line number of its lowest-numbered line as an
example.

**`--failed-to FILE`** writes every not-done line as an input line, atomically (a temporary file
beside FILE, then a rename). With `--input` the original lines are copied byte for byte (line
ending normalised to `\\n`), in input order. Without it, an outcome carries no body, so only
envelopes `{"task_id", "ref"}` are written (for `run --set/--patch`), in the order of their
latest records. Because a line is its task and body, the file is re-run with the same `--out`
(and the same `--set`/`--patch`): its records then count for the lines of the original input.

**`--json`** prints one object with these keys: `files`, `records` (whole records read),
`cut_lines`, `runs` (distinct run ids), `lines`, `no_record` (lines of `--input` without a
record; 0 without `--input`), `done`, `not_done`, `by_status` (the four run statuses always
present), `by_error_code`, `latency_ms` (`lines`, `p50`, `p90`, `p99`, `max`; null without sent
lines), `attempts` (attempts as a string -> lines), `slowest` and `top_failures` (lists, at most
`--top` items: `line`, `task_id`, `ref`, `status`, `attempts`, `elapsed_ms` / `error_code`,
`error_msg` (an example), `count`, `example_line`), and `failed_to` (null, or `path`, `source` =
`input`|`envelopes`, `lines` written, `missing` = not-done lines that could not be copied).

**`--html FILE`** writes the same figures as one self-contained page (no script, no network),
with what `--json` does not hold: outcomes over time and the lines not done by error code with
examples and what to do next (docs/reference.md §13; html.py).

**`--undo-to FILE`** writes the way back from the side logs beside the journals (runs with
`--undo-file`), every entry, files in the order given: one line per task, see undo.py for which
entries count, the values chosen and what cannot be restored.

Exit codes: 0 every line done, 1 some line not done, 2 unreadable or unusable files (UsageError).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from batchsms.changes.undo import describe as describe_undo
from batchsms.changes.undo import for_journals, write_undo
from batchsms.commands.outputs import check_output
from batchsms.commands.report.figures import gather
from batchsms.commands.report.html import write_page
from batchsms.commands.report.pace import read_timeline
from batchsms.commands.report.text import format_text
from batchsms.errors import ExitCode, UsageError
from batchsms.journal.outcomes import beside

__all__ = ["ReportConfig", "run_report"]


@dataclass(frozen=True, slots=True)
class ReportConfig:
    """Everything `report` was asked to do (the CLI's options)."""

    outcomes: tuple[Path, ...]
    json: bool = False
    top: int = 10
    failed_to: Path | None = None
    input: str | None = None  # the runs' input, `--input ORIGINAL`
    undo_to: Path | None = None
    html: Path | None = None  # `--html FILE`: the page (html.py)
    timeline: Path | None = None  # `--timeline FILE` with --html: run --timeline's (pace.py)
    patch: str | None = None  # read by the CLI into `defaults`; named here to be checked
    defaults: Mapping[str, Any] = field(default_factory=dict)
    op: str = "update"  # `--op`: the runs' default op, to plan `--input` as they did
    rules: Mapping[str, Any] | None = None  # `--rules`: the runs' speed-limit default body


def _checked(args: ReportConfig) -> list[Path]:
    if args.top < 0:
        raise UsageError(f"--top must be 0 or more, got {args.top}")
    if args.timeline is not None and args.html is None:
        raise UsageError("--timeline is charted on the --html page: give --html FILE too")
    paths: list[Path] = []
    for path in args.outcomes:
        if not path.is_file() or not os.access(path, os.R_OK):
            raise UsageError(f"cannot read outcomes {str(path)!r}")
        if path.resolve() not in {p.resolve() for p in paths}:
            paths.append(path)
    inputs = [*(("an outcomes file", p) for p in paths), ("--input", args.input),
              ("--patch", args.patch),
              *(("the undo side log of an outcomes file", beside(p, "previous")) for p in paths)]
    check_output("--failed-to", args.failed_to, inputs)
    if args.undo_to is not None and args.failed_to is not None \
            and args.undo_to.resolve() == args.failed_to.resolve():
        raise UsageError("--failed-to and --undo-to must be different files")
    check_output("--undo-to", args.undo_to, [*inputs, ("--failed-to", args.failed_to)])
    check_output("--html", args.html, [*inputs, ("--failed-to", args.failed_to),
                                       ("--undo-to", args.undo_to),
                                       ("--timeline", args.timeline)])
    return paths


def run_report(args: ReportConfig, *, stdout: IO[str] | None = None,
               stderr: IO[str] | None = None) -> ExitCode:
    """`batchsms report`: print the report; 0 when every line is done, else 1."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    paths = _checked(args)
    summary = gather(paths, top=args.top, failed_to=args.failed_to, source=args.input,
                     defaults=args.defaults, op=args.op, rules=args.rules)
    report = summary.report
    if args.json:
        stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        stdout.write("\n".join(format_text(report)) + "\n")
    if args.html is not None:
        timeline = None if args.timeline is None else read_timeline(args.timeline)
        size = write_page(summary, args.html, timeline)
        print(f"wrote the report page to {args.html} ({size:,} bytes)", file=stderr)
    if args.undo_to is not None:
        print(describe_undo(write_undo(for_journals(paths), args.undo_to)), file=stderr)
    failed = report["failed_to"]
    if failed is not None:
        what = "original lines" if failed["source"] == "input" else \
            "envelopes without body (no --input given: re-run with --set/--patch)"
        print(f"wrote {failed['lines']} {what} to {failed['path']}", file=stderr)
        if failed["missing"]:
            print(f"warning: {failed['missing']} lines not done could not be copied from "
                  "--input (longer than the 1 MiB line limit)", file=stderr)
    return ExitCode.OK if report["not_done"] == 0 else ExitCode.SOME_FAILED
