"""`report`'s text output: the `--json` object, for people, one line at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def format_text(report: dict[str, Any]) -> Iterator[str]:
    """The report for people, one line at a time."""
    cut, runs, records = report["cut_lines"], report["runs"], report["records"]
    yield (f"{', '.join(report['files'])}: {records} record{'s' * (records != 1)}, "
           f"{runs} run{'s' * (runs != 1)}, {cut} cut line{'s' * (cut != 1)} skipped")
    statuses = ", ".join(f"{n} {s}" for s, n in report["by_status"].items())
    no_record = f"; {report['no_record']} with no record" if report["no_record"] else ""
    yield f"{report['lines']} lines (latest record each): {statuses}{no_record}"
    yield f"done: {report['done']}, not done: {report['not_done']}"
    if report["by_error_code"]:
        yield "error codes:"
        yield from (f"  {n:>8}  {code}" for code, n in report["by_error_code"].items())
    lat = report["latency_ms"]
    if lat["lines"]:
        yield (f"latency of {lat['lines']} lines sent (ms): p50 {lat['p50']}, p90 {lat['p90']}, "
               f"p99 {lat['p99']}, max {lat['max']}")
    yield "attempts (attempts: lines): " + ", ".join(
        f"{k}: {v}" for k, v in report["attempts"].items())
    if report["slowest"]:
        yield "slowest:"
        yield from (f"  line {s['line']}  {s['task_id']}  {s['elapsed_ms']} ms  ({s['status']}, "
                    f"{s['attempts']} attempts)" for s in report["slowest"])
    if report["top_failures"]:
        yield "most common failures (by error code, with an example):"
        yield from (f"  {f['count']:>8}  {f['error_code']}  e.g. line {f['example_line']}: "
                    f"{f['error_msg']}" for f in report["top_failures"])
