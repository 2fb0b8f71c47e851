"""`--resume` sends again what did not succeed, and a sent line's record is durable at once.

A real SIGKILL half-way then `--resume` (nothing succeeded is sent again) is `test_crash.py`'s
crash loop (`-m slow`, killed at random points, many times per seed); the default suite kills a
real run and resumes it in `test_undo_run.py`, and in-process at every write in `test_model.py`."""

from __future__ import annotations

import io
from functools import partial
from pathlib import Path

from structlog.testing import capture_logs

from batchsms.commands.config import RunConfig
from batchsms.commands.run import run
from batchsms.journal.outcomes import Outcome, OutcomeWriter, Status
from tests.jsonl import read_jsonl, write_jsonl
from tests.servers import Answer, ScriptedServer

read = partial(read_jsonl, skip_cut=True)  # a record cut by the kill is skipped

TOKEN = {"BATCHSMS_AUTH_TOKEN": "resume-token"}


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
