"""Issue 22's pace figures on the fake-clock service model: load-free, deterministic, seconds.

    python bench/bench_pace.py [--quick]

Drives the real `Pace` (controller, bucket, retry budget, outage guard) through
``tests/pace_model.py``'s discrete-event loop against scripted services, so the figures do not
move with the machine's load (the wall-clock twin is ``bench_throttle.py``; the model's services
answer in 10 ms, admission's slow start included). Each figure is the median over seeds 1-5
(1-2 with ``--quick``), printed beside its goal; the whole takes about a second:

1. quota 50/s (10-token burst, 16 in flight) at ``--rate 0`` and ``--rate 200``: goodput
   >= 0.95 Q with <= 2% of requests answered 429;
2. 10% rate-independent ("foreign") 429s at ``--rate 100``: done within 1.10x the ideal time
   (lines / 90 per second);
and two that show the classification at work: foreign 429s during a slow start held at ~3/s
(the 200-line run that took minutes), and the quota with 10% foreign 429s on top.

``--quick`` is CI's smoke test: two seeds, every figure printed, and the exit
status says only whether the model ran (goals are reported, never asserted). Without it, the
exit status is 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.pace_model

from goals import goal_line

from tests.pace_model import Foreign, QuotaBucket, Random429, Result, Service, drive


@dataclass(frozen=True, slots=True)
class Case:
    """One scripted service and client, what to print of the runs, and the goal."""

    name: str
    service: Callable[[int], Service]  # seed -> a fresh service
    rate: float
    lines: int
    goal: str
    figures: Callable[[Case, Sequence[Result]], tuple[str, bool]]
    slow_start: float = 0.0
    issue_goal: str = ""  # issue 22's goal it stands for (goals.goal_line), if any


def _quota(case: Case, runs: Sequence[Result]) -> tuple[str, bool]:
    goodput = statistics.median(r.goodput for r in runs)
    share = statistics.median(r.throttled_share for r in runs)
    failed = max(r.failed for r in runs)
    text = f"goodput {goodput:5.1f}/s ({goodput / 50:.2f} Q) | 429s {share:5.1%} | failed {failed}"
    return text, goodput >= 0.95 * 50 and share <= 0.02 and failed == 0


def _ideal(case: Case, lines: int) -> float:
    return lines / (case.rate * 0.9)


def _foreign(case: Case, runs: Sequence[Result]) -> tuple[str, bool]:
    ratio = statistics.median(r.elapsed / _ideal(case, r.lines) for r in runs)
    worst = max(r.elapsed / _ideal(case, r.lines) for r in runs)
    elapsed = statistics.median(r.elapsed for r in runs)
    learnt = statistics.median(r.base_share for r in runs)
    text = (f"{elapsed:5.2f} s | time/ideal {ratio:.3f} (worst {worst:.3f}) | "
            f"429s {statistics.median(r.throttled_share for r in runs):5.1%} | "
            f"learnt not-ours {learnt:.3f}")
    return text, ratio <= 1.10


def _slow_start(case: Case, runs: Sequence[Result]) -> tuple[str, bool]:
    elapsed = statistics.median(r.elapsed for r in runs)
    # ~24 lines in the 8 s held at ~3/s, the rest at 90/s.
    ideal = case.slow_start + (runs[0].lines - 24) / 90
    return f"{elapsed:5.1f} s (ideal ~{ideal:.0f} s; was 70-95 s)", elapsed <= 1.6 * ideal


def _both(case: Case, runs: Sequence[Result]) -> tuple[str, bool]:
    text, _ = _quota(case, runs)
    learnt = statistics.median(r.base_share for r in runs)
    goodput = statistics.median(r.goodput for r in runs)
    return f"{text} | learnt not-ours {learnt:.3f}", goodput >= 0.95 * 50


CASES = (
    Case("quota-rate0", lambda seed: QuotaBucket(50, 10), 0.0, 1000,
         "goodput >= 0.95 Q, 429s <= 2%", _quota, issue_goal="1a"),
    Case("quota-rate200", lambda seed: QuotaBucket(50, 10), 200.0, 1000,
         "goodput >= 0.95 Q, 429s <= 2%", _quota, issue_goal="1b"),
    Case("foreign-rate100", lambda seed: Random429(0.1, random.Random(seed)), 100.0, 800,
         "time <= 1.10 x ideal (lines / 90/s)", _foreign, issue_goal="2"),
    Case("foreign-slow-start", lambda seed: Random429(0.1, random.Random(seed)), 100.0, 200,
         "not pinned: time <= 1.6 x ideal", _slow_start, slow_start=8.0),
    Case("quota+foreign-rate200",
         lambda seed: Foreign(QuotaBucket(50, 10), 0.1, random.Random(seed)), 200.0, 1500,
         "goodput >= 0.95 Q (429s >= 10% unavoidable)", _both),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="CI smoke test: two seeds, goals not asserted")
    args = parser.parse_args(argv)
    seeds = (1, 2) if args.quick else (1, 2, 3, 4, 5)
    missed = 0
    goals: list[str] = []
    for case in CASES:
        lines = case.lines
        started = time.perf_counter()
        runs = [drive(case.service(seed), rate=case.rate, lines=lines, seed=seed,
                      slow_start=case.slow_start) for seed in seeds]
        text, met = case.figures(case, runs)
        missed += not met
        print(f"{case.name:22} {lines:5d} lines, --rate {case.rate:g}, seeds {len(seeds)}: "
              f"{text} | goal: {case.goal}: {'met' if met else 'MISSED'} "
              f"[{time.perf_counter() - started:.1f} s]", flush=True)
        if case.issue_goal:
            goals.append(goal_line(case.issue_goal,
                                   f"{case.name}: {text} (model, median of {len(seeds)} seeds)",
                                   case.goal, met))
    print("\n".join(goals))
    return 0 if args.quick or not missed else 1


if __name__ == "__main__":
    raise SystemExit(main())
