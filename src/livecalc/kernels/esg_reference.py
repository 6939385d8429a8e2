"""Plain-numpy references of the ESG kernels: the same scenarios, vectorised over paths.

They draw the same counter-based random numbers (``esg_rng``'s numpy Philox) and apply the same
transitions, a year at a time over arrays of all paths, so the numba kernels are tested against
them to rounding, and the benchmark measures the kernels against them. They allocate
temporaries of the output's size, which the kernels avoid. CIR has no reference here: its
rejection samplers draw a varying number of uniforms per cell, which does not vectorise; its
kernel is tested against closed-form moments instead.
"""

from __future__ import annotations

import numpy as np

from livecalc.kernels.esg import GaussianParams, PathLayout, SimpleParams
from livecalc.kernels.esg_models import FloatArray
from livecalc.kernels.esg_rng import normal_pair_numpy
from livecalc.runtime.buffers import SCENARIO_DTYPE

__all__ = ["generate_reference"]


def _counters(
    year: int, slots: np.ndarray, outers: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    slots, outers = np.broadcast_arrays(slots, outers)
    zeros = np.zeros(slots.shape, dtype=np.uint64)
    return zeros + np.uint64(year), slots.astype(np.uint64), outers.astype(np.uint64), zeros


def generate_reference(
    layout: PathLayout, params: GaussianParams | SimpleParams, outer_start: int, outer_stop: int
) -> np.ndarray:
    """The SCENARIO records ``kernels.esg.generate`` writes for these outer paths, in numpy."""
    inner, years, branching = layout.inner, layout.years, layout.branching_year
    k0, k1 = layout.key
    outers = np.arange(outer_start, outer_stop, dtype=np.uint64)[:, None]
    inner_ids = np.arange(inner)
    if layout.antithetic:
        slots = (inner_ids - inner_ids % 2 + 1)[None, :]
        signs = (1.0 - 2.0 * (inner_ids % 2))[None, :]
    else:
        slots, signs = (inner_ids + 1)[None, :], np.ones((1, inner))
    shape = (len(outers), inner)
    rates = np.empty((*shape, years))
    gaussian = isinstance(params, GaussianParams)
    state = np.full(shape, params.x0 if gaussian else params.initial_rate)  # type: ignore[union-attr]
    for y in range(years):
        if y < branching:
            z1, z2 = normal_pair_numpy(*_counters(y, np.zeros((1, 1)), outers), k0, k1)
            z1, z2 = np.broadcast_to(z1, shape), np.broadcast_to(z2, shape)
        else:
            z1, z2 = normal_pair_numpy(*_counters(y, slots, outers), k0, k1)
            z1, z2 = z1 * signs, z2 * signs
        if isinstance(params, GaussianParams):
            rates[..., y], state = _gaussian_year(params, y, state, z1, z2)
        else:
            state = np.minimum(
                np.maximum(state + params.drift + params.volatility * z1, params.floor),
                params.cap,
            )
            rates[..., y] = state
    out = np.empty(len(outers) * inner * years, dtype=SCENARIO_DTYPE)
    ids = outers.astype(np.int64) * 1000 + inner_ids[None, :]
    out["scenario_id"] = np.repeat(ids.ravel(), years)
    out["year"] = np.tile(np.arange(1, years + 1), len(outers) * inner)
    out["rate"] = rates.ravel()
    return out


def _gaussian_year(
    params: GaussianParams, y: int, x: FloatArray, z1: FloatArray, z2: FloatArray
) -> tuple[FloatArray, FloatArray]:
    s, m = params.step, float(params.levels[y])
    integral = x * s.bfac + m * (1.0 - s.bfac) + params.shifts[y] + s.l21 * z1 + s.l22 * z2
    return np.expm1(integral), x * s.e + m * (1.0 - s.e) + s.l11 * z1
