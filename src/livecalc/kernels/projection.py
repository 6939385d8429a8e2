"""Numba kernels of the policy projection: per-policy flows, the full kernel, the separable one.

``full_kernel`` projects every policy under every scenario; for each policy it walks the steps
once and, within a step, every scenario (the scenario loop is innermost, so it vectorises).
Without dynamic lapses cash flows do not depend on the scenario: ``separable_flows_kernel``
computes each policy's expected cash flows on the time grid once and ``separable_pv_kernel``
discounts them under every scenario. Both write straight into the output records
(policy-major: record ``i * n_scenarios + s``).

Every jitted function lives in this one file on purpose: numba's cache notices changes to a
function's own file only, so a kernel must not call a jitted function kept elsewhere. The
typed wrappers are in ``projection_run.py``; the plain-numpy twin in ``projection_numpy.py``;
the model and its timing conventions in docs/engines/projection.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

# Columns of ChunkInputs.pol_int / pol_float and the slots of the kernels' parameter vector.
# They live here, not in projection_basis.py, because numba freezes them into the compiled
# kernels and its cache only watches this file.
AGE, GENDER, UCLASS, PRODUCT, DURATION, NSTEPS = range(6)
SA, PREMIUM, COUNT = range(3)
(
    P_STEPS_PER_YEAR,
    P_PREMIUM_MONTHLY,
    P_CLAIM_TAU,
    P_ACQUISITION,
    P_MAINTENANCE,
    P_INFLATION,
    P_PERCENT_OF_PREMIUM,
    P_PER_CLAIM,
    P_PREMIUM_MULT,
    P_MORTALITY_MULT,
    P_LAPSE_MULT,
    P_EXPENSE_MULT,
    P_DYNAMIC,
    P_ACQ_PER_MODEL_POINT,
    N_PARAMS,
) = range(15)

__all__ = [
    "BLOCKS",
    "CF_FIELDS",
    "MODE_DETAIL",
    "MODE_DETAIL_EXT",
    "MODE_MEANS",
    "MODE_NPV",
    "MODE_TOTALS",
    "N_CF",
    "N_SINGLE",
    "TOTAL_BLOCKS",
    "cashflow_kernel",
    "full_kernel",
    "ids_kernel",
    "monthly_rate",
    "separable_flows_kernel",
    "separable_pv_kernel",
    "single_scenario_kernel",
    "unit_flows",
]

Array = np.ndarray[Any, Any]

# numba's own type hints make mypy read a jitted function as a Dispatcher that takes no
# arguments; typed as a plain decorator, the kernels are called like the plain functions they are.
_Kernel = Callable[..., Any]
_njit: Callable[..., Callable[[_Kernel], _Kernel]] = numba.njit

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

# Mode codes of the full kernel.
MODE_NPV, MODE_DETAIL, MODE_MEANS, MODE_TOTALS, MODE_DETAIL_EXT = 0, 1, 2, 3, 4
# Columns of the cash-flow kernel's per-period sums (CASHFLOW record fields, in order).
CF_FIELDS = (
    "premiums",
    "death_claims",
    "surrenders",
    "maturities",
    "expenses",
    "commissions",
    "net_cash_flow",
    "policies_in_force",
    "deaths",
    "lapses",
    "pv_net_cash_flow",
)
N_CF = len(CF_FIELDS)
# Policy blocks per prange: many for load balance; a fixed count for totals so the summation
# order, and so the result, never depends on the number of threads.
BLOCKS = 256
TOTAL_BLOCKS = 16


@_njit(cache=True, nogil=True)
def monthly_rate(annual: float) -> float:
    """The monthly probability ``1 - (1 - p)^(1/12)`` of an annual one (constant force)."""
    # Written with log1p/expm1: the plain formula loses digits for small p (1 - x with x
    # close to 1), which a 1e-12 agreement cannot afford.
    if annual >= 1.0:
        return 1.0
    return -math.expm1(math.log1p(-annual) / 12.0)


@_njit(cache=True, nogil=True)
def unit_flows(
    pi: Array,
    pf: Array,
    qtab: Array,
    age_min: int,
    ltab: Array,
    comm: Array,
    surr: Array,
    prm: Array,
    infl: Array,
    q: Array,
    lap: Array,
    prem: Array,
    expc: Array,
    cexp: Array,
    sv: Array,
    comc: Array,
    ann: Array,
) -> None:
    """One policy's per-step rates and amounts (per life in force, per death, per lapse).

    ``qtab[class, gender, age - age_min, select column]`` and ``ltab[policy year - 1]`` are the
    per-step decrement rates, converted to monthly once per table cell by the wrapper (no
    transcendental function per step). ``infl[0, k]`` and ``infl[1, k]`` are the inflation
    factors at step k's start and at its claim time. ``expc`` includes the commission
    ``comc``; ``ann`` is 1 on a premium date. Before issue (negative policy months, future
    new business) every amount and rate is 0.
    """
    m = int(prm[P_STEPS_PER_YEAR])
    months_per_step = 12 // m
    dur = pi[DURATION]
    qrow = qtab[pi[UCLASS], pi[GENDER]]
    ncol = qrow.shape[1]
    n_lapse, n_comm, n_surr = len(ltab), len(comm), len(surr)
    p_pay = pf[PREMIUM] * prm[P_PREMIUM_MULT]
    e_mult = prm[P_EXPENSE_MULT]
    maintenance = prm[P_MAINTENANCE]
    pct = prm[P_PERCENT_OF_PREMIUM]
    claim_expense = prm[P_PER_CLAIM] * e_mult
    monthly_premium = prm[P_PREMIUM_MONTHLY] != 0.0
    sv_amount = pf[SA] if pi[PRODUCT] != 0 else 0.0
    acquisition = prm[P_ACQUISITION] * e_mult
    if prm[P_ACQ_PER_MODEL_POINT] != 0.0:
        acquisition = acquisition / pf[COUNT] if pf[COUNT] > 0.0 else 0.0
    for k in range(pi[NSTEPS]):
        months = dur + k * months_per_step
        if months < 0:
            q[k] = 0.0
            lap[k] = 0.0
            prem[k] = 0.0
            expc[k] = 0.0
            cexp[k] = 0.0
            sv[k] = 0.0
            comc[k] = 0.0
            ann[k] = 0.0
            continue
        py = months // 12 + 1
        age = pi[AGE] + py - 1
        q[k] = qrow[age - age_min, min(py, ncol) - 1]
        lap[k] = ltab[min(py, n_lapse) - 1]
        if monthly_premium:
            pay = 1.0
            frac = 1.0 / 12.0
        elif months % 12 == 0:
            pay = 1.0
            frac = 1.0
        else:
            pay = 0.0
            frac = 0.0
        p = p_pay * pay
        prem[k] = p
        ann[k] = pay
        e = (maintenance * frac * infl[0, k] + pct * p) * e_mult
        if months == 0:
            e += acquisition
        c = comm[min(py, n_comm) - 1] * p
        comc[k] = c
        expc[k] = e + c
        cexp[k] = claim_expense * infl[1, k]
        sv[k] = surr[min(py, n_surr) - 1] * sv_amount


@_njit(cache=True, nogil=True)
def _lapse_by_scenario(lk: float, dyn: Array, monthly: bool, out: Array) -> None:
    """This step's lapse probability under each scenario (dynamic lapses)."""
    for s in range(out.shape[0]):
        la = min(1.0, lk * dyn[s])
        out[s] = monthly_rate(la) if monthly else la


@_njit(cache=True, nogil=True)
def _step_net(
    lives: Array, la: Array, qk: float, net_start: float, outgo_claim: float, svk: float,
    v_start: Array, v_claim: Array, v_end: Array, acc: Array,
) -> None:  # fmt: skip
    """One step for every scenario, net cash flows only (one accumulator keeps it lean)."""
    for s in range(lives.shape[0]):
        ls = lives[s]
        d = ls * qk
        alive = ls - d
        lapses = alive * la[s]
        acc[s] += ls * net_start * v_start[s] - d * outgo_claim * v_claim[s]
        acc[s] -= lapses * svk * v_end[s]
        lives[s] = alive - lapses


@_njit(cache=True, nogil=True)
def _step_components(
    lives: Array, la: Array, qk: float, pk: float, ek: float, ck: float, svk: float,
    comk: float, annk: float, v_start: Array, v_claim: Array, v_end: Array, acc: Array,
) -> None:  # fmt: skip
    """One step for every scenario; ``acc`` rows: premiums, deaths per unit sum assured,
    surrenders, expenses (commissions included), commissions, premium annuity."""
    for s in range(lives.shape[0]):
        ls = lives[s]
        d = ls * qk
        alive = ls - d
        lapses = alive * la[s]
        vs = v_start[s]
        acc[0, s] += ls * pk * vs
        acc[1, s] += d * v_claim[s]
        acc[2, s] += lapses * svk * v_end[s]
        acc[3, s] += ls * ek * vs + d * ck * v_claim[s]
        acc[4, s] += ls * comk * vs
        acc[5, s] += ls * annk * vs
        lives[s] = alive - lapses


@_njit(parallel=True, cache=True, nogil=True)
def full_kernel(
    pol_int: Array,
    pol_float: Array,
    qtab: Array,
    age_min: int,
    ltab: Array,
    comm: Array,
    surr: Array,
    prm: Array,
    infl: Array,
    df_t: Array,
    dyn_t: Array,
    g: int,
    coff: int,
    n_blocks: int,
    mode: int,
    out_npv: Array,
    out_prem: Array,
    out_death: Array,
    out_surr: Array,
    out_exp: Array,
    out_mat: Array,
    out_comm: Array,
    out_ann: Array,
    partial: Array,
) -> None:
    """Every policy under every scenario, written per ``mode`` (see ``MODE_*``)."""
    n_pol = pol_int.shape[0]
    n_scen = df_t.shape[1]
    k_max = (df_t.shape[0] - 1) // g
    m = int(prm[P_STEPS_PER_YEAR])
    dynamic = prm[P_DYNAMIC] != 0.0
    for b in numba.prange(n_blocks):
        q = np.empty(k_max)
        lap = np.empty(k_max)
        prem = np.empty(k_max)
        expc = np.empty(k_max)
        cexp = np.empty(k_max)
        sv = np.empty(k_max)
        comc = np.empty(k_max)
        ann = np.empty(k_max)
        lives = np.empty(n_scen)
        la = np.empty(n_scen)
        acc = np.empty((6, n_scen))
        sums = np.empty(5)
        for i in range(b * n_pol // n_blocks, (b + 1) * n_pol // n_blocks):
            pi = pol_int[i]
            n = pi[NSTEPS]
            w = pol_float[i, COUNT]
            sa = pol_float[i, SA]
            unit_flows(
                pi, pol_float[i], qtab, age_min, ltab, comm, surr, prm, infl,
                q, lap, prem, expc, cexp, sv, comc, ann,
            )  # fmt: skip
            lives[:] = 1.0
            acc[:] = 0.0
            for k in range(n):
                if dynamic:
                    _lapse_by_scenario(lap[k], dyn_t[k // m], m != 1, la)
                else:
                    la[:] = lap[k]
                v_start, v_claim, v_end = df_t[k * g], df_t[k * g + coff], df_t[k * g + g]
                if mode == MODE_NPV:
                    _step_net(
                        lives, la, q[k], prem[k] - expc[k], cexp[k] + sa, sv[k],
                        v_start, v_claim, v_end, acc[0],
                    )  # fmt: skip
                else:
                    _step_components(
                        lives, la, q[k], prem[k], expc[k], cexp[k], sv[k], comc[k], ann[k],
                        v_start, v_claim, v_end, acc,
                    )  # fmt: skip
            mat = sa if (pi[PRODUCT] == 2 and n > 0) else 0.0
            v_mat = df_t[n * g]
            if mode == MODE_NPV:
                for s in range(n_scen):
                    out_npv[i * n_scen + s] = w * (acc[0, s] - mat * lives[s] * v_mat[s])
                continue
            sums[:] = 0.0
            for s in range(n_scen):
                cp = w * acc[0, s]
                cd = w * sa * acc[1, s]
                cs = w * acc[2, s]
                ce = w * acc[3, s]
                cm = w * mat * lives[s] * v_mat[s]
                if mode == MODE_DETAIL or mode == MODE_DETAIL_EXT:  # noqa: SIM109 (numba)
                    r = i * n_scen + s
                    out_npv[r] = cp - cd - cs - ce - cm
                    out_prem[r] = cp
                    out_death[r] = cd
                    out_surr[r] = cs
                    out_mat[r] = cm
                    if mode == MODE_DETAIL:
                        out_exp[r] = ce
                    else:
                        cc = w * acc[4, s]
                        out_exp[r] = ce - cc
                        out_comm[r] = cc
                        out_ann[r] = w * acc[5, s]
                elif mode == MODE_TOTALS:
                    partial[b, s, 0] += cp
                    partial[b, s, 1] += cd
                    partial[b, s, 2] += cs
                    partial[b, s, 3] += ce
                    partial[b, s, 4] += cm
                else:
                    sums[0] += cp
                    sums[1] += cd
                    sums[2] += cs
                    sums[3] += ce
                    sums[4] += cm
            if mode == MODE_MEANS:
                for c in range(5):
                    sums[c] /= n_scen
                out_prem[i] = sums[0]
                out_death[i] = sums[1]
                out_surr[i] = sums[2]
                out_exp[i] = sums[3]
                out_mat[i] = sums[4]
                out_npv[i] = sums[0] - sums[1] - sums[2] - sums[3] - sums[4]


@_njit(parallel=True, cache=True, nogil=True)
def cashflow_kernel(
    pol_int: Array,
    pol_float: Array,
    qtab: Array,
    age_min: int,
    ltab: Array,
    comm: Array,
    surr: Array,
    prm: Array,
    infl: Array,
    df_t: Array,
    dyn_t: Array,
    g: int,
    coff: int,
    n_blocks: int,
    slot_weights: Array,
    partial: Array,
) -> None:
    """Portfolio cash flows by period, added into ``partial[block, slot, step, CF_FIELDS]``.

    ``slot_weights[slot, s]`` weighs scenario ``s`` in output slot ``slot`` (1/n for the
    scenario mean, 1 for a chosen scenario). Blocks are a fixed number, so the result does not
    depend on the number of threads.
    """
    n_pol = pol_int.shape[0]
    n_scen = df_t.shape[1]
    n_slots = slot_weights.shape[0]
    k_max = (df_t.shape[0] - 1) // g
    m = int(prm[P_STEPS_PER_YEAR])
    dynamic = prm[P_DYNAMIC] != 0.0
    for b in numba.prange(n_blocks):
        q = np.empty(k_max)
        lap = np.empty(k_max)
        prem = np.empty(k_max)
        expc = np.empty(k_max)
        cexp = np.empty(k_max)
        sv = np.empty(k_max)
        comc = np.empty(k_max)
        ann = np.empty(k_max)
        lives = np.empty(n_scen)
        la = np.empty(n_scen)
        vals = np.empty(N_CF)
        for i in range(b * n_pol // n_blocks, (b + 1) * n_pol // n_blocks):
            pi = pol_int[i]
            n = pi[NSTEPS]
            w = pol_float[i, COUNT]
            sa = pol_float[i, SA]
            endow = pi[PRODUCT] == 2
            unit_flows(
                pi, pol_float[i], qtab, age_min, ltab, comm, surr, prm, infl,
                q, lap, prem, expc, cexp, sv, comc, ann,
            )  # fmt: skip
            lives[:] = 1.0
            for k in range(n):
                if dynamic:
                    _lapse_by_scenario(lap[k], dyn_t[k // m], m != 1, la)
                else:
                    la[:] = lap[k]
                v_start, v_claim, v_end = df_t[k * g], df_t[k * g + coff], df_t[k * g + g]
                issued = pi[DURATION] + k * (12 // m) >= 0
                for s in range(n_scen):
                    ls = lives[s]
                    d = ls * q[k]
                    alive = ls - d
                    lapses = alive * la[s]
                    after = alive - lapses
                    lives[s] = after
                    mat = sa * after if (endow and k == n - 1) else 0.0
                    vals[0] = w * ls * prem[k]
                    vals[1] = w * d * sa
                    vals[2] = w * lapses * sv[k]
                    vals[3] = w * mat
                    vals[4] = w * (ls * (expc[k] - comc[k]) + d * cexp[k])
                    vals[5] = w * ls * comc[k]
                    vals[6] = vals[0] - vals[1] - vals[2] - vals[3] - vals[4] - vals[5]
                    vals[7] = w * ls if issued else 0.0  # future new business: not yet
                    vals[8] = w * d
                    vals[9] = w * lapses
                    vals[10] = w * (
                        ls * (prem[k] - expc[k]) * v_start[s]
                        - d * (sa + cexp[k]) * v_claim[s]
                        - (lapses * sv[k] + mat) * v_end[s]
                    )
                    for slot in range(n_slots):
                        wt = slot_weights[slot, s]
                        if wt != 0.0:
                            for f in range(N_CF):
                                partial[b, slot, k, f] += wt * vals[f]


@_njit(parallel=True, cache=True, nogil=True)
def separable_flows_kernel(
    pol_int: Array,
    pol_float: Array,
    qtab: Array,
    age_min: int,
    ltab: Array,
    comm: Array,
    surr: Array,
    prm: Array,
    infl: Array,
    g: int,
    coff: int,
    n_blocks: int,
    flows: Array,
) -> None:
    """Each policy's expected cash flows on the time grid, added into the zeroed ``flows``.

    ``flows`` is (1, policies, grid points) for net cash flows, or (5, ...) by component.
    """
    n_pol = pol_int.shape[0]
    k_max = (flows.shape[2] - 1) // g
    net = flows.shape[0] == 1
    for b in numba.prange(n_blocks):
        q = np.empty(k_max)
        lap = np.empty(k_max)
        prem = np.empty(k_max)
        expc = np.empty(k_max)
        cexp = np.empty(k_max)
        sv = np.empty(k_max)
        comc = np.empty(k_max)
        ann = np.empty(k_max)
        for i in range(b * n_pol // n_blocks, (b + 1) * n_pol // n_blocks):
            pi = pol_int[i]
            n = pi[NSTEPS]
            unit_flows(
                pi, pol_float[i], qtab, age_min, ltab, comm, surr, prm, infl,
                q, lap, prem, expc, cexp, sv, comc, ann,
            )  # fmt: skip
            w = pol_float[i, COUNT]
            sa = pol_float[i, SA]
            lives = 1.0
            for k in range(n):
                d = lives * q[k]
                alive = lives - d
                lapses = alive * lap[k]
                js = k * g
                jc = js + coff
                je = js + g
                if net:
                    flows[0, i, js] += w * lives * prem[k] - w * lives * expc[k]
                    flows[0, i, jc] -= w * d * cexp[k] + w * d * sa
                    flows[0, i, je] -= w * lapses * sv[k]
                else:
                    flows[0, i, js] += w * lives * prem[k]
                    flows[1, i, jc] += w * d * sa
                    flows[2, i, je] += w * lapses * sv[k]
                    flows[3, i, js] += w * lives * expc[k]
                    flows[3, i, jc] += w * d * cexp[k]
                lives = alive - lapses
            if pi[PRODUCT] == 2 and n > 0:
                if net:
                    flows[0, i, n * g] -= w * lives * sa
                else:
                    flows[4, i, n * g] += w * lives * sa


@_njit(parallel=True, cache=True, nogil=True)
def separable_pv_kernel(
    flows: Array,
    pol_int: Array,
    df_t: Array,
    g: int,
    n_blocks: int,
    out_npv: Array,
    out_prem: Array,
    out_death: Array,
    out_surr: Array,
    out_exp: Array,
    out_mat: Array,
    policy_ids: Array,
    scenario_ids: Array,
    out_sid: Array,
    out_pid: Array,
    out_res: Array,
) -> None:
    """Present values of each policy's grid cash flows under every scenario, into the records.

    Only grid points up to the policy's last step carry flows, so the dot products stop
    there: shorter policies cost less, which a dense matrix product would ignore.
    """
    n_comp, n_pol, _ = flows.shape
    n_scen = df_t.shape[1]
    for b in numba.prange(n_blocks):
        acc = np.empty((n_comp, n_scen))
        for i in range(b * n_pol // n_blocks, (b + 1) * n_pol // n_blocks):
            acc[:] = 0.0
            for c in range(n_comp):
                for j in range(pol_int[i, NSTEPS] * g + 1):
                    f = flows[c, i, j]
                    if f != 0.0:
                        row = df_t[j]
                        for s in range(n_scen):
                            acc[c, s] += f * row[s]
            base = i * n_scen
            pid = policy_ids[i]
            # The ids go in the same pass over the records as the values (one write of the
            # output buffer, which is the largest cost here).
            for s in range(n_scen):
                out_sid[base + s] = scenario_ids[s]
                out_pid[base + s] = pid
                out_res[base + s] = 0
            if n_comp == 1:
                for s in range(n_scen):
                    out_npv[base + s] = acc[0, s]
            else:
                for s in range(n_scen):
                    r = base + s
                    out_npv[r] = acc[0, s] - acc[1, s] - acc[2, s] - acc[3, s] - acc[4, s]
                    out_prem[r] = acc[0, s]
                    out_death[r] = acc[1, s]
                    out_surr[r] = acc[2, s]
                    out_exp[r] = acc[3, s]
                    out_mat[r] = acc[4, s]


@_njit(parallel=True, cache=True, nogil=True)
def ids_kernel(
    policy_ids: Array, scenario_ids: Array, out_sid: Array, out_pid: Array, out_res: Array
) -> None:
    """Scenario and policy ids of policy x scenario records, ``reserved`` zeroed."""
    n_scen = scenario_ids.shape[0]
    for i in numba.prange(policy_ids.shape[0]):
        pid = policy_ids[i]
        for s in range(n_scen):
            r = i * n_scen + s
            out_sid[r] = scenario_ids[s]
            out_pid[r] = pid
            out_res[r] = 0


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
