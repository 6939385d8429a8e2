"""The HTML run report: one self-contained file, readable offline and printed, from a record.

The first screen answers "what does this run say?": the pipeline, the valuation date (when
the record has one), the status, a generated summary (the key metrics with their units and
their move against the run compared with, the checks' verdicts). The detail follows, one
section each: the results' charts, the metrics (or, compared, what moved), the checks, the
SLA, the nodes and their timeline, the provenance. ``SECTIONS`` lists them in order: a
section is a function of the ``ReportView``, returning HTML (empty when it has nothing).

Charts are inline SVG drawn in Python (``_svg``): no script, no CDN, no network.
"""

from __future__ import annotations

import html
import math
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livecalc.ops import _svg
from livecalc.ops._compare import compare_records
from livecalc.ops.labels import (
    Kind,
    MetricView,
    currency_of,
    describe_metrics,
    explain,
    format_change,
    format_value,
    key_metrics,
    label_of,
    number,
    unit_of,
)

__all__ = [
    "MOVE_THRESHOLD",
    "SECTIONS",
    "ReportView",
    "compare_records",
    "notebook_html",
    "render_report",
    "write_report",
]

MOVE_THRESHOLD = 0.05
"""A metric that moved by more than this (relative) is highlighted in a comparison (the
config's ``report.move_threshold`` overrides it)."""

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1040px;color:#212529;
 padding:0 16px}
h1{font-size:24px;margin:0 0 4px} h2{font-size:17px;margin-top:28px;
 border-bottom:1px solid #dee2e6;padding-bottom:2px} h3{font-size:14px}
.meta{color:#495057;margin:0 0 12px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-weight:bold}
.ok{color:#2b8a3e;font-weight:bold} .bad{color:#c92a2a;font-weight:bold}
.warn{color:#e67700;font-weight:bold}
.badge.ok{background:#2b8a3e;color:#fff} .badge.warn{background:#e67700;color:#fff}
.badge.bad{background:#c92a2a;color:#fff}
.summary p{font-size:15px;line-height:1.5;max-width:900px}
.tiles{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.tile{border:1px solid #dee2e6;border-radius:6px;padding:8px 12px;min-width:170px}
.tile .label{font-size:12px;color:#495057} .tile .value{font-size:20px;font-weight:bold;
 font-variant-numeric:tabular-nums} .tile .change{font-size:12px;color:#495057}
.verdicts{list-style:none;padding:0;margin:6px 0} .verdicts li{margin:2px 0}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #dee2e6;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f5}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.muted{color:#868e96} .hints{font-size:13px;max-width:900px}
tr.moved td{background:#fff3bf;font-weight:bold}
.charts svg{display:block;margin:10px 0;max-width:100%;height:auto;border:1px solid #f1f3f5}
.side{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:16px}
code{font-size:12px;word-break:break-all}
@media print{
 body{margin:0;max-width:none;font-size:11px}
 @page{size:A4;margin:12mm}
 h2{break-after:avoid} table,svg,.tiles,.tile{break-inside:avoid}
 .charts svg{border:none}
 .side{display:block}
 .badge{-webkit-print-color-adjust:exact;print-color-adjust:exact}
 tr.moved td{-webkit-print-color-adjust:exact;print-color-adjust:exact}
}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(head: Sequence[str], rows: list[list[str]], row_class: Sequence[str] = ()) -> str:
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    classes = list(row_class) + [""] * (len(rows) - len(row_class))
    body = "".join(
        (f'<tr class="{c}">' if c else "<tr>") + "".join(f"<td>{x}</td>" for x in row) + "</tr>"
        for row, c in zip(rows, classes, strict=True)
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _n(value: Any, kind: Kind) -> str:
    return f'<span class="num">{_e(format_value(value, kind))}</span>'


def _status_class(status: str) -> str:
    return {"succeeded": "ok", "check_failed": "warn"}.get(status, "bad")


@dataclass
class ReportView:
    """What every section reads: the record, the run compared with, units and metrics."""

    record: Mapping[str, Any]
    against: Mapping[str, Any] | None = None
    metrics: list[MetricView] = field(default_factory=list)
    diff: dict[str, Any] | None = None

    @classmethod
    def of(cls, record: Mapping[str, Any], against: Mapping[str, Any] | None) -> ReportView:
        """The view of ``record``, compared with ``against`` when given."""
        return cls(
            record=record,
            against=against,
            metrics=describe_metrics(record),
            diff=compare_records(against, record) if against is not None else None,
        )

    @property
    def config(self) -> Mapping[str, Any]:
        """The config as run (``{}`` when the record has none)."""
        config = (self.record.get("provenance") or {}).get("config")
        return config if isinstance(config, Mapping) else {}

    @property
    def options(self) -> Mapping[str, Any]:
        """The config's ``report`` block."""
        options = self.config.get("report")
        return options if isinstance(options, Mapping) else {}

    @property
    def currency(self) -> str | None:
        """The config's ``report.currency``: the unit of money (None: no unit)."""
        return currency_of(self.record)

    @property
    def threshold(self) -> float:
        """The relative move beyond which a compared metric is highlighted."""
        value = number(self.options.get("move_threshold"))
        return value if value is not None else MOVE_THRESHOLD

    @property
    def title(self) -> str:
        """``report.title``, else the config file's name, else "LiveCalc run"."""
        if self.options.get("title"):
            return str(self.options["title"])
        path = (self.record.get("provenance") or {}).get("config_path")
        return Path(str(path)).stem if path else "LiveCalc run"

    @property
    def valuation_date(self) -> str | None:
        """The run's valuation date, when its record (or config) names one."""
        for source in (self.record, self.record.get("provenance") or {}, self.config):
            value = source.get("valuation_date") if isinstance(source, Mapping) else None
            if value:
                return str(value)
        return None

    def unit(self, kind: Kind) -> str:
        """The unit of a kind of number in this report."""
        return unit_of(kind, self.currency)

    def with_unit(self, value: Any, kind: Kind) -> str:
        """A number and its unit, as text (``503,117.51 EUR``, ``0.8827 x``)."""
        unit = self.unit(kind)
        text = format_value(value, kind)
        if kind == "ratio" or not unit or not text:
            return text
        return f"{text}\N{NO-BREAK SPACE}{unit}"

    def move(self, metric: MetricView) -> dict[str, Any] | None:
        """The compared row of a metric (None when not compared)."""
        if self.diff is None:
            return None
        return next((m for m in self.diff["metrics"] if m["metric"] == metric.name), None)


def _header(view: ReportView) -> str:
    r = view.record
    status = str(r.get("status"))
    facts = [
        f"run <code>{_e(r['run_id'])}</code>",
        f'<span class="badge {_status_class(status)}">{_e(status)}</span>',
    ]
    if view.valuation_date:
        facts.append(f"valuation date <b>{_e(view.valuation_date)}</b>")
    if r.get("finished_at"):
        facts.append(f"finished {_e(str(r['finished_at'])[:19].replace('T', ' '))} UTC")
    if number(r.get("seconds")) is not None:
        facts.append(f"took {_e(format_value(r['seconds'], 'seconds'))} s")
    out = f'<header><h1>{_e(view.title)}</h1><p class="meta">{" · ".join(facts)}</p></header>'
    if r.get("error"):
        out += f'<p class="bad">error: {_e(r["error"])}</p>'
    return out


_STATUS_WORDS = {
    "succeeded": "succeeded",
    "check_failed": "finished, but an error check failed",
    "failed": "failed",
    "interrupted": "was interrupted",
    "running": "has not finished (running, or killed)",
}


def summary_sentences(view: ReportView) -> list[str]:
    """The generated summary: what ran, the key metrics (and their moves), goal seek, checks."""
    r = view.record
    status = str(r.get("status"))
    scenarios = next((m for m in view.metrics if m.label == "Scenarios"), None)
    ran = f"This run of {view.title} {_STATUS_WORDS.get(status, f'ended as {status}')}"
    if number(r.get("seconds")) is not None:
        ran += f" in {format_value(r['seconds'], 'seconds')} s"
    if scenarios is not None and scenarios.value is not None:
        ran += f", over {format_value(scenarios.value, 'count')} scenarios"
    sentences = [ran + "."]
    shown = [m for m in key_metrics(view.metrics) if m.kind == "money"]
    if shown:
        parts = []
        for m in shown:
            text = f"{_nowrap(m.label)}\N{NO-BREAK SPACE}{view.with_unit(m.value, m.kind)}"
            moved = view.move(m)
            if moved is not None:
                text += f" ({format_change(moved['relative']) or 'no relative move'})"
            parts.append(text)
        against = f" (moves against run {view.diff['a']})" if view.diff is not None else ""
        sentences.append(_join(parts) + against + ".")
        if any(m.value is None or not math.isfinite(m.value) for m in shown):
            sentences.append(
                "Some results are not finite numbers (-inf, +inf or NaN): sums overflowed or "
                "a value is missing; check the inputs (sums assured, premiums) and the log."
            )
    seek = _goal_seek_sentence(view)
    if seek:
        sentences.append(seek)
    sentences.append(_checks_sentence(r))
    return sentences


def _nowrap(label: str) -> str:
    """A short label kept on one line ("VaR 99.5%" never split after "VaR")."""
    return label.replace(" ", "\N{NO-BREAK SPACE}") if len(label) <= 20 else label


def _lower(label: str) -> str:
    """``Mean NPV`` -> ``mean NPV``: a label inside a sentence (acronyms kept)."""
    return label[:1].lower() + label[1:] if label[1:2].islower() else label


def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _goal_seek_sentence(view: ReportView) -> str:
    seek = (view.record.get("charts") or {}).get("goal_seek") or {}
    params = [m for m in key_metrics(view.metrics) if m.kind in ("factor", "number")]
    if not seek or not params:
        return ""
    metric = _lower(label_of("solver", f"metrics.{seek.get('metric')}")[0])
    target = number(seek.get("target"))
    goal = f"its target of {view.with_unit(target, 'money')}" if target is not None else "its goal"
    values = _join([f"a {_lower(m.label)} of {view.with_unit(m.value, m.kind)}" for m in params])
    n = len(seek.get("objective") or [])
    if seek.get("converged"):
        return f"The goal seek converged: {values} brings the {metric} to {goal} ({n} evaluations)."
    return (
        f"The goal seek did NOT converge in {n} evaluations: it stopped at {values}, "
        f"with the {metric} not at {goal}."
    )


def _checks_sentence(record: Mapping[str, Any]) -> str:
    checks = record.get("checks") or []
    if not checks:
        return "No checks were declared."
    failed = [c for c in checks if not c.get("passed")]
    if not failed:
        return f"All {len(checks)} checks passed."
    names = _join(
        [f"{c['name']} ({'error' if c['severity'] == 'error' else 'warning'})" for c in failed]
    )
    return f"{len(checks) - len(failed)} of {len(checks)} checks passed; failed: {names}."


def _summary(view: ReportView) -> str:
    tiles = []
    for m in key_metrics(view.metrics):
        change = ""
        moved = view.move(m)
        if moved is not None:
            other = view.with_unit(moved["a"], m.kind)
            change = (
                f'<div class="change">{_e(format_change(moved["relative"]) or "n/a")} '
                f"against {_e(other)}</div>"
            )
        tiles.append(
            f'<div class="tile"><div class="label">{_e(m.label)}</div>'
            f'<div class="value">{_e(view.with_unit(m.value, m.kind))}</div>{change}</div>'
        )
    verdicts = "".join(_verdict(c) for c in view.record.get("checks") or [])
    paragraph = " ".join(_e(s) for s in summary_sentences(view))
    hints = [h for h in dict.fromkeys(explain(m) for m in key_metrics(view.metrics)) if h]
    return (
        '<section class="summary" id="summary"><h2>Summary</h2>'
        f"<p>{paragraph}</p>"
        + (f'<div class="tiles">{"".join(tiles)}</div>' if tiles else "")
        + (f'<p class="muted hints">{_e(" ".join(hints))}</p>' if hints else "")
        + (f'<ul class="verdicts">{verdicts}</ul>' if verdicts else "")
        + "</section>"
    )


def _verdict(check: Mapping[str, Any]) -> str:
    """One check in the summary: its verdict, its name, what it means (or its message)."""
    passed = bool(check.get("passed"))
    mark = "&#10003; passed" if passed else "&#10007; FAILED"
    about = check.get("description") or check.get("message")
    return (
        f'<li><span class="{"ok" if passed else _severity_class(check)}">{mark}</span> '
        f"<b>{_e(check['name'])}</b>{': ' + _e(about) if about else ''}</li>"
    )


def _severity_class(check: Mapping[str, Any]) -> str:
    return "bad" if check.get("severity") == "error" else "warn"


def npv_chart(view: ReportView) -> str:
    """The portfolio NPV distribution, with the solver's VaR and CTE (and mean) marked."""
    npv = (view.record.get("charts") or {}).get("npv") or {}
    values = npv.get("values") or []
    if not values:
        return ""
    unit = f" ({view.currency})" if view.currency else ""
    markers = _markers(view, npv.get("markers") or {})
    return _svg.histogram(
        [_svg.Series("NPV per scenario", [_float(v) for v in values])],
        markers,
        f"Portfolio NPV distribution ({len(values):,} scenarios)",
        f"portfolio NPV per scenario{unit}",
    )


def _float(value: Any) -> float:
    x = number(value)
    return math.nan if x is None else x


def _markers(view: ReportView, raw: Mapping[str, Any]) -> list[_svg.Marker]:
    mean = next((m for m in view.metrics if m.key == "metrics.mean"), None)
    out = []
    if mean is not None and mean.value is not None:
        out.append(_svg.Marker(mean.label, mean.value, view.with_unit(mean.value, "money")))
    for name, value in sorted(raw.items()):
        label = label_of("solver", f"metrics.{name}")[0]
        out.append(_svg.Marker(label, _float(value), view.with_unit(value, "money")))
    return out


def _results(view: ReportView) -> str:
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
    ys = [_float(v) for v in seek["objective"]]
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
        xs = [_float(p.get(name)) for p in params]
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


def _metrics(view: ReportView) -> str:
    if view.diff is not None:
        return _comparison(view)
    rows = [
        [
            _e(m.label),
            _n(m.value, m.kind),
            _e(view.unit(m.kind)),
            f'<code class="muted">{_e(m.name)}</code>',
        ]
        for m in view.metrics
    ]
    return "<h2>Metrics</h2>" + (
        _table(["metric", "value", "unit", "stored as"], rows) if rows else "<p>None.</p>"
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
                _e(m["label"]),
                _e(unit_of(kind, view.currency)),
                _n(m["a"], kind),
                _n(m["b"], kind),
                _n(m["difference"], kind),
                f'<span class="num">{_e(format_change(m["relative"]))}</span>',
            ]
        )
        big = m["relative"] is not None and abs(m["relative"]) > view.threshold
        classes.append("moved" if big else "")
    config = [[_e(c["key"]), _e(c["a"]), _e(c["b"])] for c in diff["config"]]
    timings = [
        [_e(t["target"]), _n(t["a"], "seconds"), _n(t["b"], "seconds"), _n(t["ratio"], "number")]
        for t in diff["timings"]
    ]
    overlay = _overlay(view, other, this)
    return (
        f"<h2>What moved against run <code>{_e(diff['a'])}</code></h2>"
        f"<p>Metrics ordered by the size of their move; moves beyond "
        f"{view.threshold:.0%} are highlighted.</p>"
        + (f'<div class="charts">{overlay}</div>' if overlay else "")
        + '<div class="side"><div><h3>Metrics</h3>'
        + _table(
            ["metric", "unit", f"run {diff['a']}", f"this run {diff['b']}", "difference", "move"],
            rows,
            classes,
        )
        + "</div><div><h3>Config differences</h3>"
        + (_table(["key", f"run {diff['a']}", "this run"], config) if config else "<p>None.</p>")
        + "</div></div><h3>Timings (seconds)</h3>"
        + _table(["target", f"run {diff['a']}", "this run", "ratio"], timings)
    )


def _overlay(view: ReportView, other: Mapping[str, Any], this: Mapping[str, Any]) -> str:
    a = ((other.get("charts") or {}).get("npv") or {}).get("values") or []
    b = ((this.get("charts") or {}).get("npv") or {}).get("values") or []
    if not a or not b:
        return ""
    unit = f" ({view.currency})" if view.currency else ""
    return _svg.histogram(
        [
            _svg.Series(f"run {other['run_id']}", [_float(v) for v in a], "#d9822b"),
            _svg.Series(f"this run {this['run_id']}", [_float(v) for v in b], _svg.BLUE),
        ],
        [],
        "Portfolio NPV distributions, both runs",
        f"portfolio NPV per scenario{unit}",
    ).replace('data-chart="npv"', 'data-chart="npv_compare"')


def _checks(view: ReportView) -> str:
    rows = []
    for c in view.record.get("checks") or []:
        mark = (
            '<span class="ok">passed</span>'
            if c["passed"]
            else f'<span class="{_severity_class(c)}">FAILED</span>'
        )
        rows.append(
            [
                f"<b>{_e(c['name'])}</b>"
                + (f"<br>{_e(c['description'])}" if c.get("description") else ""),
                _e(c["kind"]),
                _e(c["severity"]),
                mark,
                _value(c.get("value")),
                _value(c.get("threshold")),
                _e(c.get("message")),
            ]
        )
    return "<h2>Checks</h2>" + (
        _table(["check", "kind", "severity", "result", "value", "threshold", "message"], rows)
        if rows
        else "<p>No checks declared.</p>"
    )


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(format_value(v, "number") for v in value)
    return _e(format_value(value, "number"))


def _sla(view: ReportView) -> str:
    sla = [
        [
            _e(s["target"]),
            _n(s["limit_seconds"], "seconds"),
            _n(s["seconds"], "seconds"),
            '<span class="bad">BREACHED</span>' if s["breached"] else '<span class="ok">met</span>',
        ]
        for s in view.record.get("sla") or []
    ]
    return "<h2>SLA</h2>" + (
        _table(["target", "limit (s)", "took (s)", "result"], sla) if sla else "<p>No SLA.</p>"
    )


def _nodes(view: ReportView) -> str:
    nodes = view.record.get("nodes") or []
    rows = [
        [
            _e(n["node_id"]),
            _e(n.get("engine_type")),
            f'<span class="{_status_class(str(n["status"]))}">{_e(n["status"])}</span>',
            _n(n.get("seconds"), "seconds"),
            _n(n.get("chunks"), "count"),
            _n(n.get("reused_chunks") or 0, "count"),
            _n(n.get("rows_processed"), "count"),
            _e(n.get("error") or ""),
        ]
        for n in nodes
    ]
    chart = _timeline_chart(view)
    return (
        "<h2>Nodes</h2>"
        + (f'<div class="charts">{chart}</div>' if chart else "")
        + _table(
            ["node", "engine", "status", "seconds", "chunks", "resumed chunks", "rows", "error"],
            rows,
        )
    )


def _timeline_chart(view: ReportView) -> str:
    # The bars start where the run's timeline saw each node start and are as long as the
    # nodes table's seconds: one figure for both.
    starts = {
        t["node_id"]: _float(t.get("start"))
        for t in (view.record.get("charts") or {}).get("timeline") or []
    }
    bars = [
        (
            str(n["node_id"]),
            starts[n["node_id"]],
            _float(n.get("seconds")),
            n.get("status") == "succeeded",
        )
        for n in view.record.get("nodes") or []
        if n["node_id"] in starts
    ]
    return _svg.timeline(bars, lambda s: format_value(s, "seconds")) if bars else ""


def _provenance(view: ReportView) -> str:
    prov, record = view.record.get("provenance") or {}, view.record
    versions = ", ".join(f"{k} {v}" for k, v in (prov.get("versions") or {}).items())
    rows = [
        ["config", f"<code>{_e(prov.get('config_path') or '(given in Python)')}</code>"],
        ["config sha256", f"<code>{_e(prov.get('config_hash'))}</code>"],
        ["overrides", _e(", ".join(prov.get("overrides") or []) or "none")],
        ["started (UTC)", _e(record.get("started_at"))],
        ["finished (UTC)", _e(record.get("finished_at"))],
        [
            "source, host, executor",
            _e(f"{record.get('source')}, {prov.get('host')}, {prov.get('executor')}"),
        ],
        ["versions", _e(versions)],
    ]
    for item in prov.get("inputs") or []:
        rows.append(
            [
                "input",
                f"<code>{_e(item['path'])}</code><br>sha256 <code>{_e(item['sha256'])}</code>, "
                f"{format_value(item['size_bytes'], 'count')} bytes",
            ]
        )
    for a in prov.get("assumptions") or []:
        rows.append(
            ["assumption", f"<code>{_e(a['reference'])}</code> version {_e(a.get('version'))}"]
        )
    for o in record.get("outputs") or []:
        rows.append(
            [
                f"output {_e(o['name'])}",
                f"<code>{_e(o['path'])}</code><br>sha256 <code>{_e(o.get('sha256'))}</code>",
            ]
        )
    return "<h2>Provenance</h2>" + _table(["what", "value"], rows)


SECTIONS: tuple[Callable[[ReportView], str], ...] = (
    _header,
    _summary,
    _results,
    _metrics,
    _checks,
    _sla,
    _nodes,
    _provenance,
)
"""The report's sections, in order."""


def render_report(record: Mapping[str, Any], against: Mapping[str, Any] | None = None) -> str:
    """The report of one run's record (and a comparison with ``against``) as HTML text."""
    view = ReportView.of(record, against)
    body = "\n".join(s for s in (section(view) for section in SECTIONS) if s)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(view.title)}: run {_e(record['run_id'])}</title><style>{_CSS}</style>"
        f"</head><body>\n{body}\n</body></html>\n"
    )


def notebook_html(record: Mapping[str, Any]) -> str:
    """A run in a notebook: the report's header, summary and key metrics, and its main chart."""
    view = ReportView.of(record, None)
    chart = npv_chart(view)
    chart = chart or _timeline_chart(view)
    # Notebooks keep their own styles: the report's rules are scoped to this block.
    css = "".join(
        f".livecalc-run {rule}" if rule.strip() and not rule.startswith("@") else ""
        for rule in _NOTEBOOK_CSS.splitlines()
    )
    return (
        f'<div class="livecalc-run"><style>{css}</style>{_header(view)}{_summary(view)}'
        f'<div class="charts">{chart}</div></div>'
    )


_NOTEBOOK_CSS = """
h1{font-size:20px;margin:0 0 4px}
h2{font-size:15px;margin:8px 0 4px}
.meta{color:#495057;margin:0 0 8px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-weight:bold}
.tiles{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}
.tile{border:1px solid #dee2e6;border-radius:6px;padding:6px 10px;min-width:160px}
.tile .label{font-size:12px;color:#495057}
.tile .value{font-size:18px;font-weight:bold}
.verdicts{list-style:none;padding:0;margin:6px 0}
.ok{color:#2b8a3e;font-weight:bold}
.bad{color:#c92a2a;font-weight:bold}
.warn{color:#e67700;font-weight:bold}
.badge.ok{background:#2b8a3e;color:#fff}
.badge.warn{background:#e67700;color:#fff}
.badge.bad{background:#c92a2a;color:#fff}
.charts svg{display:block;max-width:100%;height:auto}
"""


def write_report(
    path: Path, record: Mapping[str, Any], against: Mapping[str, Any] | None = None
) -> Path:
    """Write the report atomically; the path written."""
    text = render_report(record, against)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
