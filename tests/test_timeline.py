"""`run --timeline FILE` (issue 23): one JSON object per second of the run, from the sender's
counters: requests sent, answers by class, 429s, in flight, the pace in force, outage state."""

from __future__ import annotations

from pathlib import Path

from tests.jsonl import read_jsonl, write_jsonl
from tests.processes import Here


def test_a_timeline_has_a_line_per_second_and_adds_up(here: Here, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ({"task_id": f"t{i}", "body": {"speed_limit": 1}}
                                                 for i in range(40)))
    timeline = tmp_path / "timeline.jsonl"
    result = here("run", str(source), "--simulate", "--out", str(tmp_path / "out.jsonl"),
                  "--rate", "20", "--timeline", str(timeline), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    seconds = read_jsonl(timeline)
    assert len(seconds) >= 2
    assert sum(s["sent"] for s in seconds) == 40
    assert sum(s["2xx"] for s in seconds) == 40
    assert {"t", "at", "429", "4xx", "5xx", "no_answer", "in_flight", "rate",
            "outage"} <= seconds[0].keys()
    assert all(s["rate"] == 20 for s in seconds)
    assert not any(s["outage"] for s in seconds)
    assert [s["t"] for s in seconds] == sorted(s["t"] for s in seconds)


def test_the_timeline_may_not_be_an_input(here: Here, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"task_id": "t", "body": {"speed_limit": 1}}])
    result = here("run", str(source), "--simulate", "--out", str(tmp_path / "out.jsonl"),
                  "--timeline", str(source), cwd=tmp_path)
    assert result.returncode == 2
    assert "--timeline" in result.stderr


def test_report_html_charts_the_timeline(here: Here, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ({"task_id": f"t{i}", "body": {"speed_limit": 1}}
                                                 for i in range(30)))
    out, timeline, page = tmp_path / "out.jsonl", tmp_path / "tl.jsonl", tmp_path / "r.html"
    assert here("run", str(source), "--simulate", "--out", str(out), "--rate", "20",
                "--timeline", str(timeline), cwd=tmp_path).returncode == 0
    with timeline.open("ab") as f:
        f.write(b"not json\n")  # a damaged line is counted, not fatal
    result = here("report", str(out), "--html", str(page), "--timeline", str(timeline),
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = page.read_text()
    assert 'id="chart-answers"' in text
    assert 'id="chart-pace"' in text
    assert "20 requests/s in force" in text
    assert "1 unreadable lines left out" in text
    assert "<script" not in text
    alone = here("report", str(out), "--timeline", str(timeline), cwd=tmp_path)
    assert alone.returncode == 2
    assert "--html" in alone.stderr
