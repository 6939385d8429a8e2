"""Valuation at a future date t: a portfolio's cash flows after t, discounted to t on each path.

The nested valuation (docs/engines/nested.md) values, on every inner path of every outer path,
the portfolio's expected cash flows of the periods that start at or after year ``t``,
discounted to ``t`` (not to 0) with the path's own rates. Three steps, each here:

- ``future_flows``: the projection's CASHFLOW records (one period each, ``time_years`` at its
  start) laid on a time grid from ``t``: premiums less expenses and commissions at the
  period's start, death claims at the claim time, surrenders and maturities at its end. A
  period that starts before ``t`` is the past and is left out, also its flows that fall on
  ``t`` itself (claims at the end of year ``t``).
- ``values_at``: ``sum_j F_j D(t, t + j / points_per_year)`` on every path, with the
  projection's ``flat_forward`` discounting: ``D(t, y) = prod_{u=t+1}^{y} 1 / (1 + rate_u)``
  at whole years and ``D(t, y) (1 + rate_{y+1})^-f`` at ``y + f`` within a year.
  ``values_at_reference`` is the same with the projection's own ``discount_grid`` and a dot
  product, the slow obvious twin the tests hold the kernel to.
- ``hull_white_bond_prices``: the closed form ``P(t, T | x_t)`` of the Hull-White model the
  ESG simulates, for the check ``V_t = sum_k CF_k P(t, T_k | x_t)``.

The jitted kernel calls no other jitted function, so numba's cache (keyed on this file) stays
right.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from livecalc.kernels.esg_models import integrated_ou_variance
from livecalc.kernels.projection_discount import discount_grid
from livecalc.runtime.buffers import CASHFLOW_DTYPE

__all__ = [
    "CLAIM_OFFSETS",
    "FutureFlows",
    "future_flows",
    "hull_white_bond_prices",
    "values_at",
    "values_at_reference",
]

Array = np.ndarray[Any, Any]

# Typed as a plain decorator, as in projection.py (numba's hints read a Dispatcher).
_njit: Callable[..., Callable[[Callable[..., Any]], Callable[..., Any]]] = numba.njit

CLAIM_OFFSETS = {"start": 0.0, "middle": 0.5, "end": 1.0}
"""Where in a period death claims fall, as a fraction of the period (the projection's
``claim_timing``)."""


@dataclass(frozen=True)
class FutureFlows:
    """Cash flows after year ``t`` on a grid: ``flows[j]`` at ``t + j / points_per_year``.

    Positive flows are income to the portfolio (premiums), negative ones outgo, so a value is
    on the projection's npv basis (positive = profit).
    """

    valuation_year: int
    points_per_year: int
    flows: Array

    @property
    def horizon_years(self) -> int:
        """Whole years from 0 the paths must cover: the last grid point, rounded up."""
        last = (len(self.flows) - 1) / self.points_per_year
        return self.valuation_year + math.ceil(round(last, 9))

    def times(self) -> Array:
        """Each grid point's time in years from 0."""
        return self.valuation_year + np.arange(len(self.flows)) / self.points_per_year


def future_flows(cashflows: Array, valuation_year: int, claim_timing: str) -> FutureFlows:
    """The flows of the periods from ``valuation_year`` on, on a grid from there.

    Args:
        cashflows: CASHFLOW records of one scenario slot, periods 1, 2, ... in order.
        claim_timing: the projection's ``claim_timing`` ("start", "middle" or "end").

    Raises:
        ValueError: the records are not one slot of consecutive periods of equal length, or
            ``valuation_year`` is not a period start.
    """
    if cashflows.dtype != CASHFLOW_DTYPE:
        raise ValueError(f"cash flows have dtype {cashflows.dtype}; expected CASHFLOW_DTYPE")
    if claim_timing not in CLAIM_OFFSETS:
        raise ValueError(f"claim_timing {claim_timing!r}: use start, middle or end")
    n = len(cashflows)
    if n == 0:
        raise ValueError("no cash flows: the projection wrote no periods")
    if (cashflows["scenario_id"] != cashflows["scenario_id"][0]).any():
        raise ValueError("cash flows of several scenario slots; give one (a deterministic run)")
    if (cashflows["period"] != np.arange(1, n + 1)).any():
        raise ValueError("cash flow periods must run 1, 2, 3, ... in order")
    starts = cashflows["time_years"]
    per_year = 1 if n == 1 else round(1.0 / float(starts[1] - starts[0]))
    if per_year not in (1, 12) or not np.allclose(starts, np.arange(n) / per_year):
        raise ValueError("cash flow periods must be whole years or months from time 0")
    g = 2 if claim_timing == "middle" else 1
    claim = {"start": 0, "middle": 1, "end": 1}[claim_timing]
    first = valuation_year * per_year  # the first period that starts at or after t
    kept = cashflows[first:]
    flows = np.zeros(max(len(kept), 0) * g + 1)
    if len(kept):
        at_start = kept["premiums"] - kept["expenses"] - kept["commissions"]
        js = np.arange(len(kept)) * g
        np.add.at(flows, js, at_start)
        np.add.at(flows, js + claim, -kept["death_claims"])
        np.add.at(flows, js + g, -(kept["surrenders"] + kept["maturities"]))
    return FutureFlows(valuation_year, per_year * g, flows)


@_njit(parallel=True, cache=True, nogil=True)
def _values_kernel(rates: Array, first_year: int, flows: Array, per_year: int, out: Array) -> None:
    n_paths, years = rates.shape
    n_points = flows.shape[0]
    for s in numba.prange(n_paths):
        v = 1.0  # D(t, y) at the current whole year y
        acc = 0.0
        j = 0
        y = first_year
        while j < n_points:
            # The last grid point may sit on the horizon itself, which needs no rate.
            growth = 1.0 + rates[s, y] if y < years else 1.0
            for q in range(per_year):
                if j >= n_points:
                    break
                df = v if q == 0 else v * growth ** (-q / per_year)
                acc += flows[j] * df
                j += 1
            v /= growth
            y += 1
        out[s] = acc


def values_at(rates: Array, future: FutureFlows) -> Array:
    """The value at ``t`` of ``future`` on each path: one number per row of ``rates``.

    Args:
        rates: (paths, years) one-year rates of years 1..years (the SCENARIO ``rate``).

    Raises:
        ValueError: the paths end before the last cash flow.
    """
    rates = np.asarray(rates, dtype=np.float64)
    if rates.ndim != 2:
        raise ValueError(f"rates must be (paths, years); got shape {rates.shape}")
    if rates.shape[1] < future.horizon_years:
        raise ValueError(
            f"the paths cover {rates.shape[1]} years; the cash flows need {future.horizon_years}"
        )
    out = np.empty(rates.shape[0])
    flows = np.ascontiguousarray(future.flows, dtype=np.float64)
    _values_kernel(rates, future.valuation_year, flows, future.points_per_year, out)
    return out


def values_at_reference(rates: Array, future: FutureFlows) -> Array:
    """``values_at`` the obvious way: the projection's discount grid from ``t``, then a dot."""
    t = future.valuation_year
    n_points = len(future.flows)
    tail = np.asarray(rates, dtype=np.float64)[:, t:]
    disc = discount_grid(tail, 1, future.points_per_year, n_points, spot=False)
    return np.asarray(disc @ future.flows, dtype=np.float64)


def hull_white_bond_prices(
    a: float, sigma: float, discount_factors: Array, t: int, maturities: Array, x_t: Array
) -> Array:
    """``P(t, T | x_t)`` for each state ``x_t`` (rows) and whole-year maturity ``T`` (columns).

    For the Hull-White model the ESG simulates (``r = x + phi``, ``dx = -a x dt + sigma dW``
    risk-neutral, ``phi`` fitted to ``P(0, .)``):
    ``P(t, T) = P(0, T) / P(0, t) exp(-B(T - t) x_t + (V(T - t) - V(T) + V(t)) / 2)`` with
    ``B(u) = (1 - e^(-a u)) / a`` and ``V(u)`` the variance of the OU integral over ``u`` years
    (``integrated_ou_variance``).

    Args:
        discount_factors: ``P(0, y)`` for y = 0..years.
        maturities: whole years ``T >= t``, each at most ``years``.
    """
    mats = np.asarray(maturities, dtype=np.int64)
    x = np.asarray(x_t, dtype=np.float64)
    if (mats < t).any() or (mats >= len(discount_factors)).any():
        raise ValueError(f"maturities must lie in {t}..{len(discount_factors) - 1}")

    def var(u: float) -> float:
        return integrated_ou_variance(a, sigma, u)

    tau = (mats - t).astype(np.float64)
    b = -np.expm1(-a * tau) / a
    convexity = np.array(
        [0.5 * (var(u) - var(float(m)) + var(float(t))) for u, m in zip(tau, mats, strict=True)]
    )
    forward = discount_factors[mats] / discount_factors[t]
    return np.asarray(forward * np.exp(convexity - np.outer(x, b)), dtype=np.float64)
