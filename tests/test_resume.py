"""Crash safety: SIGKILL a run half-way, `--resume`, and nothing succeeded is sent again."""

from __future__ import annotations

import io
import signal
import subprocess
import time
from functools import partial
from pathlib import Path

import orjson
from structlog.testing import capture_logs

from batchsms.commands.config import RunConfig
from batchsms.commands.run import run
from batchsms.journal.outcomes import Outcome, OutcomeWriter, Status
from batchsms.simulator.faults import FaultConfig
from batchsms.simulator.threaded import simulator_in_thread
from tests.jsonl import read_jsonl, write_jsonl
from tests.processes import start_batchsms
from tests.servers import Answer, ScriptedServer

read = partial(read_jsonl, skip_cut=True)  # a record cut by the kill is skipped

TOKEN = {"BATCHSMS_AUTH_TOKEN": "resume-token"}


def start_run(source: Path, out: Path, url: str, *extra: str) -> subprocess.Popen[bytes]:
    return start_batchsms("run", str(source), "--endpoint", url, "--out", str(out), "--rate",
                          "0", "--concurrency", "8", "--log-format", "json", *extra, env=TOKEN)


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


def test_resume_skips_only_what_succeeded(tmp_path: Path, scripted: ScriptedServer) -> None:
    """A line that failed (or was refused) is sent again by `--resume`; a success is not."""
    source = write_jsonl(tmp_path / "in.jsonl", [
        {"task_id": task_id, "body": {"speed_limit": 10}} for task_id in ("ok", "bad", "down")])
    out = tmp_path / "out.jsonl"
    scripted.script("bad", Answer(400, body={"error_code": "SMS.0201", "error_msg": "bad"}))
    scripted.script("down", Answer(503), Answer(503))

    def night(*, resume: bool = False) -> list[dict[str, object]]:
        config = RunConfig(input=str(source), out=out, endpoint=scripted.url, rate=0,
                           progress=False, max_attempts=2, resume=resume)
        with capture_logs():
            run(config, env=TOKEN, stderr=io.StringIO())
        return read(out)

    first = {r["task_id"]: r["status"] for r in night()}
    assert first == {"ok": "succeeded", "bad": "failed", "down": "failed"}
    second = night(resume=True)[3:]
    assert {r["task_id"]: (r["status"], r["error_code"]) for r in second} == {
        "ok": ("skipped", "already_succeeded"), "bad": ("succeeded", None),
        "down": ("succeeded", None)}
    assert (scripted.count("ok"), scripted.count("bad"), scripted.count("down")) == (1, 2, 3)


def test_a_sent_lines_record_is_on_disk_before_the_next_line(tmp_path: Path) -> None:
    """A SIGKILL loses at most the answers in flight: the record of a sent line (durable) is in
    the file at once, while records of lines never sent may wait for the next flush."""
    path = tmp_path / "out.jsonl"
    writer = OutcomeWriter(path, flush_interval=3600)
    try:
        writer.write(Outcome("r", 1, "skipped-one", None, Status.SKIPPED))
        assert path.read_bytes() == b""
        writer.write(Outcome("r", 2, "sent-one", None, Status.SUCCEEDED), durable=True)
        assert [r["task_id"] for r in read(path)] == ["skipped-one", "sent-one"]
    finally:
        writer.close()
