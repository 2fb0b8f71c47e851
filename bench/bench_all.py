"""Every benchmark figure of the project in one run, for the record in bench/README.md.

    python bench/bench_all.py

Runs bench/bench_validate.py (validation lines/s vs orjson.loads alone, peak RSS at 20k vs
200k lines) and bench/bench_run.py (requests/s vs a bare aiohttp loop and vs the official SDK's
client, rate accuracy at --rate 50) with their defaults, one after the other, each in its own
process so that neither's memory or threads disturb the other. Only 127.0.0.1 is used.
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
    for script in ("bench_validate.py", "bench_run.py"):
        print(f"## {script}", flush=True)
        code = subprocess.call([sys.executable, str(HERE / script)])
        if code:
            return code
        print(flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
