"""Command line: arguments -> frozen config objects -> one command function. No logic here.

Every `UsageError` (bad option, unreadable input, missing credentials, locked `--out`, an output
that is an input or cannot be written) becomes one line on stderr and exit code 2, never a
traceback; a `JournalError` (outcomes could not be written while running) one line and exit 4.
A closed standard output (`--dry-run | head`) ends the command quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, cast

import orjson

from batchsms import __version__
from batchsms.errors import JournalError, UsageError
from batchsms.outputs import check_output
from batchsms.plan import build_defaults


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every usage error takes one path."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("batchsms").strip()
        raise UsageError(f"{command}: {message}" if command else message)


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


def _add_connection_options(p: argparse.ArgumentParser, *, simulate: bool) -> None:
    target = p.add_mutually_exclusive_group()
    target.add_argument("--endpoint", help="SMS endpoint URL (or BATCHSMS_ENDPOINT)")
    target.add_argument("--region", help="a known region, e.g. cn-north-4")
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


def _task_filters(args: argparse.Namespace) -> dict[str, str]:
    """ListTasks query filters, by their query names (the options' names with `_`)."""
    filters: dict[str, str] = {}
    for name in _TASK_FILTERS:
        value = getattr(args, name)
        if value is None:
            continue
        if not value.strip():  # sent as is, it would match nothing: an empty fleet
            raise UsageError(f"tasks: --{name.replace('_', '-')} is empty")
        filters[name] = value
    return filters


def _tasks(args: argparse.Namespace) -> int:
    from batchsms.auth import authenticator, load_credentials
    from batchsms.client import resolve_endpoint
    from batchsms.tasks_cmd import TasksConfig, run_tasks

    filters = _task_filters(args)
    check_output("--out", args.out, [("--token-file", args.token_file),
                                     ("--ca-bundle", args.ca_bundle)])
    config = TasksConfig(endpoint=resolve_endpoint(args.endpoint, args.region, os.environ),
                         filters=filters, out=args.out, page_size=args.page_size,
                         rate=args.rate, max_attempts=args.max_attempts, timeout=args.timeout,
                         ca_bundle=args.ca_bundle)
    auth = authenticator(load_credentials(os.environ, token_file=args.token_file))
    return run_tasks(config, auth)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="batchsms", description="Apply UpdateTask to many Huawei Cloud SMS "
                     "migration tasks from a JSONL file, safely and fast.")
    parser.add_argument("--version", action="version", version=f"batchsms {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar="COMMAND")

    val = sub.add_parser("validate", help="check every line, no network")
    val.add_argument("input", help="JSONL file, '-' for stdin, may be gzip")
    val.add_argument("--out", type=Path, help="also write valid/invalid outcome records here")
    _add_body_options(val)

    run = sub.add_parser("run", help="validate, send, write outcomes")
    run.add_argument("input", help="JSONL file, '-' for stdin, may be gzip")
    run.add_argument("--out", type=Path, default=Path("outcomes.jsonl"),
                     help="outcomes file, appended to [outcomes.jsonl]")
    _add_connection_options(run, simulate=True)
    run.add_argument("--concurrency", type=int, default=16, help="most requests in flight [16]")
    run.add_argument("--burst", type=float, default=1.0, help="token-bucket burst [1]")
    run.add_argument("--dry-run", action="store_true",
                     help="validate and print what would be sent; no network, no outcomes")
    run.add_argument("--resume", action="store_true",
                     help="skip lines that already succeeded in --out")
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
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bar [on a terminal only]")
    run.add_argument("--metrics-file", type=Path, metavar="PATH",
                     help="write Prometheus text format here when the run ends, whatever "
                          "its exit code (node_exporter textfile collector: name it *.prom)")
    run.add_argument("--skip-unchanged", action="store_true",
                     help="read each task first; do not send lines already as wanted")
    run.add_argument("--undo-file", type=Path, metavar="FILE",
                     help="read each task before its write, keep its values in the outcomes, "
                          "and write FILE: input lines that restore them")
    run.add_argument("--allow-irreversible", action="store_true",
                     help="with --undo-file: accept fields that cannot be read back")
    run.add_argument("--verify", action="store_true",
                     help="read each task back after its write; a difference fails the line")
    _add_body_options(run)

    plan = sub.add_parser("plan", help="read each task (ShowTask) and show what run would "
                          "change; never writes")
    plan.add_argument("input", help="JSONL file, '-' for stdin, may be gzip")
    _add_connection_options(plan, simulate=True)
    plan.add_argument("--concurrency", type=int, default=16, help="most reads in flight [16]")
    plan.add_argument("--burst", type=float, default=1.0, help="token-bucket burst [1]")
    plan.add_argument("--json", action="store_true", help="one JSON object per input line")
    _add_body_options(plan)

    from batchsms.report import add_report_parser

    _add_body_options(add_report_parser(sub))  # --input lines are planned as run plans them

    from batchsms.simulator.cli import add_simulator_parser

    add_simulator_parser(cast("argparse._SubParsersAction[argparse.ArgumentParser]", sub))

    tasks = sub.add_parser("tasks", help="list tasks (ListTasks) as input lines for run")
    tasks.add_argument("--state", help="only tasks in this state, e.g. RUNNING")
    tasks.add_argument("--name", help="only tasks with this name")
    tasks.add_argument("--id", help="only the task with this id")
    tasks.add_argument("--enterprise-project-id", help="only tasks of this enterprise project")
    tasks.add_argument("--source-server-id", help="only tasks of this source server")
    tasks.add_argument("--out", type=Path, help="write here (atomically) instead of stdout")
    tasks.add_argument("--page-size", type=int, default=100, help="tasks per page [100]")
    _add_connection_options(tasks, simulate=False)
    return parser


def _run_config(args: argparse.Namespace, log_format: str) -> Any:
    from datetime import datetime

    from batchsms.run_cmd import RunConfig, parse_deadline, parse_duration

    return RunConfig(
        input=args.input, out=args.out, endpoint=args.endpoint, region=args.region,
        simulate=args.simulate, concurrency=args.concurrency, rate=args.rate, burst=args.burst,
        max_attempts=args.max_attempts, timeout=args.timeout, ca_bundle=args.ca_bundle,
        dry_run=args.dry_run, resume=args.resume,
        defaults=build_defaults(_load_patch(args.patch), args.sets),
        abort_failure_ratio=args.abort_failure_ratio, token_file=args.token_file,
        progress=args.progress, metrics_file=args.metrics_file, log_format=log_format,
        max_outage=parse_duration(args.max_outage, "--max-outage"), grace=args.grace,
        skip_unchanged=args.skip_unchanged, undo_file=args.undo_file,
        allow_irreversible=args.allow_irreversible, verify=args.verify,
        deadline=None if args.deadline is None else
        parse_deadline(args.deadline, datetime.now().astimezone()))


def _plan_config(args: argparse.Namespace) -> Any:
    from batchsms.run_cmd import RunConfig

    return RunConfig(
        input=args.input, endpoint=args.endpoint, region=args.region, simulate=args.simulate,
        concurrency=args.concurrency, rate=args.rate, burst=args.burst,
        max_attempts=args.max_attempts, timeout=args.timeout, ca_bundle=args.ca_bundle,
        defaults=build_defaults(_load_patch(args.patch), args.sets), token_file=args.token_file)


def _validate(args: argparse.Namespace) -> int:
    from batchsms.validate_cmd import run_validate

    check_output("--out", args.out, [("the input", args.input), ("--patch", args.patch)])
    defaults = build_defaults(_load_patch(args.patch), args.sets)
    return run_validate(args.input, args.out, defaults)


def _run(args: argparse.Namespace) -> int:
    from batchsms import logs, run_cmd

    fmt = logs.configure(args.log_format, quiet=args.quiet)
    refused: int | None = None
    try:
        for option, output in (("--out", args.out), ("--metrics-file", args.metrics_file)):
            # run_cmd checks the rest; the --patch file is known only here (--dry-run writes
            # neither)
            if not args.dry_run:
                check_output(option, output, [("--patch", args.patch)])
        return int(run_cmd.run(_run_config(args, fmt)))
    except UsageError as exc:
        refused = run_cmd.EXIT_USAGE
        if args.log_format != "json":  # asked for, not just chosen because not a terminal
            raise
        # json logs stay JSON: the refusal is one event, not a line of text
        run_cmd.log.error("run.refused", error=str(exc), exit_code=refused)
        return refused
    except KeyboardInterrupt:  # before the run's own signal handling was in place
        refused = 130
        raise
    finally:
        if refused is not None and not args.dry_run:
            # the run did not get as far as writing it: an alert must still see this exit
            run_cmd.metrics_after_refusal(
                args.metrics_file,
                run_cmd.run_inputs(args.input, args.token_file, args.ca_bundle, args.patch),
                args.out, refused)


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
        return 2
    try:
        args = parser.parse_args(argv)
        if args.command == "validate":
            return _validate(args)
        if args.command == "simulator":
            from batchsms.simulator.cli import run_simulator

            return run_simulator(args)
        if args.command == "tasks":
            return _tasks(args)
        if args.command == "plan":
            from batchsms import logs
            from batchsms.commands.plan import run_plan

            logs.configure(None)
            return run_plan(_plan_config(args), as_json=args.json)
        if args.command == "report":
            from batchsms.report import run_report

            return run_report(args, defaults=build_defaults(_load_patch(args.patch), args.sets))
        return _run(args)
    except UsageError as exc:
        print(f"batchsms: {exc}", file=sys.stderr)
        return 2
    except JournalError as exc:
        print(f"batchsms: {exc}; stopped at once, exit 4", file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `--dry-run | head`: the reader has all it wanted
        _quiet_stdout()
        return 0
