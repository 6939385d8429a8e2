"""What differs between two runs' records: config keys, metrics (largest move first), timings."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from livecalc.ops.labels import label_of, number

__all__ = ["compare_records"]


def compare_records(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """What differs between run ``a`` and run ``b`` (``b`` against ``a``).

    ``metrics`` are ordered by the size of their relative move, largest first (a metric in
    one run only, or whose move has no relative size, after them, and times in seconds
    last); each has its ``label`` and
    ``kind`` (``livecalc.ops.labels``) beside the store's name ``metric``.
    """
    config_a = _flatten((a.get("provenance") or {}).get("config") or {})
    config_b = _flatten((b.get("provenance") or {}).get("config") or {})
    config = [
        {"key": k, "a": config_a.get(k), "b": config_b.get(k)}
        for k in sorted(set(config_a) | set(config_b))
        if config_a.get(k) != config_b.get(k)
    ]
    types = {n["node_id"]: n.get("engine_type") for n in [*a.get("nodes", []), *b.get("nodes", [])]}
    metrics = []
    ma, mb = a.get("metrics") or {}, b.get("metrics") or {}
    for node in sorted(set(ma) | set(mb)):
        for name in sorted(set(ma.get(node, {})) | set(mb.get(node, {}))):
            va, vb = number(ma.get(node, {}).get(name)), number(mb.get(node, {}).get(name))
            diff = vb - va if va is not None and vb is not None else None
            rel = diff / abs(va) if diff is not None and va and math.isfinite(diff) else None
            if diff == 0:
                rel = 0.0
            label, kind, _ = label_of(types.get(node), name)
            metrics.append(
                {
                    "metric": f"{node}.{name}",
                    "label": label,
                    "kind": kind,
                    "a": va,
                    "b": vb,
                    "difference": diff,
                    "relative": rel,
                }
            )
    metrics.sort(key=_move_size)
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


def _move_size(metric: Mapping[str, Any]) -> tuple[bool, bool, float]:
    # Results first, by the size of their move; the solver's own time (seconds) is no
    # result: it follows, like a move that has no relative size.
    rel = metric["relative"]
    return (metric["kind"] == "seconds", rel is None, -abs(rel) if rel is not None else 0.0)


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
