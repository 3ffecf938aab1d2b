"""Bar charts as inline SVG, drawn on the server: no JavaScript library, nothing fetched, CSP-safe.

A chart is a `BarChart` (texts already translated by the caller) turned into one `<svg role="img">`
with a `<title>` and a `<desc>` (what a screen reader says: the series in words), axis labels and a
few round y ticks. Colours are SVG presentation attributes, not inline styles, so a strict
`style-src` allows them. The SVG has a viewBox and no fixed width: it scales to its container on a
laptop and a phone alike. Pure functions: easy to test and to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 480, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 10, 14, 58  # room for the y ticks, the x labels and the axis titles
BAR_FILL = "#2e7d32"
AXIS = "#555555"
GRID = "#dddddd"
MAX_X_LABELS = 6


@dataclass(frozen=True)
class BarChart:
    """One series of counts over labelled buckets (oldest first)."""

    chart_id: str  # unique on the page: the ids of <title> and <desc> derive from it
    title: str
    description: str  # one sentence the caller writes (e.g. totals); the values follow it in <desc>
    x_label: str
    y_label: str
    labels: tuple[str, ...]
    values: tuple[int, ...]


def nice_ticks(maximum: int, count: int = 4) -> list[int]:
    """Round tick values from 0 covering `maximum` (steps of 1, 2 or 5 times a power of ten)."""
    if maximum <= 0:
        return [0, 1]
    raw = maximum / count
    power = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    step = max(1, int(step))
    top = step * math.ceil(maximum / step)
    return list(range(0, top + 1, step))


def label_every(count: int, room: int = MAX_X_LABELS) -> int:
    """Show every n-th x label so that at most `room` of them share the axis."""
    return max(1, math.ceil(count / room))


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def bar_chart_svg(chart: BarChart) -> Markup:
    """The chart as an accessible inline `<svg>`; every text is escaped."""
    if len(chart.labels) != len(chart.values):
        raise ValueError("one label per value")
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    ticks = nice_ticks(max(chart.values, default=0))
    top = ticks[-1]
    n = max(1, len(chart.values))
    slot = plot_w / n
    bar_w = max(1.0, slot * 0.7)
    title_id, desc_id = f"{chart.chart_id}-title", f"{chart.chart_id}-desc"
    spoken = ", ".join(f"{label}: {value}" for label, value in zip(chart.labels, chart.values, strict=True))
    parts: list[str] = [
        f'<svg class="chart" id="{escape(chart.chart_id)}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{escape(title_id)} {escape(desc_id)}" '
        f'font-family="system-ui, sans-serif" font-size="14">',
        f'<title id="{escape(title_id)}">{escape(chart.title)}</title>',
        f'<desc id="{escape(desc_id)}">{escape(chart.description)} {escape(spoken)}</desc>',
    ]
    for tick in ticks:
        y = TOP + plot_h - plot_h * tick / top
        parts.append(f'<line x1="{LEFT}" y1="{_fmt(y)}" x2="{WIDTH - RIGHT}" y2="{_fmt(y)}" stroke="{GRID}" '
                     f'stroke-width="1"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{_fmt(y + 5)}" text-anchor="end" fill="{AXIS}">{tick}</text>')
    every = label_every(len(chart.labels))
    for i, (label, value) in enumerate(zip(chart.labels, chart.values, strict=True)):
        height = plot_h * value / top
        x = LEFT + slot * i + (slot - bar_w) / 2
        y = TOP + plot_h - height
        parts.append(f'<rect class="bar" x="{_fmt(x)}" y="{_fmt(y)}" width="{_fmt(bar_w)}" height="{_fmt(height)}" '
                     f'fill="{BAR_FILL}"><title>{escape(label)}: {value}</title></rect>')
        if i % every == 0:
            cx = LEFT + slot * i + slot / 2
            parts.append(f'<text x="{_fmt(cx)}" y="{TOP + plot_h + 18}" text-anchor="middle" fill="{AXIS}" '
                         f'aria-hidden="true">{escape(label)}</text>')
    parts += [
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" stroke="{AXIS}" '
        f'stroke-width="1"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="{AXIS}" stroke-width="1"/>',
        f'<text class="axis-label" x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 8}" text-anchor="middle" '
        f'fill="{AXIS}">{escape(chart.x_label)}</text>',
        f'<text class="axis-label" x="16" y="{TOP + plot_h / 2:.0f}" text-anchor="middle" fill="{AXIS}" '
        f'transform="rotate(-90 16 {TOP + plot_h / 2:.0f})">{escape(chart.y_label)}</text>',
        "</svg>",
    ]
    return Markup("".join(parts))
