"""Small SVG charts drawn in Python: bars on a timeline, a histogram, bands, a line.

Each function returns one ``<svg class="chart">`` element as text, with its axes, labels
and a ``<title>``; nothing is loaded from anywhere, so the report works offline and prints.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

__all__ = ["fan_chart", "histogram", "line_chart", "timeline"]

W, H = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 80, 20, 30, 45
COLOURS = ("#3569a8", "#d9822b", "#2f9e44", "#c92a2a", "#7048e8", "#868e96")


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1e9:
        return f"{x / 1e9:.3g}G"
    if a >= 1e6:
        return f"{x / 1e6:.3g}M"
    if a >= 1e3:
        return f"{x / 1e3:.3g}k"
    return f"{x:.3g}"


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * step:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


class _Frame:
    """Maps data to pixels and draws the axes."""

    def __init__(self, x0: float, x1: float, y0: float, y1: float) -> None:
        if x1 <= x0:
            x1 = x0 + 1
        if y1 <= y0:
            y1 = y0 + 1
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1

    def x(self, v: float) -> float:
        return LEFT + (v - self.x0) / (self.x1 - self.x0) * (W - LEFT - RIGHT)

    def y(self, v: float) -> float:
        return H - BOTTOM - (v - self.y0) / (self.y1 - self.y0) * (H - TOP - BOTTOM)

    def axes(self, xlabel: str, ylabel: str, yticks: bool = True, whole_x: bool = False) -> str:
        parts = [
            f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" '
            'stroke="#333"/>',
            f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" stroke="#333"/>',
        ]
        for t in _ticks(self.x0, self.x1):
            if whole_x and t != int(t):
                continue  # evaluations and years are whole numbers
            x = self.x(t)
            parts.append(
                f'<line x1="{x:.1f}" y1="{H - BOTTOM}" x2="{x:.1f}" y2="{H - BOTTOM + 4}" '
                f'stroke="#333"/><text x="{x:.1f}" y="{H - BOTTOM + 16}" '
                f'text-anchor="middle">{_fmt(t)}</text>'
            )
        if yticks:
            for t in _ticks(self.y0, self.y1):
                y = self.y(t)
                parts.append(
                    f'<line x1="{LEFT - 4}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" '
                    f'stroke="#e9ecef"/><text x="{LEFT - 6}" y="{y + 4:.1f}" '
                    f'text-anchor="end">{_fmt(t)}</text>'
                )
        parts.append(
            f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 8}" text-anchor="middle">'
            f"{html.escape(xlabel)}</text>"
        )
        parts.append(
            f'<text x="14" y="{(TOP + H - BOTTOM) / 2}" text-anchor="middle" '
            f'transform="rotate(-90 14 {(TOP + H - BOTTOM) / 2})">{html.escape(ylabel)}</text>'
        )
        return "".join(parts)


def _svg(title: str, body: str, name: str) -> str:
    return (
        f'<svg class="chart" data-chart="{name}" role="img" viewBox="0 0 {W} {H}" '
        f'width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg" '
        'font-family="sans-serif" font-size="11">'
        f"<title>{html.escape(title)}</title>"
        f'<text x="{LEFT}" y="18" font-size="13" font-weight="bold">{html.escape(title)}</text>'
        f"{body}</svg>"
    )


def timeline(rows: Sequence[Mapping[str, object]], title: str = "Node timeline") -> str:
    """Horizontal bars from each node's start to its end, in seconds since the run began."""
    end = max((float(r["end"]) for r in rows), default=1.0)  # type: ignore[arg-type]
    frame = _Frame(0.0, max(end, 1e-3), 0.0, 1.0)
    band = (H - TOP - BOTTOM) / max(1, len(rows))
    parts = [frame.axes("seconds since the run started", "", yticks=False)]
    for i, r in enumerate(rows):
        y = TOP + i * band + band * 0.35
        x0, x1 = frame.x(float(r["start"])), frame.x(float(r["end"]))  # type: ignore[arg-type]
        colour = "#2f9e44" if r.get("status") == "succeeded" else "#c92a2a"
        label = html.escape(f"{r['node_id']}: {float(r['end']) - float(r['start']):.3f} s")  # type: ignore[arg-type]
        parts.append(
            f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 2):.1f}" '
            f'height="{band * 0.5:.1f}" fill="{colour}" opacity="0.8"><title>{label}</title>'
            f"</rect>{_label(x0, x1, y - 4, label)}"
        )
    return _svg(title, "".join(parts), "timeline")


def _label(x0: float, x1: float, y: float, text: str) -> str:
    # A bar near the right edge gets its label ending at the bar's end, not running off.
    right = x0 > LEFT + 0.6 * (W - LEFT - RIGHT)
    x, anchor = (x1, "end") if right else (x0, "start")
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="#212529">{text}</text>'


def histogram(
    values: Sequence[float], markers: Mapping[str, float], title: str, bins: int = 40
) -> str:
    """A histogram of ``values`` with a vertical line at each marker (VaR, CTE)."""
    lo, hi = min(values), max(values)
    for v in markers.values():
        lo, hi = min(lo, v), max(hi, v)
    if hi <= lo:
        lo, hi = lo - 1, hi + 1
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / width))] += 1
    frame = _Frame(lo, hi, 0, max(counts) * 1.1)
    parts = [frame.axes("portfolio NPV per scenario", "scenarios")]
    for i, c in enumerate(counts):
        x0, x1 = frame.x(lo + i * width), frame.x(lo + (i + 1) * width)
        parts.append(
            f'<rect x="{x0:.1f}" y="{frame.y(c):.1f}" width="{max(x1 - x0 - 1, 1):.1f}" '
            f'height="{frame.y(0) - frame.y(c):.1f}" fill="#3569a8"/>'
        )
    for j, (name, v) in enumerate(sorted(markers.items())):
        x = frame.x(v)
        colour = COLOURS[(j + 1) % len(COLOURS)]
        parts.append(
            f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{H - BOTTOM}" stroke="{colour}" '
            f'stroke-width="2" stroke-dasharray="5 3"/><text x="{x + 3:.1f}" '
            f'y="{TOP + 12 + 12 * j}" fill="{colour}">{html.escape(name)} {_fmt(v)}</text>'
        )
    return _svg(title, "".join(parts), "npv")


def fan_chart(years: Sequence[int], percentiles: Mapping[str, Sequence[float]], title: str) -> str:
    """Percentile bands of a rate by year (1-99, 5-95, 25-75) and the median line."""
    all_values = [v for row in percentiles.values() for v in row]
    frame = _Frame(min(years), max(years), min(all_values), max(all_values))
    parts = [frame.axes("projection year", "short rate")]
    for (low, high), opacity in ((("1", "99"), 0.18), (("5", "95"), 0.3), (("25", "75"), 0.5)):
        if low not in percentiles or high not in percentiles:
            continue
        top = [
            f"{frame.x(y):.1f},{frame.y(v):.1f}"
            for y, v in zip(years, percentiles[high], strict=True)
        ]
        bottom = [
            f"{frame.x(y):.1f},{frame.y(v):.1f}"
            for y, v in zip(reversed(years), reversed(percentiles[low]), strict=True)
        ]
        parts.append(
            f'<polygon points="{" ".join(top + bottom)}" fill="#3569a8" opacity="{opacity}">'
            f"<title>percentiles {low}-{high}</title></polygon>"
        )
    if "50" in percentiles:
        points = " ".join(
            f"{frame.x(y):.1f},{frame.y(v):.1f}"
            for y, v in zip(years, percentiles["50"], strict=True)
        )
        parts.append(f'<polyline points="{points}" fill="none" stroke="#1c3d66" stroke-width="2"/>')
    return _svg(title, "".join(parts), "esg_fan")


def line_chart(
    values: Sequence[float], target: float | None, title: str, xlabel: str, ylabel: str
) -> str:
    """Values by position (1, 2, ...) as a line with points, and a target line."""
    ys = [*values, *([target] if target is not None else [])]
    frame = _Frame(1, max(2, len(values)), min(ys), max(ys))
    parts = [frame.axes(xlabel, ylabel, whole_x=True)]
    points = [(frame.x(i + 1), frame.y(v)) for i, v in enumerate(values)]
    if target is not None:
        y = frame.y(target)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#c92a2a" '
            f'stroke-dasharray="5 3"/><text x="{W - RIGHT - 4}" y="{y - 4:.1f}" '
            f'text-anchor="end" fill="#c92a2a">target {_fmt(target)}</text>'
        )
    parts.append(
        '<polyline points="'
        + " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        + '" fill="none" stroke="#3569a8" stroke-width="2"/>'
    )
    parts += [
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#3569a8"><title>evaluation {i + 1}: '
        f"{values[i]:.6g}</title></circle>"
        for i, (x, y) in enumerate(points)
    ]
    return _svg(title, "".join(parts), "goal_seek")
