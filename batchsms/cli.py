"""Command line: arguments -> one frozen config object -> the command's `main`. No logic here.

Every parser of `batchsms` is built here, from the option groups the commands share; the
simulator's options live in `simulator/cli.py`, mounted here, because `python -m
batchsms.simulator` is an entry point of its own and must parse them identically. A command
module (`commands/`) is imported only when its command runs, so that `validate` does not pay
for the network stack at start-up (importing `commands/run` costs over a second on a loaded
2-core box). Size (~370 lines): mostly the option tables and the epilog of `--help` (exit
codes, credential variables), kept in one place on purpose.

Every `UsageError` (bad option, unreadable input, missing credentials, locked `--out`, an output
that is an input or cannot be written) becomes one line on stderr and exit code 2, never a
traceback; a `JournalError` (outcomes could not be written while running) one line and exit 4.
A closed standard output (`--dry-run | head`) ends the command quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import orjson

from batchsms import __version__
from batchsms.errors import AbortedError, ExitCode, JournalError, UsageError
from batchsms.lines.bodies import build_defaults

if TYPE_CHECKING:
    from batchsms.commands.config import RunConfig
    from batchsms.commands.report import ReportConfig
    from batchsms.commands.tasks import TasksConfig


class _Help(argparse.HelpFormatter):
    """Options wrapped as usual; the epilog (exit codes, credentials) kept as laid out."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n  " in text:  # a table: as written
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every usage error takes one path."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("batchsms").strip()
        raise UsageError(f"{command}: {message}" if command else message)


EXIT_CODES = """\
exit codes (docs/reference.md §7):
  0        every line succeeded or was already done; validate, --dry-run: every line valid
  1        finished, and some lines failed, were invalid or were skipped: see `batchsms report`
  2        could not start: bad options, no credentials, unreadable input, an output that is an
           input or cannot be written, --out locked by another run
  3        aborted: credentials rejected, more failures than --abort-failure-ratio, or the
           service failing for longer than --max-outage
  4        outcomes could not be written while running (disk full, I/O error)
  130/143  interrupted by SIGINT/SIGTERM; outcomes complete: re-run with --resume"""

CREDENTIALS = """\
credentials, from the environment only (never options), the first found wins (reference §6):
  1. --token-file FILE, else BATCHSMS_AUTH_TOKEN: sent as X-Auth-Token
  2. HUAWEICLOUD_SDK_AK + HUAWEICLOUD_SDK_SK (else CLOUD_SDK_AK + CLOUD_SDK_SK), signed as the
     SDKs sign; optional HUAWEICLOUD_SDK_PROJECT_ID, HUAWEICLOUD_SDK_DOMAIN_ID and
     HUAWEICLOUD_SDK_SECURITY_TOKEN
  3. HUAWEICLOUD_SDK_CREDENTIALS_FILE, else ~/.huaweicloud/credentials: [basic] or [global]
  --simulate needs none; the simulator checks none unless BATCHSMS_SIMULATOR_TOKEN or
  BATCHSMS_SIMULATOR_AK + BATCHSMS_SIMULATOR_SK are set in its environment.
  BATCHSMS_ENDPOINT: the endpoint when neither --endpoint nor --region is given."""
"""With EXIT_CODES, what `batchsms --help` and `run`/`plan`/`tasks --help` end with."""


def _load_patch(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise UsageError(f"--patch {path!r}: {exc.strerror}") from exc
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"--patch {path!r}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"--patch {path!r}: must hold a JSON object")
    return data


def _add_body_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                   help="set a (dotted) body field on every line; VALUE is JSON, else a string")
    p.add_argument("--patch", metavar="FILE", help="a JSON object merged into every body")


def _add_op_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--op", choices=("update", "speed-limit"), default="update",
                   help="the operation of lines that name no \"op\": UpdateTask or UpdateSpeed "
                        "(time-window rules, docs/reference.md §11) [update]")
    p.add_argument("--rules", metavar="RULES",
                   help="speed-limit lines without a body set these rules, e.g. "
                        "'00:00-07:59=1000,08:00-19:59=100@50,20:00-23:59=1000' "
                        "(START-END=SPEED[@THRESHOLD]; '' clears the rules)")


def _line_options(args: argparse.Namespace) -> dict[str, Any]:
    """`--op` and `--rules` as RunConfig/ValidateConfig fields (a bad --rules: exit 2)."""
    from batchsms.lines.speed_rules import rules_option

    return {"op": args.op, "rules": None if args.rules is None else rules_option(args.rules)}


def _add_log_options(p: argparse.ArgumentParser, *, quiet: str) -> None:
    p.add_argument("--log-format", choices=("console", "json"),
                   help="of what goes to stderr [console on a terminal, else json]")
    p.add_argument("--quiet", "-q", action="store_true", help=quiet)


def _add_connection_options(p: argparse.ArgumentParser, *, simulate: bool) -> None:
    target = p.add_mutually_exclusive_group()
    target.add_argument("--endpoint", help="SMS endpoint URL (or BATCHSMS_ENDPOINT)")
    p.add_argument("--region", help="a known region, e.g. cn-north-4; with --endpoint, only "
                   "the region whose project id is looked up")
    if simulate:
        target.add_argument("--simulate", action="store_true",
                            help="send to the built-in simulator, started in-process")
    p.add_argument("--rate", type=float, default=10.0,
                   help="requests/s, every attempt counted; 0 = unlimited [10]")
    p.add_argument("--max-attempts", type=int, default=5,
                   help="attempts per line, the first included [5]" if simulate else
                   "attempts per page request, the first included [5]")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request [30]")
    p.add_argument("--ca-bundle", help="trust this CA bundle (TLS is always verified)")
    p.add_argument("--token-file", type=Path, help="read the X-Auth-Token from this file")


_TASK_FILTERS = ("state", "name", "id", "enterprise_project_id", "source_server_id")


def _add_report_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("report", help="summary of outcomes files, latest record per line")
    p.add_argument("outcomes", nargs="+", type=Path, metavar="OUTCOMES",
                   help="outcomes file(s), oldest first")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--top", type=int, default=10, help="slowest lines and failures shown [10]")
    p.add_argument("--failed-to", type=Path, metavar="FILE",
                   help="write the lines not done (failed, invalid, never sent, no record) as "
                        "an input file; re-run it with the same --out and --set/--patch")
    p.add_argument("--input", metavar="ORIGINAL",
                   help="the runs' input (may be gzip): judge its lines (a line without a "
                        "record is not done); --failed-to copies them verbatim")
    p.add_argument("--undo-to", type=Path, metavar="FILE",
                   help="write input lines restoring the values recorded before the writes "
                        "of runs with --undo-file (one line per task, the earliest value)")
    p.add_argument("--html", type=Path, metavar="FILE",
                   help="also write the report as one self-contained page (no network): "
                        "charts, lines not done by error code, what to do next")
    p.add_argument("--timeline", type=Path, metavar="FILE",
                   help="with --html: chart run --timeline's FILE, the pace against the "
                        "service's answers")
    _add_body_options(p)  # --input lines are planned as run plans them
    _add_op_options(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="batchsms", description="Apply UpdateTask to many Huawei Cloud SMS "
                     "migration tasks from a JSONL file, safely and fast.",
                     epilog=f"{EXIT_CODES}\n\n{CREDENTIALS}", formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"batchsms {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar="COMMAND")

    val = sub.add_parser("validate", help="check every line, no network")
    val.add_argument("input", help="JSONL file, '-' for stdin, may be gzip")
    val.add_argument("--out", type=Path, help="also write valid/invalid outcome records here")
    val.add_argument("--json", action="store_true",
                     help="one JSON object per invalid line (line, task_id, ref, errors), then "
                     "one {\"summary\": {lines, valid, invalid, repeated_task_ids}} object")
    _add_log_options(val, quiet="print the summary only, not each problem")
    _add_body_options(val)
    _add_op_options(val)

    run = sub.add_parser("run", help="validate, send, write outcomes", formatter_class=_Help,
                         epilog=f"{EXIT_CODES}\n\n{CREDENTIALS}")
    run.add_argument("input", help="JSONL file, '-' for stdin, may be gzip")
    run.add_argument("--out", type=Path, default=Path("outcomes.jsonl"),
                     help="outcomes file, appended to [outcomes.jsonl]")
    _add_connection_options(run, simulate=True)
    run.add_argument("--concurrency", type=int, default=16, help="most requests in flight [16]")
    run.add_argument("--burst", type=float, default=1.0, help="token-bucket burst [1]")
    run.add_argument("--dry-run", action="store_true",
                     help="validate and print what would be sent; no network, no outcomes")
    run.add_argument("--resume", action="store_true",
                     help="skip the lines --out says are done; a task is sent again from "
                     "its first line not done")
    run.add_argument("--abort-failure-ratio", type=float, default=0.5,
                     help="stop once >= 100 lines finished and more than this ratio failed")
    run.add_argument("--deadline", metavar="T",
                     help="no request starts after T: a duration (90m, 1h30m), the next clock "
                          "time (05:00), or an ISO time (2026-11-28T05:00+08:00); not in the past")
    run.add_argument("--max-outage", default="600", metavar="DURATION",
                     help="abort (exit 3) when the service has failed continuously this long, "
                          "only probes being sent meanwhile: seconds or 10m [600]")
    run.add_argument("--grace", type=float, default=5.0, metavar="S",
                     help="after SIGINT/SIGTERM, seconds in-flight requests get before they "
                          "are cut [5]")
    run.add_argument("--log-format", choices=("console", "json"),
                     help="[console on a terminal, else json]")
    run.add_argument("--quiet", "-q", action="store_true",
                     help="log warnings and the final summary only (retries are not shown)")
    run.add_argument("--verbose", "-v", action="store_true",
                     help="log debug events too: each invalid line (task.invalid)")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bar [on a terminal only]")
    run.add_argument("--progress-interval", type=float, default=60.0, metavar="S",
                     help="with json logs, a run.progress event (counts, rate, ETA) every S "
                          "seconds; 0: none [60]")
    run.add_argument("--metrics-file", type=Path, metavar="PATH",
                     help="write Prometheus text format here when the run ends, whatever "
                          "its exit code (node_exporter textfile collector: name it *.prom)")
    run.add_argument("--skip-unchanged", action="store_true",
                     help="read each task first; do not send lines already as wanted")
    run.add_argument("--undo-file", type=Path, metavar="FILE",
                     help="read each task before its write, keep its values in a side log, and "
                          "write FILE: input lines that restore them (with --resume: the "
                          "whole sequence of runs)")
    run.add_argument("--allow-irreversible", action="store_true",
                     help="with --undo-file: accept fields that cannot be read back")
    run.add_argument("--verify", action="store_true",
                     help="read each task back after its write; a difference fails the line")
    run.add_argument("--timeline", type=Path, metavar="FILE",
                     help="write one JSON object per second: requests sent, answers by class, "
                          "in flight, the pace in force, outage state (report --html "
                          "--timeline charts it)")
    run.add_argument("--allow-empty", action="store_true",
                     help="an input with no lines is a success (exit 0); without it, exit 2")
    _add_body_options(run)
    _add_op_options(run)

    plan = sub.add_parser("plan", help="read each task (ShowTask) and show what run would "
                          "change; never writes", formatter_class=_Help,
                          epilog=f"{EXIT_CODES}\n\n{CREDENTIALS}")
    plan.add_argument("input", help="JSONL file, '-' for stdin, may be gzip")
    _add_connection_options(plan, simulate=True)
    plan.add_argument("--concurrency", type=int, default=16, help="most reads in flight [16]")
    plan.add_argument("--burst", type=float, default=1.0, help="token-bucket burst [1]")
    plan.add_argument("--json", action="store_true", help="one JSON object per input line")
    _add_log_options(plan, quiet="log warnings and errors only: no plan.progress lines")
    _add_body_options(plan)
    _add_op_options(plan)

    _add_report_parser(sub)

    from batchsms.simulator.cli import add_simulator_parser

    add_simulator_parser(cast("argparse._SubParsersAction[argparse.ArgumentParser]", sub))

    tasks = sub.add_parser("tasks", help="list tasks (ListTasks) as input lines for run",
                           formatter_class=_Help, epilog=f"{EXIT_CODES}\n\n{CREDENTIALS}")
    tasks.add_argument("--state", help="only tasks in this state, e.g. RUNNING")
    tasks.add_argument("--name", help="only tasks with this name")
    tasks.add_argument("--id", help="only the task with this id")
    tasks.add_argument("--enterprise-project-id", help="only tasks of this enterprise project")
    tasks.add_argument("--source-server-id", help="only tasks of this source server")
    tasks.add_argument("--out", type=Path, help="write here (atomically) instead of stdout")
    tasks.add_argument("--page-size", type=int, default=100, help="tasks per page [100]")
    tasks.add_argument("--op", choices=("update", "speed-limit"),
                       help="write this op into each line (docs/reference.md §11)")
    tasks.add_argument("--rules", metavar="RULES",
                       help="with --op speed-limit: each line's rules, e.g. "
                            "'00:00-07:59=1000,08:00-19:59=100@50,20:00-23:59=1000'")
    tasks.add_argument("--set", dest="sets", action="append", default=[],
                       metavar="FIELD=VALUE",
                       help="write this body field into each line (speed-limit: "
                            "speed_limit=[...])")
    _add_log_options(tasks, quiet="log warnings and errors only: not the count at the end")
    _add_connection_options(tasks, simulate=False)

    check = sub.add_parser("check", help="resolve what a run would use (endpoint, credentials, "
                           "project, proxy, clock) and prove it with one read",
                           formatter_class=_Help, epilog=f"{EXIT_CODES}\n\n{CREDENTIALS}")
    _add_connection_options(check, simulate=False)
    check.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    return parser


def _defaults(args: argparse.Namespace) -> dict[str, Any]:
    return build_defaults(_load_patch(args.patch), args.sets)


def run_config(args: argparse.Namespace, log_format: str) -> RunConfig:
    """`run`'s options as its config; `log_format` as `logs.configure` resolved it."""
    from datetime import datetime

    from batchsms.commands.config import RunConfig, parse_deadline, parse_duration

    return RunConfig(
        input=args.input, out=args.out, endpoint=args.endpoint, region=args.region,
        simulate=args.simulate, concurrency=args.concurrency, rate=args.rate, burst=args.burst,
        max_attempts=args.max_attempts, timeout=args.timeout, ca_bundle=args.ca_bundle,
        dry_run=args.dry_run, resume=args.resume, defaults=_defaults(args),
        abort_failure_ratio=args.abort_failure_ratio, token_file=args.token_file,
        progress=args.progress, progress_interval=args.progress_interval,
        metrics_file=args.metrics_file, log_format=log_format,
        max_outage=parse_duration(args.max_outage, "--max-outage"), grace=args.grace,
        skip_unchanged=args.skip_unchanged, undo_file=args.undo_file,
        allow_irreversible=args.allow_irreversible, verify=args.verify,
        allow_empty=args.allow_empty, timeline=args.timeline, **_line_options(args),
        deadline=None if args.deadline is None else
        parse_deadline(args.deadline, datetime.now().astimezone()))


def plan_config(args: argparse.Namespace) -> RunConfig:
    """`plan`'s options: the run's connection options and body layers."""
    from batchsms.commands.config import RunConfig

    return RunConfig(
        input=args.input, endpoint=args.endpoint, region=args.region, simulate=args.simulate,
        concurrency=args.concurrency, rate=args.rate, burst=args.burst,
        max_attempts=args.max_attempts, timeout=args.timeout, ca_bundle=args.ca_bundle,
        defaults=_defaults(args), token_file=args.token_file, **_line_options(args))


def report_config(args: argparse.Namespace) -> ReportConfig:
    from batchsms.commands.report import ReportConfig

    return ReportConfig(
        outcomes=tuple(args.outcomes), json=args.json, top=args.top, failed_to=args.failed_to,
        input=args.input, undo_to=args.undo_to, html=args.html, timeline=args.timeline,
        patch=args.patch, defaults=_defaults(args), **_line_options(args))


def tasks_config(args: argparse.Namespace) -> TasksConfig:
    from batchsms.commands.tasks import TasksConfig, line_body

    return TasksConfig(
        op=args.op, body=line_body(args.op, args.rules, args.sets),
        filters={name: value for name in _TASK_FILTERS
                 if (value := getattr(args, name)) is not None},
        endpoint=args.endpoint, region=args.region, out=args.out, page_size=args.page_size,
        rate=args.rate, max_attempts=args.max_attempts, timeout=args.timeout,
        ca_bundle=args.ca_bundle, token_file=args.token_file)


def _validate(args: argparse.Namespace) -> ExitCode:
    from batchsms.commands.validate import ValidateConfig
    from batchsms.commands.validate import main as validate

    return validate(lambda: ValidateConfig(
        input=args.input, out=args.out, patch=args.patch, defaults=_defaults(args),
        json=args.json, quiet=args.quiet, log_format=args.log_format, **_line_options(args)),
        log_format=args.log_format)


def _run(args: argparse.Namespace) -> ExitCode:
    from batchsms.commands.run import RunStart, check_run_outputs, refusals, run

    start = RunStart(input=args.input, out=args.out, log_format=args.log_format,
                     quiet=args.quiet, verbose=args.verbose, dry_run=args.dry_run,
                     metrics_file=args.metrics_file,
                     token_file=args.token_file, ca_bundle=args.ca_bundle, patch=args.patch,
                     undo_file=args.undo_file, timeline=args.timeline)
    with refusals(start) as log_format:
        check_run_outputs(start)  # before --patch is read: it may be named as an output
        return run(run_config(args, log_format))
    return ExitCode.USAGE  # refused, and told as one JSON event (refusals)


def _plan(args: argparse.Namespace) -> ExitCode:
    from batchsms.commands import logs
    from batchsms.commands.plan import run_plan

    logs.configure(args.log_format, quiet=args.quiet)
    return run_plan(plan_config(args), as_json=args.json)


def _report(args: argparse.Namespace) -> ExitCode:
    from batchsms.commands.report import run_report

    return run_report(report_config(args))


def _tasks(args: argparse.Namespace) -> ExitCode:
    from batchsms.commands import logs
    from batchsms.commands.tasks import main as tasks

    # the engine's events (a stop) go to stderr, never into the fleet
    fmt = logs.configure(args.log_format, quiet=args.quiet)
    return tasks(tasks_config(args), log_format=fmt, quiet=args.quiet)


def _check(args: argparse.Namespace) -> ExitCode:
    from batchsms.commands.check import CheckConfig
    from batchsms.commands.check import main as check

    return check(CheckConfig(endpoint=args.endpoint, region=args.region,
                             ca_bundle=args.ca_bundle, token_file=args.token_file,
                             timeout=args.timeout, json=args.json))


def _simulator(args: argparse.Namespace) -> ExitCode:
    from batchsms.simulator.cli import run_simulator

    return run_simulator(args)


_COMMANDS: dict[str, Callable[[argparse.Namespace], ExitCode]] = {
    "validate": _validate, "run": _run, "plan": _plan, "report": _report, "tasks": _tasks,
    "simulator": _simulator, "check": _check,
}


def _quiet_stdout() -> None:
    """The reader of stdout went away: later writes and the exit flush go nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # list the commands rather than complain that one is missing
        print(parser.format_help(), end="", file=sys.stderr)
        return ExitCode.USAGE
    try:
        args = parser.parse_args(argv)
        if getattr(args, "simulate", False) and getattr(args, "region", None):
            parser.error("argument --region: not allowed with argument --simulate")
        return _COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"batchsms: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except JournalError as exc:
        print(f"batchsms: {exc}; stopped at once, exit 4", file=sys.stderr)
        return ExitCode.BROKEN
    except AbortedError as exc:  # before the first request: IAM rejected the credentials
        print(f"batchsms: {exc}", file=sys.stderr)
        return ExitCode.ABORTED
    except KeyboardInterrupt:
        return ExitCode.SIGINT
    except BrokenPipeError:  # `--dry-run | head`: the reader has all it wanted
        _quiet_stdout()
        return ExitCode.OK
