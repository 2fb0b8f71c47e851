"""`report --html`: the page's figures match the text report, every outcome value is escaped,
tables are capped and the size bounded, and the page renders in headless Chromium without an
error, charts drawn (a screenshot is written for a person to look at)."""

from __future__ import annotations

import io
import re
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from batchsms.cli import build_parser, report_config
from batchsms.commands.report import run_report
from batchsms.commands.report.advice import GENERAL, advice
from batchsms.commands.report.figures import EXAMPLES, Figures, gather
from batchsms.commands.report.html import ROWS, render
from batchsms.commands.report.over_time import MAX_BUCKETS, OverTime
from batchsms.errors import UsageError
from tests.chromium import chromium_only, console_messages, open_page, screenshot

CHARTS = ("chart-status", "chart-time", "chart-elapsed", "chart-attempts")
XSS = "<script>alert(1)</script>"


def mixed_records(n: int, *, codes: int = 6) -> Iterator[bytes]:
    """`n` outcome records of one run over ~n/20 seconds: mostly succeeded, some failed over
    `codes` error codes, invalid and skipped lines, elapsed times from 30 ms to 30 s."""
    for line in range(1, n + 1):
        second = 1714564800 + line // 20
        status, code, msg, attempts, elapsed, http = "succeeded", None, None, 1, 0, 200
        if line % 17 == 0:
            status, code, msg, attempts, http = "failed", f"SMS.{6000 + line % codes}", \
                f"task t{line} refused", 1, 400
        elif line % 101 == 0:
            status, code, msg, attempts, http = "invalid", "validation", "body: bad", 0, None
        elif line % 53 == 0:
            status, code, msg, attempts, http = "skipped", "deadline", "not sent", 0, None
        elif line % 29 == 0:
            attempts = 3
        if attempts:
            elapsed = 30 + (line * 7919) % 400 + (30000 if line % 997 == 0 else 0)
        yield orjson.dumps({
            "run_id": "R", "line": line, "task_id": f"t{line}", "ref": f"web-{line}",
            "status": status, "http_status": http, "attempts": attempts, "error_code": code,
            "error_msg": msg, "errors": [], "request_id": None,
            "body_sha256": None if status == "invalid" else f"{line:064x}",
            "elapsed_ms": elapsed,
            "finished_at": f"{_iso(second)}.{line % 1000:03d}Z",
        }) + b"\n"


def _iso(second: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def write_outcomes(path: Path, n: int, **kwargs: int) -> Path:
    with path.open("wb") as out:
        out.writelines(mixed_records(n, **kwargs))
    return path


def report(*argv: str | Path) -> tuple[int, str, str]:
    args = report_config(build_parser().parse_args(["report", *map(str, argv)]))
    out, err = io.StringIO(), io.StringIO()
    code = run_report(args, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def text_of(page: str) -> str:
    """The page's visible text, tags dropped (entities kept as written)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]*>", " ", page))


def test_counts_match_the_text_report(tmp_path: Path) -> None:
    outcomes = write_outcomes(tmp_path / "o.jsonl", 1000)
    page = tmp_path / "r.html"
    code, text, err = report(outcomes, "--html", page)
    assert code == 1
    assert f"wrote the report page to {page}" in err
    html = page.read_text()
    lines = re.search(r"(\d+) lines \(latest record each\): (.*)", text)
    assert lines is not None
    assert f"<b>{int(lines[1]):,}</b><span>lines</span>" in html
    for n, status in (part.split(" ") for part in lines[2].split(", ")):
        assert f"<b>{int(n):,}</b><span>{status}</span>" in html
    done = re.search(r"done: (\d+), not done: (\d+)", text)
    assert done is not None
    assert f"<b>{int(done[1]):,}</b><span>done</span>" in html
    assert f"<b>{int(done[2]):,}</b><span>not done</span>" in html
    p50 = re.search(r"p50 (\d+)", text)
    assert p50 is not None
    assert f"<b>{int(p50[1]):,} ms</b><span>p50</span>" in html
    for chart in CHARTS:
        assert f'id="{chart}"' in html


def test_not_done_table_has_codes_examples_and_advice(tmp_path: Path) -> None:
    outcomes = write_outcomes(tmp_path / "o.jsonl", 1000)
    code, _, _ = report(outcomes, "--html", tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    section = html[html.index('id="not-done"'):]
    section = section[:section.index("</section>")]
    for error in ("SMS.6000", "validation", "deadline"):
        assert f"<code>{error}</code>" in section
    assert "line 101 <code>t101</code> (web-101): " in section  # the lowest invalid line
    assert "batchsms validate INPUT" in section
    assert "--resume" in section
    assert code == 1


def test_every_outcome_value_is_escaped(tmp_path: Path) -> None:
    hostile = {"run_id": XSS, "line": 1, "task_id": f"t{XSS}", "ref": f'"><img src=x>{XSS}',
               "status": "failed", "http_status": 500, "attempts": 1,
               "error_code": f"SMS.{XSS}", "error_msg": XSS, "errors": [],
               "body_sha256": "ab" * 32, "elapsed_ms": 5,
               "finished_at": "2024-05-01T12:00:00.000Z"}
    outcomes = tmp_path / f"o{XSS.replace('/', '')}.jsonl"
    outcomes.write_bytes(orjson.dumps(hostile) + b"\n" + orjson.dumps(
        {**hostile, "line": 2, "status": XSS, "body_sha256": "cd" * 32}) + b"\n")
    page = tmp_path / "r.html"
    report(outcomes, "--html", page)
    html = page.read_text()
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "script-src" in html or "default-src 'none'" in html  # the CSP forbids scripts


def test_one_line_and_empty_outcomes(tmp_path: Path) -> None:
    one = write_outcomes(tmp_path / "one.jsonl", 1)
    assert report(one, "--html", tmp_path / "one.html")[0] == 0
    html = (tmp_path / "one.html").read_text()
    assert "Every line is done." in html
    assert "1 succeeded" in text_of(html)
    for chart in CHARTS:
        assert f'id="{chart}"' in html
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    assert report(empty, "--html", tmp_path / "empty.html")[0] == 0
    html = (tmp_path / "empty.html").read_text()
    assert "No line was sent." in html
    assert "<b>0</b><span>lines</span>" in html


def test_tables_are_capped_on_many_distinct_codes(tmp_path: Path) -> None:
    outcomes = write_outcomes(tmp_path / "o.jsonl", 5000, codes=250)
    summary = gather([outcomes])
    codes = len(summary.figures.problems)
    assert codes > ROWS
    html = render(summary)
    section = html[html.index('id="not-done"'):]
    section = section[:section.index("</section>")]
    assert section.count("<tr>") == ROWS + 1  # the header and ROWS codes
    assert f"{codes - ROWS:,} more error codes not shown" in section


def test_over_time_stays_within_its_columns() -> None:
    over = OverTime()
    for second in range(0, 3 * 86400, 7):  # three days, out of order halves
        over.add(f"{_iso(1714564800 + second)}Z", "succeeded")
    over.add("yesterday", "failed")
    columns = over.columns()
    assert len(columns) <= MAX_BUCKETS
    assert over.width == 3600
    assert sum(c["succeeded"] for _, c in columns) == len(range(0, 3 * 86400, 7))
    assert over.untimed == 1


# 20 000 lines (1 000 seconds, ~1 200 failures over all 500 codes) reach every cap of the page:
# its largest page, more than 100 000 lines make (2.6 s of CPU, 0.5 s here)
@pytest.mark.parametrize("n", [1000, 20_000])
def test_page_size_is_bounded(tmp_path: Path, n: int) -> None:
    outcomes = write_outcomes(tmp_path / "o.jsonl", n, codes=500)
    size = len(render(gather([outcomes])).encode())
    print(f"page for {n:,} lines: {size:,} bytes")
    assert size < 200_000  # a few hundred KB at most, whatever the lines (a million: same caps)


def test_html_refuses_an_input_or_unwritable_path(tmp_path: Path) -> None:
    outcomes = write_outcomes(tmp_path / "o.jsonl", 3)
    with pytest.raises(UsageError, match=r"--html .* is the same file as an outcomes file"):
        report(outcomes, "--html", outcomes)
    with pytest.raises(UsageError, match=r"--html .*: cannot use directory"):
        report(outcomes, "--html", tmp_path / "no" / "r.html")
    with pytest.raises(UsageError, match=r"--html and --failed-to|same file as --failed-to"):
        report(outcomes, "--html", tmp_path / "x", "--failed-to", tmp_path / "x")


@chromium_only
def test_console_check_sees_an_error(tmp_path: Path) -> None:
    """The check of the next test can fail: a page breaking its own policy is seen."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><meta http-equiv="Content-Security-Policy" '
                    "content=\"default-src 'none'\"><p>x</p><script>console.log(1)</script>")
    run = open_page(page, tmp_path, "--dump-dom")
    assert console_messages(run.stderr), run.stderr


@chromium_only
def test_page_renders_in_chromium(tmp_path: Path) -> None:
    outcomes = write_outcomes(tmp_path / "o.jsonl", 1000)
    with outcomes.open("ab") as out:
        out.write(orjson.dumps({"run_id": "R", "line": 3, "task_id": "t-xss", "ref": XSS,
                                "status": "failed", "attempts": 1, "error_code": "SMS.6000",
                                "error_msg": XSS, "elapsed_ms": 40, "body_sha256": "e" * 64,
                                "finished_at": "2024-05-01T12:00:40.000Z"}) + b"\n")
    page = tmp_path / "report.html"
    report(outcomes, "--html", page)
    dom = open_page(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_messages(dom.stderr) == []
    for chart in CHARTS:
        svg = re.search(rf'<svg id="{chart}"[^>]*>(.*?)</svg>', dom.stdout, re.S)
        assert svg is not None, chart
        assert svg[1].count("<rect") >= 2, chart
    assert "<script" not in dom.stdout
    assert "alert(1)" in dom.stdout
    shot = screenshot(tmp_path, "report.png", "BATCHSMS_SCREENSHOT")
    run = open_page(page, tmp_path, f"--screenshot={shot}")
    assert run.returncode == 0, run.stderr[-2000:]
    assert console_messages(run.stderr) == []
    assert shot.stat().st_size > 20_000  # a drawn page, not a blank one


def test_advice_names_a_next_step_for_each_kind_of_code() -> None:
    for code in ("validation", "timeout", "connection", "aborted", "deadline", "interrupted",
                 "conflict", "verify_mismatch", "bad_answer", "http_429"):
        assert advice(code) != GENERAL, code
    assert "--resume" in advice("http_503")  # by the HTTP class of the code
    assert "fix the line" in advice("SMS.6003", 400)  # a service code: by the record's status
    assert advice("SMS.6003") == advice(None) == GENERAL
    # A reset in the middle of a run is not an unreachable endpoint: both are "connection".
    assert "passing trouble" in advice("connection")
    assert "may have been applied" in advice("connection")


def test_examples_are_the_lowest_lines_whatever_the_order(tmp_path: Path) -> None:
    records = [orjson.loads(r) for r in mixed_records(400)]
    failed = [r for r in records if r["status"] == "failed"]
    outcomes = tmp_path / "o.jsonl"
    outcomes.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in reversed(records)))
    problems = gather([outcomes]).figures.problems
    assert sum(p.count for p in problems.values()) == 400 - sum(
        r["status"] == "succeeded" for r in records)
    lowest = problems["SMS.6000"].lowest()
    wanted = sorted(r["line"] for r in failed if r["error_code"] == "SMS.6000")[:EXAMPLES]
    assert [e["line"] for e in lowest] == wanted


def test_hostile_numbers_still_make_a_page(tmp_path: Path) -> None:
    base = orjson.loads(next(mixed_records(1)))
    outcomes = tmp_path / "o.jsonl"
    outcomes.write_bytes(b"".join(orjson.dumps({**base, **change}) + b"\n" for change in (
        {"line": 1, "elapsed_ms": -5, "attempts": 10**9},
        {"line": 2, "elapsed_ms": 10**15, "attempts": -3, "body_sha256": "f" * 64},
        {"line": 3, "finished_at": "1999-01-01T00:00:00+00:00", "body_sha256": "e" * 64},
        {"line": 4, "finished_at": "not a time", "status": "weird", "body_sha256": "d" * 64},
        {"line": 5, "status": "s" * 100_000, "task_id": "\u202e" * 100, "body_sha256": "c" * 64},
    )))
    html = render(gather([outcomes]))
    assert "20+" in html
    assert "1 records without a readable time" in html
    assert "weird" in html
    assert "</span>other " in html  # the time chart's series: the run's four, and "other"
    assert "s" * 81 not in html
    assert "\u202e" not in html
    assert len(html) < 30_000


def test_the_pages_figures_do_not_grow_with_the_lines() -> None:
    """What `--html` adds to the second pass (outcomes over time, examples per code) stays
    under 1 MB for 30 000 lines of ~1 500 seconds: bounded by its caps, not by the lines."""
    figures = Figures(10)
    records = list(mixed_records(30_000, codes=50))  # made before the tracing: 3 s to 1 s
    tracemalloc.start()
    try:
        for raw in records:
            figures.add(orjson.loads(raw))
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(figures.over_time.buckets) <= MAX_BUCKETS
    assert all(len(p.examples) <= EXAMPLES for p in figures.problems.values())
    assert kept < 1024 * 1024
