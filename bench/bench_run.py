"""Benchmark `batchsms run` against the simulator; prints figures to compare across commits.

    python bench/bench_run.py [--lines 20000] [--concurrency 64] [--rate-lines 400]

1. requests/s of `batchsms run --rate 0 --concurrency C` beside a bare aiohttp loop
   (bench/bare_loop.py: same server, same concurrency, no validation, retries or outcome file),
   both as client subprocesses against one simulator served from this process;
2. requests/s of `batchsms run` with AK/SK signing beside the official SDK's own client
   (bench/sdk_loop.py: `SmsClient.update_task` from C threads, also AK/SK-signed);
3. rate accuracy at `--rate 50`: the most requests the server saw in any 1 s window
   (the bound is rate*t + burst = 51);
3. the client's peak RSS for the run.

Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import bisect
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from batchsms.simulator.threaded import simulator_in_thread

HERE = Path(__file__).resolve().parent


def write_lines(path: Path, n: int) -> None:
    with path.open("wb") as f:
        for i in range(n):
            f.write(orjson.dumps({"task_id": f"bench-{i}", "body": {"speed_limit": i % 1001}})
                    + b"\n")


TOKEN_ENV = {"BATCHSMS_AUTH_TOKEN": "bench-token"}
AKSK_ENV = {"HUAWEICLOUD_SDK_AK": "BENCHAK", "HUAWEICLOUD_SDK_SK": "bench-sk",
            "HUAWEICLOUD_SDK_PROJECT_ID": "0" * 32}


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


def baseline(script: str, url: str, n: int, concurrency: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(HERE / script), url, str(n), str(concurrency)],
        capture_output=True, text=True, check=True)
    result: dict[str, Any] = orjson.loads(proc.stdout)
    return result


def max_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)),
               default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate-lines", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--sdk-lines", type=int, default=5_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "lines.jsonl"
        write_lines(source, args.lines)
        with simulator_in_thread(log_size=0) as sim:
            for i in range(args.repeat):
                bare = baseline("bare_loop.py", sim.url, args.lines, args.concurrency)
                ours = run_batchsms(sim.url, source, Path(tmp) / f"out{i}.jsonl", "--rate", "0",
                                    "--concurrency", str(args.concurrency))
                print(f"run {i + 1}: bare aiohttp loop {bare['requests_per_s']:8.0f} req/s | "
                      f"batchsms run {ours['requests_per_s']:8.0f} req/s "
                      f"({ours['requests']} requests, exit {ours['exit']}) | "
                      f"ratio {ours['requests_per_s'] / bare['requests_per_s']:.2f} | "
                      f"client peak RSS {ours['peak_rss_mb']:.0f} MB")
            sdk_lines = min(args.lines, args.sdk_lines)
            sdk_source = Path(tmp) / "sdk.jsonl"
            write_lines(sdk_source, sdk_lines)
            sdk = baseline("sdk_loop.py", sim.url, sdk_lines, args.concurrency)
            signed = run_batchsms(sim.url, sdk_source, Path(tmp) / "signed.jsonl", "--rate", "0",
                                  "--concurrency", str(args.concurrency), credentials=AKSK_ENV)
            print(f"AK/SK-signed, {sdk_lines} requests: official SDK client "
                  f"({args.concurrency} threads) {sdk['requests_per_s']:8.0f} req/s | "
                  f"batchsms run {signed['requests_per_s']:8.0f} req/s (exit {signed['exit']}) | "
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


if __name__ == "__main__":
    main()
