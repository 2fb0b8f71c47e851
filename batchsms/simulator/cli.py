"""``batchsms simulator``: options -> a running `Simulator` until SIGINT or SIGTERM.

Prints exactly ``listening on http://HOST:PORT`` on stdout (flushed) once connections are
accepted, and a one-line summary on stderr when it stops. Credentials to expect come from the
environment only (docs/reference.md §6, §8), never from options. ``--seed`` drives the faults
only and ``--fleet-seed`` the tasks, so that trying another run of faults on the same fleet
keeps every task id a fleet file listed (one seed for both made ``--seed 3`` a fleet of other
ids: every task 404). Wired into ``batchsms.cli`` with
`add_simulator_parser` + `run_simulator`; ``python -m batchsms.simulator`` runs `main`.

The only parser outside ``batchsms/cli.py``: the simulator is an entry point of its own
(``python -m batchsms.simulator``, used by the tests' subprocesses), so its options are defined
here once and mounted by both entry points, which then parse them identically.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from batchsms.errors import ExitCode, UsageError
from batchsms.simulator.access import AK_ENV, SIMULATOR_TOKEN_ENV, SK_ENV, ExpectedCredentials
from batchsms.simulator.faults import FaultConfig, Outage, parse_latency, parse_outage
from batchsms.simulator.fleet import Fleet
from batchsms.simulator.metadata import POD_IDENTITY_PATH, MetadataState

if TYPE_CHECKING:
    from batchsms.simulator.server import Simulator

__all__ = ["add_simulator_arguments", "add_simulator_parser", "fault_config", "main",
           "run_simulator"]


def _number(accept: Callable[[float], bool], wanted: str) -> Callable[[str], float]:
    """An argparse type: a finite number that `accept`s, else "must be {wanted}"."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
        return value

    return parse


_probability = _number(lambda v: 0.0 <= v <= 1.0, "between 0 and 1")
_positive = _number(lambda v: v > 0, "a number > 0")
_non_negative = _number(lambda v: v >= 0, "a number >= 0")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _port(text: str) -> int:
    value = _count(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535, got {text}")
    return value


def _latency(text: str) -> tuple[float, float]:
    try:
        return parse_latency(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _outage(text: str) -> Outage:
    try:
        return parse_outage(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


MAX_GENERATE = 1_000_000
"""Most tasks `--generate` makes: they are all made at start and held (a million: ~140 MB and
seconds); a larger N is refused at once rather than filling the memory. A larger fleet: the
open fleet (no --fleet, no --generate) serves any id."""


def _fleet_size(text: str) -> int:
    value = _count(text)
    if value > MAX_GENERATE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_GENERATE}, got {text}")
    return value


def _request_number(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _dotted_path(text: str) -> str:
    if not text or any(not part for part in text.split(".")):
        raise argparse.ArgumentTypeError(f"not a dotted body path: {text!r}")
    return text


def add_simulator_arguments(p: argparse.ArgumentParser) -> None:
    """The ``simulator`` options, on any parser."""
    p.add_argument("--host", default="127.0.0.1", help="address to bind [127.0.0.1]")
    p.add_argument("--port", type=_port, default=8080, help="port; 0 picks a free one [8080]")
    fleet = p.add_mutually_exclusive_group()
    fleet.add_argument("--fleet", type=Path, metavar="FILE",
                       help="serve exactly the tasks of this JSONL file (one task object a "
                       "line; its speed-limit rules, if any, under 'speed_limit_rules')")
    fleet.add_argument("--generate", type=_fleet_size, metavar="N",
                       help="serve exactly N generated tasks (ids drawn from --fleet-seed)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the faults only: same seed, same faults; the fleet does not "
                   "change with it [0]")
    p.add_argument("--fleet-seed", type=int, default=0, metavar="N",
                   help="seed of the tasks: the ids --generate makes and the fields every "
                   "task is given (state, name, speed limit...) [0]")
    p.add_argument("--fail-rate", type=_probability, default=0.0, metavar="P",
                   help="answer this share of requests 500/502/503/504 [0]")
    p.add_argument("--throttle-rate", type=_positive, metavar="R",
                   help="answer 429 APIG.0308 once R requests were admitted in the last second")
    p.add_argument("--throttle-count-all", action="store_true",
                   help="--throttle-rate counts every arrival, 429s included (a client above "
                   "R/s then gets nothing through)")
    p.add_argument("--throttle-random", type=_probability, default=0.0, metavar="P",
                   help="answer this share of requests 429 APIG.0308 whatever the rate [0]")
    p.add_argument("--quota", type=_positive, metavar="Q",
                   help="gateway quota: a token bucket of Q requests/s; a 429 costs no token")
    p.add_argument("--quota-burst", type=_number(lambda v: v >= 1, "a number >= 1"),
                   metavar="B", help="tokens the --quota bucket holds [Q, at least 1]")
    p.add_argument("--outage", type=_outage, action="append", default=[],
                   metavar="START+DURATION[:KIND][@SHARE]",
                   help="seconds after the first request, for DURATION s: KIND an HTTP status "
                   "[503], 'refuse' (not listening, open connections dropped) or 'close' "
                   "(accepted, closed without an answer); @SHARE hits only that share of "
                   "requests (e.g. 10+20:503@0.3). Repeatable")
    p.add_argument("--forbid-rate", type=_probability, default=0.0, metavar="P",
                   help="answer this share of requests 403 SMS.9004 (permission denied) [0]")
    p.add_argument("--forbid-from", type=_request_number, metavar="N",
                   help="answer every request from the N-th on 403 SMS.9004 (a revoked "
                   "permission)")
    p.add_argument("--ignore-field", type=_dotted_path, action="append", default=[],
                   metavar="PATH", help="answer updates 200 but silently do not apply this "
                   "body field (dotted path, e.g. target_server.name). Repeatable")
    p.add_argument("--retry-after", type=_non_negative, metavar="S",
                   help="send Retry-After: S (seconds, rounded up) with every 429")
    p.add_argument("--latency-ms", type=_latency, default=(0.0, 0.0), metavar="A[-B]",
                   help="delay every answer A ms, or uniformly A to B ms [0]")
    p.add_argument("--reset-rate", type=_probability, default=0.0, metavar="P",
                   help="drop this share of connections without an answer [0]")
    p.add_argument("--hang-rate", type=_probability, default=0.0, metavar="P",
                   help="hold this share of answers back --hang-ms before serving them [0]")
    p.add_argument("--hang-ms", type=_non_negative, default=60_000.0, metavar="MS",
                   help="how long a hung request waits [60000]")
    p.add_argument("--lose-rate", type=_probability, default=0.0, metavar="P",
                   help="apply this share of updates, then drop the connection instead of "
                   "answering: a write that landed, seen as a connection error [0]")
    p.add_argument("--late-rate", type=_probability, default=0.0, metavar="P",
                   help="apply this share of updates, then hold the answer back --late-ms [0]")
    p.add_argument("--late-ms", type=_non_negative, default=60_000.0, metavar="MS",
                   help="how long a late answer is held [60000]")
    add_rehearsal_arguments(p)


POD_TOKEN_ENV = "BATCHSMS_SIMULATOR_POD_TOKEN"  # noqa: S105 - a variable's name


def _project(text: str) -> tuple[str, str]:
    region, sep, project = text.partition("=")
    if not (sep and region.strip() and project.strip()):
        raise argparse.ArgumentTypeError(f"want REGION=PROJECT_ID, got {text!r}")
    return region.strip(), project.strip()


def add_rehearsal_arguments(p: argparse.ArgumentParser) -> None:
    """The options of the rehearsal endpoints for temporary credentials (metadata.py)."""
    p.add_argument("--credentials-lifetime", type=_positive, metavar="S",
                   help="also serve, on --credentials-port, ECS metadata (PUT "
                   "/meta-data/latest/api/token, GET /openstack/latest/securitykey), CCE pod "
                   f"identity (POST {POD_IDENTITY_PATH}, Authorization: ${POD_TOKEN_ENV} or "
                   "a fixed rehearsal value) and IAM's GET /v3/projects, issuing temporary "
                   "credentials that live S seconds and are accepted here")
    p.add_argument("--credentials-port", type=_port, default=0, metavar="PORT",
                   help="the port of those endpoints; 0 picks a free one, printed on stderr "
                   "[0]")
    p.add_argument("--project", type=_project, action="append", default=[],
                   metavar="REGION=ID", help="a project IAM knows (repeatable)")


def metadata_state(args: argparse.Namespace) -> MetadataState | None:
    """The rehearsal endpoints the parsed options ask for (None: not served)."""
    if args.credentials_lifetime is None:
        return None
    # Like the credentials the simulator expects, the pod token comes from the environment.
    pod_token = os.environ.get(POD_TOKEN_ENV, "").strip() or MetadataState().pod_token
    return MetadataState(lifetime=args.credentials_lifetime, pod_token=pod_token,
                         projects=dict(args.project))


def add_simulator_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
                         ) -> None:
    """Add the ``simulator`` command to ``batchsms``'s sub-parsers."""
    p = subparsers.add_parser(
        "simulator", help="a local SMS endpoint that speaks the same API",
        description="Serve PUT/GET /v3/tasks/{task_id} and GET /v3/tasks like Huawei Cloud SMS, "
        f"with optional faults. Credentials to expect: {AK_ENV} + {SK_ENV} and/or "
        f"{SIMULATOR_TOKEN_ENV} (none set: no check).")
    add_simulator_arguments(p)


def fault_config(args: argparse.Namespace) -> FaultConfig:
    """The `FaultConfig` the parsed options ask for."""
    return FaultConfig(seed=args.seed, fail_rate=args.fail_rate, reset_rate=args.reset_rate,
                       hang_rate=args.hang_rate, hang_ms=args.hang_ms,
                       throttle_rate=args.throttle_rate,
                       throttle_count_all=args.throttle_count_all,
                       throttle_random=args.throttle_random, quota_rate=args.quota,
                       quota_burst=args.quota_burst, retry_after=args.retry_after,
                       latency_ms=args.latency_ms, outages=tuple(args.outage),
                       forbid_rate=args.forbid_rate, forbid_from=args.forbid_from,
                       ignore_fields=tuple(args.ignore_field), lose_rate=args.lose_rate,
                       late_rate=args.late_rate, late_ms=args.late_ms)


def _build(args: argparse.Namespace) -> Simulator:
    from batchsms.simulator.server import Simulator  # aiohttp.web: only when serving

    try:
        credentials = ExpectedCredentials.from_env(os.environ)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.fleet is not None:
        try:
            fleet = Fleet.from_jsonl(args.fleet, seed=args.fleet_seed)
        except OSError as exc:
            raise UsageError(f"--fleet {str(args.fleet)!r}: {exc.strerror}") from None
        except ValueError as exc:
            raise UsageError(f"--fleet: {exc}") from None
    elif args.generate is not None:
        fleet = Fleet.generate(args.generate, seed=args.fleet_seed)
    else:
        fleet = Fleet.open(seed=args.fleet_seed)
    faults = fault_config(args)
    return Simulator(host=args.host, port=args.port, fleet=fleet, faults=faults,
                     credentials=credentials, log_size=0, metadata=metadata_state(args),
                     metadata_port=args.credentials_port)


async def _serve(simulator: Simulator) -> str:
    import asyncio
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        handle = await simulator.start()
        print(f"listening on {handle.url}", flush=True)
        if handle.metadata_url is not None:
            print(f"credential endpoints (ECS metadata, pod identity, IAM) on "
                  f"{handle.metadata_url}", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await simulator.stop()
    stats = handle.stats
    statuses = ", ".join(f"{status}: {n}" for status, n in sorted(stats.by_status.items()))
    return (f"simulator: stopped after {stats.received} requests ({statuses or 'none answered'}; "
            f"resets: {stats.resets}), {stats.applied} updates applied")


def run_simulator(args: argparse.Namespace) -> ExitCode:
    """Run until SIGINT/SIGTERM; 0 on a clean stop. Raises UsageError for bad input (exit 2)."""
    import asyncio  # here, not at the top: mounting the command must stay cheap

    simulator = _build(args)
    try:
        summary = asyncio.run(_serve(simulator))
    except OSError as exc:  # the address is taken, or cannot be bound
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    print(summary, file=sys.stderr, flush=True)
    return ExitCode.OK


def main(argv: Sequence[str] | None = None) -> ExitCode:
    """``python -m batchsms.simulator``: the same options as ``batchsms simulator``."""
    parser = argparse.ArgumentParser(prog="batchsms simulator",
                                     description="A local Huawei Cloud SMS endpoint.")
    add_simulator_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_simulator(args)
    except UsageError as exc:
        print(f"batchsms simulator: {exc}", file=sys.stderr)
        return ExitCode.USAGE
