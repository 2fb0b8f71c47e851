"""`run --timeline FILE` (issue 23): one JSON object per second of the run, from the sender's
counters: requests sent, answers by class, 429s, in flight, the pace in force, outage state;
and `report --html --timeline` charts it, drawn in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from batchsms.commands.report.over_time import MAX_BUCKETS
from batchsms.commands.report.pace import read_timeline, section, since_start
from batchsms.simulator.faults import FaultConfig, Outage
from batchsms.simulator.threaded import simulator_in_thread
from tests.chromium import chromium_only, console_messages, open_page, screenshot
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


@chromium_only
def test_a_throttled_run_with_an_outage_charts_in_chromium(here: Here, tmp_path: Path) -> None:
    """A real run against the simulator (a quota below --rate, a few 429s whatever the rate,
    so that a loaded machine slower than the quota still sees some; a 2 s outage) gives a
    timeline whose two charts Chromium draws without a console message; the screenshot is kept
    in `$BATCHSMS_TIMELINE_SCREENSHOT` when set, for a person to look at."""
    source = write_jsonl(tmp_path / "in.jsonl", ({"task_id": f"t{i:04d}",
                                                  "body": {"speed_limit": 1}}
                                                 for i in range(200)))
    out, timeline, page = tmp_path / "out.jsonl", tmp_path / "tl.jsonl", tmp_path / "page.html"
    faults = FaultConfig(seed=1, quota_rate=35, quota_burst=5, throttle_random=0.03,
                         outages=(Outage(2.0, 2.0),))
    with simulator_in_thread(faults) as sim:
        run = here("run", str(source), "--endpoint", sim.url, "--out", str(out), "--rate", "50",
                   "--timeline", str(timeline), "--log-format", "json",
                   env={"BATCHSMS_AUTH_TOKEN": "tok-timeline"}, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    seconds = read_jsonl(timeline)
    assert sum(s["429"] for s in seconds) > 0  # the quota was felt
    assert any(s["outage"] for s in seconds)
    assert min(s["rate"] for s in seconds) < 50  # and the pace came down
    report = here("report", str(out), "--html", str(page), "--timeline", str(timeline),
                  cwd=tmp_path)
    assert report.returncode == 0, report.stderr

    shot = screenshot(tmp_path, "timeline.png", "BATCHSMS_TIMELINE_SCREENSHOT")
    shown = open_page(page, tmp_path, "--dump-dom", f"--screenshot={shot}", height=2600)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert console_messages(shown.stderr) == []
    charts = {}
    for chart in ("chart-answers", "chart-pace"):
        svg = re.search(rf'<svg id="{chart}"[^>]*>(.*?)</svg>', shown.stdout, re.S)
        assert svg is not None, chart
        charts[chart] = svg[1]
    columns = re.findall(r"<g><title>(.*?)</title>", charts["chart-answers"])
    assert len(columns) == len(seconds)  # a short run: one column per second
    assert any(" 429" in c and not c.endswith(" 0 429") for c in columns)
    assert "#d64541" in charts["chart-pace"]  # the outage, in red
    assert "outage (only probes)" in charts["chart-pace"]
    assert "<script" not in shown.stdout
    assert shot.stat().st_size > 20_000  # a drawn page, not a blank one


def _second(t: float, **fields: object) -> dict[str, object]:
    return {"t": t, "sent": 5, "2xx": 5, "429": 0, "4xx": 0, "5xx": 0, "other": 0,
            "no_answer": 0, "in_flight": 2, "rate": 5.0, "outage": False, **fields}


def test_a_long_timeline_folds_into_bounded_columns(tmp_path: Path) -> None:
    """10 001 seconds: at most MAX_BUCKETS columns of equal seconds, every answer kept, the
    outage in the column that holds it, labels as times since the start."""
    path = write_jsonl(tmp_path / "tl.jsonl", (
        _second(float(t), outage=5000 <= t < 5010, rate=0.0 if t == 7 else 5.0 + t % 3)
        for t in range(1, 10_002)))
    timeline = read_timeline(path)
    assert len(timeline.buckets) <= MAX_BUCKETS
    assert {b.seconds for b in timeline.buckets[:-1]} == {timeline.buckets[0].seconds}
    assert sum(b.answers[0] for b in timeline.buckets) == 5 * 10_001
    assert [b.outage for b in timeline.buckets].count(True) in (1, 2)
    assert timeline.buckets[0].rate(timeline.top_rate) == 5.0  # 0 (unlimited) is the top
    assert [since_start(s) for s in (0, 99, 725, 11_220, 360_000)] == [
        "0s", "99s", "12m05s", "3h07m", "4d04h"]
    html = "".join(section(timeline))
    assert html.count("<g><title>") == 2 * len(timeline.buckets)


def test_hostile_timeline_lines_are_counted_not_charted(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "tl.jsonl", [
        _second(1.0), b"[]", b"not json", b'{"t": 2, "rate": 1e999}', b'{"t": NaN, "rate": 1}',
        orjson.dumps(_second(3.0, rate=-1)), _second(4.0, sent=1, **{"2xx": -5}),
        _second(5.0, **{"429": 1.5}), _second(6.0, in_flight=True), {**_second(7.0), "t": "x"},
        b"   ", _second(8.0, rate=0.0)])
    timeline = read_timeline(path)
    assert timeline.seconds == 2
    assert timeline.unreadable == 9
    only_unlimited = write_jsonl(tmp_path / "u.jsonl", [_second(1.0, rate=0.0)])
    html = "".join(section(read_timeline(only_unlimited)))
    assert 'id="chart-answers"' in html
    assert 'id="chart-pace"' not in html
    assert "No pace was set" in html
    assert "1 second since the run started" in html
