"""Instructions per try of `Pace` and its controller alone: the pace's share of the hot path.

    python bench/count_pace.py [--tree DIR]     # DIR: a checkout whose batchsms to count

Under ``valgrind --tool=cachegrind``, a loop offers a try every 5 ms on a fake clock and answers
it OK (`Pace.try_acquire_nowait`, then `on_ok`, or `on_answer` when the bucket held it back) at
``--rate 0`` and at ``--rate 100`` (every other try held back); 12 000 - 2 000 tries cancel
start-up. Load-free: compare two trees with ``--tree``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

LOOP = """
import sys
sys.path.insert(0, sys.argv[1])
from batchsms.engine.feedback import Answer
from batchsms.engine.pace import Pace
tries, rate = int(sys.argv[2]), float(sys.argv[3])
now = [0.0]
pace = Pace(rate, 1.0, clock=lambda: now[0])
for i in range(tries):
    now[0] = i * 0.005
    if pace.try_acquire_nowait():
        pace.on_ok(now[0] - 0.004)
    else:
        pace.on_answer(Answer.OK, sent_at=now[0] - 0.004)
"""


def instructions(tree: Path, tries: int, rate: float) -> int:
    proc = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, "-c", LOOP, str(tree), str(tries), str(rate)],
        capture_output=True, text=True, check=True)
    found = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
    if found is None:
        raise SystemExit(proc.stderr[-2000:])
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    for rate in (0.0, 100.0):
        small, large = instructions(args.tree, 2_000, rate), instructions(args.tree, 12_000, rate)
        print(f"--rate {rate:g}: {(large - small) / 10_000:,.0f} instructions per try + answer")


if __name__ == "__main__":
    main()
