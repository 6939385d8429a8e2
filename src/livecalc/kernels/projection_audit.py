"""Period-by-period cash flows of one policy under one scenario, for an actuary to check."""

from __future__ import annotations

import numpy as np

from livecalc.kernels.projection import (
    COUNT,
    DURATION,
    NSTEPS,
    PRODUCT,
    SA,
    monthly_rate,
    unit_flows,
)
from livecalc.kernels.projection_basis import (
    ChunkInputs,
    ProjectionBasis,
)
from livecalc.kernels.projection_run import kernel_args

__all__ = ["audit_cashflows"]


def audit_cashflows(
    chunk: ChunkInputs, basis: ProjectionBasis, policy_index: int, scenario_index: int
) -> dict[str, list[float]]:
    """One policy's cash flows period by period under one scenario, with discount factors.

    Amounts are for all the lives the record stands for (``policy_count``); ``expenses``
    include per-claim expenses, ``commissions`` are shown apart. ``pv_net_cash_flow`` sums to
    the policy's npv.
    """
    pi = chunk.pol_int[policy_index]
    pf = chunk.pol_float[policy_index]
    n = int(pi[NSTEPS])
    k_max = max(n, 1)
    q, lap, prem, expc, cexp, sv, comc, ann = (np.zeros(k_max) for _ in range(8))
    unit_flows(pi, pf, *kernel_args(chunk, basis)[2:], q, lap, prem, expc, cexp, sv, comc, ann)
    m = basis.steps_per_year
    g, coff = basis.grid_per_step, basis.claim_offset
    disc = chunk.disc_factors[scenario_index]
    dyn = basis.dynamic_factors(chunk.rates[scenario_index]) if basis.dynamic_lapse else None
    w, sa = float(pf[COUNT]), float(pf[SA])
    cols: dict[str, list[float]] = {
        k: []
        for k in (
            "period", "time_years", "policy_year", "lives_start", "deaths", "lapses",
            "premiums", "death_claims", "surrenders", "maturities", "expenses",
            "commissions", "net_cash_flow", "discount_factor", "discount_factor_claims",
            "discount_factor_end", "pv_net_cash_flow",
        )
    }  # fmt: skip
    lives = 1.0
    for k in range(n):
        la = lap[k]
        if dyn is not None:
            la = min(1.0, la * dyn[k // m])
            if m != 1:
                la = monthly_rate(la)
        lives_start = lives
        d = lives * q[k]
        lapses = (lives - d) * la
        py = max(0, (int(pi[DURATION]) + k * (12 // m)) // 12 + 1)  # 0 before issue
        commission = comc[k]
        row = {
            "premiums": w * lives * prem[k],
            "death_claims": w * d * sa,
            "surrenders": w * lapses * sv[k],
            "maturities": 0.0,
            "expenses": w * (lives * (expc[k] - commission) + d * cexp[k]),
            "commissions": w * lives * commission,
        }
        lives = lives - d - lapses
        if k == n - 1 and pi[PRODUCT] == 2:
            row["maturities"] = w * lives * sa
        vs, vc, ve = disc[k * g], disc[k * g + coff], disc[k * g + g]
        pv = (
            row["premiums"] * vs
            - row["commissions"] * vs
            - (row["expenses"] - w * d * cexp[k]) * vs
            - (w * d * cexp[k] + row["death_claims"]) * vc
            - (row["surrenders"] + row["maturities"]) * ve
        )
        net = row["premiums"] - sum(row[c] for c in row if c != "premiums")
        values = {
            "period": k + 1,
            "time_years": k / m,
            "policy_year": py,
            "lives_start": w * lives_start,
            "deaths": w * d,
            "lapses": w * lapses,
            **row,
            "net_cash_flow": net,
            "discount_factor": vs,
            "discount_factor_claims": vc,
            "discount_factor_end": ve,
            "pv_net_cash_flow": pv,
        }
        for key, value in values.items():
            # Counters stay whole numbers in the lists an actuary reads (and in JSON).
            cols[key].append(int(value) if key in ("period", "policy_year") else float(value))
    return cols
