"""`report --html`'s charts: a small inline SVG renderer (no script, no library, no network).

Two shapes serve every chart of the page: `share_bar` (one horizontal bar split by share, with
its legend: lines by status) and `column_chart` (vertical columns, stacked by series, with a
y axis of round numbers, labels under chosen columns and shaded slots behind some: outcomes over
time, elapsed-time histogram, attempts, the timeline's answers and pace); `legend` is the key
under a column chart. Each column carries a `<title>`, the tooltip a browser shows on hover,
with its exact figures. Every text goes through `esc`: labels can come from the outcomes.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import NamedTuple

Series = tuple[str, str]  # (name, CSS colour)


def esc(value: object) -> str:
    """Text made safe for HTML and SVG, attributes included."""
    return html.escape(str(value), quote=True)


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least `top`, about `count` steps (1, 2 or 5 times a
    power of ten each)."""
    if top <= 0:
        return [0, 1]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if step < 1:
        step = 1  # counts are whole: no tick at 0.5 lines
    steps = math.ceil(top / step)
    return [i * step for i in range(steps + 1)]


def _num(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


class Column(NamedTuple):
    """One column: its stacked values (one per series), a tooltip, a label under it or '', and
    whether its slot is shaded (`SHADE`: behind the bars, e.g. the seconds of an outage)."""

    values: Sequence[float]
    tooltip: str
    label: str = ""
    shaded: bool = False


SHADE = "#fbdcd9"  # the background of a shaded column (and its key in a legend)


def legend(series: Sequence[Series]) -> str:
    """A chart's key, as a line of HTML under it."""
    return '<p class="legend">' + "".join(
        f'<span class="key" style="background:{esc(colour)}"></span>{esc(name)} '
        for name, colour in series) + "</p>"


def column_chart(chart_id: str, columns: Sequence[Column], series: Sequence[Series], *,
                 width: int = 1100, height: int = 220, y_title: str = "lines",
                 top: float = 0) -> str:
    """Vertical columns stacked by `series`, with a y axis (reaching `top` at least: two
    charts given the same `top` share their scale) and the columns' labels."""
    left, right, top_pad, bottom = 64, 10, 10, 34
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    ticks = nice_ticks(max(top, max((sum(c.values) for c in columns), default=0)))
    scale = plot_h / ticks[-1]
    slot = plot_w / max(1, len(columns))
    bar = min(56.0, max(1.0, slot * 0.8) if slot >= 3 else slot)  # one column is no wall
    out = [f'<svg id="{esc(chart_id)}" class="chart" role="img" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for first, last in _runs([c.shaded for c in columns]):  # behind the grid and the bars
        out.append(f'<rect class="band" x="{left + first * slot:.1f}" y="{top_pad}" '
                   f'width="{(last - first + 1) * slot:.1f}" height="{plot_h}" '
                   f'fill="{SHADE}"/>')
    for tick in ticks:
        y = top_pad + plot_h - tick * scale
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" '
                   f'y2="{y:.1f}"/><text class="tick" x="{left - 6}" y="{y + 4:.1f}" '
                   f'text-anchor="end">{_num(tick)}</text>')
    out.append(f'<text class="axis" transform="translate(14 {top_pad + plot_h / 2:.0f}) '
               f'rotate(-90)" text-anchor="middle">{esc(y_title)}</text>')
    for i, column in enumerate(columns):
        x = left + i * slot + (slot - bar) / 2
        y = top_pad + plot_h
        out.append(f"<g><title>{esc(column.tooltip)}</title>")
        out.append(f'<rect class="hit" x="{left + i * slot:.1f}" y="{top_pad}" '
                   f'width="{slot:.1f}" height="{plot_h}"/>')
        for value, (_name, colour) in zip(column.values, series, strict=True):
            if value <= 0:
                continue
            h = max(2.0, value * scale)  # one line among thousands still shows
            y -= h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                       f'fill="{esc(colour)}"/>')
        out.append("</g>")
        if column.label:
            out.append(f'<text class="tick" x="{x + bar / 2:.1f}" y="{height - bottom + 16}" '
                       f'text-anchor="middle">{esc(column.label)}</text>')
    out.append(f'<line class="axisline" x1="{left}" x2="{width - right}" '
               f'y1="{top_pad + plot_h}" y2="{top_pad + plot_h}"/></svg>')
    return "".join(out)


def _runs(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """(first, last) index of each run of true flags: one band per run, no seams."""
    runs: list[tuple[int, int]] = []
    for i, flag in enumerate(flags):
        if flag and runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        elif flag:
            runs.append((i, i))
    return runs


def share_bar(chart_id: str, parts: Sequence[tuple[str, int, str]], *,
              width: int = 1100) -> str:
    """One horizontal bar split by `parts` ((name, count, colour)), with a legend below."""
    total = sum(n for _, n, _ in parts)
    height = 64
    out = [f'<svg id="{esc(chart_id)}" class="chart" role="img" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    x = 0.0
    if total == 0:
        out.append(f'<rect x="0" y="0" width="{width}" height="28" class="empty"/>')
    for name, count, colour in parts:
        if count <= 0:
            continue
        w = max(2.0, width * count / total)  # a single line among a million still shows
        out.append(f'<g><title>{esc(name)}: {count:,} ({100 * count / total:.1f}%)</title>'
                   f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="28" '
                   f'fill="{esc(colour)}"/></g>')
        x += w
    x = 0
    for name, count, colour in parts:
        label = f"{name} {count:,}"
        out.append(f'<rect x="{x}" y="42" width="12" height="12" fill="{esc(colour)}"/>'
                   f'<text class="legend" x="{x + 17}" y="53">{esc(label)}</text>')
        x += 40 + 8 * len(label)
    out.append("</svg>")
    return "".join(out)
