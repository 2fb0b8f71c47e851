"""Issue 22's five goals as every bench script prints them, and as bench_all.py collects them.

A goal's figure is printed on one line of its own, `GOAL <id> | <figure> | <target> | met`
(or `MISSED`), beside the script's fuller output; bench_all.py reads those lines back from each
script's output to print the closing table. Also the one way a child's peak RSS is taken.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

PREFIX = "GOAL "


def goal_line(goal: str, figure: str, target: str, met: bool) -> str:
    """The line bench_all.py collects; `goal` is the issue's number with a letter per part."""
    return f"{PREFIX}{goal} | {figure} | {target} | {'met' if met else 'MISSED'}"


def parse_goal(line: str) -> tuple[str, str, str, str] | None:
    """(goal, figure, target, verdict) of a goal line, else None."""
    if not line.startswith(PREFIX):
        return None
    # The figure may hold " | " itself; the id, the target and the verdict never do.
    head, sep, rest = line[len(PREFIX):].partition(" | ")
    parts = rest.rsplit(" | ", 2)
    if not sep or len(parts) != 3:
        return None
    return head.strip(), parts[0].strip(), parts[1].strip(), parts[2].strip()


def peak_rss_mb(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Peak RSS of one child running `cmd`, in MB, and its stderr.

    Measured by `/usr/bin/time -f %M` when it exists: a child forked straight from a large
    process would report that process's RSS as its own peak, since Linux carries the high-water
    mark across fork and exec. Without it, `os.wait4` on a direct child is the fallback.
    """
    timer = Path("/usr/bin/time")
    if timer.exists():
        proc = subprocess.run([str(timer), "-f", "peak_kib=%M", *cmd], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, check=False, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
        err, _, peak = proc.stderr.rpartition("peak_kib=")
        return int(peak) / 1024, err
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=env)
    assert child.stderr is not None
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {child.returncode}: {err[-2000:]}")
    return usage.ru_maxrss / 1024, err
