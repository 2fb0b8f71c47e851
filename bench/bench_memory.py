"""Peak memory of `batchsms run --undo-file U --verify --skip-unchanged`, by input size (goal 5).

    python bench/bench_memory.py [--sizes 30000,300000] [--quick]

Those three options keep state per line (the undo side log, the reads before and after each
write), so they are where memory could grow with the input. Each size runs `batchsms run --rate 0
--concurrency 64` on that many `{"speed_limit": N}` lines against one simulator served from a
thread of this process (an open fleet: every task id exists), as a child under
`/usr/bin/time -f %M`; its peak RSS is printed per size, with the difference against issue 22's
target (< 15 MB apart from 30 000 to 300 000 lines). Every line costs three requests (read,
write, read back) or one (read, unchanged: skipped), so 300 000 lines take minutes; each run's
duration is printed. `--quick` (300 and 1 000 lines, ~5 s) is a smoke test: figures printed,
the goal never asserted. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson
from bench_run import TOKEN_ENV
from goals import goal_line, peak_rss_mb

from batchsms.simulator.threaded import simulator_in_thread

RSS_TARGET_MB = 15.0


def write_lines(path: Path, n: int) -> None:
    with path.open("wb") as f:
        for start in range(0, n, 10_000):
            f.write(b"".join(
                orjson.dumps({"task_id": f"ef3b9722-07a0-40ae-{i:012x}",
                              "body": {"speed_limit": 1 + i % 997}}) + b"\n"
                for i in range(start, min(n, start + 10_000))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="30000,300000", help="line counts, comma-separated")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 300 and 1 000 lines, goal not asserted")
    args = parser.parse_args()
    sizes = [300, 1_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BATCHSMS_", "HUAWEICLOUD_SDK_"))} | TOKEN_ENV
    peaks: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        for n in sizes:
            source, base = Path(tmp) / f"in{n}.jsonl", Path(tmp) / f"run{n}"
            write_lines(source, n)
            # A fresh simulator per size: its store grows with the tasks it has seen, and it
            # lives in this process, not in the child measured.
            with simulator_in_thread(log_size=0) as sim:
                started = time.perf_counter()
                peaks[n], err = peak_rss_mb(
                    [sys.executable, "-m", "batchsms", "run", str(source), "--endpoint", sim.url,
                     "--out", f"{base}.out.jsonl", "--undo-file", f"{base}.undo.jsonl",
                     "--verify", "--skip-unchanged", "--rate", "0",
                     "--concurrency", str(args.concurrency), "--log-format", "json",
                     "--no-progress"], env)
                seconds = time.perf_counter() - started
            finished = next((orjson.loads(line) for line in err.splitlines()
                             if line.startswith("{") and '"run.finished"' in line), {})
            print(f"  {n:>7} lines: peak RSS {peaks[n]:6.1f} MB | {seconds:6.1f} s | "
                  f"{finished.get('requests', '?')} requests", flush=True)
    diff = peaks[sizes[-1]] - peaks[sizes[0]]
    met = abs(diff) < RSS_TARGET_MB
    print(f"  difference {diff:+.1f} MB ({sizes[0]} -> {sizes[-1]} lines; "
          f"target < {RSS_TARGET_MB:.0f} MB): {'met' if met else 'MISSED'}")
    print(goal_line("5", f"{peaks[sizes[0]]:.1f} -> {peaks[sizes[-1]]:.1f} MB "
                    f"({diff:+.1f} MB, {sizes[0]} -> {sizes[-1]} lines)",
                    f"< {RSS_TARGET_MB:.0f} MB apart", met))
    return 0 if args.quick or met else 1


if __name__ == "__main__":
    raise SystemExit(main())
