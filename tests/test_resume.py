"""Crash safety: SIGKILL a run half-way, `--resume`, and nothing succeeded is sent again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from batchsms.simulator.faults import FaultConfig
from tests.simthread import simulator_in_thread

TOKEN = {"BATCHSMS_AUTH_TOKEN": "resume-token"}


def start_run(source: Path, out: Path, url: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchsms", "run", str(source), "--endpoint", url, "--out",
         str(out), "--rate", "0", "--concurrency", "8", "--log-format", "json", *extra],
        env={**os.environ, **TOKEN}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def read(out: Path) -> list[dict[str, Any]]:
    records = []
    for line in out.read_bytes().splitlines():
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue  # a record cut by the kill
    return records


def test_sigkill_then_resume_completes_without_resending(tmp_path: Path) -> None:
    n = 600
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(orjson.dumps({"task_id": f"k{i}", "body": {"speed_limit": i % 900}})
                                + b"\n" for i in range(n)))
    out = tmp_path / "out.jsonl"
    with simulator_in_thread(FaultConfig(latency_ms=(5.0, 15.0), fail_rate=0.05, seed=3)) as sim:
        first = start_run(source, out, sim.url)
        deadline = time.monotonic() + 60
        while (not out.exists() or out.stat().st_size < 50_000) and time.monotonic() < deadline:
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        before = read(out)
        succeeded_first = {r["task_id"]: r["attempts"] for r in before
                           if r["status"] == "succeeded"}
        assert 0 < len(succeeded_first) < n, "the kill must land half-way"
        sent_first = {f"k{i}": sim.counts(f"k{i}").received for i in range(n)}

        second = start_run(source, out, sim.url, "--resume")
        assert second.wait(120) == 0

        for task_id, attempts in succeeded_first.items():
            assert sim.counts(task_id).received == sent_first[task_id] == attempts, task_id
        after = read(out)[len(before):]
        assert sorted(r["line"] for r in after) == list(range(1, n + 1))
        resumed = [r for r in after if r["status"] == "skipped"]
        assert {r["error_code"] for r in resumed} == {"already_succeeded"}
        assert {r["task_id"] for r in resumed} == set(succeeded_first)
        assert all(r["status"] in ("succeeded", "skipped") for r in after)
        for i in range(n):
            assert sim.counts(f"k{i}").applied >= 1
