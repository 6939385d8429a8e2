"""The run report's nested-valuation section: the LSMC proxy against the validation points.

``nested_chart`` takes, from a run's statistics, what the chart needs of each ``nested`` node
with an LSMC proxy (the validation points: short rate, nested value and its standard error;
the proxy's curve; the closed form where there is one), kept small and stored with the run's
record like the other charts (``livecalc.ops.charts``). ``nested_section`` draws it as one SVG
per node (points with +-2 standard error bars, the proxy as a line, the closed form dashed)
and a table of the fit: self-contained, no script, like the rest of the report.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MAX_POINTS", "nested_chart", "nested_section"]

MAX_POINTS = 2000
"""Validation points drawn at most (evenly thinned beyond)."""

W, H, LEFT, RIGHT, TOP, BOTTOM = 640, 320, 80, 20, 30, 45


def nested_chart(statistics: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """Per node id, the proxy chart's data; None when no node fitted an LSMC proxy."""
    charts = {}
    for node_id, outputs in statistics.items():
        nested, lsmc = outputs.get("nested"), outputs.get("lsmc")
        if not isinstance(nested, Mapping) or not isinstance(lsmc, Mapping):
            continue
        paths, curve = nested.get("outer_paths"), lsmc.get("curve")
        if not isinstance(paths, Mapping) or not isinstance(curve, Mapping):
            continue
        n = len(paths["short_rate"])
        step = max(1, -(-n // MAX_POINTS))
        charts[node_id] = {
            "valuation_year": nested["valuation_year"],
            "short_rate": paths["short_rate"][::step],
            "value": paths["value"][::step],
            "standard_error": paths["standard_error"][::step],
            "curve": dict(curve),
            "fit": {
                "basis": lsmc["basis"],
                "degree": lsmc["degree"],
                "fit paths": lsmc["fit_paths"],
                "R^2 (fit set)": lsmc["r2"],
                "R^2 out of sample": lsmc["r2_oos"],
                "max |rel. error| out of sample": lsmc["max_abs_rel_error_oos"],
                "var_99_5 nested": nested["var_99_5"],
                "var_99_5 nested MC error": nested["var_99_5_se"],
                "var_99_5 proxy": lsmc["var_99_5"],
            },
        }
    return charts or None


def _fmt(x: float) -> str:
    return f"{x:,.4g}" if abs(x) < 1e3 else f"{x:,.0f}"


def _svg(node_id: str, data: Mapping[str, Any]) -> str:
    r = [float(v) for v in data["short_rate"]]
    v = [float(x) for x in data["value"]]
    se = [float(x) for x in data["standard_error"]]
    curve = data["curve"]
    lines = {"proxy": curve["proxy"], "closed form": curve.get("closed_form") or []}
    ys = [*(a - 2 * s for a, s in zip(v, se, strict=True))]
    ys += [a + 2 * s for a, s in zip(v, se, strict=True)]
    ys += [float(a) for a in (*lines["proxy"], *lines["closed form"])]
    xs = [*r, *(float(a) for a in curve["short_rate"])]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1.0), (y1 if y1 > y0 else y0 + 1.0)

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT)

    def py(y: float) -> float:
        return H - BOTTOM - (y - y0) / (y1 - y0) * (H - TOP - BOTTOM)

    axis = 'stroke="#495057"'
    parts = [
        f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" {axis}/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" {axis}/>',
    ]
    for i in range(5):
        xv, yv = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        parts.append(
            f'<text x="{px(xv):.1f}" y="{H - BOTTOM + 15}" text-anchor="middle">{xv:.2%}</text>'
            f'<text x="{LEFT - 6}" y="{py(yv) + 4:.1f}" text-anchor="end">{_fmt(yv)}</text>'
        )
    t = data["valuation_year"]
    parts.append(
        f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 8}" text-anchor="middle">short rate at '
        f"year {t}</text>"
    )
    for a, b, s in zip(r, v, se, strict=True):
        parts.append(
            f'<line x1="{px(a):.1f}" y1="{py(b - 2 * s):.1f}" x2="{px(a):.1f}" '
            f'y2="{py(b + 2 * s):.1f}" stroke="#adb5bd"/>'
            f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="2.2" fill="#1c7ed6" opacity="0.7"/>'
        )
    styles = {"proxy": 'stroke="#e8590c" stroke-width="2"', "closed form": 'stroke="#2b8a3e" '
              'stroke-width="1.5" stroke-dasharray="5 3"'}  # fmt: skip
    for name, values in lines.items():
        if not values:
            continue
        points = " ".join(
            f"{px(float(a)):.1f},{py(float(b)):.1f}"
            for a, b in zip(curve["short_rate"], values, strict=True)
        )
        parts.append(f'<polyline fill="none" {styles[name]} points="{points}"/>')
    legend = "validation points (nested value +- 2 se), proxy (orange)"
    if lines["closed form"]:
        legend += ", closed form (green, dashed)"
    parts.append(f'<text x="{LEFT + 6}" y="{TOP + 10}" fill="#495057">{html.escape(legend)}</text>')
    title = f"{node_id}: LSMC proxy against the validation points (value at year {t})"
    return (
        f'<svg class="chart" data-chart="lsmc_proxy" role="img" viewBox="0 0 {W} {H}" '
        f'width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" '
        f'font-size="11"><title>{html.escape(title)}</title>'
        f'<text x="{LEFT}" y="18" font-size="13" font-weight="bold">{html.escape(title)}</text>'
        + "".join(parts)
        + "</svg>"
    )


def _fit_table(fit: Mapping[str, Any]) -> str:
    rows = "".join(
        f'<tr><td>{html.escape(str(k))}</td><td class="num">'
        f"{html.escape(_fmt(v) if isinstance(v, float) else str(v))}</td></tr>"
        for k, v in fit.items()
    )
    return f"<table><tbody>{rows}</tbody></table>"


def nested_section(record: Mapping[str, Any]) -> str:
    """The report's section for the run's nested nodes; empty when there are none."""
    charts: Sequence[Any] | Mapping[str, Any] = (record.get("charts") or {}).get("nested") or {}
    if not isinstance(charts, Mapping) or not charts:
        return ""
    body = "".join(
        f'<div class="charts">{_svg(node_id, data)}</div>{_fit_table(data["fit"])}'
        for node_id, data in charts.items()
    )
    return f"<h2>Nested valuation and LSMC proxy</h2>{body}"
