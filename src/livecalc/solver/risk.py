"""Risk measures of a projection's results: per-scenario portfolio values, percentiles, VaR, CTE.

The projection writes one NPV per policy and scenario (RESULT, RESULT_DETAIL) or one portfolio
total per scenario (SCENARIO_TOTAL). Every measure here is a statistic of the **portfolio value
per scenario** V_s (the sum of ``npv`` over policies for scenario s), each of the n scenarios
weighted 1/n, taken on one of two bases:

- ``"npv"``: X_s = V_s (positive = profit);
- ``"loss"``: X_s = L_s = -V_s (positive = loss).

With L_(1) <= ... <= L_(n) the sorted losses, a level a in [0, 1] and k = max(1, ceil(a·n)):

- ``var_a`` of loss = L_(k), the lower a-quantile (smallest L with P(loss <= L) >= a);
- ``cte_a`` of loss = the mean of the worst (1 - a) probability mass:
  ( (k/n - a)·L_(k) + (1/n)·Σ_{j>k} L_(j) ) / (1 - a), the boundary scenario L_(k) counted with
  the fraction (k/n - a) of its 1/n mass that falls in the tail; ``cte_1`` = L_(n).
- On the npv basis both describe the same worst (1 - a) scenarios with the sign flipped:
  ``var_a`` = -VaR_a(loss) and ``cte_a`` = -CTE_a(loss) (the mean NPV of the worst scenarios).
- ``pQ`` (percentile Q of the basis variable X, Q in percent) = X_(k) with k = max(1,
  ceil(Q/100·n)) (numpy's ``inverted_cdf``): on the loss basis ``p99_5`` equals ``var_99_5``.
- ``mean``; ``std`` with the n - 1 divisor (0 for one scenario); ``min``; ``max``; ``count``.

In nested runs (``scenario_id = outer_id * 1000 + inner_id``) the same measures are also given
per outer scenario, over its inner scenarios.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from livecalc.errors import ConfigurationError
from livecalc.runtime.buffers import (
    ALL_SCENARIOS,
    RESULT_DETAIL_DTYPE,
    RESULT_DTYPE,
    SCENARIO_TOTAL_DTYPE,
)

__all__ = [
    "BASES",
    "NESTED_BASE",
    "RESULT_DTYPES",
    "STANDARD_METRICS",
    "Basis",
    "MetricSpec",
    "ScenarioValues",
    "compute_metrics",
    "find_results",
    "metrics_per_outer",
    "parse_metric",
    "scenario_values",
]

Basis = Literal["npv", "loss"]
BASES: tuple[Basis, ...] = ("npv", "loss")

NESTED_BASE = 1000
"""``scenario_id = outer_id * NESTED_BASE + inner_id`` in nested runs."""

RESULT_DTYPES = (RESULT_DTYPE, RESULT_DETAIL_DTYPE, SCENARIO_TOTAL_DTYPE)
"""The record layouts the solver reads as projection results."""

STANDARD_METRICS = (
    "count",
    "mean",
    "std",
    "min",
    "max",
    "p50",
    "p75",
    "p90",
    "p95",
    "p99",
    "p99_5",
)
"""Always computed; requested metrics (``cte_70``, ``var_99_5``...) come on top."""

FloatArray = npt.NDArray[np.float64]

_SIMPLE = ("count", "mean", "std", "min", "max")
_LEVELLED = re.compile(r"^(p|var|cte)_?(\d{1,3})(?:[._](\d+))?$")


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name: its kind and, for levelled kinds, the level in [0, 1]."""

    name: str
    kind: str
    level: float = 0.0


def parse_metric(name: str) -> MetricSpec:
    """Parse ``mean``, ``std``, ``min``, ``max``, ``count``, ``p95``, ``var_99.5``, ``cte_70``...

    The returned spec carries the canonical name (``cte_99_5`` for ``cte_99.5``), which is a
    valid identifier usable in custom-metric expressions.

    Raises:
        ConfigurationError: the name is not a metric, or its level is outside [0, 100].
    """
    if name in _SIMPLE:
        return MetricSpec(name, name)
    match = _LEVELLED.match(name)
    if match is None:
        raise ConfigurationError(
            f"metric {name!r} is unknown: use one of {', '.join(_SIMPLE)}, pQ (percentile), "
            "var_Q or cte_Q with Q a level in percent, e.g. p99_5, var_95, cte_70"
        )
    kind, whole, frac = match.groups()
    digits = f"{whole}.{frac}" if frac else whole
    # Parse the level from its decimal text so that ceil(level·n) sees 0.95, not 0.9500001.
    level = float(digits) / 100.0
    if not 0.0 <= level <= 1.0:
        raise ConfigurationError(f"metric {name!r}: the level must lie in [0, 100] percent")
    # One name per level: cte_70.0, cte_70 and cte_070 are all cte_70.
    percent = format(float(digits), ".10g").replace(".", "_")
    canonical = f"{kind}{'' if kind == 'p' else '_'}{percent}"
    return MetricSpec(canonical, kind, level)


def _tail_index(level: float, n: int) -> int:
    """k = max(1, ceil(level·n)), rounded first so 0.95·100 counts as 95, not 95.0000001."""
    return max(1, math.ceil(round(level * n, 9)))


def _tail_mean(sorted_losses: FloatArray, level: float) -> float:
    """CTE of loss: the mean of the worst (1 - level) mass, the boundary scenario fractional."""
    n = sorted_losses.size
    k = _tail_index(level, n)
    if level >= 1.0:
        return float(sorted_losses[-1])
    boundary_weight = k / n - level
    tail_sum = float(sorted_losses[k:].sum()) / n
    return (boundary_weight * float(sorted_losses[k - 1]) + tail_sum) / (1.0 - level)


def _measure(spec: MetricSpec, sorted_x: FloatArray, basis: Basis) -> float:
    """One measure of the sorted basis values ``sorted_x`` (ascending)."""
    n = sorted_x.size
    if spec.kind == "count":
        return float(n)
    if spec.kind == "mean":
        return float(sorted_x.mean())
    if spec.kind == "std":
        return float(sorted_x.std(ddof=1)) if n > 1 else 0.0
    if spec.kind == "min":
        return float(sorted_x[0])
    if spec.kind == "max":
        return float(sorted_x[-1])
    if spec.kind == "p":
        return float(sorted_x[_tail_index(spec.level, n) - 1])
    # Tail measures are defined on the sorted losses; on the npv basis the losses are the
    # negated values read backwards, and the result is negated back.
    sorted_losses = sorted_x if basis == "loss" else -sorted_x[::-1]
    sign = 1.0 if basis == "loss" else -1.0
    if spec.kind == "var":
        return sign * float(sorted_losses[_tail_index(spec.level, n) - 1])
    return sign * _tail_mean(sorted_losses, spec.level)


def compute_metrics(
    values: FloatArray, metrics: Iterable[str] = (), basis: Basis = "npv"
) -> dict[str, float]:
    """The standard metrics and ``metrics`` of the portfolio values ``values`` (NPV per scenario).

    Keys are canonical metric names (``cte_99_5``); values are on ``basis``.

    Raises:
        ConfigurationError: an unknown metric name or basis, or no scenarios at all.
    """
    if basis not in BASES:
        raise ConfigurationError(f"basis {basis!r} is unknown: use 'npv' or 'loss'")
    if values.size == 0:
        raise ConfigurationError("the solver's input holds no scenario results")
    x = np.sort(values if basis == "npv" else -values)
    specs = [parse_metric(m) for m in (*STANDARD_METRICS, *metrics)]
    return {s.name: _measure(s, x, basis) for s in specs}


@dataclass(frozen=True)
class ScenarioValues:
    """Portfolio value per scenario: sorted unique ``scenario_ids`` and their summed ``npv``."""

    scenario_ids: npt.NDArray[np.int64]
    npv: FloatArray
    records: int

    @property
    def outer_ids(self) -> npt.NDArray[np.int64]:
        """The outer scenario of each scenario in a nested run."""
        return self.scenario_ids // NESTED_BASE

    def is_nested(self) -> bool:
        """Whether the ids span more than one outer scenario (``id // 1000`` differs)."""
        return self.scenario_ids.size > 0 and bool(
            self.scenario_ids[0] // NESTED_BASE != self.scenario_ids[-1] // NESTED_BASE
        )


def find_results(input_buffer: Any) -> list[np.ndarray]:
    """The result record arrays in ``input_buffer`` (one array or a mapping), found by dtype.

    Raises:
        ConfigurationError: nothing in the input has a result layout.
    """
    if isinstance(input_buffer, np.ndarray):
        candidates: Sequence[Any] = [input_buffer]
    elif isinstance(input_buffer, Mapping):
        candidates = list(input_buffer.values())
    else:
        candidates = []
    found = [a for a in candidates if isinstance(a, np.ndarray) and a.dtype in RESULT_DTYPES]
    if not found:
        got = (
            {k: str(getattr(v, "dtype", type(v).__name__)) for k, v in input_buffer.items()}
            if isinstance(input_buffer, Mapping)
            else type(input_buffer).__name__
        )
        raise ConfigurationError(
            f"solver input {got}: no projection results found; connect the solver's inputs to "
            "a projection output (RESULT, RESULT_DETAIL or SCENARIO_TOTAL records)"
        )
    return found


def scenario_values(arrays: np.ndarray | Sequence[np.ndarray]) -> ScenarioValues:
    """Sum ``npv`` per scenario over the result records in ``arrays``.

    RESULT_DETAIL records holding a policy's mean over scenarios (``scenario_id ==
    ALL_SCENARIOS``) are not scenario results and are left out.
    """
    parts = [arrays] if isinstance(arrays, np.ndarray) else list(arrays)
    ids_parts: list[npt.NDArray[np.int64]] = []
    npv_parts: list[FloatArray] = []
    for a in parts:
        ids = a["scenario_id"].astype(np.int64)
        npv = a["npv"]
        if a.dtype == RESULT_DETAIL_DTYPE:
            keep = ids != ALL_SCENARIOS
            ids, npv = ids[keep], npv[keep]
        ids_parts.append(ids)
        npv_parts.append(np.asarray(npv, dtype=np.float64))
    ids = np.concatenate(ids_parts) if ids_parts else np.empty(0, np.int64)
    npv = np.concatenate(npv_parts) if npv_parts else np.empty(0, np.float64)
    records = int(ids.size)
    if records == 0:
        return ScenarioValues(np.empty(0, np.int64), np.empty(0, np.float64), 0)
    finite = np.isfinite(npv)
    if not finite.all():
        at = int(np.flatnonzero(~finite)[0])
        raise ConfigurationError(
            f"scenario {int(ids[at])}: a result record has npv {float(npv[at])!r}; every "
            "npv must be a finite number (check the projection's inputs)"
        )
    top = int(ids.max())
    if top < 4 * records + 1_000_000:
        # Dense ids (the usual case): one bincount pass, no sort of the records.
        totals = np.bincount(ids, weights=npv, minlength=top + 1)
        present = np.bincount(ids, minlength=top + 1) > 0
        unique = np.flatnonzero(present).astype(np.int64)
        return ScenarioValues(unique, totals[present].astype(np.float64), records)
    unique, inverse = np.unique(ids, return_inverse=True)
    sums: FloatArray = np.bincount(inverse, weights=npv).astype(np.float64)
    return ScenarioValues(unique.astype(np.int64), sums, records)


def metrics_per_outer(
    values: ScenarioValues, metrics: Iterable[str] = (), basis: Basis = "npv"
) -> dict[int, dict[str, float]]:
    """``compute_metrics`` over the inner scenarios of each outer scenario of a nested run."""
    names = list(metrics)
    outer = values.outer_ids
    # scenario_ids are sorted, so each outer scenario's inner scenarios are contiguous.
    starts = np.flatnonzero(np.diff(outer, prepend=outer[0] - 1))
    ends = [*starts[1:].tolist(), outer.size]
    return {
        int(outer[s]): compute_metrics(values.npv[s:e], names, basis)
        for s, e in zip(starts.tolist(), ends, strict=True)
    }
