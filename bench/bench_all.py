"""Every benchmark figure of the project in one run, for the record in bench/README.md.

    python bench/bench_all.py            # ~45 minutes (the 300 000-line memory run, the throttles)
    python bench/bench_all.py --quick    # each script's smoke test, ~1 minute, nothing asserted

Runs, each in its own process so that none's memory or threads disturb another:
bench/bench_pace.py (issue 22's goals 1-2 on the fake-clock service model: quota, foreign 429s,
slow start, both at once; load-free), bench/bench_validate.py (goal 4: validation lines/s vs
orjson.loads on the inputs/ lines; issue 2's figures: small and nested lines, peak RSS of
`validate` at 20k vs 200k lines), bench/bench_run.py (goal 3: requests/s vs a bare aiohttp loop,
token and AK/SK, median of 5 alternating runs; vs the official SDK's client; rate accuracy at
--rate 50), bench/bench_memory.py (goal 5: peak RSS of `run --undo-file --verify
--skip-unchanged` at 30 000 vs 300 000 lines) and bench/bench_throttle.py (goodput, 429 share,
lines failed and time against every kind of throttle and outage; PASS/FAIL per scenario).

Each script prints its goals on `GOAL ...` lines (goals.py); the closing table gathers them:
figure, goal, met or missed. A script that fails does not stop the others; the exit status is 1
if any script failed or a goal was missed (never with --quick). Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from pathlib import Path

from goals import parse_goal

HERE = Path(__file__).resolve().parent
SCRIPTS = ("bench_pace.py", "bench_validate.py", "bench_run.py", "bench_memory.py",
           "bench_throttle.py")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every script's --quick")
    parser.add_argument("--only", action="append", choices=SCRIPTS, help="run these alone")
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown cpu")
    print(f"# {platform.node()}: {cpu}, {platform.system()} {platform.release()}, "
          f"python {platform.python_version()}\n")
    failed = 0
    goals: list[tuple[str, str, str, str]] = []
    for script in args.only or SCRIPTS:
        print(f"## {script}", flush=True)
        with subprocess.Popen([sys.executable, str(HERE / script),
                               *(["--quick"] if args.quick else [])],
                              stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                print(line, end="", flush=True)
                if (goal := parse_goal(line.rstrip("\n"))) is not None:
                    goals.append(goal)
        failed += proc.returncode != 0
        print(flush=True)
    print("## issue 22's goals\n")
    if args.quick:
        print("(--quick: one short run each; the verdicts below are not the goals' verdicts)\n")
    print("| goal | figure | target | |\n| --- | --- | --- | --- |")
    for goal, figure, target, verdict in sorted(goals):
        print(f"| {goal} | {figure.replace(' | ', '; ')} | {target} | {verdict} |")
    return 1 if failed and not args.quick else 0


if __name__ == "__main__":
    raise SystemExit(main())
