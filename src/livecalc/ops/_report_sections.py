"""The report's detail sections: results' charts, metrics (or what moved), checks, SLA,
nodes with their timeline, provenance."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from livecalc.ops import _svg
from livecalc.ops._report_view import (
    ReportView,
    as_float,
    esc,
    html_table,
    num,
    severity_class,
    status_class,
)
from livecalc.ops.labels import (
    describe_metrics,
    format_change,
    format_value,
    label_of,
    number,
    unit_of,
)

__all__ = [
    "checks",
    "metrics",
    "nodes",
    "npv_chart",
    "provenance",
    "results",
    "sla",
    "timeline_chart",
]


def npv_chart(view: ReportView) -> str:
    """The portfolio NPV distribution, with the solver's VaR and CTE (and mean) marked."""
    npv = (view.record.get("charts") or {}).get("npv") or {}
    values = npv.get("values") or []
    if not values:
        return ""
    unit = f" ({view.currency})" if view.currency else ""
    markers = _markers(view, npv.get("markers") or {})
    return _svg.histogram(
        [_svg.Series("NPV per scenario", [as_float(v) for v in values])],
        markers,
        f"Portfolio NPV distribution ({len(values):,} scenarios)",
        f"portfolio NPV per scenario{unit}",
    )


def _markers(view: ReportView, raw: Mapping[str, Any]) -> list[_svg.Marker]:
    mean = next((m for m in view.metrics if m.key == "metrics.mean"), None)
    out = []
    if mean is not None and mean.value is not None:
        out.append(_svg.Marker(mean.label, mean.value, view.with_unit(mean.value, "money")))
    for name, value in sorted(raw.items()):
        label = label_of("solver", f"metrics.{name}")[0]
        out.append(_svg.Marker(label, as_float(value), view.with_unit(value, "money")))
    return out


def results(view: ReportView) -> str:
    charts = view.record.get("charts") or {}
    svgs = [npv_chart(view)]
    seek = charts.get("goal_seek")
    if seek and seek.get("objective"):
        svgs.append(_goal_seek_chart(view, seek))
    fan = charts.get("esg_fan")
    if fan:
        svgs.append(
            _svg.fan_chart(
                fan["years"],
                fan["percentiles"],
                f"ESG short rate by projection year ({fan['scenarios']:,} scenarios)",
                "short rate",
            )
        )
    drawn = "".join(s for s in svgs if s)
    return f'<h2>Results</h2><div class="charts">{drawn}</div>' if drawn else ""


def _goal_seek_chart(view: ReportView, seek: Mapping[str, Any]) -> str:
    metric = label_of("solver", f"metrics.{seek.get('metric')}")
    ys = [as_float(v) for v in seek["objective"]]
    params = seek.get("parameters") or []
    names = sorted({k for p in params if isinstance(p, Mapping) for k in p})
    target_value = number(seek.get("target"))
    target = (
        _svg.Marker("target", target_value, view.with_unit(target_value, metric[1]))
        if target_value is not None
        else None
    )
    ylabel = metric[0] + (f" ({view.currency})" if view.currency and metric[1] == "money" else "")
    if len(names) == 1 and len(params) == len(ys):
        name = names[0]
        label, kind, _ = label_of("solver", f"solution.{name}")
        xs = [as_float(p.get(name)) for p in params]
        solution = number(
            (view.record.get("metrics") or {}).get("solver", {}).get(f"solution.{name}")
        )
        found = [i for i, x in enumerate(xs) if solution is not None and x == solution]
        at = found[-1] if found else len(xs) - 1
        return _svg.goal_seek(
            xs,
            ys,
            target,
            at,
            f"Goal seek: {metric[0]} against the {label.lower()}",
            (label, ylabel, "number" if kind == "factor" else kind, metric[1]),
            ("evaluations", f"{label.lower()} {format_value(xs[at], kind)}"),
        )
    xs = [float(i + 1) for i in range(len(ys))]
    return _svg.goal_seek(
        xs,
        ys,
        target,
        len(ys) - 1,
        f"Optimisation: {metric[0]} by evaluation",
        ("evaluation", ylabel, "count", metric[1]),
        ("evaluations", f"evaluation {len(ys)}"),
    )


def metrics(view: ReportView) -> str:
    if view.diff is not None:
        return _comparison(view)
    rows = [
        [
            esc(m.label),
            num(m.value, m.kind),
            esc(view.unit(m.kind)),
            f'<code class="muted">{esc(m.name)}</code>',
        ]
        for m in view.metrics
    ]
    return "<h2>Metrics</h2>" + (
        html_table(["metric", "value", "unit", "stored as"], rows) if rows else "<p>None.</p>"
    )


def _comparison(view: ReportView) -> str:
    diff = view.diff
    assert diff is not None
    other, this = view.against or {}, view.record
    shown = {m.name for m in view.metrics} | {f"{m.node}.{m.key}" for m in describe_metrics(other)}
    rows, classes = [], []
    for m in diff["metrics"]:
        if m["metric"] not in shown:
            continue  # the same number under a second key (solution.* and optimization.*)
        kind = m["kind"]
        rows.append(
            [
                esc(m["label"]),
                esc(unit_of(kind, view.currency)),
                num(m["a"], kind),
                num(m["b"], kind),
                num(m["difference"], kind),
                f'<span class="num">{esc(format_change(m["relative"]))}</span>',
            ]
        )
        big = (
            kind != "seconds" and m["relative"] is not None and abs(m["relative"]) > view.threshold
        )
        classes.append("moved" if big else "")
    config = [[esc(c["key"]), esc(c["a"]), esc(c["b"])] for c in diff["config"]]
    timings = [
        [
            esc(t["target"]),
            num(t["a"], "seconds"),
            num(t["b"], "seconds"),
            num(t["ratio"], "number"),
        ]
        for t in diff["timings"]
    ]
    overlay = _overlay(view, other, this)
    return (
        f"<h2>What moved against run <code>{esc(diff['a'])}</code></h2>"
        f"<p>Metrics ordered by the size of their move; moves beyond "
        f"{view.threshold:.0%} are highlighted.</p>"
        + (f'<div class="charts">{overlay}</div>' if overlay else "")
        + '<div class="side"><div><h3>Metrics</h3>'
        + html_table(
            ["metric", "unit", f"run {diff['a']}", f"this run {diff['b']}", "difference", "move"],
            rows,
            classes,
        )
        + "</div><div><h3>Config differences</h3>"
        + (
            html_table(["key", f"run {diff['a']}", "this run"], config)
            if config
            else "<p>None.</p>"
        )
        + "</div></div><h3>Timings (seconds)</h3>"
        + html_table(["target", f"run {diff['a']}", "this run", "ratio"], timings)
    )


def _overlay(view: ReportView, other: Mapping[str, Any], this: Mapping[str, Any]) -> str:
    a = ((other.get("charts") or {}).get("npv") or {}).get("values") or []
    b = ((this.get("charts") or {}).get("npv") or {}).get("values") or []
    if not a or not b:
        return ""
    unit = f" ({view.currency})" if view.currency else ""
    return _svg.histogram(
        [
            _svg.Series(f"run {other['run_id']}", [as_float(v) for v in a], "#d9822b"),
            _svg.Series(f"this run {this['run_id']}", [as_float(v) for v in b], _svg.BLUE),
        ],
        [],
        "Portfolio NPV distributions, both runs",
        f"portfolio NPV per scenario{unit}",
    ).replace('data-chart="npv"', 'data-chart="npv_compare"')


def checks(view: ReportView) -> str:
    rows = []
    for c in view.record.get("checks") or []:
        mark = (
            '<span class="ok">passed</span>'
            if c["passed"]
            else f'<span class="{severity_class(c)}">FAILED</span>'
        )
        rows.append(
            [
                f"<b>{esc(c['name'])}</b>"
                + (f"<br>{esc(c['description'])}" if c.get("description") else ""),
                esc(c["kind"]),
                esc(c["severity"]),
                mark,
                _value(c.get("value")),
                _value(c.get("threshold")),
                esc(c.get("message")),
            ]
        )
    return "<h2>Checks</h2>" + (
        html_table(["check", "kind", "severity", "result", "value", "threshold", "message"], rows)
        if rows
        else "<p>No checks declared.</p>"
    )


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(format_value(v, "number") for v in value)
    return esc(format_value(value, "number"))


def sla(view: ReportView) -> str:
    sla = [
        [
            esc(s["target"]),
            num(s["limit_seconds"], "seconds"),
            num(s["seconds"], "seconds"),
            '<span class="bad">BREACHED</span>' if s["breached"] else '<span class="ok">met</span>',
        ]
        for s in view.record.get("sla") or []
    ]
    return "<h2>SLA</h2>" + (
        html_table(["target", "limit (s)", "took (s)", "result"], sla) if sla else "<p>No SLA.</p>"
    )


def nodes(view: ReportView) -> str:
    nodes = view.record.get("nodes") or []
    rows = [
        [
            esc(n["node_id"]),
            esc(n.get("engine_type")),
            f'<span class="{status_class(str(n["status"]))}">{esc(n["status"])}</span>',
            num(n.get("seconds"), "seconds"),
            num(n.get("chunks"), "count"),
            num(n.get("reused_chunks") or 0, "count"),
            num(n.get("rows_processed"), "count"),
            esc(n.get("error") or ""),
        ]
        for n in nodes
    ]
    chart = timeline_chart(view)
    return (
        "<h2>Nodes</h2>"
        + (f'<div class="charts">{chart}</div>' if chart else "")
        + html_table(
            ["node", "engine", "status", "seconds", "chunks", "resumed chunks", "rows", "error"],
            rows,
        )
    )


def timeline_chart(view: ReportView) -> str:
    # The bars start where the run's timeline saw each node start and are as long as the
    # nodes table's seconds: one figure for both.
    starts = {
        t["node_id"]: as_float(t.get("start"))
        for t in (view.record.get("charts") or {}).get("timeline") or []
    }
    bars = [
        (
            str(n["node_id"]),
            starts[n["node_id"]],
            as_float(n.get("seconds")),
            n.get("status") == "succeeded",
        )
        for n in view.record.get("nodes") or []
        if n["node_id"] in starts
    ]
    return _svg.timeline(bars, lambda s: format_value(s, "seconds")) if bars else ""


def provenance(view: ReportView) -> str:
    prov, record = view.record.get("provenance") or {}, view.record
    versions = ", ".join(f"{k} {v}" for k, v in (prov.get("versions") or {}).items())
    rows = [
        ["config", f"<code>{esc(prov.get('config_path') or '(given in Python)')}</code>"],
        ["config sha256", f"<code>{esc(prov.get('config_hash'))}</code>"],
        ["overrides", esc(", ".join(prov.get("overrides") or []) or "none")],
        ["started (UTC)", esc(record.get("started_at"))],
        ["finished (UTC)", esc(record.get("finished_at"))],
        [
            "source, host, executor",
            esc(f"{record.get('source')}, {prov.get('host')}, {prov.get('executor')}"),
        ],
        ["versions", esc(versions)],
    ]
    for item in prov.get("inputs") or []:
        rows.append(
            [
                "input",
                f"<code>{esc(item['path'])}</code><br>sha256 <code>{esc(item['sha256'])}</code>, "
                f"{format_value(item['size_bytes'], 'count')} bytes",
            ]
        )
    for a in prov.get("assumptions") or []:
        rows.append(
            ["assumption", f"<code>{esc(a['reference'])}</code> version {esc(a.get('version'))}"]
        )
    for o in record.get("outputs") or []:
        rows.append(
            [
                f"output {esc(o['name'])}",
                f"<code>{esc(o['path'])}</code><br>sha256 <code>{esc(o.get('sha256'))}</code>",
            ]
        )
    return "<h2>Provenance</h2>" + html_table(["what", "value"], rows)
