"""Benchmark `batchsms run` against the simulator; prints figures to compare across commits.

    python bench/bench_run.py [--runs 5] [--lines 20000] [--concurrency 64] [--rate-lines 400]
    python bench/bench_run.py --quick      # smoke test, ~6 s: goals printed, never asserted

1. issue 22's goal 3, token: requests/s of `batchsms run --rate 0 --concurrency C` beside a bare
   aiohttp loop (bench/bare_loop.py: same server, same concurrency, no validation, retries or
   outcome file): >= 0.95x;
2. goal 3, AK/SK: the same with AK/SK signing on both sides (`bare_loop.py ... aksk` signs each
   request with batchsms's own `Signer`): >= 0.9x;
   each of the `--runs` runs (default 5) takes the four figures one after the other, alternating
   which side goes first, so that both sides of a ratio share the minute's load; the goal is
   judged on the median of the runs' ratios;
3. requests/s of AK/SK-signed `batchsms run` beside the official SDK's own client
   (bench/sdk_loop.py: `SmsClient.update_task` from C threads), once (`--sdk-lines 0`: skipped);
4. rate accuracy at `--rate 50`: the most requests the server saw in any 1 s window
   (the bound is rate*t + burst = 51);
5. the client's peak RSS for the run.

All clients are subprocesses against one simulator served from a thread of this process.
Exit status 1 when a goal is missed (never with --quick). Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import bisect
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from bare_loop import BENCH_AK, BENCH_PROJECT, BENCH_SK
from goals import goal_line

from batchsms.simulator.threaded import simulator_in_thread

HERE = Path(__file__).resolve().parent


def write_lines(path: Path, n: int) -> None:
    with path.open("wb") as f:
        for i in range(n):
            f.write(orjson.dumps({"task_id": f"bench-{i}", "body": {"speed_limit": i % 1001}})
                    + b"\n")


TOKEN_ENV = {"BATCHSMS_AUTH_TOKEN": "bench-token"}
AKSK_ENV = {"HUAWEICLOUD_SDK_AK": BENCH_AK, "HUAWEICLOUD_SDK_SK": BENCH_SK,
            "HUAWEICLOUD_SDK_PROJECT_ID": BENCH_PROJECT}
TOKEN_TARGET, AKSK_TARGET = 0.95, 0.90  # issue 22, goal 3


def run_batchsms(url: str, source: Path, out: Path, *options: str,
                 credentials: dict[str, str] = TOKEN_ENV) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BATCHSMS_", "HUAWEICLOUD_SDK_"))} | credentials
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "batchsms", "run", str(source), "--endpoint", url, "--out",
         str(out), "--log-format", "json", "--no-progress", *options],
        env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    finished = next(orjson.loads(line) for line in proc.stderr.splitlines()
                    if line.startswith("{") and '"run.finished"' in line)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"exit": proc.returncode, "requests": finished["requests"],
            "seconds": finished["duration_s"], "wall": wall,
            "requests_per_s": finished["requests"] / finished["duration_s"],
            "peak_rss_mb": max(peak, before) / 1024}


def baseline(script: str, url: str, n: int, concurrency: int, *extra: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(HERE / script), url, str(n), str(concurrency), *extra],
        capture_output=True, text=True, check=True)
    result: dict[str, Any] = orjson.loads(proc.stdout)
    return result


def max_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)),
               default=0)


def pair(url: str, source: Path, out: Path, concurrency: int, *, aksk: bool,
         bare_first: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(bare loop, batchsms run) one right after the other, in the order asked."""
    n = sum(1 for _ in source.open("rb"))

    def bare() -> dict[str, Any]:
        return baseline("bare_loop.py", url, n, concurrency, "aksk" if aksk else "token")

    def ours() -> dict[str, Any]:
        out.unlink(missing_ok=True)
        return run_batchsms(url, source, out, "--rate", "0", "--concurrency", str(concurrency),
                            credentials=AKSK_ENV if aksk else TOKEN_ENV)

    if bare_first:
        first = bare()
        return first, ours()
    second = ours()
    return bare(), second


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="alternating runs (median of ratios)")
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate-lines", type=int, default=400)
    parser.add_argument("--sdk-lines", type=int, default=5_000, help="0: no SDK comparison")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 1 run of 500 lines, no SDK, 30 rate lines")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.lines, args.sdk_lines, args.rate_lines = 1, 500, 0, 30

    ratios: dict[str, list[float]] = {"token": [], "aksk": []}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "lines.jsonl"
        write_lines(source, args.lines)
        with simulator_in_thread(log_size=0) as sim:
            for i in range(args.runs):
                for kind in ("token", "aksk"):
                    bare, ours = pair(sim.url, source, Path(tmp) / "out.jsonl", args.concurrency,
                                      aksk=kind == "aksk", bare_first=i % 2 == 0)
                    ratio = ours["requests_per_s"] / bare["requests_per_s"]
                    ratios[kind].append(ratio)
                    print(f"run {i + 1} {kind:5}: bare aiohttp loop {bare['requests_per_s']:7.0f}"
                          f" req/s | batchsms run {ours['requests_per_s']:7.0f} req/s "
                          f"({ours['requests']} requests, exit {ours['exit']}) | "
                          f"ratio {ratio:.3f} | client peak RSS {ours['peak_rss_mb']:.0f} MB",
                          flush=True)
            if args.sdk_lines:
                sdk_lines = min(args.lines, args.sdk_lines)
                sdk_source = Path(tmp) / "sdk.jsonl"
                write_lines(sdk_source, sdk_lines)
                sdk = baseline("sdk_loop.py", sim.url, sdk_lines, args.concurrency)
                signed = run_batchsms(sim.url, sdk_source, Path(tmp) / "signed.jsonl", "--rate",
                                      "0", "--concurrency", str(args.concurrency),
                                      credentials=AKSK_ENV)
                print(f"AK/SK-signed, {sdk_lines} requests: official SDK client "
                      f"({args.concurrency} threads) {sdk['requests_per_s']:8.0f} req/s | "
                      f"batchsms run {signed['requests_per_s']:8.0f} req/s "
                      f"(exit {signed['exit']}) | "
                      f"ratio {signed['requests_per_s'] / sdk['requests_per_s']:.2f}")
        rate_source = Path(tmp) / "rate.jsonl"
        write_lines(rate_source, args.rate_lines)
        with simulator_in_thread(log_size=args.rate_lines * 2) as sim:
            result = run_batchsms(sim.url, rate_source, Path(tmp) / "rate-out.jsonl",
                                  "--rate", "50", "--burst", "1", "--concurrency", "16")
            times = [r.at for r in sim.requests]
            print(f"rate accuracy at --rate 50 --burst 1: {len(times)} requests in "
                  f"{result['seconds']:.2f} s = {len(times) / result['seconds']:.1f} req/s; "
                  f"most in any 1 s window: {max_in_window(times)} (bound 51)")
    missed = 0
    for kind, goal, target in (("token", "3a", TOKEN_TARGET), ("aksk", "3b", AKSK_TARGET)):
        median = statistics.median(ratios[kind])
        met = median >= target
        missed += not met
        label = "token auth" if kind == "token" else "AK/SK, both signing"
        runs = ", ".join(f"{r:.2f}" for r in ratios[kind])
        print(goal_line(goal, f"{median:.3f}x the bare loop ({label}, c={args.concurrency}, "
                        f"median of {len(ratios[kind])}: {runs})", f">= {target:.2f}x", met))
    return 0 if args.quick or not missed else 1


if __name__ == "__main__":
    raise SystemExit(main())
