"""The projection model's numeric inputs, shared by the numba kernels and the numpy reference.

``ProjectionBasis`` holds the assumptions as plain arrays and numbers; ``prepare_chunk`` turns
one chunk's POLICY (and optional POLICY_EXT) records and its rate matrix into ``ChunkInputs``:
per-policy integer and float columns, the number of projection steps of each policy, and the
scenarios' discount factors on the chunk's time grid.

Time grid: step ``k`` (0-based) of length ``h = 1 / steps_per_year`` years runs from ``k h`` to
``(k + 1) h``. With claims in the middle of the step the grid has half steps (``g = 2``),
otherwise whole steps (``g = 1``); grid point ``j`` is at ``j h / g`` years. A step's start is
grid point ``k g``, its claims are at ``k g + claim_offset``, its end at ``(k + 1) g``.

Discount factors at whole years come from the scenario's ``rate`` (forward: ``V(y + 1) =
V(y) / (1 + r_y)``; spot: ``V(y) = (1 + z_y)^-y``); within year ``y`` the factor at ``y + f``
is ``V(y) (V(y + 1) / V(y))^f`` (the 12th root within the year for monthly steps).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from livecalc.assumptions.tables import MAX_AGE
from livecalc.errors import ConfigurationError
from livecalc.kernels.projection import (
    AGE,
    COUNT,
    DURATION,
    GENDER,
    N_PARAMS,
    NSTEPS,
    P_ACQ_PER_MODEL_POINT,
    P_ACQUISITION,
    P_CLAIM_TAU,
    P_DYNAMIC,
    P_EXPENSE_MULT,
    P_INFLATION,
    P_LAPSE_MULT,
    P_MAINTENANCE,
    P_MORTALITY_MULT,
    P_PER_CLAIM,
    P_PERCENT_OF_PREMIUM,
    P_PREMIUM_MONTHLY,
    P_PREMIUM_MULT,
    P_STEPS_PER_YEAR,
    PREMIUM,
    PRODUCT,
    SA,
    UCLASS,
)
from livecalc.kernels.projection_discount import Discounting, discount_grid
from livecalc.runtime.buffers import (
    CASHFLOW_DTYPE,
    RESULT_DETAIL_DTYPE,
    RESULT_DETAIL_EXT_DTYPE,
    RESULT_DTYPE,
    SCENARIO_TOTAL_DTYPE,
)

__all__ = [
    "COMPONENTS",
    "ChunkInputs",
    "ClaimTiming",
    "OutputMode",
    "ProjectionBasis",
    "discount_grid",
    "prepare_chunk",
    "steps_left",
]

Float1D = np.ndarray[Any, np.dtype[np.float64]]
Float2D = np.ndarray[Any, np.dtype[np.float64]]

COMPONENTS = (
    "premium_income",
    "death_benefits",
    "surrender_benefits",
    "expenses",
    "maturity_benefits",
)
"""Present-value components in kernel order; ``npv = premium_income - the other four``."""


class ClaimTiming(enum.IntEnum):
    """When in a step death claims (and per-claim expenses) are paid."""

    START = 0
    MIDDLE = 1
    END = 2


class OutputMode(enum.Enum):
    """What the projection writes, with its record dtype."""

    NPV = "npv"
    DETAIL = "detail"
    SCENARIO_TOTALS = "scenario_totals"
    POLICY_MEANS = "policy_means"
    DETAIL_EXT = "detail_ext"
    CASHFLOWS = "cashflows"

    @property
    def dtype(self) -> np.dtype[Any]:
        """The output record dtype."""
        if self is OutputMode.NPV:
            return RESULT_DTYPE
        if self is OutputMode.SCENARIO_TOTALS:
            return SCENARIO_TOTAL_DTYPE
        if self is OutputMode.DETAIL_EXT:
            return RESULT_DETAIL_EXT_DTYPE
        if self is OutputMode.CASHFLOWS:
            return CASHFLOW_DTYPE
        return RESULT_DETAIL_DTYPE

    def records(self, n_policies: int, n_scenarios: int, n_periods: int = 0) -> int:
        """Output records for a chunk (policy-major for policy x scenario outputs); cash
        flows: ``n_scenarios`` output slots times ``n_periods``."""
        if self is OutputMode.CASHFLOWS:
            return n_scenarios * n_periods
        if self is OutputMode.SCENARIO_TOTALS:
            return n_scenarios
        if self is OutputMode.POLICY_MEANS:
            return n_policies
        return n_policies * n_scenarios


@dataclass
class ProjectionBasis:
    """Every assumption of the model as arrays and numbers (see docs/engines/projection.md)."""

    mortality: np.ndarray[Any, np.dtype[np.float64]]  # q[gender, age - age_min, select column]
    mortality_age_min: int
    lapse: Float1D  # annual lapse rate by policy year, last carries on
    commission: Float1D  # fraction of premium by policy year, last carries on
    surrender: Float1D  # surrender value as a fraction of sum assured by policy year
    class_factors: Float1D  # mortality factor by underwriting class
    steps_per_year: int = 1
    premium_monthly: bool = False
    claim_timing: ClaimTiming = ClaimTiming.END
    spot_rates: bool = False
    acquisition: float = 0.0
    maintenance: float = 0.0
    inflation: float = 0.0
    percent_of_premium: float = 0.0
    per_claim: float = 0.0
    dynamic_lapse: bool = False
    dynamic_reference_rate: float = 0.0
    dynamic_sensitivity: float = 0.0
    dynamic_min_factor: float = 0.0
    dynamic_max_factor: float = 1.0
    acquisition_per_model_point: bool = False
    discounting: Discounting = Discounting.FLAT_FORWARD
    step_factors: Float1D | None = None  # curve_per_step: discount factor at each step 0..N
    multipliers: dict[str, float] = field(
        default_factory=lambda: {
            "premium_multiplier": 1.0,
            "mortality_multiplier": 1.0,
            "lapse_multiplier": 1.0,
            "expense_multiplier": 1.0,
        }
    )

    def __post_init__(self) -> None:
        # Fresh, writable, C-ordered float64 copies: one numba type whatever the tables' origin
        # (read-only Arrow buffers would compile a second specialisation of every kernel).
        for name in ("mortality", "lapse", "commission", "surrender", "class_factors"):
            setattr(self, name, np.array(getattr(self, name), dtype=np.float64, order="C"))

    @property
    def grid_per_step(self) -> int:
        """Grid points per step: 2 when claims fall mid-step, else 1."""
        return 2 if self.claim_timing is ClaimTiming.MIDDLE else 1

    @property
    def claim_offset(self) -> int:
        """Grid offset of the claim time within a step."""
        return {ClaimTiming.START: 0, ClaimTiming.MIDDLE: 1, ClaimTiming.END: 1}[self.claim_timing]

    def params(self) -> Float1D:
        """The scalar parameters as the float vector the kernels read."""
        p = np.zeros(N_PARAMS)
        p[P_STEPS_PER_YEAR] = self.steps_per_year
        p[P_PREMIUM_MONTHLY] = float(self.premium_monthly)
        p[P_CLAIM_TAU] = 0.5 * int(self.claim_timing)
        p[P_ACQUISITION] = self.acquisition
        p[P_MAINTENANCE] = self.maintenance
        p[P_INFLATION] = self.inflation
        p[P_PERCENT_OF_PREMIUM] = self.percent_of_premium
        p[P_PER_CLAIM] = self.per_claim
        p[P_PREMIUM_MULT] = self.multipliers["premium_multiplier"]
        p[P_MORTALITY_MULT] = self.multipliers["mortality_multiplier"]
        p[P_LAPSE_MULT] = self.multipliers["lapse_multiplier"]
        p[P_EXPENSE_MULT] = self.multipliers["expense_multiplier"]
        p[P_DYNAMIC] = float(self.dynamic_lapse)
        p[P_ACQ_PER_MODEL_POINT] = float(self.acquisition_per_model_point)
        return p

    def decrement_tables(self) -> tuple[np.ndarray[Any, Any], Float1D]:
        """Per-step mortality by (class, gender, age, select column) and lapse by policy year.

        ``min(1, q x class factor x mortality_multiplier)`` and ``min(1, lapse x
        lapse_multiplier)``, made monthly (``-expm1(log1p(-p) / 12)``) for monthly steps: once
        per table cell, so the kernels look rates up instead of computing them every step.
        With dynamic lapses the lapse rates stay annual and uncapped (the scenario's factor
        comes first).
        """
        mult = self.multipliers
        factors = self.class_factors * mult["mortality_multiplier"]
        q = np.minimum(1.0, self.mortality[None, :, :, :] * factors[:, None, None, None])
        lapse = self.lapse * mult["lapse_multiplier"]
        if not self.dynamic_lapse:
            lapse = np.minimum(1.0, lapse)
        if self.steps_per_year == 12:
            q = _monthly(q)
            if not self.dynamic_lapse:
                lapse = _monthly(lapse)
        return np.ascontiguousarray(q), np.ascontiguousarray(lapse)

    def dynamic_factors(self, rates: Float2D) -> Float2D:
        """Lapse factor by scenario and year: ``clip(1 + s (r - r_ref), min, max)``."""
        raw = 1.0 + self.dynamic_sensitivity * (rates - self.dynamic_reference_rate)
        return np.ascontiguousarray(
            np.clip(raw, self.dynamic_min_factor, self.dynamic_max_factor), dtype=np.float64
        )


@dataclass
class ChunkInputs:
    """One chunk, ready for a kernel."""

    pol_int: np.ndarray[Any, np.dtype[np.int64]]  # (n, 6): AGE .. NSTEPS
    pol_float: Float2D  # (n, 3): SA, PREMIUM, COUNT
    policy_ids: np.ndarray[Any, np.dtype[np.uint64]]
    scenario_ids: np.ndarray[Any, np.dtype[np.uint32]]
    rates: Float2D  # (n_scen, years), a view of the scenario records when given
    disc_factors: Float2D  # (n_scen, K g + 1) on the chunk's time grid
    n_steps_max: int
    part_year_durations: int = 0  # annual steps: durations rounded down to whole years

    @property
    def n_policies(self) -> int:
        """Policies in the chunk."""
        return int(self.pol_int.shape[0])

    @property
    def n_scenarios(self) -> int:
        """Scenarios in the chunk."""
        return int(self.rates.shape[0])


def _monthly(annual: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``1 - (1 - p)^(1/12)`` elementwise in the stable log1p/expm1 form (1 where p = 1)."""
    with np.errstate(divide="ignore"):
        return np.where(annual >= 1.0, 1.0, -np.expm1(np.log1p(-annual) / 12.0))


def _policy_steps(policies: np.ndarray[Any, Any], months: np.ndarray[Any, Any], m: int) -> Any:
    """Projection steps left for each policy (0 for expired ones)."""
    age = policies["age"].astype(np.int64)
    term = policies["term"].astype(np.int64)
    to_max_age = np.maximum(MAX_AGE - age, 0)
    whole_life = policies["product_type"] == 1
    years = np.where(whole_life & (term == 0), to_max_age, term)
    years = np.where(whole_life, np.minimum(years, to_max_age), years)
    months_left = np.maximum(12 * years - months, 0)
    return months_left // (12 // m)


def steps_left(
    basis: ProjectionBasis,
    policies: np.ndarray[Any, Any],
    extension: np.ndarray[Any, Any] | None,
) -> Any:
    """Projection steps of each policy from valuation (what ``prepare_chunk`` computes),
    without checking anything: for sizing outputs."""
    months = np.zeros(len(policies), dtype=np.int64)
    if extension is not None and len(extension) == len(policies):
        months = extension["duration_months"].astype(np.int64)
    if basis.steps_per_year == 1:
        months = np.where(months > 0, months - months % 12, months)
    return _policy_steps(policies, months, basis.steps_per_year)


def _fail_at(bad: np.ndarray[Any, Any], ids: np.ndarray[Any, Any], message: str) -> None:
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigurationError(f"policy {int(ids[i])} (row {i + 1}): {message}")


def prepare_chunk(
    basis: ProjectionBasis,
    policies: np.ndarray[Any, Any],
    extension: np.ndarray[Any, Any] | None,
    rates: Float2D,
    scenario_ids: np.ndarray[Any, Any],
    rate0: float | None = None,
) -> ChunkInputs:
    """Validate a chunk's records against the basis and lay them out for the kernels.

    ``rate0`` is the deterministic curve's year-0 rate (``step_spot``; None: year 1's rate).

    Raises:
        ConfigurationError: a field is out of range (naming the policy and the fix), the
            mortality table misses an age the run reaches, or the scenarios are too short.
    """
    n = len(policies)
    ids = policies["policy_id"]
    m = basis.steps_per_year
    if extension is None:
        months = np.zeros(n, dtype=np.int64)
        count = np.ones(n)
    else:
        if len(extension) != n:
            raise ConfigurationError(
                f"the POLICY_EXT input has {len(extension)} records for {n} policies; give one "
                "per policy, in the same order"
            )
        _fail_at(
            extension["policy_id"] != ids,
            ids,
            "the POLICY_EXT record at this row has another policy_id; keep both in one order",
        )
        months = extension["duration_months"].astype(np.int64)
        count = extension["policy_count"].astype(np.float64)
        _fail_at(~(np.isfinite(count) & (count >= 0)), ids, "policy_count must be a number >= 0")
    # Annual steps count durations in completed policy years: the valuation is taken at the
    # last policy anniversary (monthly steps use the exact months).
    _fail_at(
        (months < 0) & (months % 12 != 0) & (m == 1),
        ids,
        "future new business (negative duration_months) with annual steps must be issued a "
        'whole number of years after valuation; use "time_step": "monthly"',
    )
    part_year = int(np.count_nonzero((months > 0) & (months % 12 != 0))) if m == 1 else 0
    if part_year:
        months = months - months % 12
    n_years = rates.shape[1]
    horizon = 12 * n_years
    if basis.step_factors is not None:
        horizon = (len(basis.step_factors) - 1) * (12 // m)
    late = -months >= horizon
    if late.any():
        i = int(np.flatnonzero(late)[0])
        raise ConfigurationError(
            f"policy {int(ids[i])} (row {i + 1}): issued {-int(months[i])} months after "
            f"valuation, at or beyond the horizon of the discount curve or scenarios "
            f"({horizon} months); give a longer curve or scenarios, or an earlier issue date"
        )
    _fail_at(policies["age"] > MAX_AGE, ids, f"age must be 0-{MAX_AGE}")
    _fail_at(policies["gender"] > 2, ids, "gender must be 0 (male), 1 (female) or 2 (other)")
    _fail_at(
        policies["product_type"] > 2,
        ids,
        "product_type must be 0 (term), 1 (whole life) or 2 (endowment)",
    )
    n_classes = len(basis.class_factors)
    no_factor = policies["underwriting_class"] >= n_classes
    if no_factor.any():
        cls = int(policies["underwriting_class"][no_factor][0])
        _fail_at(
            no_factor,
            ids,
            f"underwriting_class {cls} has no factor (config.underwriting_class_factors has "
            f"{n_classes}, for classes 0-{n_classes - 1}); give factors up to class {cls}",
        )
    for name in ("sum_assured", "premium"):
        _fail_at(~np.isfinite(policies[name]), ids, f"{name} must be a finite number")
    n_steps = _policy_steps(policies, months, m)
    _check_ages(basis, policies, months, n_steps, ids)
    pol_int = np.empty((n, 6), dtype=np.int64)
    pol_int[:, AGE] = policies["age"]
    pol_int[:, GENDER] = policies["gender"]
    pol_int[:, UCLASS] = policies["underwriting_class"]
    pol_int[:, PRODUCT] = policies["product_type"]
    pol_int[:, DURATION] = months
    pol_int[:, NSTEPS] = n_steps
    pol_float = np.empty((n, 3))
    pol_float[:, SA] = policies["sum_assured"]
    # The kernels read the premium per payment (the POLICY record's is annual).
    pol_float[:, PREMIUM] = policies["premium"] / (12.0 if basis.premium_monthly else 1.0)
    pol_float[:, COUNT] = count
    k_max = int(n_steps.max()) if n else 0
    years_needed = -(-k_max // m)
    if years_needed > n_years:
        longest = int(np.argmax(n_steps))
        raise ConfigurationError(
            f"the scenarios cover {n_years} years but policy {int(ids[longest])} runs "
            f"{years_needed} more years; give scenarios of at least {years_needed} years"
        )
    g = basis.grid_per_step
    disc = discount_grid(
        rates,
        m,
        g,
        k_max * g + 1,
        basis.spot_rates,
        basis.discounting,
        None if rate0 is None else np.array([rate0]),
        basis.step_factors,
    )
    return ChunkInputs(
        pol_int=pol_int,
        pol_float=pol_float,
        policy_ids=np.asarray(ids, dtype=np.uint64),
        scenario_ids=np.asarray(scenario_ids, dtype=np.uint32),
        rates=rates,
        disc_factors=disc,
        n_steps_max=k_max,
        part_year_durations=part_year,
    )


def _check_ages(
    basis: ProjectionBasis,
    policies: np.ndarray[Any, Any],
    months: np.ndarray[Any, Any],
    n_steps: np.ndarray[Any, Any],
    ids: np.ndarray[Any, Any],
) -> None:
    """Every attained age a projected policy reaches must be in the mortality table."""
    active = n_steps > 0
    entry = policies["age"].astype(np.int64)
    first = entry + np.maximum(months, 0) // 12
    last = entry + (months + (n_steps - 1) * (12 // basis.steps_per_year)) // 12
    low = basis.mortality_age_min
    high = low + basis.mortality.shape[1] - 1
    # Name the first age the table misses: the entry age below it, or the one past its end.
    past_end = np.minimum(last, high + 1)
    for bad, ages in ((active & (first < low), first), (active & (last > high), past_end)):
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ConfigurationError(
                f"policy {int(ids[i])} (row {i + 1}) reaches age {int(ages[i])}, which the "
                f"mortality table (ages {low}-{high}) does not cover; extend the table"
            )
