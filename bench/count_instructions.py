"""Instructions per request of `batchsms run` and of the bare aiohttp loop: a load-free figure.

    python bench/count_instructions.py [--small 2000] [--large 7000] [--concurrency 64] [--aksk]

Wall-clock ratios mean little on a loaded machine; instruction counts do not move with the load.
Each client (`batchsms run --rate 0`, and bench/bare_loop.py) runs under
`valgrind --tool=cachegrind --cache-sim=no` at two sizes against one simulator served from this
process; (large - small) / (large - small lines) cancels start-up. The ratio bare/run stands in
for the throughput ratio when the client's core is the bottleneck (issue 9 wants >= 0.8; issue 22
>= 0.95). With `--aksk` both sides sign every request (bare_loop.py's `aksk` mode, batchsms's
own Signer), as bench_run.py's goal 3b compares them.
The four clients run at once; expect a few minutes (valgrind runs Python ~50x slower).
Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_run import AKSK_ENV, HERE, TOKEN_ENV, write_lines

from batchsms.simulator.threaded import simulator_in_thread

VALGRIND = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([*VALGRIND, sys.executable, *args], env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def instructions(proc: subprocess.Popen[str]) -> int:
    _, err = proc.communicate()
    found = re.search(r"I\s+refs:\s+([\d,]+)", err)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"client failed (exit {proc.returncode}): {err[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2_000)
    parser.add_argument("--large", type=int, default=7_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--aksk", action="store_true", help="both sides sign with AK/SK")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BATCHSMS_", "HUAWEICLOUD_SDK_"))} | (
               AKSK_ENV if args.aksk else TOKEN_ENV)
    with tempfile.TemporaryDirectory() as tmp, simulator_in_thread(log_size=0) as sim:
        procs = {}
        for n in (args.small, args.large):
            source = Path(tmp) / f"in{n}.jsonl"
            write_lines(source, n)
            procs["run", n] = start(
                ["-m", "batchsms", "run", str(source), "--endpoint", sim.url, "--out",
                 str(Path(tmp) / f"out{n}.jsonl"), "--log-format", "json", "--no-progress",
                 "--rate", "0", "--concurrency", str(args.concurrency)], env)
            procs["bare", n] = start([str(HERE / "bare_loop.py"), sim.url, str(n),
                                      str(args.concurrency), "aksk" if args.aksk else "token"])
        counts = {key: instructions(proc) for key, proc in procs.items()}
    extra = args.large - args.small
    per = {what: (counts[what, args.large] - counts[what, args.small]) / extra
           for what in ("run", "bare")}
    auth = "AK/SK" if args.aksk else "token"
    print(f"instructions/request ({auth}): batchsms run {per['run']:,.0f} | bare aiohttp loop "
          f"{per['bare']:,.0f} | ratio bare/run {per['bare'] / per['run']:.3f}")


if __name__ == "__main__":
    main()
