"""The data behind the report's charts, taken from a run while its records are in memory.

Kept small (a few kilobytes) and stored with the run, so ``livecalc report RUN_ID`` draws
the charts later without the outputs: per-node timeline, the portfolio NPV per scenario with
the solver's VaR and CTE, ESG rate percentiles by year, and the goal-seek's evaluations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from livecalc.ops.report_nested import nested_chart
from livecalc.runtime.records import (
    ALL_SCENARIOS,
    RESULT_DETAIL_DTYPE,
    RESULT_DTYPE,
    SCENARIO_DTYPE,
    SCENARIO_TOTAL_DTYPE,
)

__all__ = ["chart_data"]

MAX_NPV_POINTS = 20_000
"""More scenarios than this are summarised by evenly spaced quantiles."""

PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


def chart_data(
    datasets: Mapping[str, Any],
    statistics: Mapping[str, Mapping[str, Any]],
    timeline: list[dict[str, Any]],
) -> dict[str, Any]:
    """Every chart's data that this run can give (a chart with no data is left out)."""
    charts: dict[str, Any] = {"timeline": timeline}
    npv = _portfolio_npv(datasets)
    if npv is not None:
        charts["npv"] = {"values": npv, "markers": _risk_markers(statistics)}
    fan = _esg_fan(datasets)
    if fan is not None:
        charts["esg_fan"] = fan
    history = _goal_seek(statistics)
    if history is not None:
        charts["goal_seek"] = history
    nested = nested_chart(statistics)
    if nested is not None:
        charts["nested"] = nested
    return charts


def _portfolio_npv(datasets: Mapping[str, Any]) -> list[float] | None:
    for value in datasets.values():
        if not isinstance(value, np.ndarray) or len(value) == 0:
            continue
        if value.dtype == SCENARIO_TOTAL_DTYPE:
            npv = np.asarray(value["npv"], dtype=np.float64)
        elif value.dtype in (RESULT_DTYPE, RESULT_DETAIL_DTYPE):
            ids, weights = value["scenario_id"], value["npv"]
            if ids.max() == ALL_SCENARIOS:  # per-policy means: not a scenario's value
                keep = ids != ALL_SCENARIOS
                ids, weights = ids[keep], weights[keep]
            if len(ids) == 0:
                continue
            # Two linear passes (no sort): a W1 run's 10M records take tens of milliseconds.
            present = np.bincount(ids) > 0
            npv = np.asarray(np.bincount(ids, weights=weights)[present], dtype=np.float64)
        else:
            continue
        if len(npv) > MAX_NPV_POINTS:
            npv = np.quantile(npv, np.linspace(0, 1, MAX_NPV_POINTS))
        return [float(x) for x in npv]
    return None


def _risk_markers(statistics: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    out = {}
    for outputs in statistics.values():
        metrics = outputs.get("metrics")
        if isinstance(metrics, Mapping):
            for name, v in metrics.items():
                if name.startswith(("var_", "cte_")) and isinstance(v, int | float):
                    out[name] = float(v)
    return out


def _esg_fan(datasets: Mapping[str, Any]) -> dict[str, Any] | None:
    for value in datasets.values():
        if isinstance(value, np.ndarray) and value.dtype == SCENARIO_DTYPE and len(value):
            years = int(value["year"].max())
            n = len(value) // years
            if n * years != len(value):
                continue
            rates = value["rate"].reshape(n, years)
            pct = np.percentile(rates, PERCENTILES, axis=0)
            return {
                "years": list(range(1, years + 1)),
                "percentiles": {
                    str(p): [float(x) for x in row] for p, row in zip(PERCENTILES, pct, strict=True)
                },
                "scenarios": n,
            }
    return None


def _goal_seek(statistics: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    for outputs in statistics.values():
        opt = outputs.get("optimization")
        if isinstance(opt, Mapping) and opt.get("history"):
            objective = opt.get("objective") or {}
            return {
                "objective": [h["objective"] for h in opt["history"]],
                "parameters": [h["parameters"] for h in opt["history"]],
                "target": objective.get("target"),
                "metric": objective.get("metric"),
                "converged": opt.get("converged"),
            }
    return None
