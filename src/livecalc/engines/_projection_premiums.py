"""Premiums from the model: the ``premium`` block of the projection config.

``{"method": "given"}`` keeps each POLICY record's annual premium. ``"equivalence"`` solves each
policy's premium per payment from ``(1 + loading) PV(covered outgo) = P x PV(premium
annuity)`` on the run's deterministic curve; ``"rate_table"`` looks an annual rate up by policy
attributes. Formulas: docs/engines/projection.md, "Premiums".
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from livecalc.assumptions.credentials import AMCredentials
from livecalc.assumptions.tables import read_table
from livecalc.errors import ConfigurationError
from livecalc.kernels.projection import COUNT, PREMIUM
from livecalc.kernels.projection_basis import ChunkInputs, OutputMode, ProjectionBasis
from livecalc.kernels.projection_run import project
from livecalc.kernels.projection_single import single_parts, single_pvs

__all__ = [
    "COVER",
    "EquivalencePremium",
    "GivenPremium",
    "PremiumConfig",
    "PremiumTable",
    "RateTablePremium",
    "equivalence_premiums",
    "round_premiums",
]

Float1D = np.ndarray[Any, np.dtype[np.float64]]

COVER = ("claims", "surrenders", "maturities", "expenses", "commissions")
"""Outgo an equivalence premium can cover."""

KEYS = {
    "age_at_entry": "age",
    "term": "term",
    "gender": "gender",
    "underwriting_class": "underwriting_class",
    "product_type": "product_type",
}
"""Policy attributes a premium-rate table can be keyed by, and their POLICY fields."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GivenPremium(_Model):
    """Each POLICY record's ``premium`` (annual; a twelfth per month with monthly premiums)."""

    method: Literal["given"] = "given"


class EquivalencePremium(_Model):
    """Premium per payment from the equivalence principle with a loading."""

    method: Literal["equivalence"]
    loading: float = Field(0.0, ge=0)
    cover: list[Literal["claims", "surrenders", "maturities", "expenses", "commissions"]] = Field(
        ["claims"], min_length=1
    )
    rounding: int | None = Field(2, ge=0, le=10)
    rounding_mode: Literal["half_up", "half_even"] = "half_up"


class RateTablePremium(_Model):
    """Annual premium rate per unit of sum assured (or per policy), looked up by attributes."""

    method: Literal["rate_table"]
    table: str
    keys: list[Literal["age_at_entry", "term", "gender", "underwriting_class", "product_type"]] = (
        Field(min_length=1)
    )
    per: Literal["sum_assured", "policy"] = "sum_assured"
    rounding: int | None = Field(2, ge=0, le=10)
    rounding_mode: Literal["half_up", "half_even"] = "half_up"


PremiumConfig = GivenPremium | EquivalencePremium | RateTablePremium


def round_premiums(values: Float1D, decimals: int | None, mode: str) -> Float1D:
    """Round to ``decimals`` places: halves up (``floor(x 10^d + 1/2)``) or to even, decided
    on the double ``x 10^d``; None leaves the values as they are."""
    if decimals is None:
        return values
    scale = 10.0**decimals
    scaled = values * scale
    whole = np.floor(scaled + 0.5) if mode == "half_up" else np.rint(scaled)
    return np.asarray(whole / scale)


class PremiumTable:
    """A premium-rate table: ``rate`` by the configured key columns."""

    def __init__(self, cfg: RateTablePremium, credentials: AMCredentials | None, key: str) -> None:
        table, label = read_table(cfg.table, credentials, key)
        names = list(table.column_names)
        missing = [c for c in [*cfg.keys, "rate"] if c not in names]
        if missing:
            raise ConfigurationError(
                f"{label}: missing columns {missing}; the table needs {[*cfg.keys, 'rate']} "
                f"(found {names})"
            )
        columns = [table.column(c).to_pylist() for c in [*cfg.keys, "rate"]]
        self.cfg = cfg
        self.label = label
        self.rates: dict[tuple[int, ...], float] = {}
        for row, values in enumerate(zip(*columns, strict=True), start=1):
            *keys, rate = values
            if any(v is None for v in values) or not math.isfinite(float(rate)) or rate < 0:
                raise ConfigurationError(
                    f"{label}: row {row}: every key and the rate must be given, rate >= 0"
                )
            k = tuple(int(v) for v in keys)
            if k in self.rates:
                raise ConfigurationError(f"{label}: row {row}: keys {k} appear twice")
            self.rates[k] = float(rate)

    def premiums(self, policies: np.ndarray[Any, Any], payments_per_year: int) -> Float1D:
        """Premium per payment of each policy: ``round(rate x base / payments per year)``.

        Raises:
            ConfigurationError: a policy's key combination is not in the table (named).
        """
        cols = [policies[KEYS[k]].astype(np.int64) for k in self.cfg.keys]
        out = np.empty(len(policies))
        for i in range(len(policies)):
            key = tuple(int(c[i]) for c in cols)
            rate = self.rates.get(key)
            if rate is None:
                shown = ", ".join(f"{k}={v}" for k, v in zip(self.cfg.keys, key, strict=True))
                raise ConfigurationError(
                    f"policy {int(policies['policy_id'][i])} (row {i + 1}): config.premium."
                    f"table {self.label} has no rate for {shown}; add that row to the table"
                )
            out[i] = rate
        base = policies["sum_assured"] if self.cfg.per == "sum_assured" else 1.0
        raw = out * base / payments_per_year
        return round_premiums(raw, self.cfg.rounding, self.cfg.rounding_mode)


def equivalence_premiums(
    cfg: EquivalencePremium,
    basis: ProjectionBasis,
    chunk: ChunkInputs,
    parts: Float1D | None = None,
) -> Float1D:
    """Premium per payment of each policy of a deterministic chunk (one scenario).

    Claims, surrenders and maturities do not depend on the premium, commissions are
    proportional to it, and expenses are fixed amounts plus ``percent_of_premium x
    expense_multiplier`` times the premium income: the present values at a unit premium give
    the equation's coefficients. ``parts`` are the single-scenario kernel's, when the caller
    has them already (without dynamic lapses they come from that kernel; with them, from the
    full kernel).

    Raises:
        ConfigurationError: a policy's loaded premium-related outgo reaches its premium (the
            equation has no positive solution).
    """
    n = chunk.n_policies
    pct = basis.percent_of_premium * basis.multipliers["expense_multiplier"]
    if not basis.dynamic_lapse:
        pv = single_pvs(single_parts(chunk, basis) if parts is None else parts, basis, np.ones(n))
        per_life = {
            "death_benefits": pv.death_benefits,
            "surrender_benefits": pv.surrender_benefits,
            "maturity_benefits": pv.maturity_benefits,
            "fixed_expenses": pv.fixed_expenses,
            "commissions": pv.commissions,
            "premium_income": pv.premium_income,
            "premium_annuity": pv.premium_annuity,
        }
    else:
        unit = dataclasses.replace(chunk, pol_float=chunk.pol_float.copy())
        unit.pol_float[:, PREMIUM] = 1.0
        # Present values per life: a record of no lives is priced as one life.
        count = np.where(chunk.pol_float[:, COUNT] > 0, chunk.pol_float[:, COUNT], 1.0)
        unit.pol_float[:, COUNT] = count
        out = np.zeros(n, dtype=OutputMode.DETAIL_EXT.dtype)
        project(unit, basis, OutputMode.DETAIL_EXT, out, separable=False)
        per_life = {name: out[name] / count for name in _PV_FIELDS}
        per_life["fixed_expenses"] = per_life["expenses"] - pct * per_life["premium_income"]
    income = per_life["premium_income"]
    fixed = np.zeros(n)
    slope = np.zeros(n)
    for item in cfg.cover:
        if item == "claims":
            fixed += per_life["death_benefits"]
        elif item == "surrenders":
            fixed += per_life["surrender_benefits"]
        elif item == "maturities":
            fixed += per_life["maturity_benefits"]
        elif item == "expenses":
            fixed += per_life["fixed_expenses"]
            slope += pct * income
        else:
            slope += per_life["commissions"]
    annuity = per_life["premium_annuity"]
    loaded = 1.0 + cfg.loading
    denominator = annuity - loaded * slope
    paying = annuity > 0.0
    bad = paying & ~(denominator > 0.0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigurationError(
            f"policy {int(chunk.policy_ids[i])} (row {i + 1}): config.premium: the loaded "
            "commissions and premium-related expenses take the whole premium; lower "
            "config.premium.loading or leave them out of config.premium.cover"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.where(paying, loaded * fixed / np.where(paying, denominator, 1.0), 0.0)
    return round_premiums(raw, cfg.rounding, cfg.rounding_mode)


_PV_FIELDS = (
    "premium_income",
    "death_benefits",
    "surrender_benefits",
    "expenses",
    "maturity_benefits",
    "commissions",
    "premium_annuity",
)
