"""Small SVG charts drawn in Python: a timeline, histograms, percentile bands, a goal seek.

Each function returns one ``<svg class="chart">`` element as text, with its axes, a
``<title>`` and either a legend (``<g class="legend">``, in a column right of the plot) or
labelled series (``class="series-label"``). Labels are never placed where another could be:
values of markers go in the legend, not on the lines; axis labels are thinned until they fit.
Non-finite values are left out and the legend says how many. Nothing is loaded from
anywhere, so the report works offline and prints.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Marker", "Series", "fan_chart", "goal_seek", "histogram", "timeline"]

W = 960
TOP, BOTTOM, LEFT = 34, 46, 76
LEGEND_W = 220
"""The legend column, right of the plot."""
CHAR_W = 6.6
"""Width of an average 11 px sans-serif character: enough to lay out labels that fit."""
LINE = 15
COLOURS = ("#d9822b", "#2f9e44", "#c92a2a", "#7048e8", "#0c8599", "#868e96")
BLUE, DARK_BLUE, GREY = "#3569a8", "#1c3d66", "#868e96"

Formatter = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    """One set of values drawn as a histogram: its name in the legend and its colour."""

    name: str
    values: Sequence[float]
    colour: str = BLUE


@dataclass(frozen=True)
class Marker:
    """A vertical line at ``value``; the legend gives ``label`` and ``text`` (the value)."""

    label: str
    value: float
    text: str


def _finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round ticks from at or below ``lo`` to at or above ``hi``: at least 4 of them."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    # Values equal to a millionth of their size (a converged goal seek's last evaluations)
    # get an axis a millionth wide: ticks that a label of a few digits can tell apart.
    least = max(abs(lo), abs(hi)) * 1e-6
    if hi - lo < least:
        middle = (lo + hi) / 2
        lo, hi = middle - least / 2, middle + least / 2
    for want in (n, 2 * n, 4 * n):
        raw = (hi - lo) / want
        step = 10 ** math.floor(math.log10(raw))
        for m in (1, 2, 2.5, 5, 10):
            if raw <= m * step:
                step *= m
                break
        first, last = math.floor(lo / step), math.ceil(hi / step)
        # Integer multiples of the step: no 0.30000000000000004 on an axis.
        ticks = [float(f"{i * step:.12g}") for i in range(first, last + 1)]
        if len(ticks) >= 4:
            return ticks
    return ticks


def tick_formatter(ticks: Sequence[float], kind: str) -> Formatter:
    """One format for every tick of an axis, precise enough that no two read the same."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    if kind == "ratio":
        digits = _decimals(step * 100)
        return lambda x: f"{x * 100:.{digits}f}%"
    if kind in ("count", "whole"):
        return lambda x: f"{x:,.0f}"
    big = max(abs(t) for t in ticks)
    scale, suffix = next(
        ((s, u) for s, u in ((1e9, "G"), (1e6, "M"), (1e3, "k")) if big >= s), (1.0, "")
    )
    digits = _decimals(step / scale)
    return lambda x: "0" if x == 0 else f"{x / scale:,.{digits}f}{suffix}"


def _decimals(step: float) -> int:
    """The fewest decimals that write a multiple of ``step`` exactly (2.5: 1, 0.25: 2)."""
    for digits in range(10):
        if abs(round(step, digits) - step) <= 1e-9 * abs(step):
            return digits
    return 10


class _Frame:
    """Maps data to pixels in the plot area and draws the axes (ticks that fit)."""

    def __init__(
        self,
        xticks: Sequence[float],
        yticks: Sequence[float],
        *,
        height: int = 300,
        left: float = LEFT,
        legend: bool = True,
    ) -> None:
        self.xticks, self.yticks = list(xticks), list(yticks)
        self.x0, self.x1 = self.xticks[0], self.xticks[-1]
        self.y0, self.y1 = self.yticks[0], self.yticks[-1]
        self.height, self.left = height, left
        self.right = W - (LEGEND_W if legend else 20)
        self.bottom = height - BOTTOM

    def x(self, v: float) -> float:
        return self.left + (v - self.x0) / (self.x1 - self.x0) * (self.right - self.left)

    def y(self, v: float) -> float:
        return self.bottom - (v - self.y0) / (self.y1 - self.y0) * (self.bottom - TOP)

    def axes(self, xlabel: str, ylabel: str, xfmt: Formatter, yfmt: Formatter | None = None) -> str:
        b, left, right = self.bottom, self.left, self.right
        parts = [
            f'<line x1="{left}" y1="{b}" x2="{right}" y2="{b}" stroke="#333"/>',
            f'<line x1="{left}" y1="{TOP}" x2="{left}" y2="{b}" stroke="#333"/>',
        ]
        labels = [xfmt(t) for t in self.xticks]
        widest = max(len(s) for s in labels) * CHAR_W + 10
        spacing = (right - left) / max(1, len(self.xticks) - 1)
        every = max(1, math.ceil(widest / spacing))  # thin the labels until they fit
        for i, (t, text) in enumerate(zip(self.xticks, labels, strict=True)):
            x = self.x(t)
            parts.append(f'<line x1="{x:.1f}" y1="{b}" x2="{x:.1f}" y2="{b + 4}" stroke="#333"/>')
            if i % every == 0:
                parts.append(
                    f'<text x="{x:.1f}" y="{b + 20}" text-anchor="middle">{_esc(text)}</text>'
                )
        if yfmt is not None:
            for t in self.yticks:
                y = self.y(t)
                parts.append(
                    f'<line x1="{left - 4}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" '
                    f'stroke="#e9ecef"/><text x="{left - 6}" y="{y + 4:.1f}" '
                    f'text-anchor="end">{_esc(yfmt(t))}</text>'
                )
        middle = (TOP + b) / 2
        parts.append(
            f'<text x="{(left + right) / 2:.1f}" y="{self.height - 6}" text-anchor="middle">'
            f"{_esc(xlabel)}</text>"
        )
        if ylabel:
            parts.append(
                f'<text x="14" y="{middle:.1f}" text-anchor="middle" '
                f'transform="rotate(-90 14 {middle:.1f})">{_esc(ylabel)}</text>'
            )
        return "".join(parts)


def _esc(text: object) -> str:
    return html.escape(str(text))


def _svg(title: str, body: str, name: str, height: int = 300) -> str:
    return (
        f'<svg class="chart" data-chart="{name}" role="img" viewBox="0 0 {W} {height}" '
        f'width="{W}" height="{height}" xmlns="http://www.w3.org/2000/svg" '
        'font-family="sans-serif" font-size="11">'
        f"<title>{_esc(title)}</title>"
        f'<text x="{LEFT}" y="20" font-size="13" font-weight="bold">{_esc(title)}</text>'
        f"{body}</svg>"
    )


# A legend item: its swatch (drawn at x, y: the top left of a 16 x 12 box) and its lines.
_Swatch = Callable[[float, float], str]
_Item = tuple[_Swatch, list[str]]


def _box(colour: str, opacity: float = 1.0) -> _Swatch:
    return lambda x, y: (
        f'<rect x="{x}" y="{y}" width="16" height="11" fill="{colour}" opacity="{opacity}"/>'
    )


def _stroke(colour: str, dash: str = "", width: float = 2) -> _Swatch:
    dashes = f' stroke-dasharray="{dash}"' if dash else ""
    return lambda x, y: (
        f'<line x1="{x}" y1="{y + 6}" x2="{x + 16}" y2="{y + 6}" stroke="{colour}" '
        f'stroke-width="{width}"{dashes}/>'
    )


def _dot(colour: str, r: float = 3.5, stroke: str = "none") -> _Swatch:
    return lambda x, y: (
        f'<circle cx="{x + 8}" cy="{y + 6}" r="{r}" fill="{colour}" stroke="{stroke}" '
        'stroke-width="2"/>'
    )


def _legend_height(items: Sequence[_Item]) -> int:
    return sum(len(lines) * LINE + 6 for _, lines in items)


def _legend(items: Sequence[_Item]) -> str:
    """The legend column: one swatch per item, its lines of text beside it, one under another."""
    x, y = W - LEGEND_W + 14, TOP
    parts = ['<g class="legend">']
    for swatch, lines in items:
        parts.append(swatch(x, y + 1))
        for i, line in enumerate(lines):
            weight = ' font-weight="bold"' if i == 0 and len(lines) > 1 else ""
            parts.append(f'<text x="{x + 22}" y="{y + 10 + i * LINE}"{weight}>{_esc(line)}</text>')
        y += len(lines) * LINE + 6
    parts.append("</g>")
    return "".join(parts)


def _height(items: Sequence[_Item], rows: int = 0) -> int:
    return max(300, TOP + _legend_height(items) + 12, TOP + BOTTOM + rows * 24)


def _not_drawn(count: int, what: str) -> list[_Item]:
    if count == 0:
        return []
    return [(_box("#ffffff"), [f"{count:,} {what} not finite:", "not drawn"])]


def timeline(
    rows: Sequence[tuple[str, float, float, bool]],
    seconds_text: Formatter,
    title: str = "Node timeline",
) -> str:
    """One bar per node (``(node, start, seconds, succeeded)``), labelled with its seconds."""
    rows = [(n, s, d, ok) for n, s, d, ok in rows if math.isfinite(s) and math.isfinite(d)]
    end = max((s + d for _, s, d, _ in rows), default=1.0)
    left = max(LEFT, max((len(n) for n, *_ in rows), default=4) * CHAR_W + 16)
    ticks = nice_ticks(0.0, max(end, 1e-3))
    height = _height([], len(rows))
    frame = _Frame(ticks, [0.0, 1.0], height=height, left=left, legend=False)
    parts = [frame.axes("seconds since the run started", "", tick_formatter(ticks, "seconds"))]
    band = (frame.bottom - TOP) / max(1, len(rows))
    for i, (node, start, seconds, ok) in enumerate(rows):
        y = TOP + i * band + band * 0.25
        x0, x1 = frame.x(start), frame.x(start + seconds)
        colour = "#2f9e44" if ok else "#c92a2a"
        text = f"{seconds_text(seconds)} s"
        width = len(text) * CHAR_W
        # The seconds go right of the bar, or left of it when the plot has no room there.
        at, anchor = (x1 + 4, "start") if x1 + 4 + width < frame.right else (x0 - 4, "end")
        mid = y + band * 0.25 + 4
        parts.append(
            f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 2):.1f}" '
            f'height="{band * 0.5:.1f}" fill="{colour}" opacity="0.85">'
            f"<title>{_esc(node)}: {_esc(text)}</title></rect>"
            f'<text class="series-label" x="{left - 6:.1f}" y="{mid:.1f}" text-anchor="end">'
            f"{_esc(node)}</text>"
            f'<text x="{at:.1f}" y="{mid:.1f}" text-anchor="{anchor}">{_esc(text)}</text>'
        )
    return _svg(title, "".join(parts), "timeline", height)


def histogram(
    series: Sequence[Series],
    markers: Sequence[Marker],
    title: str,
    xlabel: str,
    bins: int = 40,
) -> str:
    """Histograms of one or more series on the same bins, a dashed line at each marker."""
    finite = [_finite(s.values) for s in series]
    dropped = [len(s.values) - len(f) for s, f in zip(series, finite, strict=True)]
    marks = [m for m in markers if math.isfinite(m.value)]
    everything = [v for f in finite for v in f] + [m.value for m in marks]
    lo, hi = (min(everything), max(everything)) if everything else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - (abs(lo) * 0.1 or 1.0), hi + (abs(hi) * 0.1 or 1.0)
    width = (hi - lo) / bins
    counts = []
    for values in finite:
        c = [0] * bins
        for v in values:
            c[min(bins - 1, int((v - lo) / width))] += 1
        counts.append(c)
    items: list[_Item] = []
    for s, c, gone in zip(series, counts, dropped, strict=True):
        opacity = 1.0 if len(series) == 1 else 0.55
        items.append((_box(s.colour, opacity), [s.name, f"{sum(c):,} scenarios"]))
        items += _not_drawn(gone, "scenarios")
    for j, m in enumerate(markers):
        colour = COLOURS[j % len(COLOURS)]
        items.append((_stroke(colour, "5 3"), [m.label, m.text]))
    height = _height(items)
    xticks = nice_ticks(lo, hi)
    yticks = nice_ticks(0, max(4, max((max(c) for c in counts), default=0)))
    frame = _Frame(xticks, yticks, height=height)
    parts = [frame.axes(xlabel, "scenarios", tick_formatter(xticks, "money"), _whole)]
    for s, c in zip(series, counts, strict=True):
        opacity = 1.0 if len(series) == 1 else 0.55
        for i, n in enumerate(c):
            if n == 0:
                continue
            x0, x1 = frame.x(lo + i * width), frame.x(lo + (i + 1) * width)
            parts.append(
                f'<rect x="{x0:.1f}" y="{frame.y(n):.1f}" width="{max(x1 - x0 - 1, 1):.1f}" '
                f'height="{frame.y(0) - frame.y(n):.1f}" fill="{s.colour}" '
                f'opacity="{opacity}"/>'
            )
    for j, m in enumerate(markers):
        if not math.isfinite(m.value):
            continue
        x = frame.x(m.value)
        parts.append(
            f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{frame.bottom}" '
            f'stroke="{COLOURS[j % len(COLOURS)]}" stroke-width="2" stroke-dasharray="5 3">'
            f"<title>{_esc(m.label)}: {_esc(m.text)}</title></line>"
        )
    parts.append(_legend(items))
    return _svg(title, "".join(parts), "npv", height)


def _whole(x: float) -> str:
    return f"{x:,.0f}" if x == int(x) else ""


def fan_chart(
    years: Sequence[int], percentiles: dict[str, Sequence[float]], title: str, ylabel: str
) -> str:
    """Percentile bands of a rate by year (1-99, 5-95, 25-75) and the median line."""
    drawable = {
        k: [float(v) for v in row]
        for k, row in percentiles.items()
        if len(row) == len(years) and len(_finite(row)) == len(row)
    }
    values = [v for row in drawable.values() for v in row]
    lo, hi = (min(values), max(values)) if values else (0.0, 0.01)
    xticks = nice_ticks(min(years, default=1), max(years, default=2))
    yticks = nice_ticks(lo, hi)
    items: list[_Item] = []
    bands = ((("1", "99"), 0.18), (("5", "95"), 0.32), (("25", "75"), 0.55))
    for (low, high), opacity in bands:
        if low in drawable and high in drawable:
            items.append((_box(BLUE, opacity), [f"{_nth(low)} to {_nth(high)} percentile"]))
    if "50" in drawable:
        items.append((_stroke(DARK_BLUE), ["median"]))
    not_drawn = len(percentiles) - len(drawable)
    if not_drawn:
        items.append((_box("#ffffff"), [f"{not_drawn} percentiles not finite:", "not drawn"]))
    height = _height(items)
    frame = _Frame(xticks, yticks, height=height)
    parts = [
        frame.axes(
            "projection year",
            ylabel,
            tick_formatter(xticks, "whole"),
            tick_formatter(yticks, "ratio"),
        )
    ]
    for (low, high), opacity in bands:
        if low not in drawable or high not in drawable:
            continue
        top = [
            f"{frame.x(y):.1f},{frame.y(v):.1f}" for y, v in zip(years, drawable[high], strict=True)
        ]
        bottom = [
            f"{frame.x(y):.1f},{frame.y(v):.1f}"
            for y, v in zip(reversed(years), reversed(drawable[low]), strict=True)
        ]
        parts.append(
            f'<polygon points="{" ".join(top + bottom)}" fill="{BLUE}" opacity="{opacity}">'
            f"<title>{_nth(low)} to {_nth(high)} percentile</title></polygon>"
        )
    if "50" in drawable:
        points = " ".join(
            f"{frame.x(y):.1f},{frame.y(v):.1f}" for y, v in zip(years, drawable["50"], strict=True)
        )
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{DARK_BLUE}" stroke-width="2"/>'
        )
    parts.append(_legend(items))
    return _svg(title, "".join(parts), "esg_fan", height)


def _nth(text: str) -> str:
    """``1`` -> ``1st``, ``5`` -> ``5th``: a percentile's ordinal."""
    n = int(text) if text.isdigit() else -1
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{text}{suffix}"


def goal_seek(
    xs: Sequence[float],
    ys: Sequence[float],
    target: Marker | None,
    solution: int | None,
    title: str,
    axes: tuple[str, str, str, str],
    legend: tuple[str, str],
) -> str:
    """Each evaluation as a point (parameter, metric), the solution ringed, the target line.

    ``axes``: x label, y label, x kind, y kind (for the tick format); ``legend``: the
    evaluations' and the solution's legend text.
    """
    xlabel, ylabel, xkind, ykind = axes
    points = [
        (i, float(x), float(y))
        for i, (x, y) in enumerate(zip(xs, ys, strict=True))
        if math.isfinite(float(x)) and math.isfinite(float(y))
    ]
    all_y = [y for _, _, y in points] + (
        [target.value] if target is not None and math.isfinite(target.value) else []
    )
    all_x = [x for _, x, _ in points]
    xticks = nice_ticks(min(all_x, default=0.0), max(all_x, default=1.0))
    yticks = nice_ticks(min(all_y, default=0.0), max(all_y, default=1.0))
    items: list[_Item] = [(_dot(BLUE), [legend[0], f"{len(points)} drawn"])]
    items += _not_drawn(len(xs) - len(points), "evaluations")
    if solution is not None:
        items.append((_dot("#ffffff", 6, "#c92a2a"), ["solution", legend[1]]))
    if target is not None:
        items.append((_stroke("#c92a2a", "5 3"), [target.label, target.text]))
    height = _height(items)
    frame = _Frame(xticks, yticks, height=height)
    parts = [
        frame.axes(xlabel, ylabel, tick_formatter(xticks, xkind), tick_formatter(yticks, ykind))
    ]
    if target is not None and math.isfinite(target.value):
        y = frame.y(target.value)
        parts.append(
            f'<line x1="{frame.left}" y1="{y:.1f}" x2="{frame.right}" y2="{y:.1f}" '
            'stroke="#c92a2a" stroke-width="1.5" stroke-dasharray="5 3"/>'
        )
    for i, x, y in points:
        if i == solution:
            parts.append(
                f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="7" fill="none" '
                'stroke="#c92a2a" stroke-width="2"/>'
            )
        parts.append(
            f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="3.5" fill="{BLUE}">'
            f"<title>evaluation {i + 1}: {x:.6g} gives {y:,.6g}</title></circle>"
        )
    parts.append(_legend(items))
    return _svg(title, "".join(parts), "goal_seek", height)
