"""The projection model in plain vectorised numpy: the baseline beside the numba kernels.

Same model, same inputs and outputs as ``livecalc.kernels.projection.project``, written the way
one would without numba: per-step rates as (policies, steps) arrays, then a loop over steps
on (policies, scenarios) arrays (or, when cash flows do not depend on the scenario, a loop over
steps on policy vectors and one matrix product). The benchmark measures the kernels against
it, and the tests check that both agree with the pure-Python reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from livecalc.kernels.projection import (
    AGE,
    COUNT,
    DURATION,
    GENDER,
    NSTEPS,
    PREMIUM,
    PRODUCT,
    SA,
    UCLASS,
)
from livecalc.kernels.projection_basis import (
    ChunkInputs,
    OutputMode,
    ProjectionBasis,
)
from livecalc.runtime.buffers import ALL_SCENARIOS

__all__ = ["deterministic_numpy", "monthly_rate_numpy", "project_numpy", "unit_flows_numpy"]

Array = np.ndarray[Any, Any]


def monthly_rate_numpy(annual: Array) -> Array:
    """``1 - (1 - p)^(1/12)`` elementwise, in the stable log1p/expm1 form (1 where p = 1)."""
    with np.errstate(divide="ignore"):
        return np.where(annual >= 1.0, 1.0, -np.expm1(np.log1p(-annual) / 12.0))


def unit_flows_numpy(chunk: ChunkInputs, basis: ProjectionBasis) -> dict[str, Array]:
    """Per-step rates and amounts, (policies, steps); zero after each policy's last step."""
    pi, pf = chunk.pol_int, chunk.pol_float
    m = basis.steps_per_year
    k_max = chunk.n_steps_max
    k = np.arange(k_max)
    months = pi[:, DURATION, None] + k[None, :] * (12 // m)
    # Steps before issue (future new business) carry nothing.
    active = (k[None, :] < pi[:, NSTEPS, None]) & (months >= 0)
    py = np.maximum(months, 0) // 12 + 1
    mort = basis.mortality
    ages = np.clip(pi[:, AGE, None] + py - 1 - basis.mortality_age_min, 0, mort.shape[1] - 1)
    col = np.minimum(py, mort.shape[2]) - 1
    mult = basis.multipliers
    factor = basis.class_factors[pi[:, UCLASS]] * mult["mortality_multiplier"]
    qa = np.minimum(1.0, mort[pi[:, GENDER, None], ages, col] * factor[:, None])
    q = qa if m == 1 else monthly_rate_numpy(qa)

    def by_year(rates: Array) -> Array:
        return np.asarray(rates[np.minimum(py, len(rates)) - 1])

    la = by_year(basis.lapse) * mult["lapse_multiplier"]
    if not basis.dynamic_lapse:
        la = np.minimum(1.0, la)
        la = la if m == 1 else monthly_rate_numpy(la)
    if basis.premium_monthly:
        pay = np.ones(months.shape)
        frac = np.full(months.shape, 1.0 / 12.0)
    else:
        pay = (months % 12 == 0).astype(np.float64)
        frac = pay
    t = k / m
    infl = 1.0 + basis.inflation
    e_mult = mult["expense_multiplier"]
    prem = pf[:, PREMIUM, None] * mult["premium_multiplier"] * pay  # PREMIUM: per payment
    exps = (basis.maintenance * frac * infl**t + basis.percent_of_premium * prem) * e_mult
    acquisition = np.full(len(pf), basis.acquisition * e_mult)
    if basis.acquisition_per_model_point:
        count = pf[:, COUNT]
        acquisition = np.where(count > 0, acquisition / np.where(count > 0, count, 1.0), 0.0)
    exps += np.where(months == 0, acquisition[:, None], 0.0)
    tau = 0.5 * int(basis.claim_timing)
    cexp = np.broadcast_to(basis.per_claim * e_mult * infl ** (t + tau / m), months.shape)
    sv = by_year(basis.surrender) * np.where(pi[:, PRODUCT] != 0, pf[:, SA], 0.0)[:, None]
    comm = by_year(basis.commission) * prem
    flows = {
        "q": q,
        "lapse": la,
        "prem": prem,
        "expc": exps + comm,
        "cexp": cexp,
        "sv": sv,
        "comm": comm,
        "pay": pay,
    }
    return {name: np.where(active, v, 0.0) for name, v in flows.items()}


def _components_full(
    chunk: ChunkInputs, basis: ProjectionBasis, u: dict[str, Array], rows: slice
) -> list[Array]:
    """The five present-value components (expenses with commissions), then commissions and
    the premium annuity, (policies in rows, scenarios), scenario by scenario."""
    disc = chunk.disc_factors
    g, coff, m = basis.grid_per_step, basis.claim_offset, basis.steps_per_year
    dyn = basis.dynamic_factors(chunk.rates) if basis.dynamic_lapse else None
    n_scen = chunk.n_scenarios
    sa = chunk.pol_float[rows, SA, None]
    lives = np.ones((sa.shape[0], n_scen))
    acc = [np.zeros_like(lives) for _ in range(6)]
    for k in range(chunk.n_steps_max):
        lk = u["lapse"][rows, k, None]
        if dyn is not None:
            la = np.minimum(1.0, lk * dyn[None, :, k // m])
            la = la if m == 1 else monthly_rate_numpy(la)
        else:
            la = lk
        v_start, v_claim, v_end = disc[:, k * g], disc[:, k * g + coff], disc[:, k * g + g]
        d = lives * u["q"][rows, k, None]
        alive = lives - d
        lapses = alive * la
        acc[0] += lives * u["prem"][rows, k, None] * v_start
        acc[1] += d * v_claim
        acc[2] += lapses * u["sv"][rows, k, None] * v_end
        acc[3] += (
            lives * u["expc"][rows, k, None] * v_start + d * u["cexp"][rows, k, None] * v_claim
        )
        acc[4] += lives * u["comm"][rows, k, None] * v_start
        acc[5] += lives * u["pay"][rows, k, None] * v_start
        lives = alive - lapses
    n = chunk.pol_int[rows, NSTEPS]
    mat = np.where((chunk.pol_int[rows, PRODUCT] == 2) & (n > 0), sa[:, 0], 0.0)
    w = chunk.pol_float[rows, COUNT, None]
    cm = mat[:, None] * lives * disc[:, n * g].T
    return [w * acc[0], w * sa * acc[1], w * acc[2], w * acc[3], w * cm, w * acc[4], w * acc[5]]


def _grid_flows(chunk: ChunkInputs, basis: ProjectionBasis, u: dict[str, Array]) -> Array:
    """Expected cash flows by component on the time grid, (5, policies, grid points)."""
    n = chunk.n_policies
    g, coff = basis.grid_per_step, basis.claim_offset
    flows = np.zeros((5, n, chunk.disc_factors.shape[1]))
    w = chunk.pol_float[:, COUNT]
    sa = chunk.pol_float[:, SA]
    lives = np.ones(n)
    for k in range(chunk.n_steps_max):
        d = lives * u["q"][:, k]
        alive = lives - d
        lapses = alive * u["lapse"][:, k]
        js, jc, je = k * g, k * g + coff, k * g + g
        flows[0, :, js] += w * lives * u["prem"][:, k]
        flows[1, :, jc] += w * d * sa
        flows[2, :, je] += w * lapses * u["sv"][:, k]
        flows[3, :, js] += w * lives * u["expc"][:, k]
        flows[3, :, jc] += w * d * u["cexp"][:, k]
        lives = alive - lapses
    steps = chunk.pol_int[:, NSTEPS]
    endow = (chunk.pol_int[:, PRODUCT] == 2) & (steps > 0)
    flows[4, np.flatnonzero(endow), steps[endow] * g] += (w * lives * sa)[endow]
    return flows


def _write(out: Array, comps: list[Array], rows: slice) -> None:
    p, d, s, e, m = comps
    out["npv"][rows] = p - d - s - e - m
    for name, value in zip(
        ("premium_income", "death_benefits", "surrender_benefits", "expenses", "maturity_benefits"),
        comps,
        strict=True,
    ):
        out[name][rows] = value


def project_numpy(
    chunk: ChunkInputs, basis: ProjectionBasis, mode: OutputMode, out: Array, separable: bool
) -> int:
    """The numpy twin of ``livecalc.kernels.projection.project``; returns records written."""
    n, n_scen = chunk.n_policies, chunk.n_scenarios
    rows = mode.records(n, n_scen)
    if len(out) < rows or out.dtype != mode.dtype:
        raise ValueError(f"the output buffer needs {rows} records of {mode.value}'s dtype")
    if separable and basis.dynamic_lapse:
        raise ValueError("dynamic lapses make cash flows scenario-dependent: no separable path")
    if rows == 0:
        return 0
    u = unit_flows_numpy(chunk, basis)
    if mode is OutputMode.DETAIL_EXT:
        separable = False  # commissions and the premium annuity come from the per-scenario loop
    pair = mode in (OutputMode.NPV, OutputMode.DETAIL, OutputMode.DETAIL_EXT)
    if pair:
        out["scenario_id"][:rows].reshape(n, n_scen)[:] = chunk.scenario_ids[None, :]
        out["policy_id"][:rows].reshape(n, n_scen)[:] = chunk.policy_ids[:, None]
        out["reserved"][:rows] = 0
    elif mode is OutputMode.POLICY_MEANS:
        out["scenario_id"][:n] = ALL_SCENARIOS
        out["policy_id"][:n] = chunk.policy_ids
        out["reserved"][:n] = 0
    else:
        out["scenario_id"][:n_scen] = chunk.scenario_ids
        out["reserved"][:n_scen] = 0
        out["policy_count"][:n_scen] = chunk.pol_float[:, COUNT].sum()
    if separable:
        flows = _grid_flows(chunk, basis, u)
        if mode is OutputMode.SCENARIO_TOTALS:
            _write(out, list(flows.sum(axis=1) @ chunk.disc_factors.T), slice(0, n_scen))
        elif mode is OutputMode.POLICY_MEANS:
            _write(out, list(flows @ chunk.disc_factors.mean(axis=0)), slice(0, n))
        else:
            pv = flows @ chunk.disc_factors.T
            if mode is OutputMode.NPV:
                out["npv"][:rows] = (pv[0] - pv[1] - pv[2] - pv[3] - pv[4]).reshape(-1)
            else:
                _write(out, [c.reshape(-1) for c in pv], slice(0, rows))
        return rows
    # Policies in blocks so the (policies, scenarios) arrays stay near a million elements.
    step = max(1, (1 << 20) // n_scen)
    totals = np.zeros((5, n_scen))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        *comps, comm, annuity = _components_full(chunk, basis, u, slice(lo, hi))
        if mode is OutputMode.DETAIL_EXT:
            rec = slice(lo * n_scen, hi * n_scen)
            comps[3] = comps[3] - comm
            _write(out, [c.reshape(-1) for c in comps], rec)
            out["npv"][rec] -= comm.reshape(-1)
            out["commissions"][rec] = comm.reshape(-1)
            out["premium_annuity"][rec] = annuity.reshape(-1)
            out["premium"][rec] = np.repeat(chunk.pol_float[lo:hi, PREMIUM], n_scen)
            out["reserved2"][rec] = 0
        elif mode is OutputMode.SCENARIO_TOTALS:
            totals += np.array([c.sum(axis=0) for c in comps])
        elif mode is OutputMode.POLICY_MEANS:
            _write(out, [c.mean(axis=1) for c in comps], slice(lo, hi))
        elif mode is OutputMode.NPV:
            p, d, s, e, m = comps
            out["npv"][lo * n_scen : hi * n_scen] = (p - d - s - e - m).reshape(-1)
        else:
            _write(out, [c.reshape(-1) for c in comps], slice(lo * n_scen, hi * n_scen))
    if mode is OutputMode.SCENARIO_TOTALS:
        _write(out, list(totals), slice(0, n_scen))
    return rows


def deterministic_numpy(
    chunk: ChunkInputs,
    basis: ProjectionBasis,
    loading: float | None = None,
    cover: tuple[str, ...] = ("claims",),
    decimals: int | None = 2,
) -> tuple[Array, Array]:
    """(premium per payment, npv) of each policy of a one-scenario chunk, in plain numpy.

    One loop over the steps on vectors of policies (rates gathered from the per-step decrement
    tables of ``ProjectionBasis.decrement_tables``), present values at a unit premium, then,
    with ``loading``, the equivalence premium (half-up rounding to ``decimals``) and the npv.
    The baseline the benchmark times against the single-scenario kernel.
    """
    pi, pf = chunk.pol_int, chunk.pol_float
    n, mps = chunk.n_policies, 12 // basis.steps_per_year
    qtab, ltab = basis.decrement_tables()
    qrows = qtab[pi[:, UCLASS], pi[:, GENDER]]  # (policies, ages, select columns)
    g, coff = basis.grid_per_step, basis.claim_offset
    disc = chunk.disc_factors[0]
    mult = basis.multipliers
    e_mult, p_mult = mult["expense_multiplier"], mult["premium_multiplier"]
    infl = 1.0 + basis.inflation
    tau = 0.5 * int(basis.claim_timing)
    sa = pf[:, SA]
    sv_amount = np.where(pi[:, PRODUCT] != 0, sa, 0.0)
    acquisition = np.full(n, basis.acquisition * e_mult)
    if basis.acquisition_per_model_point:
        count = pf[:, COUNT]
        acquisition = np.where(count > 0, acquisition / np.where(count > 0, count, 1.0), 0.0)
    rows = np.arange(n)
    age_row = pi[:, AGE] - basis.mortality_age_min - 1
    lives = np.ones(n)
    names = ("annuity", "comm", "maint", "acq", "death", "cexp", "surr")
    pv = {k: np.zeros(n) for k in names}
    for k in range(chunk.n_steps_max):
        months = pi[:, DURATION] + k * mps
        active = (months >= 0) & (k < pi[:, NSTEPS])
        py = np.maximum(months, 0) // 12 + 1
        q = qrows[
            rows, np.clip(age_row + py, 0, qrows.shape[1] - 1), np.minimum(py, qrows.shape[2]) - 1
        ]
        q = np.where(active, q, 0.0)
        la = np.where(active, ltab[np.minimum(py, len(ltab)) - 1], 0.0)
        pay = active if basis.premium_monthly else active & (months % 12 == 0)
        vs, vc, ve = disc[k * g], disc[k * g + coff], disc[k * g + g]
        t = k / basis.steps_per_year
        paid = np.where(pay, lives, 0.0) * vs
        pv["annuity"] += paid
        pv["comm"] += paid * basis.commission[np.minimum(py, len(basis.commission)) - 1]
        pv["maint"] += paid * infl**t
        pv["acq"] += np.where(months == 0, acquisition * vs, 0.0)
        d = lives * q
        lapses = (lives - d) * la
        pv["death"] += d * vc
        pv["cexp"] += d * (vc * infl ** (t + tau / basis.steps_per_year))
        surr = basis.surrender[np.minimum(py, len(basis.surrender)) - 1] * sv_amount
        pv["surr"] += lapses * surr * ve
        lives = lives - d - lapses
    steps = pi[:, NSTEPS]
    endow = (pi[:, PRODUCT] == 2) & (steps > 0)
    mat = np.where(endow, lives * sa * disc[steps * g], 0.0)
    per_payment = 1.0 / 12.0 if basis.premium_monthly else 1.0
    fixed_exp = (
        e_mult * (basis.maintenance * per_payment * pv["maint"] + basis.per_claim * pv["cexp"])
        + pv["acq"]
    )
    income = p_mult * pv["annuity"]  # at a premium of 1 per payment
    pct = basis.percent_of_premium * e_mult
    comm = p_mult * pv["comm"]
    death = pv["death"] * sa
    if loading is None:
        premium = pf[:, PREMIUM]
    else:
        outgo = {"claims": death, "surrenders": pv["surr"], "maturities": mat}
        fixed = sum((outgo[c] for c in cover if c in outgo), np.zeros(n))
        slope = np.zeros(n)
        if "expenses" in cover:
            fixed = fixed + fixed_exp
            slope += pct * income
        if "commissions" in cover:
            slope += comm
        denominator = pv["annuity"] - (1.0 + loading) * slope
        with np.errstate(divide="ignore", invalid="ignore"):
            raw = np.where(pv["annuity"] > 0, (1.0 + loading) * fixed / denominator, 0.0)
        scale = 10.0 ** (decimals or 0)
        premium = raw if decimals is None else np.floor(raw * scale + 0.5) / scale
    outgo_total = death + pv["surr"] + mat + fixed_exp
    npv = pf[:, COUNT] * (premium * (income - pct * income - comm) - outgo_total)
    return premium, npv
