"""Undo at scale (issue 18 item 12): `report --undo-to` and `run --resume --undo-file --verify`
over 300 000 lines stay under 100 MB peak RSS, measured on the child process.

The journal and the side log are written directly (what a finished run with `--undo-file`
leaves), so the test spends its time in the commands measured, not in making a fleet. Every
line already succeeded: the resumed run sends nothing (its endpoint is a closed port) and
writes the undo file of the whole sequence from the side log.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from batchsms.changes.undo_log import previous_log_path
from batchsms.lines.bodies import canonical_json
from tests.processes import batchsms, peak_rss_kib

pytestmark = pytest.mark.slow

LINES = 300_000
LIMIT_KIB = 100 * 1024
RUN_ID = "20260101T000000Z-0a0b0c0d"


def _write_run(tmp_path: Path, n: int) -> tuple[Path, Path]:
    """An input of `n` lines, and the journal and side log of a run that did them all."""
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    shas = [hashlib.sha256(canonical_json({"speed_limit": v})).hexdigest() for v in range(1000)]
    with source.open("wb") as inp, out.open("wb") as journal, \
            previous_log_path(out).open("wb") as side:
        side.write(orjson.dumps({"run_id": RUN_ID, "run": True, "resume": False}) + b"\n")
        for i in range(n):
            line, task_id, ref, speed = i + 1, f"task-{i:07d}", f"ref-{i}", i % 1000
            inp.write(orjson.dumps({"task_id": task_id, "ref": ref,
                                    "body": {"speed_limit": speed}}) + b"\n")
            side.write(orjson.dumps({
                "run_id": RUN_ID, "line": line, "task_id": task_id, "ref": ref,
                "body_sha256": shas[speed], "previous": {"speed_limit": (speed + 1) % 1000},
                "wrote": {"speed_limit": speed}}) + b"\n")
            journal.write(orjson.dumps({
                "run_id": RUN_ID, "line": line, "task_id": task_id, "ref": ref,
                "status": "succeeded", "http_status": 200, "attempts": 3, "error_code": None,
                "error_msg": None, "errors": [], "request_id": f"req-{i}",
                "body_sha256": shas[speed], "elapsed_ms": 12,
                "finished_at": "2026-01-01T00:00:01.000Z", "maybe_applied": False,
                "previous": {"speed_limit": (speed + 1) % 1000}}) + b"\n")
    return source, out


def _undo_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def test_report_undo_to_and_resumed_run_stay_small(tmp_path: Path) -> None:
    source, out = _write_run(tmp_path, LINES)
    undo = tmp_path / "undo.jsonl"
    report = batchsms("report", str(out), "--undo-to", str(undo), peak_rss=True, timeout=600)
    assert report.returncode == 0, report.stderr.decode()[-2000:]
    assert _undo_lines(undo) == LINES
    report_kib = peak_rss_kib(report)

    undo.unlink()
    run = batchsms("run", str(source), "--endpoint", "http://127.0.0.1:9", "--out", str(out),
                   "--resume", "--undo-file", str(undo), "--verify", "--no-progress",
                   "--log-format", "json", env={"BATCHSMS_AUTH_TOKEN": "memory-token"},
                   peak_rss=True, timeout=600)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    assert _undo_lines(undo) == LINES
    run_kib = peak_rss_kib(run)
    print(f"peak RSS at {LINES} lines: report --undo-to {report_kib // 1024} MiB, "
          f"run --resume --undo-file --verify {run_kib // 1024} MiB")
    assert report_kib < LIMIT_KIB, report_kib
    assert run_kib < LIMIT_KIB, run_kib
