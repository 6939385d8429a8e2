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

import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from livecalc.ops import _report_sections as sections
from livecalc.ops._compare import compare_records
from livecalc.ops._report_summary import header, summary
from livecalc.ops._report_view import MOVE_THRESHOLD, ReportView, esc, html_table
from livecalc.ops.report_nested import nested_section
from livecalc.runtime.leftovers import check_replaceable

__all__ = [
    "MOVE_THRESHOLD",
    "SECTIONS",
    "ReportView",
    "compare_records",
    "notebook_html",
    "render_report",
    "write_report",
]

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
.tile.moved{border-color:#e67700;background:#fff9db}
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
 tr.moved td,.tile.moved{-webkit-print-color-adjust:exact;print-color-adjust:exact}
}
"""


def _nested(view: ReportView) -> str:
    return nested_section(view.record)


def _cluster(view: ReportView) -> str:
    """Where the run ran: executor, parallelism, address; each pooled node's replicas and
    chunks per location, re-runs, replicas lost (with times); the warnings."""
    cluster = view.record.get("cluster")
    if not cluster:
        return ""
    parts = [
        "<h2>Cluster</h2>",
        html_table(
            ["executor", "parallelism", "address"],
            [
                [
                    esc(cluster.get("executor")),
                    esc(cluster.get("parallelism")),
                    esc(cluster.get("address") or "this machine"),
                ]
            ],
        ),
    ]
    rows = []
    for node_id, pool in (cluster.get("nodes") or {}).items():
        chunks = pool.get("chunks_by_location") or {}
        replicas = pool.get("replicas_by_location") or {}
        for where in sorted(set(chunks) | set(replicas)):
            rows.append(
                [
                    esc(node_id),
                    f"<code>{esc(where)}</code>",
                    esc(replicas.get(where, 0)),
                    esc(chunks.get(where, 0)),
                    esc(pool.get("reruns_lost", 0) + pool.get("reruns_timeout", 0)),
                ]
            )
        for lost in pool.get("lost") or []:
            rows.append(
                [
                    esc(node_id),
                    f'<code>{esc(lost["location"])}</code> <span class="bad">lost at '
                    f"{esc(lost['at'])}</span>",
                    esc(f"replica {lost['replica']}"),
                    esc(f"chunk {lost['chunk']} re-ran"),
                    "",
                ]
            )
    if rows:
        parts.append(html_table(["node", "location", "replicas", "chunks", "re-runs"], rows))
    parts.extend(f'<p class="bad">warning: {esc(w)}</p>' for w in cluster.get("warnings") or [])
    return "\n".join(parts)


SECTIONS: tuple[Callable[[ReportView], str], ...] = (
    header,
    summary,
    sections.results,
    _nested,
    sections.metrics,
    sections.checks,
    sections.sla,
    sections.nodes,
    _cluster,
    sections.provenance,
)
"""The report's sections, in order."""


def render_report(record: Mapping[str, Any], against: Mapping[str, Any] | None = None) -> str:
    """The report of one run's record (and a comparison with ``against``) as HTML text."""
    view = ReportView.of(record, against)
    body = "\n".join(s for s in (section(view) for section in SECTIONS) if s)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(view.title)}: run {esc(record['run_id'])}</title><style>{_CSS}</style>"
        f"</head><body>\n{body}\n</body></html>\n"
    )


def notebook_html(record: Mapping[str, Any]) -> str:
    """A run in a notebook: the report's header, summary and key metrics, and its main chart."""
    view = ReportView.of(record, None)
    chart = sections.npv_chart(view) or sections.timeline_chart(view)
    # Notebooks keep their own styles: the report's rules are scoped to this block.
    css = "".join(
        f".livecalc-run {rule}" if rule.strip() and not rule.startswith("@") else ""
        for rule in _NOTEBOOK_CSS.splitlines()
    )
    return (
        f'<div class="livecalc-run"><style>{css}</style>{header(view)}{summary(view)}'
        f'<div class="charts">{chart}</div></div>'
    )


_NOTEBOOK_CSS = """
{font-family:system-ui,sans-serif;color:#212529}
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
    check_replaceable(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
