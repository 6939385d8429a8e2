"""Hypothesis strategies for LiveCalc tests: projection bases, portfolios and scenarios."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from livecalc.kernels.projection_basis import ClaimTiming, ProjectionBasis
from livecalc.kernels.projection_discount import Discounting
from livecalc.runtime.buffers import POLICY_DTYPE, POLICY_EXT_DTYPE

probability = st.floats(0.0, 0.4, allow_nan=False)
multiplier = st.floats(0.5, 2.0, allow_nan=False)
money = st.floats(0.0, 500.0, allow_nan=False)


@dataclass
class ProjectionCase:
    """One random projection problem: assumptions, policies, in-force data and rates."""

    basis: ProjectionBasis
    policies: np.ndarray[Any, Any]
    extension: np.ndarray[Any, Any] | None
    rates: np.ndarray[Any, Any]  # (scenarios, years)
    rate0: float | None = None  # year-0 rate (step_spot)


def fixed_basis(**overrides: Any) -> ProjectionBasis:
    """A small fixed basis: flat q = 0.01 for ages 0-120, 5% lapses, no expenses."""
    values: dict[str, Any] = {
        "mortality": np.full((3, 121, 1), 0.01),
        "mortality_age_min": 0,
        "lapse": np.array([0.05]),
        "commission": np.array([0.0]),
        "surrender": np.array([0.0]),
        "class_factors": np.array([1.0, 2.0]),
    }
    values.update(overrides)
    return ProjectionBasis(**values)


@st.composite
def bases(draw: st.DrawFn, monthly: bool | None = None, dynamic: bool | None = None) -> Any:
    """A ProjectionBasis with random tables, timing, expenses and multipliers."""
    is_monthly = draw(st.booleans()) if monthly is None else monthly
    is_dynamic = draw(st.booleans()) if dynamic is None else dynamic
    age_min = draw(st.sampled_from([0, 15]))
    n_cols = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    mortality = rng.uniform(0.0, 0.3, size=(3, 121 - age_min, n_cols))
    timing = draw(st.sampled_from(list(ClaimTiming)))
    discounting = draw(st.sampled_from(list(Discounting)))
    step_factors = None
    if discounting is Discounting.CURVE_PER_STEP:
        if timing is ClaimTiming.MIDDLE:
            discounting = Discounting.STEP_SPOT  # no half-step factors in a per-step curve
        else:
            per_step = rng.uniform(-0.002, 0.006, size=121 * 12)
            step_factors = np.concatenate(([1.0], np.cumprod(1.0 / (1.0 + per_step))))
    return ProjectionBasis(
        mortality=mortality,
        mortality_age_min=age_min,
        lapse=np.array(draw(st.lists(probability, min_size=1, max_size=4))),
        commission=np.array(draw(st.lists(st.floats(0.0, 1.2), min_size=1, max_size=3))),
        surrender=np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4))),
        class_factors=np.array([1.0, draw(st.floats(1.0, 3.0))]),
        steps_per_year=12 if is_monthly else 1,
        premium_monthly=is_monthly and draw(st.booleans()),
        claim_timing=timing,
        discounting=discounting,
        step_factors=step_factors,
        acquisition_per_model_point=draw(st.booleans()),
        spot_rates=draw(st.booleans()),
        acquisition=draw(money),
        maintenance=draw(money),
        inflation=draw(st.floats(0.0, 0.05)),
        percent_of_premium=draw(st.floats(0.0, 0.1)),
        per_claim=draw(money),
        dynamic_lapse=is_dynamic,
        dynamic_reference_rate=draw(st.floats(0.0, 0.05)),
        dynamic_sensitivity=draw(st.floats(-20.0, 20.0)),
        dynamic_min_factor=draw(st.floats(0.0, 1.0)),
        dynamic_max_factor=draw(st.floats(1.0, 4.0)),
        multipliers={
            "premium_multiplier": draw(multiplier),
            "mortality_multiplier": draw(multiplier),
            "lapse_multiplier": draw(multiplier),
            "expense_multiplier": draw(multiplier),
        },
    )


@st.composite
def policies(draw: st.DrawFn, basis: ProjectionBasis, n: int) -> Any:
    """``n`` POLICY records the basis's mortality table covers, with short terms."""
    monthly = basis.steps_per_year == 12
    max_term = 3 if monthly else 12
    out = np.zeros(n, dtype=POLICY_DTYPE)
    for i in range(n):
        product = draw(st.integers(0, 2))
        term = draw(st.integers(0 if product == 1 and not monthly else 1, max_term))
        low = basis.mortality_age_min
        # Whole life with no term runs to age 120: start it late to keep the case small.
        age = draw(st.integers(105, 120) if term == 0 else st.integers(low, 120 - term))
        out[i] = (
            draw(st.integers(0, 2**32 - 1)),
            age,
            draw(st.integers(0, 2)),
            draw(st.integers(0, 1)),
            product,
            term,
            draw(st.floats(1_000.0, 1_000_000.0)),
            draw(st.floats(0.0, 20_000.0)),
        )
    out["policy_id"] = np.arange(n) + draw(st.integers(0, 1000))
    return out


@st.composite
def extensions(draw: st.DrawFn, basis: ProjectionBasis, pols: np.ndarray[Any, Any]) -> Any:
    """POLICY_EXT records: in-force durations (whole years for annual steps) and counts."""
    ext = np.zeros(len(pols), dtype=POLICY_EXT_DTYPE)
    ext["policy_id"] = pols["policy_id"]
    for i in range(len(pols)):
        # Negative: future new business, issued that many months after valuation.
        years = draw(st.integers(-3, 4))
        extra = draw(st.integers(0, 11)) if basis.steps_per_year == 12 else 0
        ext["duration_months"][i] = 12 * years + extra
        # No tiny counts: a per-model-point acquisition shared by 1e-308 lives overflows.
        ext["policy_count"][i] = draw(st.just(0.0) | st.floats(0.001, 5.0))
    return ext


@st.composite
def scenario_rates(draw: st.DrawFn, n_scen: int, n_years: int = 121) -> Any:
    """(n_scen, n_years) rates from a level, a slope and an alternating wobble per scenario."""
    years = np.arange(1, n_years + 1)
    rows = []
    for _ in range(n_scen):
        level = draw(st.floats(-0.01, 0.06))
        slope = draw(st.floats(-0.02, 0.02))
        wobble = draw(st.floats(0.0, 0.02))
        rows.append(level + slope * np.minimum(years, 30) / 30 + wobble * (-1.0) ** years)
    return np.array(rows)


@st.composite
def projection_cases(
    draw: st.DrawFn, monthly: bool | None = None, dynamic: bool | None = None
) -> ProjectionCase:
    """A random basis, 1-4 policies (with or without in-force data) and 1-3 scenarios."""
    basis = draw(bases(monthly=monthly, dynamic=dynamic))
    pols = draw(policies(basis, draw(st.integers(1, 4))))
    ext = draw(st.none() | extensions(basis, pols))
    rates = draw(scenario_rates(draw(st.integers(1, 3))))
    rate0 = draw(st.none() | st.floats(-0.01, 0.06))
    return ProjectionCase(basis, pols, ext, rates, rate0)


# The config's operations sections (checks, sla, alerts), one value at a time replaced by a
# strange one: huge and non-finite numbers, NUL and lone surrogates, URLs with secrets.

HOOK_SECRET = "h00k-Secr3t-in-the-url"
"""The password and token of the webhook URLs drawn below: no message may show it."""
HOOK_URL = f"https://hook:{HOOK_SECRET}@127.0.0.1:9/alert?token={HOOK_SECRET}"

_CHECK_KEYS = (
    *("kind", "name", "severity", "description", "dataset", "columns", "column", "statistic"),
    *("min", "max", "equals", "expr", "node", "z_threshold", "against", "tolerance"),
)
_ALERT_KEYS = ("type", "url", "argv", "on", "timeout_seconds", "retries", "backoff_seconds")

strange_numbers = st.one_of(
    st.floats(),  # NaN and infinities included
    st.sampled_from([0, -1, 86_400, 86_400.5, 1e308, 2**63, 2**64, 10**400, 5e-324]),
    st.integers(),
)
strange_text = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), max_size=12),  # surrogates too
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "x\udfff", "1e999", "x > 1e999", "x" * 3000]),
)
strange_urls = st.one_of(
    st.sampled_from(
        [
            HOOK_URL.replace("https", "ftp"),
            HOOK_URL.replace(":9/", ":99999/"),
            HOOK_URL.replace("127.0.0.1:9", ""),
            HOOK_URL + "\x00",
            HOOK_URL + "\ud800",
            HOOK_URL.replace("/alert", "/al ert"),
        ]
    ),
    strange_text.map(lambda t: HOOK_URL + t),
)
strange_values = st.one_of(
    strange_numbers,
    strange_text,
    st.none(),
    st.booleans(),
    st.lists(st.one_of(strange_text, strange_numbers), max_size=2),
    st.dictionaries(strange_text, strange_numbers, max_size=2),
)


def ops_sections_base() -> dict[str, Any]:
    """Valid checks, sla and alerts for a pipeline of one node ``a`` (``policies`` ->
    ``a_out``)."""
    return {
        "checks": [
            {"kind": "row_count", "dataset": "policies", "min": 1},
            {"kind": "range", "dataset": "a_out", "column": "age", "min": 0, "max": 120},
            {"kind": "metric", "expr": "x >= -1e300", "severity": "warn"},
        ],
        "sla": {"run_seconds": 600, "nodes": {"a": 300}},
        "alerts": [
            {"type": "webhook", "url": HOOK_URL, "timeout_seconds": 2, "retries": 1},
            {"type": "command", "argv": ["true"], "on": ["success"]},
        ],
    }


@st.composite
def mutated_ops_sections(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """Valid operations sections with one value replaced, and the JSON path of that value."""
    sections = ops_sections_base()
    section = draw(st.sampled_from(["checks", "sla", "alerts"]))
    if section == "checks":
        i = draw(st.integers(0, len(sections["checks"]) - 1))
        key = draw(st.sampled_from(_CHECK_KEYS))
        sections["checks"][i][key] = draw(strange_values)
        return sections, f"checks[{i}]"
    if section == "sla":
        key = draw(st.sampled_from(["run_seconds", "nodes", "a", "node_id"]))
        if key == "a":
            sections["sla"]["nodes"]["a"] = draw(strange_values)
        elif key == "node_id":
            sections["sla"]["nodes"] = {draw(strange_text): draw(strange_numbers)}
        else:
            sections["sla"][key] = draw(strange_values)
        return sections, "sla"
    i = draw(st.integers(0, 1))
    key = draw(st.sampled_from(_ALERT_KEYS))
    value = draw(strange_urls if key == "url" else strange_values)
    sections["alerts"][i][key] = value
    return sections, f"alerts[{i}]"
