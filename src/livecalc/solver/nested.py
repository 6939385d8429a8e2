"""The distribution of the value at t over outer paths, its capital figure and their MC errors.

Given, for each outer path o, the value at t on its inner paths (``values[o, i]``), the outer
path's discount factor to t (``deflators[o] = exp(-integral_0^t r)``) and the value at 0 of
the same cash flows (``value_0``):

- ``V_o`` = mean of ``values[o]``; its standard error ``se_o = std / sqrt(inner)`` (with
  antithetic inner paths, over the ``inner / 2`` pair means);
- the change in value from 0, discounted: ``dV_o = deflators[o] V_o - value_0``; the loss
  ``L_o = -dV_o`` (positive = the value fell);
- ``var_99_5`` and ``cte_99_5`` of the loss, as ``livecalc.solver.risk`` defines them on the
  loss basis (the 1-in-200 capital);
- each figure's Monte Carlo error **from the inner sampling** (``_se``): the standard
  deviation over ``bootstrap`` re-draws ``V_o + se_o Z_o`` (each outer value moved by its own
  inner noise, ``Z`` standard normal), and **from the outer sampling** (``_se_outer``): over
  re-samples of the outer paths with replacement.

Inner noise also biases tail figures (a noisy value is more spread out than the true one): the
bias is of the order of ``se^2`` and shrinks with more inner paths; docs/engines/nested.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from livecalc.solver.lsmc import QUANTILE_LEVELS
from livecalc.solver.risk import compute_metrics

__all__ = ["CAPITAL_LEVEL", "distribution", "outer_estimates"]

FloatArray = npt.NDArray[np.float64]

CAPITAL_LEVEL = "99_5"
"""The level of the capital figures (``var_99_5``, ``cte_99_5``): the Solvency II 1-in-200."""


def outer_estimates(values: FloatArray, antithetic: bool = False) -> tuple[FloatArray, FloatArray]:
    """(mean, standard error) of each row of ``values`` (outer paths x inner paths).

    With ``antithetic`` the inner paths come in pairs (0, 1), (2, 3), ...: the pairs' means are
    independent, the paths are not, so the error is taken over the pair means.

    Raises:
        ValueError: fewer than two independent draws per outer path.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must be (outer, inner); got shape {values.shape}")
    draws = values.reshape(values.shape[0], -1, 2).mean(axis=2) if antithetic else values
    n = draws.shape[1]
    if n < 2:
        raise ValueError("a standard error needs at least two independent inner draws per path")
    mean = draws.mean(axis=1)
    se = draws.std(axis=1, ddof=1) / np.sqrt(n)
    return mean, se


def _figures(value_t: FloatArray, change: FloatArray) -> dict[str, float]:
    """Every figure whose Monte Carlo error is reported, by a flat name."""
    metrics = compute_metrics(change, [f"var_{CAPITAL_LEVEL}", f"cte_{CAPITAL_LEVEL}"], "loss")
    out = {
        f"var_{CAPITAL_LEVEL}": metrics[f"var_{CAPITAL_LEVEL}"],
        f"cte_{CAPITAL_LEVEL}": metrics[f"cte_{CAPITAL_LEVEL}"],
        "value_t.mean": float(value_t.mean()),
        "change.mean": float(change.mean()),
    }
    for level, q in zip(QUANTILE_LEVELS, np.quantile(value_t, QUANTILE_LEVELS), strict=True):
        out[f"value_t.q{level}"] = float(q)
    for level, q in zip(QUANTILE_LEVELS, np.quantile(change, QUANTILE_LEVELS), strict=True):
        out[f"change.q{level}"] = float(q)
    return out


def _spread(draw: Callable[[], dict[str, float]], bootstrap: int) -> dict[str, float]:
    samples = [draw() for _ in range(bootstrap)]
    return {k: float(np.std([s[k] for s in samples], ddof=1)) for k in samples[0]}


def distribution(
    value_t: FloatArray,
    standard_errors: FloatArray,
    deflators: FloatArray,
    value_0: float,
    bootstrap: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """The statistics of the value at t and of its discounted change, with their MC errors.

    Raises:
        ValueError: arrays of different lengths, fewer than two outer paths, or bootstrap < 2.
    """
    v = np.asarray(value_t, dtype=np.float64)
    se = np.asarray(standard_errors, dtype=np.float64)
    d = np.asarray(deflators, dtype=np.float64)
    if not v.shape == se.shape == d.shape or v.ndim != 1:
        raise ValueError("value_t, standard_errors and deflators must be equal 1-d arrays")
    if len(v) < 2:
        raise ValueError("a distribution needs at least two outer paths")
    if bootstrap < 2:
        raise ValueError(f"bootstrap {bootstrap} must be at least 2")
    change = d * v - value_0
    point = _figures(v, change)
    rng = np.random.default_rng(seed)

    def inner_draw() -> dict[str, float]:
        moved = v + se * rng.standard_normal(len(v))
        return _figures(moved, d * moved - value_0)

    def outer_draw() -> dict[str, float]:
        pick = rng.integers(0, len(v), len(v))
        return _figures(v[pick], change[pick])

    # Exact values (a proxy's) have no inner noise: nothing to re-draw.
    inner_se = _spread(inner_draw, bootstrap) if se.any() else dict.fromkeys(point, 0.0)
    outer_se = _spread(outer_draw, bootstrap)

    def quantiles(prefix: str) -> list[dict[str, float]]:
        return [
            {
                "level": level,
                "value": point[f"{prefix}.q{level}"],
                "se": inner_se[f"{prefix}.q{level}"],
                "se_outer": outer_se[f"{prefix}.q{level}"],
            }
            for level in QUANTILE_LEVELS
        ]

    out: dict[str, Any] = {}
    for name in (f"var_{CAPITAL_LEVEL}", f"cte_{CAPITAL_LEVEL}"):
        out[name] = point[name]
        out[f"{name}_se"] = inner_se[name]
        out[f"{name}_se_outer"] = outer_se[name]
    out["value_0"] = float(value_0)
    out["value_t"] = {
        "mean": point["value_t.mean"],
        "mean_se": float(np.sqrt((se**2).sum()) / len(v)),
        "std": float(v.std(ddof=1)),
        "quantiles": quantiles("value_t"),
    }
    out["change"] = {
        "mean": point["change.mean"],
        "mean_se_outer": outer_se["change.mean"],
        "std": float(change.std(ddof=1)),
        "quantiles": quantiles("change"),
    }
    out["mean_standard_error"] = float(se.mean())
    return out
