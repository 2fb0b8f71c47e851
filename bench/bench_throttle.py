"""Benchmark `batchsms run` against every kind of throttling and outage (issue 9's targets).

    python bench/bench_throttle.py [--runs 3] [--scenario NAME ...] [--list] [--quick]

Each scenario serves a fresh simulator from a thread of this process
(`batchsms.simulator.threaded`) with the scenario's faults, and runs `batchsms run` against it
as a subprocess, with a hard time limit (the child is killed past it, so a bad rate controller
cannot hang the bench). Figures are the median of ``--runs`` runs (3 by default):

- goodput: updates the simulator applied per second, from the first request it received to
  the last update it applied (server-side: independent of the client's logs);
- 429 share: 429 answers / requests the simulator received;
- failed: input lines without a ``succeeded`` outcome record (failed, skipped, or none at all);
- time: the run's own duration (its ``run.finished`` event; the wall time of the subprocess when
  it was killed or logged none) against the ideal: lines / the slower of --rate and the limit.

Each scenario ends PASS or FAIL against its target; the exit status is 1 when any failed.
Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from batchsms.simulator.faults import FaultConfig, Outage, OutageKind
from batchsms.simulator.threaded import simulator_in_thread

CONCURRENCY = 128  # large enough never to be the limit at these rates
KEEP = Path(__file__).parent / "out"  # stderr of runs that did not exit 0 (git-ignored)


def write_lines(path: Path, n: int) -> None:
    with path.open("wb") as f:
        for i in range(n):
            f.write(orjson.dumps({"task_id": f"bench-{i}", "body": {"speed_limit": i % 1001}})
                    + b"\n")


@dataclass(frozen=True, slots=True)
class Figures:
    """One run's measurements."""

    goodput: float  # applied updates per second, server-side
    share_429: float
    failed: int  # lines without a succeeded record
    seconds: float  # the run's duration
    exit: int | None  # None: killed at the time limit


@dataclass(frozen=True, slots=True)
class Scenario:
    """A fault configuration, a client, and the target its median figures must meet."""

    name: str
    what: str
    faults: FaultConfig
    lines: int
    rate: float  # the client's --rate (0: unlimited)
    limit: float  # the service's limit in req/s (inf: none)
    target: str
    passes: Callable[[Scenario, Figures], bool]
    options: tuple[str, ...] = field(default=())

    @property
    def ideal(self) -> float:
        pace = min(self.rate or float("inf"), self.limit)
        return self.lines / pace

    @property
    def time_limit(self) -> float:
        return 2 * self.ideal + 60.0


def _quota(s: Scenario, f: Figures) -> bool:
    # Issue 22: <= 2% of requests answered 429 (issue 9 asked <= 5%).
    return f.goodput >= 0.95 * s.limit and f.share_429 <= 0.02 and f.failed == 0


def _time(ratio: float) -> Callable[[Scenario, Figures], bool]:
    def passes(s: Scenario, f: Figures) -> bool:
        return f.failed == 0 and f.seconds <= ratio * s.ideal
    return passes


def _window(s: Scenario, f: Figures) -> bool:
    return f.goodput >= 0.85 * s.limit and f.failed == 0


def _random(s: Scenario, f: Figures) -> bool:
    return f.goodput >= 0.6 * s.rate and f.failed == 0


def _within(extra: float) -> Callable[[Scenario, Figures], bool]:
    def passes(s: Scenario, f: Figures) -> bool:
        return f.failed == 0 and f.seconds <= s.ideal + extra
    return passes


INF = float("inf")
QUICK = ("quota-rate0", "quota-rate200", "foreign-429")
QUOTA = FaultConfig(seed=1, quota_rate=50, quota_burst=10)
# The quota scenarios run at the default --concurrency (16), as the issue measured them: with
# --rate 0 nothing paces the first volley, so 128 requests in flight against a 10-token burst
# are ~118 429s before any answer can be read, whatever the controller does.
DEFAULT_CONCURRENCY = ("--concurrency", "16")
SCENARIOS = (
    Scenario("quota-rate0", "token-bucket quota 50/s (burst 10), --rate 0", QUOTA, 1000, 0, 50,
             "goodput >= 47.5/s, 429s <= 2%", _quota, DEFAULT_CONCURRENCY),
    Scenario("quota-rate200", "token-bucket quota 50/s (burst 10), --rate 200", QUOTA, 1000,
             200, 50, "goodput >= 47.5/s, 429s <= 2%", _quota, DEFAULT_CONCURRENCY),
    Scenario("window-count-all", "sliding window 20/s counting every arrival, --rate 100",
             FaultConfig(seed=1, throttle_rate=20, throttle_count_all=True), 600, 100, 20,
             "goodput >= 17/s", _window),
    Scenario("random-429", "10% of requests 429 whatever the rate, --rate 100",
             FaultConfig(seed=1, throttle_random=0.1), 2000, 100, INF,
             "goodput >= 60/s", _random),
    # Issue 22: 800 lines, 10% of requests 429 whatever the rate (another client sharing the
    # quota): at most 90 lines/s get through at --rate 100, so the ideal is 800 / 90 = 8.9 s.
    Scenario("foreign-429", "10% of requests 429 whatever the rate, --rate 100",
             FaultConfig(seed=1, throttle_random=0.1), 800, 100, 90,
             "time <= 1.10 x ideal", _time(1.10)),
    Scenario("partial-outage", "30% of requests 503 for 20 s from 5 s, --rate 100",
             FaultConfig(seed=1, outages=(Outage(5, 20, share=0.3),)), 3000, 100, INF,
             "every line succeeds, time <= ideal + 25 s", _within(25)),
    Scenario("outage-503", "every request 503 for 10 s from 10 s, --rate 100",
             FaultConfig(seed=1, outages=(Outage(10, 10),)), 3000, 100, INF,
             "every line succeeds, time <= ideal + 10 + 25 s", _within(35)),
    Scenario("outage-refuse", "connections refused for 10 s from 10 s, --rate 100",
             FaultConfig(seed=1, outages=(Outage(10, 10, OutageKind.REFUSE),)), 3000, 100, INF,
             "every line succeeds, time <= ideal + 10 + 25 s", _within(35)),
    Scenario("outage-close", "connections closed unanswered for 10 s from 10 s, --rate 100",
             FaultConfig(seed=1, outages=(Outage(10, 10, OutageKind.CLOSE),)), 3000, 100, INF,
             "every line succeeds, time <= ideal + 10 + 25 s", _within(35)),
)


def _finished_seconds(stderr: str) -> float | None:
    for line in stderr.splitlines():
        if line.startswith("{") and '"run.finished"' in line:
            event = orjson.loads(line)
            duration = event.get("duration_s")
            if isinstance(duration, int | float):
                return float(duration)
    return None


def _succeeded(out: Path) -> int:
    if not out.exists():
        return 0
    done = set()
    for raw in out.read_bytes().splitlines():
        try:
            record: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:  # a line cut by the kill
            continue
        if isinstance(record, dict) and record.get("status") == "succeeded":
            done.add(record.get("line"))
    return len(done)


def run_once(scenario: Scenario, tmp: Path, index: int) -> Figures:
    source = tmp / f"{scenario.name}.jsonl"
    if not source.exists():
        write_lines(source, scenario.lines)
    out = tmp / f"{scenario.name}-{index}.out.jsonl"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BATCHSMS_", "HUAWEICLOUD_SDK_"))}
    env["BATCHSMS_AUTH_TOKEN"] = "bench-token"
    with simulator_in_thread(scenario.faults, log_size=scenario.lines * 20) as sim:
        command = [sys.executable, "-m", "batchsms", "run", str(source), "--endpoint", sim.url,
                   "--out", str(out), "--log-format", "json", "--no-progress",
                   "--rate", f"{scenario.rate:g}", "--concurrency", str(CONCURRENCY),
                   *scenario.options]
        started = time.perf_counter()
        try:
            proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False,
                                  timeout=scenario.time_limit)
            code: int | None = proc.returncode
            seconds = _finished_seconds(proc.stderr)
        except subprocess.TimeoutExpired:
            code, seconds = None, None
        wall = time.perf_counter() - started
        requests = list(sim.requests)
        if code != 0:  # keep what the run said, to find out why it did not finish
            kept = KEEP / f"{scenario.name}-{index}.stderr"
            KEEP.mkdir(parents=True, exist_ok=True)
            kept.write_text("" if code is None else proc.stderr)
    applied = [r.at for r in requests if r.status == 200 and r.method == "PUT"]
    first = min((r.at for r in requests), default=0.0)
    span = (max(applied) - first) if len(applied) > 1 else 0.0
    return Figures(
        goodput=len(applied) / span if span > 0 else 0.0,
        share_429=sum(r.status == 429 for r in requests) / max(1, len(requests)),
        failed=scenario.lines - _succeeded(out),
        seconds=seconds if seconds is not None else wall,
        exit=code,
    )


def median_figures(runs: Sequence[Figures]) -> Figures:
    """Each figure's median; the exit is the worst one (a kill, else the highest status)."""
    exits = [f.exit for f in runs]
    return Figures(
        goodput=statistics.median(f.goodput for f in runs),
        share_429=statistics.median(f.share_429 for f in runs),
        failed=int(statistics.median(f.failed for f in runs)),
        seconds=statistics.median(f.seconds for f in runs),
        exit=None if None in exits else max(e for e in exits if e is not None),
    )


def describe(f: Figures) -> str:
    exits = "killed" if f.exit is None else f"exit {f.exit}"
    return (f"goodput {f.goodput:6.1f}/s | 429s {f.share_429:6.1%} | failed {f.failed:4d} | "
            f"{f.seconds:6.1f} s | {exits}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario (median) [3]")
    parser.add_argument("--scenario", action="append", default=[], metavar="NAME",
                        choices=[s.name for s in SCENARIOS], help="run only this one (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: the quota and foreign-429 scenarios, one run each on "
                             "a fifth of the lines; figures printed, targets not judged")
    args = parser.parse_args(argv)
    chosen = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    if args.quick:
        args.runs = 1
        chosen = [replace(s, lines=s.lines // 5) for s in chosen
                  if args.scenario or s.name in QUICK]
    if args.list:
        for s in chosen:
            print(f"{s.name:18} {s.what}; {s.lines} lines; target: {s.target}")
        return 0
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for s in chosen:
            print(f"{s.name}: {s.what}, {s.lines} lines, ideal {s.ideal:.1f} s; "
                  f"target: {s.target}", flush=True)
            runs = []
            for i in range(args.runs):
                figures = run_once(s, Path(tmp), i)
                runs.append(figures)
                print(f"  run {i + 1}: {describe(figures)}", flush=True)
            median = median_figures(runs)
            verdict = "PASS" if s.passes(s, median) else "FAIL"
            if args.quick:  # a smoke test: only a run that was killed or crashed fails it
                verdict = "ran" if all(f.exit in (0, 1) for f in runs) else "FAIL"
            failures += verdict == "FAIL"
            print(f"  median: {describe(median)} (worst) | "
                  f"time/ideal {median.seconds / s.ideal:.2f} | {verdict}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
