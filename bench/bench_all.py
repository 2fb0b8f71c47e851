"""Every benchmark figure of the project in one run, for the record in bench/README.md.

    python bench/bench_all.py

Runs bench/bench_pace.py (issue 22's pace goals on the fake-clock service model: quota,
foreign 429s, slow start, both at once; load-free), bench/bench_validate.py (validation
lines/s vs orjson.loads alone, peak RSS at 20k vs 200k lines), bench/bench_run.py (requests/s
vs a bare aiohttp loop and vs the official SDK's client, rate accuracy at --rate 50) and
bench/bench_throttle.py (goodput, 429 share, lines failed and time against every kind of
throttle and outage; PASS/FAIL per scenario) with their
defaults, one after the other, each in its own process so that none's memory or threads disturb
another. A scenario that FAILs does not stop the others; the exit status is 1 if any script
failed. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown cpu")
    print(f"# {platform.node()}: {cpu}, {platform.system()} {platform.release()}, "
          f"python {platform.python_version()}\n")
    failed = 0
    for script in ("bench_pace.py", "bench_validate.py", "bench_run.py", "bench_throttle.py"):
        print(f"## {script}", flush=True)
        if subprocess.call([sys.executable, str(HERE / script)]):
            failed += 1
        print(flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
