"""Logs that tell the story of a long run (issue 23 item 2): `run.progress` every
`--progress-interval` seconds with JSON logs, `outage.started`/`outage.ended`, `pace.changed`
with its reason, `task.invalid` per line under `--verbose`, the notice `validate` gives when
task ids come back on later lines (`run.repeated_task_ids`), and where `--undo-file` went
(`undo.written`, issue 23 item 5)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
from structlog.testing import capture_logs

from batchsms.commands.run.story import progress_fields
from batchsms.engine.feedback import Answer
from batchsms.engine.outage import MIN_FAILED, OutageGuard
from batchsms.engine.pace import Pace
from batchsms.engine.stats import RunStats
from tests.clocks import FakeClock
from tests.jsonl import write_jsonl
from tests.processes import Here


def _events(stderr: str) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in stderr.splitlines() if x.startswith("{")]


def test_progress_fields_count_rate_and_eta() -> None:
    stats = RunStats(started=100.0)
    stats.by_status.update({"succeeded": 30, "failed": 10})
    fields = progress_fields(stats, 100, 120.0)
    assert fields["done"] == 40
    assert fields["total"] == 100
    assert fields["succeeded"] == 30
    assert fields["lines_per_s"] == 2.0
    assert fields["eta_s"] == 30
    assert "eta_s" not in progress_fields(stats, None, 120.0)


def test_a_run_tells_progress_invalid_lines_and_repeated_ids(here: Here, tmp_path: Path) -> None:
    lines: list[Any] = [{"task_id": f"t{i}", "body": {"speed_limit": 1}} for i in range(30)]
    lines += [{"task_id": "t3", "body": {"speed_limit": 2}}, {"task_id": "bad", "body": {}}]
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    result = here("run", str(source), "--simulate", "--out", str(tmp_path / "out.jsonl"),
                  "--rate", "20", "--log-format", "json", "--progress-interval", "0.3",
                  "--verbose", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    events = _events(result.stderr)
    kinds = Counter(e["event"] for e in events)
    assert kinds["run.progress"] >= 2, kinds
    last = [e for e in events if e["event"] == "run.progress"][-1]
    assert last["total"] == 32
    assert {"done", "lines_per_s", "eta_s", "requests"} <= last.keys()
    [invalid] = [e for e in events if e["event"] == "task.invalid"]
    assert invalid["level"] == "debug"
    assert invalid["line"] == 32
    assert invalid["errors"]
    [repeated] = [e for e in events if e["event"] == "run.repeated_task_ids"]
    assert repeated["task_ids"] == 1
    assert repeated["examples"] == ["t3 on lines 4, 31"]


@pytest.mark.parametrize("quiet", [[], ["--quiet"]])
def test_the_undo_file_is_an_event_in_json_logs(quiet: list[str], here: Here,
                                                tmp_path: Path) -> None:
    """With `--log-format json`, "wrote N undo lines to F" is an `undo.written` event, not a
    line of text among the JSON (it was); `--quiet` keeps it, as a console keeps the line."""
    source = write_jsonl(tmp_path / "in.jsonl", [{"task_id": f"t{i}", "body": {"speed_limit": 3}}
                                                 for i in range(4)])
    undo = tmp_path / "undo.jsonl"
    result = here("run", str(source), "--simulate", "--out", str(tmp_path / "out.jsonl"),
                  "--rate", "0", "--undo-file", str(undo), "--log-format", "json", *quiet,
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    events = [orjson.loads(line) for line in lines]  # every line of stderr is JSON
    [written] = [e for e in events if e["event"] == "undo.written"]
    assert (written["lines"], written["file"], written["level"]) == (4, str(undo), "info")
    assert (written["unrestorable"], written["uncaptured_runs"]) == (0, 0)
    assert len(undo.read_text().splitlines()) == 4
    console = here("run", str(source), "--simulate", "--out", str(tmp_path / "again.jsonl"),
                   "--rate", "0", "--undo-file", str(tmp_path / "u2.jsonl"),
                   "--log-format", "console", *quiet, cwd=tmp_path)
    assert f"wrote 4 undo lines to {tmp_path / 'u2.jsonl'}" in console.stderr


def test_without_verbose_no_debug_and_no_progress_on_a_console(here: Here,
                                                               tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"task_id": "bad", "body": {}},
                                                 {"task_id": "t1", "body": {"speed_limit": 1}}])
    result = here("run", str(source), "--simulate", "--out", str(tmp_path / "out.jsonl"),
                  "--log-format", "json", cwd=tmp_path)
    assert "task.invalid" not in result.stderr
    assert "run.progress" not in result.stderr  # the first is due after 60 s


@pytest.mark.parametrize("interval", ["-1", "nan"])
def test_a_bad_progress_interval_is_refused(interval: str, here: Here, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"task_id": "t1", "body": {"speed_limit": 1}}])
    result = here("run", str(source), "--simulate", "--progress-interval", interval,
                  cwd=tmp_path)
    assert result.returncode == 2
    assert "--progress-interval" in result.stderr


@pytest.fixture
def told() -> Iterator[list[dict[str, Any]]]:
    """The engine's events, as structlog gets them under the CLI; structlog put back after."""
    was = structlog.is_configured()
    with capture_logs() as logs:
        yield logs
    if not was:
        structlog.reset_defaults()


def test_an_outage_is_told_when_it_starts_and_ends(told: list[dict[str, Any]]) -> None:
    clock = FakeClock()
    guard = OutageGuard(clock=clock)
    for _ in range(MIN_FAILED + 5):
        guard.on_answer(Answer.FAILED)
        clock.advance(1.0)
    guard.on_answer(Answer.OK)
    assert [e["event"] for e in told] == ["outage.started", "outage.ended"]
    assert told[1]["lasted_s"] > 0


def test_pace_changes_are_told_with_their_reason(told: list[dict[str, Any]]) -> None:
    clock = FakeClock()
    pace = Pace(50.0, clock=clock)
    for _ in range(20):
        clock.advance(0.02)
        pace.on_answer(Answer.THROTTLED, sent_at=clock.now - 0.01)
    changed = [e for e in told if e["event"] == "pace.changed"]
    assert changed, "a rate lowered by 429s is told"
    assert changed[0]["change"] == "lowered"
    assert "429" in changed[0]["reason"]
    assert changed[0]["rate"] < changed[0]["previous"] == 50
