"""`run --metrics-file PATH`: the end of a run, in Prometheus text format, for alerts.

Written once, when the run ends, whatever its exit code (2 included: a run that could not
start is what an exit-code alert is for; its counts are then 0), following node_exporter's
textfile-collector convention: the file should end in `.prom` and sit in the collector's
directory; it is replaced atomically.
`prometheus_client.write_to_textfile` does that: it writes `PATH.<pid>.<thread>` in the same
directory (not a `*.prom` name, so the collector never reads it half-written), renames it over
PATH (atomic on one filesystem) and removes it if anything fails. The file gets the usual
permissions (0666 minus the umask), so a collector running as another user can read it.

Every metric is a gauge describing the last run (a run's counts start from zero), and carries
`batch="<PATH's stem>"`, so several jobs can write their own files into one collector
directory without clashing series:

    batchsms_lines{status}                    lines by outcome status (the four run statuses
                                              are always present, 0 included)
    batchsms_errors{code}                     lines by error_code (SMS.xxxx, timeout, deadline...)
    batchsms_requests                         HTTP requests sent, retries included
    batchsms_http_responses{code}             responses by HTTP status ("200", "429"...)
    batchsms_retries                          retries (attempts after a line's first)
    batchsms_run_duration_seconds             wall time of the run
    batchsms_run_exit_code                    the run's exit code (docs/reference.md §7)
    batchsms_last_run_timestamp_seconds       when the run ended (Unix time)
    batchsms_last_success_timestamp_seconds   when a run last exited 0: this run, else the
                                              value read back from the previous file, else 0

So "no successful run in 48 hours" is
`time() - batchsms_last_success_timestamp_seconds > 172800`, and it keeps working across failed
nights; it fires for a job that never succeeded (0), and with `absent()` for one that never ran.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from batchsms.engine.stats import RunStats
from batchsms.errors import UsageError
from batchsms.journal.outcomes import Status

LAST_SUCCESS = "batchsms_last_success_timestamp_seconds"
_RUN_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.INVALID, Status.SKIPPED)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Gauge

# prometheus_client is imported where a metrics file is read or written, not with this module:
# most runs have no --metrics-file, and a run's start-up pays for every import (cron, tests).


def previous_last_success(path: Path) -> float | None:
    """The last-success time in an earlier metrics file; None if absent or unreadable."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = path.read_text(encoding="utf-8")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS and math.isfinite(sample.value) \
                        and sample.value > 0:
                    return float(sample.value)
    except (OSError, UnicodeDecodeError, ValueError):
        return None  # a missing or mangled file only means nothing to carry over
    return None


def build_registry(batch: str, stats: RunStats, exit_code: int, now: float,
                   last_success: float | None) -> CollectorRegistry:
    """The run's metrics, in a registry of their own (never the process-global one)."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()

    def gauge(name: str, doc: str, *labels: str) -> Gauge:
        return Gauge(name, doc, ["batch", *labels], registry=registry)

    lines = gauge("batchsms_lines", "Input lines of the last run by outcome status", "status")
    for status in _RUN_STATUSES:
        lines.labels(batch, status.value).set(0)
    for status_name, n in stats.by_status.items():
        lines.labels(batch, status_name).set(n)
    errors = gauge("batchsms_errors", "Lines of the last run by error_code", "code")
    for code, n in stats.by_error.items():
        errors.labels(batch, code).set(n)
    responses = gauge("batchsms_http_responses", "HTTP responses of the last run by status",
                      "code")
    for http, n in sorted(stats.by_http.items()):
        responses.labels(batch, str(http)).set(n)
    for name, doc, value in (
        ("batchsms_requests", "HTTP requests sent by the last run, retries included",
         stats.requests),
        ("batchsms_retries", "Retries made by the last run", stats.retries),
        ("batchsms_run_duration_seconds", "Duration of the last run", stats.duration),
        ("batchsms_run_exit_code", "Exit code of the last run", exit_code),
        ("batchsms_last_run_timestamp_seconds", "When the last run ended (Unix time)", now),
        (LAST_SUCCESS, "When a run last exited 0 (Unix time), 0 if none is known",
         now if exit_code == 0 else last_success or 0.0),
    ):
        gauge(name, doc).labels(batch).set(value)
    return registry


def write_metrics(path: Path, stats: RunStats, exit_code: int, now: float) -> None:
    """Replace `path` atomically with the metrics of a run that ended at `now` (Unix time).

    Raises `UsageError` if it cannot be written; the caller decides what that does to the run.
    """
    from prometheus_client import write_to_textfile

    last_success = None if exit_code == 0 else previous_last_success(path)
    registry = build_registry(path.stem, stats, exit_code, now, last_success)
    try:
        write_to_textfile(str(path), registry)
    except OSError as exc:
        raise UsageError(f"cannot write --metrics-file {str(path)!r}: "
                         f"{exc.strerror or exc}") from exc
