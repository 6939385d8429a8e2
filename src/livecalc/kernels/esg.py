"""Numba kernels that write SCENARIO records straight into an output buffer, one outer path
per parallel iteration.

Layout of what a kernel writes for outer paths ``outer_start .. outer_stop - 1``: for each outer
path, its ``inner`` scenarios (``scenario_id = outer_id * 1000 + inner_id``), each with years
1..years, so ``rate`` reshapes to ``(scenarios, years)``. The first ``branching_year`` years are
the outer path's real-world segment, simulated once (random slot 0) and copied into every inner
scenario of that outer path; each inner scenario continues from the outer path's state at the
branching year under the risk-neutral dynamics (random slot ``inner_id + 1``). With
``antithetic`` inner scenarios come in pairs (0, 1), (2, 3), ...: the second of a pair uses the
first's random numbers with their signs flipped.

Random numbers come from ``esg_rng`` by counter, so each outer path is generated independently:
the result does not depend on how outer paths are split into calls or threads. The jitted
functions only loop and write; checks live in ``generate``.

numba's on-disk cache (``cache=True``) is keyed on this file alone: after editing the inlined
helpers of ``esg_rng.py``, delete ``kernels/__pycache__/esg.*.nb*`` so the kernels recompile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from livecalc.kernels.esg_models import FloatArray, GaussianStep, hull_white_shifts
from livecalc.kernels.esg_rng import noncentral_chisquare, normal_pair
from livecalc.runtime.buffers import SCENARIO_DTYPE

__all__ = [
    "MAX_INNER",
    "CIRParams",
    "GaussianParams",
    "PathLayout",
    "SimpleParams",
    "cir_params",
    "generate",
    "hull_white_params",
    "vasicek_params",
]

MAX_INNER = 1000
"""``scenario_id = outer_id * 1000 + inner_id`` leaves room for 1,000 inner paths."""


@dataclass(frozen=True)
class PathLayout:
    """How scenarios are arranged and which random streams they draw from."""

    inner: int
    years: int
    branching_year: int
    antithetic: bool
    key: tuple[int, int]


@dataclass(frozen=True)
class GaussianParams:
    """Vasicek or Hull-White as an OU state: start ``x0``, yearly level and integral shift."""

    step: GaussianStep
    x0: float
    levels: FloatArray
    shifts: FloatArray


@dataclass(frozen=True)
class CIRParams:
    """CIR's exact sub-step transition, per year (real-world years may differ).

    For year y (index y-1): ``scale`` c, ``decay`` e^(-a h), degrees of freedom ``df``, and the
    mean-matched trapezoid weights ``weight`` and ``offset`` of the integral.
    """

    r0: float
    substeps: int
    scale: FloatArray
    decay: FloatArray
    df: FloatArray
    weight: FloatArray
    offset: FloatArray


@dataclass(frozen=True)
class SimpleParams:
    """The original engine's model: ``rate_y = clip(rate_{y-1} + drift + vol z, floor, cap)``."""

    initial_rate: float
    drift: float
    volatility: float
    floor: float
    cap: float


@numba.njit(cache=True, inline="always")
def _write_ids(scenario_id: Any, year: Any, row: int, sid: int, years: int) -> None:
    for y in range(years):
        scenario_id[row + y] = sid
        year[row + y] = y + 1


@numba.njit(cache=True, inline="always")
def _slot_sign(i: int, antithetic: bool) -> tuple[int, float]:
    # Slot 0 is the outer segment's stream; a pair shares the slot of its first member.
    if antithetic:
        return i - i % 2 + 1, 1.0 - 2.0 * (i % 2)
    return i + 1, 1.0


@numba.njit(cache=True, parallel=True)
def _gaussian_kernel(
    k0: np.uint64,
    k1: np.uint64,
    outer_start: int,
    n_outer: int,
    inner: int,
    years: int,
    branching: int,
    antithetic: bool,
    e: float,
    bfac: float,
    l11: float,
    l21: float,
    l22: float,
    x0: float,
    levels: Any,
    shifts: Any,
    scenario_id: Any,
    year: Any,
    rate: Any,
    state: Any,
) -> None:
    keep_state = state.shape[0] > 0
    for k in numba.prange(n_outer):
        outer = outer_start + k
        base = k * inner * years
        x = x0
        for y in range(branching):
            z1, z2 = normal_pair(y, 0, outer, 0, k0, k1)
            m = levels[y]
            integral = x * bfac + m * (1.0 - bfac) + shifts[y] + l21 * z1 + l22 * z2
            x = x * e + m * (1.0 - e) + l11 * z1
            rate[base + y] = math.expm1(integral)
            if keep_state:
                state[base + y] = x
        x_branch = x
        for i in range(inner):
            row = base + i * years
            _write_ids(scenario_id, year, row, outer * 1000 + i, years)
            if i > 0:
                for y in range(branching):
                    rate[row + y] = rate[base + y]
                    if keep_state:
                        state[row + y] = state[base + y]
            slot, sign = _slot_sign(i, antithetic)
            x = x_branch
            for y in range(branching, years):
                z1, z2 = normal_pair(y, slot, outer, 0, k0, k1)
                z1 *= sign
                z2 *= sign
                m = levels[y]
                integral = x * bfac + m * (1.0 - bfac) + shifts[y] + l21 * z1 + l22 * z2
                x = x * e + m * (1.0 - e) + l11 * z1
                rate[row + y] = math.expm1(integral)
                if keep_state:
                    state[row + y] = x


@numba.njit(cache=True, inline="always")
def _cir_year(
    r: float,
    y: int,
    slot: int,
    outer: int,
    k0: np.uint64,
    k1: np.uint64,
    substeps: int,
    scale: Any,
    decay: Any,
    df: Any,
    weight: Any,
    offset: Any,
) -> tuple[float, float]:
    integral = 0.0
    c = scale[y]
    for s in range(substeps):
        nonc = r * decay[y] / c
        r_next = c * noncentral_chisquare(df[y], nonc, y * substeps + s, slot, outer, k0, k1)
        integral += weight[y] * (r + r_next) + offset[y]
        r = r_next
    return r, integral


@numba.njit(cache=True, parallel=True)
def _cir_kernel(
    k0: np.uint64,
    k1: np.uint64,
    outer_start: int,
    n_outer: int,
    inner: int,
    years: int,
    branching: int,
    r0: float,
    substeps: int,
    scale: Any,
    decay: Any,
    df: Any,
    weight: Any,
    offset: Any,
    scenario_id: Any,
    year: Any,
    rate: Any,
    state: Any,
) -> None:
    keep_state = state.shape[0] > 0
    for k in numba.prange(n_outer):
        outer = outer_start + k
        base = k * inner * years
        r = r0
        for y in range(branching):
            r, integral = _cir_year(
                r, y, 0, outer, k0, k1, substeps, scale, decay, df, weight, offset
            )
            rate[base + y] = math.expm1(integral)
            if keep_state:
                state[base + y] = r
        r_branch = r
        for i in range(inner):
            row = base + i * years
            _write_ids(scenario_id, year, row, outer * 1000 + i, years)
            if i > 0:
                for y in range(branching):
                    rate[row + y] = rate[base + y]
                    if keep_state:
                        state[row + y] = state[base + y]
            r = r_branch
            for y in range(branching, years):
                r, integral = _cir_year(
                    r, y, i + 1, outer, k0, k1, substeps, scale, decay, df, weight, offset
                )
                rate[row + y] = math.expm1(integral)
                if keep_state:
                    state[row + y] = r


@numba.njit(cache=True, parallel=True)
def _simple_kernel(
    k0: np.uint64,
    k1: np.uint64,
    outer_start: int,
    n_outer: int,
    inner: int,
    years: int,
    branching: int,
    antithetic: bool,
    initial_rate: float,
    drift: float,
    volatility: float,
    floor: float,
    cap: float,
    scenario_id: Any,
    year: Any,
    rate: Any,
    state: Any,
) -> None:
    keep_state = state.shape[0] > 0
    for k in numba.prange(n_outer):
        outer = outer_start + k
        base = k * inner * years
        r = initial_rate
        for y in range(branching):
            z, _ = normal_pair(y, 0, outer, 0, k0, k1)
            r = min(max(r + drift + volatility * z, floor), cap)
            rate[base + y] = r
        r_branch = r
        for i in range(inner):
            row = base + i * years
            _write_ids(scenario_id, year, row, outer * 1000 + i, years)
            if i > 0:
                for y in range(branching):
                    rate[row + y] = rate[base + y]
            slot, sign = _slot_sign(i, antithetic)
            r = r_branch
            for y in range(branching, years):
                z, _ = normal_pair(y, slot, outer, 0, k0, k1)
                r = min(max(r + drift + volatility * sign * z, floor), cap)
                rate[row + y] = r
        if keep_state:
            # The simple model's state is the rate itself.
            for j in range(inner * years):
                state[base + j] = rate[base + j]


ModelParams = GaussianParams | CIRParams | SimpleParams


def generate(
    out: np.ndarray,
    layout: PathLayout,
    params: ModelParams,
    outer_start: int,
    outer_stop: int,
    state: FloatArray | None = None,
) -> int:
    """Write the scenarios of outer paths ``outer_start .. outer_stop - 1`` into ``out``.

    Args:
        out: SCENARIO records; the first ``(outer_stop - outer_start) * inner * years`` are
            written.
        state: optional float64 array of the same length that receives each row's model state
            at the year's end (Vasicek/CIR: the short rate; Hull-White: ``r - phi``; simple:
            the rate); for tests and diagnostics.

    Returns:
        The number of records written.
    """
    if out.dtype != SCENARIO_DTYPE:
        raise ValueError(f"out has dtype {out.dtype}; expected SCENARIO_DTYPE")
    if not 0 <= outer_start <= outer_stop:
        raise ValueError(f"outer range {outer_start}..{outer_stop} is empty or negative")
    n_outer = outer_stop - outer_start
    rows = n_outer * layout.inner * layout.years
    if len(out) < rows:
        raise ValueError(f"out holds {len(out)} records; {rows} are needed")
    if not 0 < layout.inner <= MAX_INNER:
        raise ValueError(f"inner={layout.inner} must be within 1..{MAX_INNER}")
    if state is None:
        state = np.empty(0)
    elif state.shape != (len(out),) or state.dtype != np.float64:
        raise ValueError(f"state must be float64 of shape ({len(out)},)")
    k0, k1 = np.uint64(layout.key[0]), np.uint64(layout.key[1])
    ids, years_col, rate = out["scenario_id"], out["year"], out["rate"]
    common = (k0, k1, outer_start, n_outer, layout.inner, layout.years, layout.branching_year)
    if isinstance(params, GaussianParams):
        s = params.step
        _gaussian_kernel(
            *common, layout.antithetic, s.e, s.bfac, s.l11, s.l21, s.l22, params.x0,
            params.levels, params.shifts, ids, years_col, rate, state,
        )  # fmt: skip
    elif isinstance(params, CIRParams):
        if layout.antithetic:
            raise ValueError("antithetic variates are not defined for CIR")
        _cir_kernel(
            *common, params.r0, params.substeps, params.scale, params.decay, params.df,
            params.weight, params.offset, ids, years_col, rate, state,
        )  # fmt: skip
    else:
        _simple_kernel(
            *common, layout.antithetic, params.initial_rate, params.drift, params.volatility,
            params.floor, params.cap, ids, years_col, rate, state,
        )  # fmt: skip
    return rows


def _split_levels(
    years: int, branching_year: int, real_world: float, risk_neutral: float
) -> FloatArray:
    levels = np.full(years, risk_neutral)
    levels[:branching_year] = real_world
    return levels


def hull_white_params(
    a: float,
    sigma: float,
    discount_factors: FloatArray,
    branching_year: int = 0,
    market_price_of_risk: float = 0.0,
) -> GaussianParams:
    """Hull-White fitted to ``discount_factors`` (``P(0, t)`` for t = 0..years)."""
    years = len(discount_factors) - 1
    return GaussianParams(
        step=GaussianStep.of(a, sigma),
        x0=0.0,
        levels=_split_levels(years, branching_year, market_price_of_risk * sigma / a, 0.0),
        shifts=hull_white_shifts(a, sigma, discount_factors),
    )


def vasicek_params(
    a: float,
    b: float,
    sigma: float,
    r0: float,
    years: int,
    branching_year: int = 0,
    market_price_of_risk: float = 0.0,
) -> GaussianParams:
    """Vasicek ``dr = a (b - r) dt + sigma dW`` from ``r0``."""
    return GaussianParams(
        step=GaussianStep.of(a, sigma),
        x0=r0,
        levels=_split_levels(years, branching_year, b + market_price_of_risk * sigma / a, b),
        shifts=np.zeros(years),
    )


def cir_params(
    a: float,
    b: float,
    sigma: float,
    r0: float,
    years: int,
    substeps: int = 4,
    branching_year: int = 0,
    market_price_of_risk: float = 0.0,
) -> CIRParams:
    """CIR ``dr = a (b - r) dt + sigma sqrt(r) dW`` from ``r0``, in ``substeps`` per year.

    The short rate moves by its exact non-central chi-square law over each sub-step of length
    ``h``. The integral over a sub-step is the trapezoid ``w (r + r') + offset`` with ``w`` and
    ``offset`` chosen so that its conditional mean given ``r`` is exact:
    ``E[integral | r] = B(h) r + b (h - B(h))``, ``B(h) = (1 - e^(-a h)) / a``. What is left is a
    small error in the integral's variance, of order ``h**2`` relative.
    """
    a_p = a - market_price_of_risk * sigma
    h = 1.0 / substeps
    speeds = _split_levels(years, branching_year, a_p, a)
    means = _split_levels(years, branching_year, a * b / a_p, b)
    decay = np.exp(-speeds * h)
    bh = -np.expm1(-speeds * h) / speeds
    weight = bh / (1.0 + decay)
    return CIRParams(
        r0=r0,
        substeps=substeps,
        scale=sigma * sigma * -np.expm1(-speeds * h) / (4.0 * speeds),
        decay=decay,
        df=4.0 * speeds * means / (sigma * sigma),
        weight=weight,
        offset=means * (h - bh) - weight * means * (1.0 - decay),
    )
