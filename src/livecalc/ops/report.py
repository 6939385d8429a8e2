"""The HTML run report: one self-contained file, readable offline, from a run's record.

Sections: status and provenance; the per-node timeline; the NPV distribution with VaR and
CTE marked; the ESG fan chart; the goal-seek's convergence; checks and SLA; the metrics
(beside another run's, with differences, when compared). Charts are inline SVG drawn in
Python (``_svg``): no script, no CDN, no network, a few kilobytes per chart.
"""

from __future__ import annotations

import html
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from livecalc.ops import _svg
from livecalc.ops.report_nested import nested_section
from livecalc.runtime.leftovers import check_replaceable

__all__ = ["compare_records", "render_report", "write_report"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1000px;color:#212529}
h1{font-size:22px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #dee2e6}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #dee2e6;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f5} .ok{color:#2b8a3e;font-weight:bold} .bad{color:#c92a2a;font-weight:bold}
.warn{color:#e67700;font-weight:bold} .num{text-align:right;font-variant-numeric:tabular-nums}
.charts svg{display:block;margin:10px 0;max-width:100%;height:auto;border:1px solid #f1f3f5}
code{font-size:12px;word-break:break-all}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.6g}" if abs(value) < 1e6 else f"{value:,.2f}"
    return _e(value)


def _table(head: list[str], rows: list[list[str]]) -> str:
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _status_class(status: str) -> str:
    return {"succeeded": "ok", "check_failed": "warn"}.get(status, "bad")


def compare_records(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """What differs between two runs: config keys, metrics (absolute, relative), timings."""
    config_a = _flatten((a.get("provenance") or {}).get("config") or {})
    config_b = _flatten((b.get("provenance") or {}).get("config") or {})
    config = [
        {"key": k, "a": config_a.get(k), "b": config_b.get(k)}
        for k in sorted(set(config_a) | set(config_b))
        if config_a.get(k) != config_b.get(k)
    ]
    metrics = []
    ma, mb = a.get("metrics") or {}, b.get("metrics") or {}
    for node in sorted(set(ma) | set(mb)):
        for name in sorted(set(ma.get(node, {})) | set(mb.get(node, {}))):
            va, vb = ma.get(node, {}).get(name), mb.get(node, {}).get(name)
            diff = vb - va if va is not None and vb is not None else None
            rel = diff / abs(va) if diff is not None and va else None
            metrics.append(
                {"metric": f"{node}.{name}", "a": va, "b": vb, "difference": diff, "relative": rel}
            )
    na = {n["node_id"]: n["seconds"] for n in a.get("nodes", [])}
    nb = {n["node_id"]: n["seconds"] for n in b.get("nodes", [])}
    timings = [
        {"target": k, "a": na.get(k), "b": nb.get(k), "ratio": _ratio(nb.get(k), na.get(k))}
        for k in [*na, *(k for k in nb if k not in na)]
    ]
    timings.append(
        {
            "target": "run",
            "a": a.get("seconds"),
            "b": b.get("seconds"),
            "ratio": _ratio(b.get("seconds"), a.get("seconds")),
        }
    )
    return {
        "a": a["run_id"],
        "b": b["run_id"],
        "config": config,
        "metrics": metrics,
        "timings": timings,
    }


def _ratio(b: float | None, a: float | None) -> float | None:
    return b / a if a and b is not None else None


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        out = {}
        for i, v in enumerate(value):
            key = v.get("id", i) if isinstance(v, Mapping) else i
            out.update(_flatten(v, f"{prefix}[{key}]"))
        return out
    return {prefix: json.dumps(value) if isinstance(value, list) else value}


def render_report(record: Mapping[str, Any], against: Mapping[str, Any] | None = None) -> str:
    """The report of one run's record (and a comparison with ``against``) as HTML text."""
    prov = record.get("provenance") or {}
    status = str(record.get("status"))
    parts = [
        f"<h1>LiveCalc run <code>{_e(record['run_id'])}</code>: "
        f'<span class="{_status_class(status)}">{_e(status)}</span></h1>',
        _table(
            ["started (UTC)", "finished (UTC)", "seconds", "source", "host", "executor"],
            [
                [
                    _e(record.get("started_at")),
                    _e(record.get("finished_at")),
                    _num(record.get("seconds")),
                    _e(record.get("source")),
                    _e(prov.get("host")),
                    _e(prov.get("executor")),
                ]
            ],
        ),
    ]
    if record.get("error"):
        parts.append(f'<p class="bad">error: {_e(record["error"])}</p>')
    parts.append(_provenance(prov, record))
    parts.append(_nodes(record))
    parts.append(_checks_and_sla(record))
    parts.append(_charts(record))
    parts.append(nested_section(record))
    if against is not None:
        parts.append(_comparison(compare_records(against, record)))
    else:
        parts.append(_metrics(record))
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>LiveCalc run {_e(record['run_id'])}</title><style>{_CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def _provenance(prov: Mapping[str, Any], record: Mapping[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in (prov.get("versions") or {}).items())
    rows = [
        ["config", f"<code>{_e(prov.get('config_path') or '(given in Python)')}</code>"],
        ["config sha256", f"<code>{_e(prov.get('config_hash'))}</code>"],
        ["overrides", _e(", ".join(prov.get("overrides") or []) or "none")],
        ["versions", _e(versions)],
    ]
    for item in prov.get("inputs") or []:
        rows.append(
            [
                "input",
                f"<code>{_e(item['path'])}</code><br>sha256 <code>{_e(item['sha256'])}</code>, "
                f"{item['size_bytes']:,} bytes",
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


def _nodes(record: Mapping[str, Any]) -> str:
    rows = [
        [
            _e(n["node_id"]),
            _e(n.get("engine_type")),
            f'<span class="{_status_class(str(n["status"]))}">{_e(n["status"])}</span>',
            f'<span class="num">{_num(n.get("seconds"))}</span>',
            _e(n.get("chunks")),
            _e(n.get("reused_chunks") or 0),
            _num(n.get("rows_processed")),
            _e(n.get("error") or ""),
        ]
        for n in record.get("nodes") or []
    ]
    return "<h2>Nodes</h2>" + _table(
        ["node", "engine", "status", "seconds", "chunks", "resumed chunks", "rows", "error"], rows
    )


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_num(v) for v in value)
    return _num(value)


def _checks_and_sla(record: Mapping[str, Any]) -> str:
    checks = record.get("checks") or []
    rows = []
    for c in checks:
        mark = (
            '<span class="ok">passed</span>'
            if c["passed"]
            else f'<span class="{"bad" if c["severity"] == "error" else "warn"}">FAILED</span>'
        )
        rows.append(
            [
                _e(c["name"]),
                _e(c["kind"]),
                _e(c["severity"]),
                mark,
                _value(c.get("value")),
                _value(c.get("threshold")),
                _e(c.get("message")),
            ]
        )
    out = "<h2>Checks</h2>" + (
        _table(["check", "kind", "severity", "result", "value", "threshold", "message"], rows)
        if rows
        else "<p>No checks declared.</p>"
    )
    sla = [
        [
            _e(s["target"]),
            _num(s["limit_seconds"]),
            _num(s["seconds"]),
            '<span class="bad">BREACHED</span>' if s["breached"] else '<span class="ok">met</span>',
        ]
        for s in record.get("sla") or []
    ]
    out += "<h2>SLA</h2>" + (
        _table(["target", "limit (s)", "took (s)", "result"], sla) if sla else "<p>No SLA.</p>"
    )
    return out


def _charts(record: Mapping[str, Any]) -> str:
    charts = record.get("charts") or {}
    svgs = []
    if charts.get("timeline"):
        svgs.append(_svg.timeline(charts["timeline"]))
    npv = charts.get("npv")
    if npv and npv.get("values"):
        svgs.append(
            _svg.histogram(
                npv["values"],
                npv.get("markers") or {},
                f"Portfolio NPV distribution ({len(npv['values']):,} scenarios)",
            )
        )
    fan = charts.get("esg_fan")
    if fan:
        svgs.append(
            _svg.fan_chart(
                fan["years"],
                fan["percentiles"],
                f"ESG short rate: percentiles by year ({fan['scenarios']:,} scenarios)",
            )
        )
    seek = charts.get("goal_seek")
    if seek and seek.get("objective"):
        svgs.append(
            _svg.line_chart(
                seek["objective"],
                seek.get("target"),
                f"Goal-seek convergence: {seek.get('metric')} by evaluation",
                "evaluation",
                str(seek.get("metric")),
            )
        )
    return '<h2>Charts</h2><div class="charts">' + "".join(svgs) + "</div>"


def _metrics(record: Mapping[str, Any]) -> str:
    rows = [
        [_e(f"{node}.{name}"), f'<span class="num">{_num(v)}</span>']
        for node, metrics in (record.get("metrics") or {}).items()
        for name, v in metrics.items()
    ]
    return "<h2>Metrics</h2>" + (_table(["metric", "value"], rows) if rows else "<p>None.</p>")


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:+.3%}"


def _comparison(diff: Mapping[str, Any]) -> str:
    rows = [
        [
            _e(m["metric"]),
            f'<span class="num">{_num(m["a"])}</span>',
            f'<span class="num">{_num(m["b"])}</span>',
            f'<span class="num">{_num(m["difference"])}</span>',
            f'<span class="num">{_percent(m["relative"])}</span>',
        ]
        for m in diff["metrics"]
    ]
    config = [[_e(c["key"]), _e(c["a"]), _e(c["b"])] for c in diff["config"]]
    timings = [
        [_e(t["target"]), _num(t["a"]), _num(t["b"]), _num(t["ratio"])] for t in diff["timings"]
    ]
    return (
        f"<h2>Metrics, compared with run <code>{_e(diff['a'])}</code></h2>"
        + _table(
            ["metric", f"run {diff['a']}", f"this run {diff['b']}", "difference", "relative"], rows
        )
        + "<h3>Config differences</h3>"
        + (_table(["key", f"run {diff['a']}", "this run"], config) if config else "<p>None.</p>")
        + "<h3>Timings (seconds)</h3>"
        + _table(["target", f"run {diff['a']}", "this run", "ratio"], timings)
    )


def write_report(
    path: Path, record: Mapping[str, Any], against: Mapping[str, Any] | None = None
) -> Path:
    """Write the report atomically; the path written."""
    text = render_report(record, against)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_replaceable(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
