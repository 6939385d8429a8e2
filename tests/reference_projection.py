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

COMPONENTS = (
    "premium_income",
    "death_benefits",
    "surrender_benefits",
    "expenses",
    "maturity_benefits",
)


def discount_factor(rates: list[float], t: Fraction, spot: bool) -> float:
    """The value at time 0 of 1 paid at ``t`` years under a scenario's rates by year."""

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
) -> dict[str, float]:
    """Present values of one policy's cash flows under one scenario, by component and npv."""
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
    pv = dict.fromkeys(COMPONENTS, 0.0)
    lives = 1.0
    for k in range(n_steps):
        months = duration_months + k * months_per_step
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
        t_start = Fraction(k, m)
        t_claim = t_start + tau / m
        t_end = Fraction(k + 1, m)
        v_start = discount_factor(rates, t_start, basis.spot_rates)
        v_claim = discount_factor(rates, t_claim, basis.spot_rates)
        v_end = discount_factor(rates, t_end, basis.spot_rates)
        inflation = 1.0 + basis.inflation
        e_mult = mult["expense_multiplier"]
        premium = float(policy["premium"]) * mult["premium_multiplier"] * paid
        expense = basis.maintenance * paid * inflation ** float(t_start)
        expense = (expense + basis.percent_of_premium * premium) * e_mult
        if k == 0 and duration_months == 0:
            expense += basis.acquisition * e_mult
        commission = rate_for_year(basis.commission, policy_year) * premium
        claim_expense = basis.per_claim * e_mult * inflation ** float(t_claim)
        surrender_value = 0.0
        if product != 0:
            surrender_value = rate_for_year(basis.surrender, policy_year) * sum_assured
        deaths = lives * q
        lapses = (lives - deaths) * lapse
        pv["premium_income"] += lives * premium * v_start
        pv["expenses"] += lives * (expense + commission) * v_start
        pv["expenses"] += deaths * claim_expense * v_claim
        pv["death_benefits"] += deaths * sum_assured * v_claim
        pv["surrender_benefits"] += lapses * surrender_value * v_end
        lives = lives - deaths - lapses
    if product == 2 and n_steps > 0:
        v_maturity = discount_factor(rates, Fraction(n_steps, m), basis.spot_rates)
        pv["maturity_benefits"] = lives * sum_assured * v_maturity
    out = {name: policy_count * value for name, value in pv.items()}
    out["npv"] = out["premium_income"] - sum(out[c] for c in COMPONENTS[1:])
    return out
