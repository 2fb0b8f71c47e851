"""The engine's own cost per line: `Pipeline` + `Sender` driven by an instant fake client.

    python bench/bench_engine.py [--lines 20000] [--repeat 5]

No sockets: every request is answered 200 after one checkpoint, so what is measured is what
`run` adds around aiohttp (reading and planning the line, admission, pace, budget, outage guard,
the outcome record and its write). Prints the CPU time per line (`time.process_time`, best and
median of ``--repeat``), which a loaded machine disturbs far less than wall time.

For a figure that does not depend on the load at all, count instructions with valgrind over two
input sizes and divide the difference by the extra lines (start-up cancels out):

    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
        python bench/bench_engine.py --lines 2000 --repeat 1      # then --lines 7000

The engine before issue 9 (3496f71) has another API; `--old` drives that one
(`PYTHONPATH=<a checkout of 3496f71> python bench/bench_engine.py --old`).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import orjson
import structlog

from batchsms.journal.outcomes import OutcomeWriter
from batchsms.lines.bodies import checked_lines
from batchsms.transport.client import Reply

OK = Reply(200, "req-1", None, None, None, b"{}")
CONCURRENCY = 64


class InstantClient:
    """Answers every request 200 after one checkpoint (a request is always one await)."""

    async def request(self, method: str, path: str, body: bytes = b"",
                      query: Sequence[tuple[str, str]] = ()) -> Reply:
        await anyio.lowlevel.checkpoint()
        return OK

    async def put_task(self, task_id: str, body: bytes) -> Reply:  # the old engine's call
        await anyio.lowlevel.checkpoint()
        return OK

    async def abort_in_flight(self) -> None:
        pass


def write_lines(path: Path, n: int) -> None:
    with path.open("wb") as f:
        for i in range(n):
            f.write(orjson.dumps({"task_id": f"bench-{i}", "body": {"speed_limit": i % 1001}})
                    + b"\n")


async def one_run(source: Path, out: Path, old: bool) -> float:
    writer = OutcomeWriter(out)
    lines = checked_lines(str(source), {})
    pipeline: Any
    if old:
        old_pipeline = importlib.import_module("batchsms.pipeline")  # not in this tree
        old_limiter = importlib.import_module("batchsms.engine.bucket")
        from batchsms.engine.retry import RetryPolicy
        pipeline = old_pipeline.Pipeline(
            run_id="bench", client=InstantClient(), limiter=old_limiter.RateLimiter(0, 1),
            policy=RetryPolicy(), writer=writer,
            options=old_pipeline.SendOptions(concurrency=CONCURRENCY))
        started = time.process_time()
        await pipeline.run(lines)
    else:
        from batchsms.engine.build import EngineSettings, build_sender
        from batchsms.engine.feed import line_source
        from batchsms.engine.pipeline import Pipeline as NewPipeline
        from batchsms.engine.pipeline import SendOptions as NewOptions
        sender = build_sender(InstantClient(), EngineSettings(concurrency=CONCURRENCY, rate=0))
        pipeline = NewPipeline(run_id="bench", sender=sender, writer=writer,
                               options=NewOptions(concurrency=CONCURRENCY))
        started = time.process_time()
        await pipeline.run(line_source(str(source), lines))
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--old", action="store_true", help="drive the engine of 3496f71")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "lines.jsonl"
        write_lines(source, args.lines)
        options = {"use_uvloop": True} if importlib.util.find_spec("uvloop") else {}
        per_line = sorted(
            anyio.run(one_run, source, Path(tmp) / f"out{i}.jsonl", args.old,
                      backend_options=options) / args.lines * 1e6
            for i in range(args.repeat))
    print(f"engine CPU per line ({args.lines} lines, --concurrency {CONCURRENCY}, instant "
          f"client): best {per_line[0]:.1f} us, median {statistics.median(per_line):.1f} us")


if __name__ == "__main__":
    main()
