"""Discounting conventions of the projection: curves as read, and discount factors on the grid.

Three conventions (docs/engines/projection.md, "Discounting"):

- ``flat_forward``: whole-year factors ``V(y)`` from one-year forward rates (``V(y + 1) = V(y)
  / (1 + r_{y+1})``) or spot rates (``V(y) = (1 + z_y)^-y``), and ``V(y) (V(y + 1) /
  V(y))^f`` at ``y + f`` within a year;
- ``step_spot``: a flow at ``t`` years is discounted by ``(1 + z_y)^-t``, ``z_y`` the spot rate
  of projection year ``y = floor(t)``; ``z_0`` is the curve's year-0 rate, or ``z_1`` when it
  has none;
- ``curve_per_step``: a discount factor for every step, given in a file; no interpolation.

Every rate here is annual effective: ``to_effective`` converts a curve quoted continuously
(``e^r - 1``) or monthly compounded (``(1 + r/12)^12 - 1``) once, when it is read.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np

from livecalc.assumptions.credentials import AMCredentials
from livecalc.assumptions.tables import read_table
from livecalc.errors import ConfigurationError

__all__ = [
    "Discounting",
    "discount_grid",
    "load_step_factors",
    "load_yield_curve",
    "to_effective",
]

Float1D = np.ndarray[Any, np.dtype[np.float64]]
Float2D = np.ndarray[Any, np.dtype[np.float64]]


class Discounting(enum.Enum):
    """How discount factors are built from the rates (see the module docstring)."""

    FLAT_FORWARD = "flat_forward"
    STEP_SPOT = "step_spot"
    CURVE_PER_STEP = "curve_per_step"


def to_effective(rates: Any, compounding: str) -> Any:
    """Annual effective rates from rates quoted ``annual``, ``continuous`` or ``monthly``."""
    r = np.asarray(rates, dtype=np.float64)
    if compounding == "continuous":
        return np.expm1(r)
    if compounding == "monthly":
        return np.expm1(12.0 * np.log1p(r / 12.0))
    return r


def _numbers(table: Any, name: str, label: str) -> Float1D:
    col = table.column(name)
    if col.null_count:
        row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0]) + 1
        raise ConfigurationError(f"{label}: row {row}: column {name!r} is empty; fill it in")
    try:
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
    except (ValueError, TypeError):
        raise ConfigurationError(f"{label}: column {name!r} must hold numbers") from None


def load_yield_curve(
    source: str, credentials: AMCredentials | None, key: str, compounding: str
) -> tuple[Float1D, float | None]:
    """Annual effective rates of years 1..N and the year-0 rate (None when not given).

    The file has columns ``year`` and ``rate``; years run 0 (optional), 1, 2, ... with no gap.
    """
    table, label = read_table(source, credentials, key)
    names = list(table.column_names)
    if "year" not in names or "rate" not in names:
        raise ConfigurationError(f"{label}: expected columns 'year' and 'rate'; found {names}")
    years = _numbers(table, "year", label)
    rates = _numbers(table, "rate", label)
    first = 0 if len(years) and years[0] == 0 else 1
    expected = np.arange(first, first + len(years))
    bad = years != expected
    if bad.any() or len(years) - first < 1:
        i = int(np.flatnonzero(bad)[0]) if bad.any() else 0
        raise ConfigurationError(
            f"{label}: row {i + 1}: years must run 1, 2, 3, ... (or 0, 1, 2, ... with a year-0 "
            "rate) with no gaps, at least year 1"
        )
    eff = to_effective(rates, compounding)
    bad_rate = ~(np.isfinite(eff) & (eff > -1.0))
    if bad_rate.any():
        i = int(np.flatnonzero(bad_rate)[0])
        raise ConfigurationError(
            f"{label}: row {i + 1}: rate {float(rates[i])!r} must be a finite number above -1"
        )
    if first == 0:
        return np.ascontiguousarray(eff[1:]), float(eff[0])
    return np.ascontiguousarray(eff), None


def load_step_factors(
    source: str,
    credentials: AMCredentials | None,
    key: str,
    compounding: str,
    steps_per_year: int,
) -> Float1D:
    """Discount factors at times ``step / steps_per_year`` for steps 0..N (step 0 is 1).

    The file has a ``step`` column (1, 2, ... or 0, 1, 2, ...) and either ``discount_factor``
    or ``rate`` (the spot rate to that time, quoted with ``compounding``).
    """
    table, label = read_table(source, credentials, key)
    names = list(table.column_names)
    value = next((c for c in ("discount_factor", "rate") if c in names), None)
    if "step" not in names or value is None:
        raise ConfigurationError(
            f"{label}: expected columns 'step' and 'discount_factor' (or 'rate'); found {names}"
        )
    steps = _numbers(table, "step", label)
    values = _numbers(table, value, label)
    first = 0 if len(steps) and steps[0] == 0 else 1
    bad = steps != np.arange(first, first + len(steps))
    if bad.any() or len(steps) - first < 1:
        i = int(np.flatnonzero(bad)[0]) if bad.any() else 0
        raise ConfigurationError(
            f"{label}: row {i + 1}: steps must run 1, 2, 3, ... (or from 0) with no gaps"
        )
    t = steps / steps_per_year
    if value == "rate":
        eff = to_effective(values, compounding)
        with np.errstate(invalid="ignore"):
            factors = (1.0 + eff) ** (-t)
    else:
        factors = values
    bad_v = ~(np.isfinite(factors) & (factors > 0.0))
    if first == 0:
        bad_v |= (steps == 0) & (factors != 1.0)
    if bad_v.any():
        i = int(np.flatnonzero(bad_v)[0])
        raise ConfigurationError(
            f"{label}: row {i + 1}: {value} {float(values[i])!r} gives discount factor "
            f"{float(factors[i])!r}; factors must be finite and > 0, and 1 at step 0"
        )
    if first == 0:
        return np.ascontiguousarray(factors, dtype=np.float64)
    return np.concatenate(([1.0], factors))


def discount_grid(
    rates: Float2D,
    steps_per_year: int,
    g: int,
    n_points: int,
    spot: bool,
    convention: Discounting = Discounting.FLAT_FORWARD,
    rate0: Float1D | None = None,
    step_factors: Float1D | None = None,
) -> Float2D:
    """Discount factors (n_scen, n_points) at times ``j / (g steps_per_year)`` years.

    Raises:
        ConfigurationError: ``curve_per_step`` factors do not reach the last grid point.
    """
    n_scen, n_years = rates.shape
    per_year = g * steps_per_year
    j = np.arange(n_points)
    if convention is Discounting.CURVE_PER_STEP:
        assert step_factors is not None and g == 1
        if len(step_factors) < n_points:
            raise ConfigurationError(
                f"config.discounting.file: {len(step_factors) - 1} steps of discount factors "
                f"but the chunk runs {n_points - 1} steps; give factors up to step {n_points - 1}"
            )
        return np.ascontiguousarray(np.broadcast_to(step_factors[:n_points], (n_scen, n_points)))
    if convention is Discounting.STEP_SPOT:
        z0 = rates[:, 0] if rate0 is None else np.broadcast_to(rate0, (n_scen,))
        z = np.concatenate([np.asarray(z0, dtype=np.float64)[:, None], rates], axis=1)
        year = np.minimum(j // per_year, n_years)
        t = j / per_year
        return np.ascontiguousarray((1.0 + z[:, year]) ** (-t))
    annual = np.ones((n_scen, n_years + 1))
    if spot:
        years = np.arange(1, n_years + 1)
        annual[:, 1:] = (1.0 + rates) ** (-years.astype(np.float64))
    else:
        annual[:, 1:] = np.cumprod(1.0 / (1.0 + rates), axis=1)
    year = j // per_year
    frac = (j % per_year) / per_year
    nxt = np.minimum(year + 1, n_years)
    grid = annual[:, year] * (annual[:, nxt] / annual[:, year]) ** frac
    return np.ascontiguousarray(grid)
