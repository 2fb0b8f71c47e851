"""`report --html FILE`: the report as one self-contained page (docs/reference.md §13).

Drawn from `figures.gather`'s summary, never from the journals again: the page costs no pass of
its own, and its size is bounded whatever the number of lines (every table is capped at
`ROWS`, the charts have at most `over_time.MAX_BUCKETS` columns; about 40 KB for a million
lines). No script and no network: the charts are inline SVG (`svg.py`), the style inline, and a
Content-Security-Policy forbids every script, fetch and external resource, so the page reads
the same offline, attached to a mail, or opened by a browser that blocks scripts.

Every value from the outcomes came from a network that may be hostile (messages, codes, task
ids, refs): each one goes through `svg.esc`, and messages are cut to `MESSAGE_CHARS`.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchsms import __version__
from batchsms.commands.report.advice import advice
from batchsms.commands.report.failed import atomic_output
from batchsms.commands.report.figures import Figures, Summary, percentile
from batchsms.commands.report.over_time import MAX_BUCKETS
from batchsms.commands.report.pace import Timeline
from batchsms.commands.report.pace import section as pace_section
from batchsms.commands.report.svg import Column, column_chart, esc, legend, share_bar
from batchsms.transport.untrusted import safe_text

ROWS = 25
"""Rows of a table at most; the rest is one line saying how many more (`--json` has all)."""
MESSAGE_CHARS = 300
NAME_CHARS = 80  # a task id, a ref, an error code or a status (a hand-made file has any length)
ATTEMPT_COLUMNS = 20  # attempts 0..19, then one column for "20 or more"

COLOURS = {"succeeded": "#2e9d5b", "failed": "#d64541", "invalid": "#e69a28",
           "skipped": "#8a94a6", "no record": "#c4c9d2"}
_OTHER = "#5b6b8c"  # a status no run writes (a hand-made file): shown, never dropped

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2433;
margin:0;background:#f4f6f9}
main{max-width:1140px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:22px;margin:8px 0 2px}h2{font-size:17px;margin:0 0 8px}
section{background:#fff;border:1px solid #dde2ea;border-radius:6px;padding:14px 16px;
margin:14px 0}
.meta{color:#5a6478;font-size:13px}.note{color:#5a6478;font-size:12.5px;margin:6px 0 0}
.tiles{display:flex;flex-wrap:wrap;gap:10px;margin-top:12px}
.tile{background:#fff;border:1px solid #dde2ea;border-radius:6px;padding:8px 14px;
min-width:110px}
.tile b{display:block;font-size:22px}.tile span{color:#5a6478;font-size:12px}
.tile.bad b{color:#c0392b}.tile.good b{color:#23804a}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-top:1px solid #e6e9ef;vertical-align:top}
th{background:#f7f8fa;font-weight:600}td.n{text-align:right;white-space:nowrap}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
overflow-wrap:anywhere}
.msg{overflow-wrap:anywhere;color:#3b4457}.ex{margin:0 0 3px}
th.code,td.code{min-width:90px}td.code code{overflow-wrap:break-word}th.todo{width:34%}
.legend{font-size:12.5px;margin:6px 0 0}
.key{display:inline-block;width:11px;height:11px;margin:0 5px 0 12px;vertical-align:-1px}
.key:first-child{margin-left:0}
svg.chart{display:block;margin-top:10px;max-width:100%;height:auto}
svg .grid{stroke:#e6e9ef}svg .axisline{stroke:#9aa3b2}svg .hit{fill:transparent}
svg g:hover .hit{fill:#eef2f8}svg .empty{fill:#eceff3}
svg text{font:11px system-ui,sans-serif;fill:#5a6478}svg .legend{font-size:12.5px;fill:#1d2433}
"""

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; " \
       "form-action 'none'"


def write_page(summary: Summary, path: Path, timeline: Timeline | None = None) -> int:
    """Write the page to `path` atomically (with `timeline`, its pace chart); its size."""
    page = render(summary, timeline).encode()
    with atomic_output(path, "--html") as out:
        out.write(page)
    return len(page)


def render(summary: Summary, timeline: Timeline | None = None) -> str:
    """The whole page."""
    report, figures = summary.report, summary.figures
    paced = [] if timeline is None else list(pace_section(timeline))
    body = "".join([*_header(report), *_statuses(report), *_problems(figures),
                    *_over_time(figures), *paced, *_elapsed(report, figures), *_attempts(report),
                    *_slowest(report)])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>batchsms report: {report['done']:,} of {report['lines']:,} lines done"
            f"</title><style>{_CSS}</style></head><body><main>{body}"
            f'<p class="note">Written by batchsms {esc(__version__)}. Self-contained: no '
            f"script, no network.</p></main></body></html>\n")


def shown(value: object, limit: int = NAME_CHARS) -> str:
    """A value from the outcomes as the page shows it: cut to `limit`, controls and bidi
    overrides made visible (transport/untrusted.py), escaped; None as nothing."""
    return "" if value is None else esc(safe_text(str(value), limit))


def _capped(count: int, shown: int, what: str) -> str:
    if count <= shown:
        return ""
    return (f'<p class="note">{count - shown:,} more {esc(what)} not shown: '
            "<code>batchsms report --json</code> lists them all.</p>")


def _tile(value: object, label: str, kind: str = "") -> str:
    text = f"{value:,}" if isinstance(value, int) else esc(value)
    return f'<div class="tile {kind}"><b>{text}</b><span>{esc(label)}</span></div>'


def _header(report: dict[str, Any]) -> Iterator[str]:
    files = report["files"]
    names = ", ".join(f"<code>{esc(name)}</code>" for name in files[:ROWS])
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    yield "<header><h1>batchsms report</h1>"
    yield (f'<p class="meta">{names}{_more(len(files), ROWS, "files")}: '
           f"{_count(report['records'], 'record')}, {_count(report['runs'], 'run')}, "
           f"{_count(report['cut_lines'], 'cut or garbled line')} skipped. Each line counts "
           f"once, by its latest record. Written {now}.</p>")
    not_done = report["not_done"]
    yield '<div class="tiles">'
    yield _tile(report["lines"], "lines")
    yield _tile(report["done"], "done", "good" if report["lines"] else "")
    yield _tile(not_done, "not done", "bad" if not_done else "good")
    for status in list(COLOURS)[:4]:  # the run statuses; any other is in the bar below
        yield _tile(report["by_status"].get(status, 0), status)
    if report["no_record"]:
        yield _tile(report["no_record"], "no record (--input)", "bad")
    yield "</div></header>"


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'s' * (n != 1)}"


def _more(count: int, shown: int, what: str) -> str:
    return f" and {count - shown:,} more {esc(what)}" if count > shown else ""


def _statuses(report: dict[str, Any]) -> Iterator[str]:
    parts = [(safe_text(str(s), NAME_CHARS), n, COLOURS.get(str(s), _OTHER))
             for s, n in report["by_status"].items()]
    if report["no_record"]:
        parts.append(("no record", report["no_record"], COLOURS["no record"]))
    yield "<section><h2>Lines by status</h2>"
    yield share_bar("chart-status", parts[:ROWS])
    yield _capped(len(parts), ROWS, "statuses")
    yield "</section>"


def _problems(figures: Figures) -> Iterator[str]:
    problems = sorted(figures.problems.items(), key=lambda kv: (-kv[1].count, str(kv[0])))
    yield '<section id="not-done"><h2>Lines not done, by error code</h2>'
    if not problems:
        yield '<p class="meta">Every line is done.</p></section>'
        return
    yield ('<table><tr><th class="code">error code</th><th>lines</th>'
           '<th class="todo">what to do next</th><th>examples (lowest line numbers)</th></tr>')
    for code, problem in problems[:ROWS]:
        examples = problem.lowest()
        statuses = ", ".join(f"{n:,} {shown(s)}" for s, n in problem.by_status.most_common())
        yield (f'<tr><td class="code"><code>{shown(code if code is not None else "(none)")}'
               "</code></td>"
               f'<td class="n">{problem.count:,}<br><span class="meta">{statuses}</span></td>'
               f"<td>{_commands(advice(code, examples[0]['http_status'] if examples else None))}"
               "</td>"
               f"<td>{''.join(map(_example, examples))}</td></tr>")
    yield "</table>"
    yield _capped(len(problems), ROWS, "error codes")
    yield "</section>"


def _commands(text: str) -> str:
    """`text` escaped, its `back-quoted` parts as code."""
    parts = esc(text).split("`")
    return "".join(f"<code>{part}</code>" if i % 2 else part for i, part in enumerate(parts))


def _example(example: dict[str, Any]) -> str:
    ref = example["ref"]
    msg = example["error_msg"]
    return (f'<p class="ex">line {example["line"]:,} <code>{shown(example["task_id"])}</code>'
            f"{f' ({shown(ref)})' if ref is not None else ''}: "
            f'<span class="msg">{shown(msg, MESSAGE_CHARS)}</span></p>')


def _when(second: int, fmt: str) -> str:
    return datetime.fromtimestamp(second, UTC).strftime(fmt)


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' * (unit == 'day' and n > 1)}"
    return f"{seconds} s"


def _over_time(figures: Figures) -> Iterator[str]:
    over = figures.over_time
    columns = over.columns()
    yield "<section><h2>Outcomes over time</h2>"
    if not columns:
        yield '<p class="meta">No record has a readable <code>finished_at</code>.</p></section>'
        return
    statuses = [*COLOURS][:4]  # the run's; any other status (a hand-made file) as one "other"
    series = [(s, COLOURS[s]) for s in statuses]
    if any(s not in COLOURS for _, c in columns for s in c):
        series.append(("other", _OTHER))
        columns = [(start, Counter({**{s: c[s] for s in statuses if s in c},
                                    "other": sum(n for s, n in c.items() if s not in COLOURS)}))
                   for start, c in columns]
    span = columns[-1][0] + over.width - columns[0][0]
    fmt = "%H:%M:%S" if span <= 3600 else "%H:%M" if span <= 86400 else "%m-%d %H:%M"
    every = max(1, len(columns) // 6)
    chart = [Column([c.get(name, 0) for name, _ in series],
                    f"{_when(start, '%Y-%m-%d %H:%M:%S')} UTC, {_duration(over.width)}: " +
                    ", ".join(f"{c.get(n, 0):,} {n}" for n, _ in series if c.get(n, 0)),
                    _when(start, fmt) if i % every == 0 else "")
             for i, (start, c) in enumerate(columns)]
    yield column_chart("chart-time", chart, series)
    yield legend(series)
    untimed = f" {over.untimed:,} records without a readable time are left out." \
        if over.untimed else ""
    yield (f'<p class="note">Lines finished per {_duration(over.width)} (UTC, from '
           f"{_when(columns[0][0], '%Y-%m-%d %H:%M:%S')}), by the time of their latest "
           f"record; at most {MAX_BUCKETS} columns.{untimed}</p></section>")


def _ms(value: int) -> str:
    return f"{value:,} ms" if value < 1000 else f"{value / 1000:,.3g} s"


def _bins(histogram: Counter[int]) -> list[tuple[int, int, int]]:
    """(low, high, lines at or above low and below high) in ms, bounds in 1-2-5 steps, from
    the first bin with a line to the last."""
    top = max(histogram, default=0)
    bounds = [0]
    power = 1
    while bounds[-1] <= top:
        bounds.extend(m * power for m in (1, 2, 5))
        power *= 10
    counts = [0] * len(bounds)
    for value, n in histogram.items():  # a negative time (a hand-made file) counts as 0
        counts[max(0, bisect.bisect_right(bounds, value) - 1)] += n
    used = [i for i, n in enumerate(counts) if n]
    return [(bounds[i], bounds[i + 1], counts[i]) for i in range(used[0], used[-1] + 1)] \
        if used else []


def _elapsed(report: dict[str, Any], figures: Figures) -> Iterator[str]:
    latency = report["latency_ms"]
    yield "<section><h2>Elapsed time of the lines sent</h2>"
    if not latency["lines"]:
        yield '<p class="meta">No line was sent.</p></section>'
        return
    yield '<div class="tiles">'
    for p in (50, 90, 95, 99):
        yield _tile(_ms(percentile(figures.latency, p) or 0), f"p{p}")
    yield _tile(_ms(latency["max"]), "max")
    yield _tile(latency["lines"], "lines sent")
    yield "</div>"
    chart = [Column([n], f"{_ms(low)} to {_ms(high)}: {n:,} lines", f"<{_ms(high)}")
             for low, high, n in _bins(figures.latency)]
    yield column_chart("chart-elapsed", chart, [("lines", "#4a78c2")], height=200)
    yield ('<p class="note">From the first send to the final answer, retries included; '
           "percentiles are nearest-rank; columns grow 1-2-5.</p></section>")


def _attempts(report: dict[str, Any]) -> Iterator[str]:
    counts = {int(k): v for k, v in report["attempts"].items()}
    yield "<section><h2>Attempts per line</h2>"
    if not counts:
        yield '<p class="meta">No line.</p></section>'
        return
    top = min(max(counts), ATTEMPT_COLUMNS)
    chart: list[Column] = []
    for k in range(top + 1):
        n = sum(v for a, v in counts.items() if a >= k) if k == ATTEMPT_COLUMNS else \
            counts.get(k, 0)
        name = f"{k}+" if k == ATTEMPT_COLUMNS else str(k)
        chart.append(Column([n], f"{name} attempts: {n:,} lines", name))
    yield column_chart("chart-attempts", chart, [("lines", "#7a5cc2")], height=180,
                       width=min(1100, 120 + 60 * len(chart)))
    yield ('<p class="note">Write requests per line (every try counts; the reads of '
           "<code>--verify</code>, <code>--undo-file</code>, <code>--skip-unchanged</code> are "
           "counted apart); 0: never written (invalid, skipped, or ended after its read)."
           "</p></section>")


def _slowest(report: dict[str, Any]) -> Iterator[str]:
    slowest: Sequence[dict[str, Any]] = report["slowest"]
    if not slowest:
        return
    yield "<section><h2>Slowest lines</h2><table><tr><th>line</th><th>task</th><th>ref</th>"
    yield "<th>status</th><th>attempts</th><th>elapsed</th></tr>"
    for s in slowest[:ROWS]:
        yield (f'<tr><td class="n">{s["line"]:,}</td><td><code>{shown(s["task_id"])}</code>'
               f"</td><td>{shown(s['ref'])}</td><td>{shown(s['status'])}</td>"
               f"<td class=\"n\">{s['attempts']:,}</td>"
               f'<td class="n">{_ms(s["elapsed_ms"])}</td></tr>')
    yield "</table></section>"
