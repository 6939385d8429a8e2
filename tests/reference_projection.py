"""The projection model written the slow, obvious way: one policy, one scenario, plain floats.

Written from docs/engines/projection.md, not from the kernels, so that the kernels and the
numpy baseline are checked against an independent reading of the model. It takes the
assumption arrays of a ``ProjectionBasis`` as data only.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from livecalc.kernels.projection_basis import ClaimTiming, ProjectionBasis
from livecalc.kernels.projection_discount import Discounting

COMPONENTS = (
    "premium_income",
    "death_benefits",
    "surrender_benefits",
    "expenses",
    "maturity_benefits",
)
CASHFLOW_COLUMNS = (
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


def discount_factor(
    rates: list[float],
    t: Fraction,
    spot: bool,
    basis: ProjectionBasis | None = None,
    rate0: float | None = None,
) -> float:
    """The value at time 0 of 1 paid at ``t`` years under a scenario's rates by year."""
    convention = basis.discounting if basis is not None else Discounting.FLAT_FORWARD
    if convention is Discounting.CURVE_PER_STEP:
        assert basis is not None and basis.step_factors is not None
        step = t * basis.steps_per_year
        assert step.denominator == 1, "curve_per_step has factors at whole steps only"
        return float(basis.step_factors[int(step)])
    if convention is Discounting.STEP_SPOT:
        y = math.floor(t)
        z = (rates[0] if rate0 is None else rate0) if y == 0 else rates[min(y, len(rates)) - 1]
        return float((1.0 + z) ** (-float(t)))

    def whole(y: int) -> float:
        if y == 0:
            return 1.0
        if spot:
            return float((1.0 + rates[y - 1]) ** (-y))
        v = 1.0
        for j in range(y):
            v = v / (1.0 + rates[j])
        return v

    y = math.floor(t)
    f = float(t - y)
    if f == 0.0:
        return whole(y)
    return whole(y) * (whole(y + 1) / whole(y)) ** f


def monthly(p: float) -> float:
    """1 - (1 - p)^(1/12), computed without cancellation for small p."""
    return 1.0 if p >= 1.0 else -math.expm1(math.log1p(-p) / 12.0)


def rate_for_year(rates: Any, policy_year: int) -> float:
    """A by-policy-year rate; the last one carries on."""
    return float(rates[min(policy_year, len(rates)) - 1])


def project_pair(
    policy: Any,
    duration_months: int,
    policy_count: float,
    rates: list[float],
    basis: ProjectionBasis,
    rate0: float | None = None,
    premium: float | None = None,
    periods: list[dict[str, float]] | None = None,
) -> dict[str, float]:
    """Present values of one policy's cash flows under one scenario, by component and npv.

    ``premium`` is the premium per payment (default: the record's annual premium, a twelfth
    of it per month with monthly premiums). Besides the five components (``expenses``
    including commissions) the result has ``commissions`` and ``premium_annuity``. With
    ``periods`` (a list), the cash flows of each period are added into its dicts.
    """
    m = basis.steps_per_year
    months_per_step = 12 // m
    age0 = int(policy["age"])
    gender = int(policy["gender"])
    product = int(policy["product_type"])
    term = int(policy["term"])
    sum_assured = float(policy["sum_assured"])
    mult = basis.multipliers
    # Whole life runs to age 120, or to the end of its term when it has one.
    years = term
    if product == 1:
        years = 120 - age0 if term == 0 else min(term, 120 - age0)
    n_steps = max(0, 12 * years - duration_months) // months_per_step
    tau = {ClaimTiming.START: Fraction(0), ClaimTiming.MIDDLE: Fraction(1, 2)}.get(
        basis.claim_timing, Fraction(1)
    )

    def v(t: Fraction) -> float:
        return discount_factor(rates, t, basis.spot_rates, basis, rate0)

    pv = dict.fromkeys((*COMPONENTS, "commissions", "premium_annuity"), 0.0)
    lives = 1.0
    for k in range(n_steps):
        months = duration_months + k * months_per_step
        if months < 0:
            continue  # future new business: nothing happens before issue
        policy_year = months // 12 + 1
        age = age0 + policy_year - 1
        select_col = min(policy_year, basis.mortality.shape[2]) - 1
        q_table = float(basis.mortality[gender, age - basis.mortality_age_min, select_col])
        factor = float(basis.class_factors[int(policy["underwriting_class"])])
        q_annual = min(1.0, q_table * factor * mult["mortality_multiplier"])
        lapse_annual = rate_for_year(basis.lapse, policy_year) * mult["lapse_multiplier"]
        if basis.dynamic_lapse:
            r = rates[k // m]
            f = 1.0 + basis.dynamic_sensitivity * (r - basis.dynamic_reference_rate)
            f = min(basis.dynamic_max_factor, max(basis.dynamic_min_factor, f))
            lapse_annual = lapse_annual * f
        lapse_annual = min(1.0, lapse_annual)
        if m == 12:
            q = monthly(q_annual)
            lapse = monthly(lapse_annual)
        else:
            q, lapse = q_annual, lapse_annual
        paid = 1.0 if months % 12 == 0 else 0.0  # annual premiums on policy anniversaries
        if basis.premium_monthly:
            paid = 1.0 / 12.0
        premium_date = 1.0 if paid else 0.0
        t_start = Fraction(k, m)
        t_claim = t_start + tau / m
        t_end = Fraction(k + 1, m)
        v_start, v_claim, v_end = v(t_start), v(t_claim), v(t_end)
        inflation = 1.0 + basis.inflation
        e_mult = mult["expense_multiplier"]
        if premium is None:
            amount = float(policy["premium"]) * mult["premium_multiplier"] * paid
        else:
            amount = premium * mult["premium_multiplier"] * premium_date
        expense = basis.maintenance * paid * inflation ** float(t_start)
        expense = (expense + basis.percent_of_premium * amount) * e_mult
        if months == 0:  # at issue: new business now or future new business
            acquisition = basis.acquisition * e_mult
            if basis.acquisition_per_model_point:
                acquisition = acquisition / policy_count if policy_count > 0 else 0.0
            expense += acquisition
        commission = rate_for_year(basis.commission, policy_year) * amount
        claim_expense = basis.per_claim * e_mult * inflation ** float(t_claim)
        surrender_value = 0.0
        if product != 0:
            surrender_value = rate_for_year(basis.surrender, policy_year) * sum_assured
        deaths = lives * q
        lapses = (lives - deaths) * lapse
        pv["premium_income"] += lives * amount * v_start
        pv["premium_annuity"] += lives * premium_date * v_start
        pv["expenses"] += lives * (expense + commission) * v_start
        pv["expenses"] += deaths * claim_expense * v_claim
        pv["commissions"] += lives * commission * v_start
        pv["death_benefits"] += deaths * sum_assured * v_claim
        pv["surrender_benefits"] += lapses * surrender_value * v_end
        lives_start = lives
        lives = lives - deaths - lapses
        maturity = lives * sum_assured if (product == 2 and k == n_steps - 1) else 0.0
        if periods is not None:
            row = {
                "premiums": lives_start * amount,
                "death_claims": deaths * sum_assured,
                "surrenders": lapses * surrender_value,
                "maturities": maturity,
                "expenses": lives_start * expense + deaths * claim_expense,
                "commissions": lives_start * commission,
                "policies_in_force": lives_start,
                "deaths": deaths,
                "lapses": lapses,
                "pv_net_cash_flow": lives_start * (amount - expense - commission) * v_start
                - deaths * (sum_assured + claim_expense) * v_claim
                - (lapses * surrender_value + maturity) * v_end,
            }
            row["net_cash_flow"] = row["premiums"] - sum(
                row[c]
                for c in (
                    "death_claims", "surrenders", "maturities", "expenses", "commissions"
                )
            )  # fmt: skip
            while len(periods) <= k:
                periods.append(dict.fromkeys(CASHFLOW_COLUMNS, 0.0))
            for key, value in row.items():
                periods[k][key] += policy_count * value
    if product == 2 and n_steps > 0:
        pv["maturity_benefits"] = lives * sum_assured * v(Fraction(n_steps, m))
    out = {name: policy_count * value for name, value in pv.items()}
    out["npv"] = out["premium_income"] - sum(out[c] for c in COMPONENTS[1:])
    return out


def round_premium(value: float, decimals: int | None, mode: str) -> float:
    """Round to ``decimals`` places, halves up (away from zero) or to even, on the decimal
    value of ``value * 10^decimals`` as a double."""
    if decimals is None:
        return value
    scaled = value * 10.0**decimals
    whole = math.floor(scaled + 0.5) if mode == "half_up" else round(scaled)
    return whole / 10.0**decimals


def equivalence_premium(
    policy: Any,
    duration_months: int,
    rates: list[float],
    basis: ProjectionBasis,
    loading: float,
    cover: tuple[str, ...],
    decimals: int | None,
    mode: str = "half_up",
    rate0: float | None = None,
    policy_count: float = 1.0,
) -> float:
    """Premium per payment: ``(1 + loading) PV(covered outgo) / PV(premium annuity)``.

    Outgo covered by name (``claims``, ``surrenders``, ``maturities``, ``expenses``,
    ``commissions``); expenses and commissions that are a share of the premium make the
    equation linear in the premium, solved from its values at premiums 0 and 1. Values are
    per life (``policy_count`` only shares a per-model-point acquisition expense; a record
    of no lives is priced as one life).
    """
    count = policy_count if policy_count > 0 else 1.0
    names = {
        "claims": "death_benefits",
        "surrenders": "surrender_benefits",
        "maturities": "maturity_benefits",
        "expenses": "expenses_only",
        "commissions": "commissions",
    }

    def outgo(p: float) -> tuple[float, float]:
        pv = project_pair(policy, duration_months, count, rates, basis, rate0, premium=p)
        pv = {k: value / count for k, value in pv.items()}
        pv["expenses_only"] = pv["expenses"] - pv["commissions"]
        return sum(pv[names[c]] for c in cover), pv["premium_annuity"]

    fixed, annuity = outgo(0.0)
    slope = outgo(1.0)[0] - fixed
    if annuity == 0.0:
        return 0.0
    raw = (1.0 + loading) * fixed / (annuity - (1.0 + loading) * slope)
    return round_premium(raw, decimals, mode)
