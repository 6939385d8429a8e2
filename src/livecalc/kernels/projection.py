"""Numba kernels of the policy projection: per-policy flows and the kernels built on them.

``full_kernel`` projects every policy under every scenario; for each policy it walks the steps
once and, within a step, every scenario (the scenario loop is innermost, so it vectorises).
``cashflow_kernel`` walks the same steps and sums the portfolio's cash flows by period.
Without dynamic lapses cash flows do not depend on the scenario: ``separable_flows_kernel``
computes each policy's expected cash flows on the time grid once and ``separable_pv_kernel``
(``projection_pv.py``) discounts them under every scenario. All write straight into the
output records (policy-major: record ``i * n_scenarios + s``).

The kernels that call ``unit_flows`` and the step helpers live in this one file on purpose:
numba's cache notices changes to a function's own file only, so a kernel must not call a
jitted function kept elsewhere. The kernels that call none (``projection_pv.py``, the
single-scenario kernel of ``projection_single.py``) live beside their wrappers and read only
the column and parameter numbers below. The typed wrappers are in ``projection_run.py``; the
plain-numpy twin in ``projection_numpy.py``; the model and its timing conventions in
docs/engines/projection.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numba
import numpy as np

if TYPE_CHECKING:
    from livecalc.kernels.projection_pv import ids_kernel, separable_pv_kernel
    from livecalc.kernels.projection_single import N_SINGLE, single_scenario_kernel

# Columns of ChunkInputs.pol_int / pol_float and the slots of the kernels' parameter vector.
# They live here, not in projection_basis.py, because numba freezes them into the compiled
# kernels and its cache only watches the kernel's own file: after renumbering them, delete
# kernels/__pycache__/projection_*.nb* too (the kernels of projection_pv.py and
# projection_single.py read them from here).
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

# Kernels kept beside their wrappers, importable from here too (loaded on first use: their
# modules import the numbers above).
_ELSEWHERE = {
    "N_SINGLE": "livecalc.kernels.projection_single",
    "ids_kernel": "livecalc.kernels.projection_pv",
    "separable_pv_kernel": "livecalc.kernels.projection_pv",
    "single_scenario_kernel": "livecalc.kernels.projection_single",
}

# numba's own type hints make mypy read a jitted function as a Dispatcher that takes no
# arguments; typed as a plain decorator, the kernels are called like the plain functions they are.
_Kernel = Callable[..., Any]
_njit: Callable[..., Callable[[_Kernel], _Kernel]] = numba.njit

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
# Scenarios the full kernel's NPV mode takes through all steps at once: five arrays of this
# many doubles (lives, value, three discount-factor rows) fit a 32 KiB first-level cache.
SCENARIO_TILE = 256


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
def _flow_buffers(k_max: int) -> tuple[Array, Array, Array, Array, Array, Array, Array, Array]:
    """One block's arrays for ``unit_flows``: q, lap, prem, expc, cexp, sv, comc, ann."""
    return (
        np.empty(k_max), np.empty(k_max), np.empty(k_max), np.empty(k_max),
        np.empty(k_max), np.empty(k_max), np.empty(k_max), np.empty(k_max),
    )  # fmt: skip


@_njit(cache=True, nogil=True)
def _step_lapses(
    lk: float, dyn_t: Array, year: int, dynamic: bool, monthly: bool, out: Array
) -> None:
    """This step's lapse probability under each scenario: ``lk``, or with dynamic lapses
    ``lk`` times the scenario's factor of policy year ``year`` (row of ``dyn_t``)."""
    if not dynamic:
        out[:] = lk
        return
    dyn = dyn_t[year]
    for s in range(out.shape[0]):
        la = min(1.0, lk * dyn[s])
        out[s] = monthly_rate(la) if monthly else la


@_njit(cache=True, nogil=True)
def _decrements(lives: float, qk: float, lapse: float) -> tuple[float, float, float]:
    """Deaths and lapses in a step of ``lives`` in force, and the lives left after it
    (deaths first, then lapses among the survivors)."""
    deaths = lives * qk
    alive = lives - deaths
    lapses = alive * lapse
    return deaths, lapses, alive - lapses


@_njit(cache=True, nogil=True)
def _step_net(
    lives: Array, lk: float, dyn: Array, dynamic: bool, monthly: bool, qk: float,
    net_start: float, outgo_claim: float, svk: float,
    v_start: Array, v_claim: Array, v_end: Array, acc: Array,
) -> None:  # fmt: skip
    """One step for every scenario, net cash flows only (one accumulator keeps it lean).

    The step's lapse probability is computed here, as ``_step_lapses`` does, rather than
    read from an array it filled: one pass over the scenarios instead of two, and one array
    fewer through the cache (the values, and so the results, are the same)."""
    for s in range(lives.shape[0]):
        lapse = lk
        if dynamic:
            lapse = min(1.0, lk * dyn[s])
            if monthly:
                lapse = monthly_rate(lapse)
        ls = lives[s]
        d, lapses, lives[s] = _decrements(ls, qk, lapse)
        acc[s] += ls * net_start * v_start[s] - d * outgo_claim * v_claim[s]
        acc[s] -= lapses * svk * v_end[s]


@_njit(cache=True, nogil=True)
def _step_components(
    lives: Array, la: Array, qk: float, pk: float, ek: float, ck: float, svk: float,
    comk: float, annk: float, v_start: Array, v_claim: Array, v_end: Array, acc: Array,
) -> None:  # fmt: skip
    """One step for every scenario; ``acc`` rows: premiums, deaths per unit sum assured,
    surrenders, expenses (commissions included), commissions, premium annuity."""
    for s in range(lives.shape[0]):
        ls = lives[s]
        d, lapses, lives[s] = _decrements(ls, qk, la[s])
        vs = v_start[s]
        acc[0, s] += ls * pk * vs
        acc[1, s] += d * v_claim[s]
        acc[2, s] += lapses * svk * v_end[s]
        acc[3, s] += ls * ek * vs + d * ck * v_claim[s]
        acc[4, s] += ls * comk * vs
        acc[5, s] += ls * annk * vs


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
    policy_ids: Array,
    scenario_ids: Array,
    out_sid: Array,
    out_pid: Array,
    out_res: Array,
) -> None:
    """Every policy under every scenario, written per ``mode`` (see ``MODE_*``).

    In NPV mode, given ``out_sid`` of the records' length, it writes the records' ids (and
    zeroes ``reserved``) in the same pass as the values: the records are written to memory
    once, not twice."""
    n_pol = pol_int.shape[0]
    n_scen = df_t.shape[1]
    ids = out_sid.shape[0] > 0
    k_max = (df_t.shape[0] - 1) // g
    m = int(prm[P_STEPS_PER_YEAR])
    dynamic = prm[P_DYNAMIC] != 0.0
    for b in numba.prange(n_blocks):
        q, lap, prem, expc, cexp, sv, comc, ann = _flow_buffers(k_max)
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
            mat = sa if (pi[PRODUCT] == 2 and n > 0) else 0.0
            v_mat = df_t[n * g]
            if mode == MODE_NPV:
                # A tile of scenarios at a time through every step: its lives and value stay
                # in the first-level cache instead of streaming through it once per step.
                for s0 in range(0, n_scen, SCENARIO_TILE):
                    s1 = min(n_scen, s0 + SCENARIO_TILE)
                    tl, ta = lives[s0:s1], acc[0, s0:s1]
                    tl[:] = 1.0
                    ta[:] = 0.0
                    for k in range(n):
                        j = k * g
                        _step_net(
                            tl, lap[k], dyn_t[k // m, s0:s1] if dynamic else dyn_t[0], dynamic,
                            m != 1, q[k], prem[k] - expc[k], cexp[k] + sa, sv[k],
                            df_t[j, s0:s1], df_t[j + coff, s0:s1], df_t[j + g, s0:s1], ta,
                        )  # fmt: skip
                    for s in range(s0, s1):
                        r = i * n_scen + s
                        out_npv[r] = w * (acc[0, s] - mat * lives[s] * v_mat[s])
                        if ids:
                            out_sid[r] = scenario_ids[s]
                            out_pid[r] = policy_ids[i]
                            out_res[r] = 0
                continue
            lives[:] = 1.0
            acc[:] = 0.0
            for k in range(n):
                v_start, v_claim, v_end = df_t[k * g], df_t[k * g + coff], df_t[k * g + g]
                _step_lapses(lap[k], dyn_t, k // m, dynamic, m != 1, la)
                _step_components(
                    lives, la, q[k], prem[k], expc[k], cexp[k], sv[k], comc[k], ann[k],
                    v_start, v_claim, v_end, acc,
                )  # fmt: skip
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
        q, lap, prem, expc, cexp, sv, comc, ann = _flow_buffers(k_max)
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
                _step_lapses(lap[k], dyn_t, k // m, dynamic, m != 1, la)
                v_start, v_claim, v_end = df_t[k * g], df_t[k * g + coff], df_t[k * g + g]
                issued = pi[DURATION] + k * (12 // m) >= 0
                for s in range(n_scen):
                    ls = lives[s]
                    d, lapses, after = _decrements(ls, q[k], la[s])
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
        q, lap, prem, expc, cexp, sv, comc, ann = _flow_buffers(k_max)
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
                d, lapses, after = _decrements(lives, q[k], lap[k])
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
                lives = after
            if pi[PRODUCT] == 2 and n > 0:
                if net:
                    flows[0, i, n * g] -= w * lives * sa
                else:
                    flows[4, i, n * g] += w * lives * sa


def __getattr__(name: str) -> Any:
    """The kernels of ``projection_pv.py`` and ``projection_single.py``, by their old name."""
    module = _ELSEWHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
