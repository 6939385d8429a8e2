"""The single-scenario path: a deterministic run in one pass per policy, premiums included.

With one scenario and no dynamic lapses, ``single_scenario_kernel`` walks each policy once
and returns its present values per life split into parts that do not depend on the premium
(``S_*`` columns). Every output is then a few vectorised products: premium income is the
premium per payment times the premium annuity, commissions the premium times the commission
annuity, and an equivalence premium solves a linear equation in the same parts (no second
projection). Formulas: docs/engines/projection.md, "The single-scenario path".

The kernel lives beside its wrapper: it calls no other jitted function, so numba's cache
(keyed on this file) stays right; it reads the column and parameter numbers of
``projection.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from livecalc.kernels.projection import (
    AGE,
    BLOCKS,
    COUNT,
    DURATION,
    GENDER,
    NSTEPS,
    P_ACQ_PER_MODEL_POINT,
    P_ACQUISITION,
    P_EXPENSE_MULT,
    P_PREMIUM_MONTHLY,
    P_STEPS_PER_YEAR,
    PREMIUM,
    PRODUCT,
    SA,
    UCLASS,
)
from livecalc.kernels.projection_basis import ChunkInputs, OutputMode, ProjectionBasis
from livecalc.kernels.projection_run import inflation_factors, kernel_args
from livecalc.runtime.buffers import ALL_SCENARIOS

__all__ = [
    "N_SINGLE",
    "PARALLEL_FROM_STEPS",
    "SinglePVs",
    "single_parts",
    "single_pvs",
    "single_scenario_kernel",
    "write_single",
]

Array = np.ndarray[Any, Any]

# Typed as a plain decorator, as in projection.py (numba's hints read a Dispatcher).
_njit: Callable[..., Callable[[Callable[..., Any]], Callable[..., Any]]] = numba.njit

# Columns of the single-scenario kernel's per-policy parts (present values per life).
(
    S_ANNUITY,
    S_COMMISSION,
    S_DEATHS,
    S_SURRENDERS,
    S_MATURITY,
    S_MAINTENANCE,
    S_CLAIM_EXPENSE,
    S_ACQUISITION,
    N_SINGLE,
) = range(9)

PARALLEL_FROM_STEPS = 1 << 22
"""Policy-steps from which the kernel runs policy-parallel. Below it one thread does the work:
a few milliseconds of it cost less than starting a parallel region, whose threads also wait
for one another when other processes share the cores."""


@_njit(cache=True, nogil=True, fastmath={"contract"})
def _single_policies(
    lo: int,
    hi: int,
    pol_int: Array,
    pol_float: Array,
    qtab: Array,
    age_min: int,
    ltab: Array,
    comm: Array,
    surr: Array,
    prm: Array,
    v: Array,
    parts: Array,
) -> None:
    """``single_scenario_kernel``'s work for policies ``lo`` to ``hi - 1``."""
    m = int(prm[P_STEPS_PER_YEAR])
    months_per_step = 12 // m
    monthly_premium = prm[P_PREMIUM_MONTHLY] != 0.0
    acquisition = prm[P_ACQUISITION] * prm[P_EXPENSE_MULT]
    per_model_point = prm[P_ACQ_PER_MODEL_POINT] != 0.0
    n_lapse, n_comm, n_surr = len(ltab), len(comm), len(surr)
    vs, vc, ve, vsi, vci = v[0], v[1], v[2], v[3], v[4]
    for i in range(lo, hi):
        n = pol_int[i, NSTEPS]
        dur = pol_int[i, DURATION]
        qrow = qtab[pol_int[i, UCLASS], pol_int[i, GENDER]]
        ncol = qrow.shape[1]
        age0 = pol_int[i, AGE] - age_min
        sa = pol_float[i, SA]
        sv_amount = sa if pol_int[i, PRODUCT] != 0 else 0.0
        k = 0
        if dur < 0:  # future new business: start at issue
            k = (-dur + months_per_step - 1) // months_per_step
        annuity = 0.0
        commission = 0.0
        deaths = 0.0
        surrenders = 0.0
        maintenance = 0.0
        claim_expense = 0.0
        acq = 0.0
        lives = 1.0
        # Policy year by policy year: the year's rates are looked up once, and within
        # the year the lives run off geometrically, so each step only adds discounted
        # lives to five sums (deaths and lapses are the year's rates times them).
        while k < n:
            months = dur + k * months_per_step
            py = months // 12 + 1
            end = min(n, k + (12 * py - months) // months_per_step)
            q = qrow[age0 + py - 1, min(py, ncol) - 1]
            lapse = ltab[min(py, n_lapse) - 1]
            survive = (1.0 - q) * (1.0 - lapse)
            if months == 0:
                acq = acquisition * vs[k]
            paid = 0.0
            paid_infl = 0.0
            if not monthly_premium and months % 12 == 0:
                paid = lives * vs[k]
                paid_infl = lives * vsi[k]
            sv = surr[min(py, n_surr) - 1] * sv_amount
            l_vs = 0.0
            l_vsi = 0.0
            l_vc = 0.0
            l_vci = 0.0
            l_ve = 0.0
            if sv != 0.0:
                for j in range(k, end):
                    l_vs += lives * vs[j]
                    l_vsi += lives * vsi[j]
                    l_vc += lives * vc[j]
                    l_vci += lives * vci[j]
                    l_ve += lives * ve[j]
                    lives *= survive
            else:  # no surrender value this year (term assurance): one sum fewer
                for j in range(k, end):
                    l_vs += lives * vs[j]
                    l_vsi += lives * vsi[j]
                    l_vc += lives * vc[j]
                    l_vci += lives * vci[j]
                    lives *= survive
            if monthly_premium:
                paid = l_vs
                paid_infl = l_vsi
            annuity += paid
            commission += comm[min(py, n_comm) - 1] * paid
            maintenance += paid_infl
            deaths += q * l_vc
            claim_expense += q * l_vci
            surrenders += (1.0 - q) * lapse * sv * l_ve
            k = end
        if per_model_point:
            count = pol_float[i, COUNT]
            acq = acq / count if count > 0.0 else 0.0
        parts[S_ANNUITY, i] = annuity
        parts[S_COMMISSION, i] = commission
        parts[S_DEATHS, i] = deaths * sa
        parts[S_SURRENDERS, i] = surrenders
        parts[S_MATURITY, i] = 0.0
        if pol_int[i, PRODUCT] == 2 and n > 0:
            parts[S_MATURITY, i] = lives * sa * ve[n - 1]
        parts[S_MAINTENANCE, i] = maintenance
        parts[S_CLAIM_EXPENSE, i] = claim_expense
        parts[S_ACQUISITION, i] = acq


@_njit(parallel=True, cache=True, nogil=True)
def single_scenario_kernel(
    pol_int: Array,
    pol_float: Array,
    qtab: Array,
    age_min: int,
    ltab: Array,
    comm: Array,
    surr: Array,
    prm: Array,
    v: Array,
    n_blocks: int,
    parts: Array,
) -> None:
    """One scenario, no dynamic lapses: each policy's present values per life, split into
    parts that do not depend on the premium (``S_*`` rows of ``parts``, (N_SINGLE, policies)).

    ``v`` rows (by step k): discount factor at the start, at the claim time, at the end, the
    start factor times expense inflation, the claim factor times expense inflation. One pass
    per policy, rates reloaded only when the policy year changes, nothing allocated.
    Premium-dependent amounts are the premium per payment times ``S_ANNUITY`` (premium income)
    and ``S_COMMISSION`` (commissions), which lets the equivalence premium be solved from the
    same pass.
    """
    n_pol = pol_int.shape[0]
    if n_blocks == 1:  # one thread: no parallel region to start
        _single_policies(
            0, n_pol, pol_int, pol_float, qtab, age_min, ltab, comm, surr, prm, v, parts
        )
        return
    for b in numba.prange(n_blocks):
        _single_policies(
            b * n_pol // n_blocks, (b + 1) * n_pol // n_blocks,
            pol_int, pol_float, qtab, age_min, ltab, comm, surr, prm, v, parts,
        )  # fmt: skip


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
