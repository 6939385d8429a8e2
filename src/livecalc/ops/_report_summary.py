"""The report's first screen: the header and the generated summary (key metrics, verdicts)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from livecalc.ops._report_view import ReportView, esc, severity_class, status_class
from livecalc.ops.labels import explain, format_change, format_value, key_metrics, label_of, number

__all__ = ["header", "summary", "summary_sentences"]


def header(view: ReportView) -> str:
    r = view.record
    status = str(r.get("status"))
    facts = [
        f"run <code>{esc(r['run_id'])}</code>",
        f'<span class="badge {status_class(status)}">{esc(status)}</span>',
    ]
    if view.valuation_date:
        facts.append(f"valuation date <b>{esc(view.valuation_date)}</b>")
    if r.get("finished_at"):
        facts.append(f"finished {esc(str(r['finished_at'])[:19].replace('T', ' '))} UTC")
    if number(r.get("seconds")) is not None:
        facts.append(f"took {esc(format_value(r['seconds'], 'seconds'))} s")
    out = f'<header><h1>{esc(view.title)}</h1><p class="meta">{" · ".join(facts)}</p></header>'
    if r.get("error"):
        out += f'<p class="bad">error: {esc(r["error"])}</p>'
    return out


_STATUS_WORDS = {
    "succeeded": "succeeded",
    "check_failed": "finished, but an error check failed",
    "failed": "failed",
    "interrupted": "was interrupted",
    "running": "has not finished (running, or killed)",
    "dead": "stopped before it finished: its process is gone (killed or crashed)",
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
    failed = [n for n in r.get("nodes") or [] if n.get("status") == "failed"]
    for n in failed:
        error = f": {n['error']}" if n.get("error") else ""
        sentences.append(f"Node {n['node_id']} failed{error}.")
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


def summary(view: ReportView) -> str:
    tiles = []
    for m in key_metrics(view.metrics):
        change, big = "", False
        moved = view.move(m)
        if moved is not None:
            big = moved["relative"] is not None and abs(moved["relative"]) > view.threshold
            other = view.with_unit(moved["a"], m.kind)
            change = (
                f'<div class="change">{esc(format_change(moved["relative"]) or "n/a")} '
                f"against {esc(other)}</div>"
            )
        tiles.append(
            f'<div class="tile{" moved" if big else ""}"><div class="label">{esc(m.label)}</div>'
            f'<div class="value">{esc(view.with_unit(m.value, m.kind))}</div>{change}</div>'
        )
    verdicts = "".join(_verdict(c) for c in view.record.get("checks") or [])
    paragraph = " ".join(esc(s) for s in summary_sentences(view))
    hints = [h for h in dict.fromkeys(explain(m) for m in key_metrics(view.metrics)) if h]
    return (
        '<section class="summary" id="summary"><h2>Summary</h2>'
        f"<p>{paragraph}</p>"
        + (f'<div class="tiles">{"".join(tiles)}</div>' if tiles else "")
        + (f'<p class="muted hints">{esc(" ".join(hints))}</p>' if hints else "")
        + (f'<ul class="verdicts">{verdicts}</ul>' if verdicts else "")
        + "</section>"
    )


def _verdict(check: Mapping[str, Any]) -> str:
    """One check in the summary: its verdict, its name, what it means (or its message)."""
    passed = bool(check.get("passed"))
    mark = "&#10003; passed" if passed else "&#10007; FAILED"
    about = check.get("description") or check.get("message")
    return (
        f'<li><span class="{"ok" if passed else severity_class(check)}">{mark}</span> '
        f"<b>{esc(check['name'])}</b>{': ' + esc(about) if about else ''}</li>"
    )
