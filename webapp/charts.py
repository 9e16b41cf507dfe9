"""Figures for the staff dashboard: sign-ups and unsubscribes per day, and the chart of them.

The chart is SVG written on the server, so the page needs no JavaScript; screen readers
get its title and a summary (the page shows the figures themselves in a table).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from markupsafe import Markup, escape

from . import counters
from .models import EventKind, EventSource


@dataclass(frozen=True)
class DailyCounts:
    days: list[date]  # oldest first; the last is today (UTC)
    signups: list[int]  # "subscribed" events that day (a pending reader's resubmission counts)
    unsubscribes: list[int]  # "unsubscribed" events that day
    # New readers over the days ("subscribed" and "imported" events) by where they came
    # from: "form", "import", "staff", "api", "other".
    by_source: dict[str, int] = field(default_factory=dict)

    @property
    def total_signups(self) -> int:
        return sum(self.signups)

    @property
    def total_unsubscribes(self) -> int:
        return sum(self.unsubscribes)


def daily_counts(days: int = 90, *, today: date | None = None) -> DailyCounts:
    """Sign-ups and unsubscribes per UTC day over the last `days` days, today included, from
    the events' per-day counters (counters.py; days without any are zeros); and the new
    readers of those days by where they came from (`DailyCounts.by_source`). Reads at most
    a row per day, kind and source, however many readers signed up."""
    if days < 1:
        raise ValueError("days must be at least 1")
    today = today or datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    counts: dict[tuple[date, EventKind], int] = {}
    by_source = dict.fromkeys(["form", "import", "staff", "api", "other"], 0)
    for (d, kind, source), n in counters.events_per_day(first, today).items():
        if kind not in CHARTED:
            continue
        counts[(d, kind)] = counts.get((d, kind), 0) + n
        if kind in (EventKind.SUBSCRIBED, EventKind.IMPORTED):
            by_source[SIGNUP_SOURCES.get(source, "other")] += n
    every_day = [first + timedelta(days=i) for i in range(days)]
    return DailyCounts(
        days=every_day,
        signups=[counts.get((d, EventKind.SUBSCRIBED), 0) for d in every_day],
        unsubscribes=[counts.get((d, EventKind.UNSUBSCRIBED), 0) for d in every_day],
        by_source=by_source,
    )


CHARTED = {EventKind.SUBSCRIBED, EventKind.UNSUBSCRIBED, EventKind.IMPORTED}

# Where new readers came from, as the dashboard names it, by the events' source: a sign-up
# through the form or the API, a reader imported by CSV or added by staff.
SIGNUP_SOURCES = {
    EventSource.WEB: "form",
    EventSource.IMPORT: "import",
    EventSource.CLI: "import",
    EventSource.STAFF: "staff",
    EventSource.STAFF_BULK: "staff",
    EventSource.API: "api",
}


@dataclass(frozen=True)
class Series:
    key: str  # names the series in data-series, for styles and tests
    label: str  # in the legend and the accessible text
    values: Sequence[float]  # one per day (or per label)
    color: str
    dashed: bool = False  # so the series differ by more than colour


# The drawing's own units; the page scales it to the width available.
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 44, 16, 40, 52
X_TICK_EVERY = 15  # days between date labels


def svg_chart(
    days: Sequence[date],
    series: Sequence[Series],
    *,
    title: str,
    description: str,
    x_label: str,
    y_label: str,
    chart_id: str = "chart",
    labels: Sequence[str] | None = None,
    tick_every: int = X_TICK_EVERY,
) -> Markup:
    """An inline <svg> line chart of daily figures: a title and a description for screen
    readers, a legend, axes with labels, and a mark with a tooltip on every non-zero day
    (with data-date and data-count). Every text is escaped.

    `labels`, one per point, replace the dates under the axis and in the tooltips (the
    readership chart's points are issues, not days)."""
    if labels is not None and len(labels) != len(days):
        raise ValueError("one label per point")
    if not days or any(len(s.values) != len(days) for s in series):
        raise ValueError("every series needs one value per day")
    top_value, step = _y_scale(max((max(s.values) for s in series), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (len(days) - 1) if len(days) > 1 else plot_w / 2)

    def y(value: int) -> float:
        return TOP + plot_h - plot_h * value / top_value

    ident = escape(chart_id)
    parts = [
        f'<svg class="chart" id="{ident}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{ident}-title {ident}-desc" xmlns="http://www.w3.org/2000/svg" '
        f'data-first-day="{days[0].isoformat()}" data-last-day="{days[-1].isoformat()}">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(description)}</desc>',
    ]
    # Horizontal grid lines with their values on the y axis.
    for value in range(0, top_value + 1, step):
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}" stroke="#e5e7eb"/>'
            f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value}</text>'
        )
    # Date labels every X_TICK_EVERY days, counted back from the last day so it is labelled.
    for i in range(len(days) - 1, -1, -tick_every):
        tick = labels[i] if labels is not None else days[i].strftime("%m-%d")
        # The newest day's label ends at its tick, so the drawing's edge never cuts it off.
        anchor = "end" if i == len(days) - 1 and len(days) > 1 else "middle"
        parts.append(
            f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}" '
            f'stroke="#6b7280"/><text x="{x(i):.1f}" y="{TOP + plot_h + 18}" '
            f'text-anchor="{anchor}">{escape(tick)}</text>'
        )
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" '
        f'stroke="#6b7280"/>'
        f'<text class="axis-label" x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 8}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
        f'<text class="axis-label" x="12" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {TOP + plot_h / 2:.1f})">{escape(y_label)}</text>'
    )
    legend_x = LEFT
    for s in series:
        color, dash = escape(s.color), ' stroke-dasharray="6 4"' if s.dashed else ""
        parts.append(
            f'<g class="legend" aria-hidden="true"><line x1="{legend_x}" x2="{legend_x + 24}" '
            f'y1="16" y2="16" stroke="{color}" stroke-width="2"{dash}/>'
            f'<text x="{legend_x + 30}" y="20">{escape(s.label)}</text></g>'
        )
        legend_x += 30 + 14 * len(s.label) + 24
    for s in series:
        color, dash = escape(s.color), ' stroke-dasharray="6 4"' if s.dashed else ""
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(s.values))
        parts.append(
            f'<g class="series" data-series="{escape(s.key)}" data-total="{sum(s.values)}">'
            f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{points}"/>'
        )
        for i, value in enumerate(s.values):
            if value:
                day = days[i].isoformat()
                where = labels[i] if labels is not None else day
                parts.append(
                    f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="3" fill="{color}" '
                    f'data-date="{day}" data-count="{value}">'
                    f"<title>{escape(f'{where} {s.label}: {value}')}</title></circle>"
                )
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("\n".join(parts))


def _y_scale(highest: int) -> tuple[int, int]:
    """(top of the axis, step between grid lines): whole numbers, 1, 2 or 5 times a power of
    ten, at most four steps, and the top at or just above the highest value."""
    wanted = max(highest, 1) / 4
    magnitude = 10 ** math.floor(math.log10(wanted)) if wanted >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= wanted)
    return step * max(1, math.ceil(highest / step)), step
