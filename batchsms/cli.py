"""Command line: arguments -> frozen config objects -> one command function. No logic here.

Every `UsageError` (bad option, unreadable input, missing credentials, locked `--out`) becomes one
line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import orjson

from batchsms import __version__
from batchsms.errors import UsageError
from batchsms.plan import build_defaults


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every usage error takes one path."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="batchsms", description="Apply UpdateTask to many Huawei Cloud SMS "
                     "migration tasks from a JSONL file, safely and fast.")
    parser.add_argument("--version", action="version", version=f"batchsms {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    val = sub.add_parser("validate", help="check every line, no network")
    val.add_argument("input", help="JSONL file, '-' for stdin, may be gzip")
    val.add_argument("--out", type=Path, help="also write valid/invalid outcome records here")
    _add_body_options(val)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "validate":
            from batchsms.validate_cmd import run_validate

            defaults = build_defaults(_load_patch(args.patch), args.sets)
            return run_validate(args.input, args.out, defaults)
        raise UsageError(f"unknown command {args.command!r}")  # pragma: no cover
    except UsageError as exc:
        print(f"batchsms: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 1
