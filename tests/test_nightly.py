"""Nightly-run features end to end: progress bar only on a terminal, metrics file, deadline.
The bar is drawn by a child whose stderr is a pseudo-terminal; the rest runs in this process
(`here`: its stderr is captured, not a terminal, as a child's piped stderr)."""

from __future__ import annotations

import os
import pty
import select
from datetime import UTC
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import Here, start_batchsms

ROOT = Path(__file__).resolve().parent.parent
FLEET = ROOT / "inputs" / "speed_limit_fleet.jsonl"


def test_no_progress_output_when_stderr_is_not_a_terminal(tmp_path: Path, here: Here) -> None:
    result = here("run", str(FLEET), "--simulate", "--rate", "0",
                  "--out", str(tmp_path / "o.jsonl"), "--log-format", "json")
    assert result.returncode == 0, result.stderr
    assert "━" not in result.stderr
    assert "\r" not in result.stderr
    for line in result.stderr.splitlines():  # only JSON log events and the summary
        assert line.startswith(("{", " ")) or line[0].isdigit(), line


def run_on_terminal(tmp_path: Path, *extra: str) -> bytes:
    """Run the sample fleet with stderr on a pseudo-terminal; return what was drawn there."""
    leader, follower = pty.openpty()
    proc = start_batchsms("run", str(FLEET), "--simulate", "--rate", "0",
                          "--out", str(tmp_path / "o.jsonl"), "--log-format", "json", *extra,
                          env={"COLUMNS": "120"}, stderr=follower)
    os.close(follower)
    seen = b""
    while select.select([leader], [], [], 30)[0]:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(30) == 0
    return seen


def test_progress_bar_is_drawn_on_a_terminal(tmp_path: Path) -> None:
    text = run_on_terminal(tmp_path).decode(errors="replace")
    assert "50/50" in text
    assert "0 failed" in text


def test_no_progress_flag_silences_the_bar_on_a_terminal(tmp_path: Path) -> None:
    assert b"50/50" not in run_on_terminal(tmp_path, "--no-progress")


def test_metrics_file_written_and_parsed_back(tmp_path: Path, here: Here) -> None:
    metrics = tmp_path / "batchsms.prom"
    source = tmp_path / "in.jsonl"
    source.write_bytes(FLEET.read_bytes() + b'{"task_id": "x", "body": {"speedlimit": 1}}\n')
    result = here("run", str(source), "--simulate", "--rate", "0",
                  "--out", str(tmp_path / "o.jsonl"), "--metrics-file", str(metrics),
                  "--log-format", "json")
    assert result.returncode == 1
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(metrics.read_text())
               for s in family.samples}
    batch = ("batch", "batchsms")
    assert samples[("batchsms_lines", (batch, ("status", "succeeded")))] == 50
    assert samples[("batchsms_lines", (batch, ("status", "invalid")))] == 1
    assert samples[("batchsms_requests", (batch,))] == 50
    assert samples[("batchsms_http_responses", (batch, ("code", "200")))] == 50
    assert samples[("batchsms_run_exit_code", (batch,))] == 1
    assert samples[("batchsms_last_success_timestamp_seconds", (batch,))] == 0
    assert samples[("batchsms_last_run_timestamp_seconds", (batch,))] > 1.7e9
    records = [orjson.loads(line) for line in (tmp_path / "o.jsonl").read_bytes().splitlines()]
    assert len(records) == 51


def test_deadline_forms() -> None:
    from datetime import datetime, timedelta, timezone

    import pytest

    from batchsms.commands.config import parse_deadline
    from batchsms.errors import UsageError

    tz = timezone(timedelta(hours=8))
    now = datetime(2026, 11, 27, 23, 30, tzinfo=tz)
    assert parse_deadline("90m", now) == (now + timedelta(minutes=90)).timestamp()
    assert parse_deadline("1h30m", now) == (now + timedelta(minutes=90)).timestamp()
    assert parse_deadline("45s", now) == now.timestamp() + 45
    assert parse_deadline("05:00", now) == datetime(2026, 11, 28, 5, 0, tzinfo=tz).timestamp()
    assert parse_deadline("23:45", now) == datetime(2026, 11, 27, 23, 45, tzinfo=tz).timestamp()
    assert parse_deadline("5:00:30", now) == datetime(2026, 11, 28, 5, 0, 30,
                                                      tzinfo=tz).timestamp()
    assert parse_deadline("2026-11-28T05:00+00:00", now) == datetime(
        2026, 11, 28, 5, tzinfo=UTC).timestamp()
    for bad in ("tomorrow", "25:00", "", "5m30"):
        with pytest.raises(UsageError):
            parse_deadline(bad, now)
