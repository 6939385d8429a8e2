"""The single-scenario path: a deterministic run in one pass per policy, premiums included.

With one scenario and no dynamic lapses, ``single_scenario_kernel`` walks each policy once
and returns its present values per life split into parts that do not depend on the premium
(``S_*`` columns). Every output is then a few vectorised products: premium income is the
premium per payment times the premium annuity, commissions the premium times the commission
annuity, and an equivalence premium solves a linear equation in the same parts (no second
projection). Formulas: docs/engines/projection.md, "The single-scenario path".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from livecalc.kernels.projection import (
    BLOCKS,
    COUNT,
    N_SINGLE,
    NSTEPS,
    PREMIUM,
    S_ACQUISITION,
    S_ANNUITY,
    S_CLAIM_EXPENSE,
    S_COMMISSION,
    S_DEATHS,
    S_MAINTENANCE,
    S_MATURITY,
    S_SURRENDERS,
    single_scenario_kernel,
)
from livecalc.kernels.projection_basis import ChunkInputs, OutputMode, ProjectionBasis
from livecalc.kernels.projection_run import inflation_factors, kernel_args
from livecalc.runtime.buffers import ALL_SCENARIOS

__all__ = ["PARALLEL_FROM_STEPS", "SinglePVs", "single_parts", "single_pvs", "write_single"]

Array = np.ndarray[Any, Any]

PARALLEL_FROM_STEPS = 1 << 22
"""Policy-steps from which the kernel runs policy-parallel. Below it one thread does the work:
a few milliseconds of it cost less than starting a parallel region, whose threads also wait
for one another when other processes share the cores."""


def single_parts(chunk: ChunkInputs, basis: ProjectionBasis) -> Array:
    """(N_SINGLE, policies) present values per life of a one-scenario chunk.

    Raises:
        ValueError: more than one scenario, or dynamic lapses.
    """
    if chunk.n_scenarios != 1 or basis.dynamic_lapse:
        raise ValueError("the single-scenario path needs one scenario and no dynamic lapses")
    n, k_max = chunk.n_policies, chunk.n_steps_max
    parts = np.empty((N_SINGLE, n))
    if n == 0:
        return parts
    g, coff = basis.grid_per_step, basis.claim_offset
    grid = chunk.disc_factors[0]
    infl = inflation_factors(chunk, basis)
    v = np.empty((5, max(k_max, 1)))
    starts = np.arange(k_max) * g
    v[0, :k_max] = grid[starts]
    v[1, :k_max] = grid[starts + coff]
    v[2, :k_max] = grid[starts + g]
    v[3, :k_max] = v[0, :k_max] * infl[0]
    v[4, :k_max] = v[1, :k_max] * infl[1]
    args = kernel_args(chunk, basis)
    total_steps = int(chunk.pol_int[:, NSTEPS].sum())
    n_blocks = max(1, min(n, BLOCKS)) if total_steps >= PARALLEL_FROM_STEPS else 1
    # The inflation factors (args[8]) are folded into v.
    single_scenario_kernel(*args[:8], v, n_blocks, parts)
    return parts


class SinglePVs:
    """Present values per life from the parts, for premiums per payment ``premium``."""

    def __init__(self, parts: Array, basis: ProjectionBasis, premium: Array) -> None:
        mult = basis.multipliers
        p = premium * mult["premium_multiplier"]
        e_mult = mult["expense_multiplier"]
        per_payment = 1.0 / 12.0 if basis.premium_monthly else 1.0
        self.premium_income = p * parts[S_ANNUITY]
        self.commissions = p * parts[S_COMMISSION]
        self.death_benefits = parts[S_DEATHS]
        self.surrender_benefits = parts[S_SURRENDERS]
        self.maturity_benefits = parts[S_MATURITY]
        self.fixed_expenses = (
            e_mult
            * (
                basis.maintenance * per_payment * parts[S_MAINTENANCE]
                + basis.per_claim * parts[S_CLAIM_EXPENSE]
            )
            + parts[S_ACQUISITION]
        )
        self.expenses = (
            self.fixed_expenses + basis.percent_of_premium * e_mult * self.premium_income
        )
        self.premium_annuity = parts[S_ANNUITY]

    @property
    def npv(self) -> Array:
        """Premium income less every outgo."""
        outgo = self.death_benefits + self.surrender_benefits + self.expenses
        return np.asarray(self.premium_income - outgo - self.maturity_benefits - self.commissions)


def single_pvs(parts: Array, basis: ProjectionBasis, premium: Array) -> SinglePVs:
    """The present values per life for premiums per payment ``premium``."""
    return SinglePVs(parts, basis, premium)


def write_single(
    chunk: ChunkInputs, basis: ProjectionBasis, mode: OutputMode, out: Array, parts: Array
) -> int:
    """Write a one-scenario chunk's records from its parts; returns the records written."""
    n = chunk.n_policies
    premium = chunk.pol_float[:, PREMIUM]
    w = chunk.pol_float[:, COUNT]
    pv = single_pvs(parts, basis, premium)
    npv = w * pv.npv
    if mode is OutputMode.NPV:
        out["scenario_id"][:n] = chunk.scenario_ids[0]
        out["policy_id"][:n] = chunk.policy_ids.astype(np.uint32)
        out["reserved"][:n] = 0
        out["npv"][:n] = npv
        return n
    expenses = pv.expenses if mode is OutputMode.DETAIL_EXT else pv.expenses + pv.commissions
    values = {
        "npv": npv,
        "premium_income": w * pv.premium_income,
        "death_benefits": w * pv.death_benefits,
        "surrender_benefits": w * pv.surrender_benefits,
        "expenses": w * expenses,
        "maturity_benefits": w * pv.maturity_benefits,
    }
    if mode is OutputMode.SCENARIO_TOTALS:
        out["scenario_id"][0] = chunk.scenario_ids[0]
        out["reserved"][0] = 0
        out["policy_count"][0] = w.sum()
        for name, value in values.items():
            out[name][0] = value.sum()
        return 1
    out["scenario_id"][:n] = (
        ALL_SCENARIOS if mode is OutputMode.POLICY_MEANS else chunk.scenario_ids[0]
    )
    out["policy_id"][:n] = chunk.policy_ids
    out["reserved"][:n] = 0
    for name, value in values.items():
        out[name][:n] = value
    if mode is OutputMode.DETAIL_EXT:
        out["commissions"][:n] = w * pv.commissions
        out["premium_annuity"][:n] = w * pv.premium_annuity
        out["premium"][:n] = premium
        out["reserved2"][:n] = 0
    return n
