"""What a stored metric is called for a person, its unit, and how its numbers are written.

The run store keeps metrics under their engines' keys (``solver`` / ``metrics.cte_99_5``);
people read "CTE 99.5%" in money. Each engine type has a label table here; a key no table
knows keeps its name and a plain number format. One format per kind of number, everywhere
the report, the notebook view and the terminal show one:

==========  ===========================================  ===================
kind        written as                                   unit
==========  ===========================================  ===================
money       2 decimals, thousands separators             ``report.currency``
ratio       a percentage, 2 decimals                     %
count       a whole number, thousands separators
factor      4 decimals (a multiplier of an assumption)   x
seconds     3 decimals                                   s
number      6 significant digits
==========  ===========================================  ===================

Non-finite values (a run whose sums overflowed) are written ``-inf``, ``+inf``, ``NaN``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "Kind",
    "MetricView",
    "currency_of",
    "describe_metrics",
    "explain",
    "format_change",
    "format_value",
    "key_metrics",
    "label_of",
    "number",
    "unit_of",
]

Kind = Literal["money", "ratio", "count", "factor", "seconds", "number"]

_PARAMETERS = {
    "premium_multiplier": "Premium multiplier",
    "mortality_multiplier": "Mortality multiplier",
    "lapse_multiplier": "Lapse multiplier",
    "expense_multiplier": "Expense multiplier",
}


@dataclass(frozen=True)
class MetricView:
    """One metric as a person reads it: node, store key, label, kind, value."""

    node: str
    key: str
    label: str
    kind: Kind
    value: float | None
    key_metric: bool = False

    @property
    def name(self) -> str:
        """``node.key``: the name the store, ``runs compare`` and SQL use."""
        return f"{self.node}.{self.key}"


def number(value: Any) -> float | None:
    """``value`` as a float (also the store's text forms ``"-inf"``, ``"nan"``), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _level(text: str) -> str:
    """``99_5`` -> ``99.5``: the confidence level in a metric key."""
    return text.replace("_", ".")


def _solver_label(key: str) -> tuple[str, Kind, bool] | None:
    fixed: dict[str, tuple[str, Kind, bool]] = {
        "metrics.mean": ("Mean NPV", "money", True),
        "metrics.std": ("Standard deviation of NPV", "money", False),
        "metrics.min": ("Lowest NPV", "money", False),
        "metrics.max": ("Highest NPV", "money", False),
        "metrics.count": ("Scenarios", "count", False),
        "scenarios": ("Scenarios", "count", False),
        "records": ("Result records", "count", False),
        "solution.objective_value": ("Goal-seek objective at the solution", "money", False),
        "optimization.objective_value": ("Goal-seek objective at the solution", "money", False),
        "solution.iterations": ("Goal-seek iterations", "count", False),
        "optimization.iterations": ("Goal-seek iterations", "count", False),
        "solution.evaluations": ("Goal-seek evaluations", "count", False),
        "optimization.evaluations": ("Goal-seek evaluations", "count", False),
        "solution.seconds": ("Goal-seek time", "seconds", False),
        "optimization.seconds": ("Goal-seek time", "seconds", False),
    }
    if key in fixed:
        return fixed[key]
    match = re.fullmatch(r"metrics\.(var_|cte_|p)(\d+(?:_\d+)?)", key)
    if match:
        what, level = match.group(1).rstrip("_"), _level(match.group(2))
        if what == "p":
            return f"NPV {level}th percentile", "money", False
        return f"{'VaR' if what == 'var' else 'CTE'} {level}%", "money", True
    match = re.fullmatch(r"(?:solution|optimization\.parameters)\.(\w+)", key)
    if match:
        name = match.group(1)
        if name in _PARAMETERS:
            return _PARAMETERS[name], "factor", True
        return _humane(name), "number", True
    return None


_TABLES = {"solver": _solver_label, "python_solver": _solver_label}


def _humane(key: str) -> str:
    text = key.replace("_", " ").replace(".", " · ")
    return text[:1].upper() + text[1:]


def label_of(engine_type: str | None, key: str) -> tuple[str, Kind, bool]:
    """The label, kind and whether it is a key metric, of ``key`` of an engine type."""
    table = _TABLES.get(engine_type or "")
    found = table(key) if table is not None else None
    if found is not None:
        return found
    kind: Kind = "seconds" if key.endswith("seconds") else "number"
    return _humane(key), kind, False


def currency_of(record: Mapping[str, Any]) -> str | None:
    """The config's ``report.currency`` in a run's record (None: money has no unit)."""
    config = (record.get("provenance") or {}).get("config")
    options = config.get("report") if isinstance(config, Mapping) else None
    value = options.get("currency") if isinstance(options, Mapping) else None
    return str(value) if value else None


def unit_of(kind: Kind, currency: str | None = None) -> str:
    """The unit written beside a number of this kind (money: the currency, or nothing)."""
    return {"money": currency or "", "ratio": "%", "factor": "x", "seconds": "s"}.get(kind, "")


def format_value(value: Any, kind: Kind) -> str:
    """One number in its kind's format (without the unit); empty when there is none."""
    x = number(value)
    if x is None:
        return "" if value is None else str(value)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    if kind == "money":
        return f"{round(x, 2) or 0.0:,.2f}"  # no "-0.00" for a goal seek's -1e-10
    if kind == "ratio":
        return f"{x:.2%}"
    if kind == "count":
        return f"{round(x):,}"
    if kind == "factor":
        return f"{x:,.4f}"
    if kind == "seconds":
        return f"{x:,.3f}"
    return f"{x:,.6g}"


def format_change(relative: float | None) -> str:
    """A relative move as a signed percentage (``+3.21%``); empty when there is none."""
    if relative is None or not math.isfinite(relative):
        return ""
    return f"{relative:+.2%}"


def describe_metrics(record: Mapping[str, Any]) -> list[MetricView]:
    """A run's metrics with labels and kinds, in the engines' order, each label once.

    Two keys of a node that carry the same label and the same value (the solver's
    ``solution.*`` and ``optimization.*``, ``scenarios`` and ``metrics.count``) are one
    metric: the first is kept.
    """
    types = {n["node_id"]: n.get("engine_type") for n in record.get("nodes") or []}
    out: list[MetricView] = []
    seen: dict[tuple[str, str], float | None] = {}
    for node, metrics in (record.get("metrics") or {}).items():
        for key, value in metrics.items():
            label, kind, key_metric = label_of(types.get(node), key)
            x = number(value)
            if (node, label) in seen and _same(seen[(node, label)], x):
                continue
            seen[(node, label)] = x
            out.append(MetricView(node, key, label, kind, x, key_metric))
    return out


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (math.isnan(a) and math.isnan(b))


def explain(metric: MetricView) -> str | None:
    """One sentence on what a key metric means, for a reader who is not an actuary."""
    key = metric.key
    if key == "metrics.mean":
        return (
            "NPV: the present value of the portfolio's future profits in one scenario "
            "(positive = profit); the mean is over all scenarios."
        )
    if re.fullmatch(r"metrics\.var_\d+(?:_\d+)?", key):
        return "VaR a%: the NPV below which the worst (100 - a)% of scenarios lie."
    if re.fullmatch(r"metrics\.cte_\d+(?:_\d+)?", key):
        return "CTE a%: the mean NPV of the worst (100 - a)% of scenarios."
    if metric.kind == "factor":
        return (
            f"{metric.label}: the factor applied to the assumption (1 = as given) that the goal "
            "seek found."
        )
    return None


def key_metrics(metrics: list[MetricView]) -> list[MetricView]:
    """The metrics the summary names: mean NPV, VaR, CTE, the goal-seek's solution."""
    return [m for m in metrics if m.key_metric]
