"""The projection engine's config: pydantic models of every key, parsed once, every problem named.

``parse_config`` validates a config dict into ``ProjectionConfig`` and reports all problems at
once as ``config.<key>: ...`` (unknown nested keys with the block's known keys and a
suggestion); ``build_basis`` loads the tables it names into a ``ProjectionBasis``. Every key is
described in docs/engines/projection.md.
"""

from __future__ import annotations

import difflib
import math
import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from livecalc.assumptions.credentials import AMCredentials
from livecalc.assumptions.tables import (
    RateTable,
    default_lapse_path,
    default_mortality_path,
    load_mortality_table,
    load_rate_table,
)
from livecalc.engines._finite import PROJECTION_RANGES, check_ranges
from livecalc.engines._projection_premiums import (
    EquivalencePremium,
    GivenPremium,
    PremiumConfig,
    RateTablePremium,
)
from livecalc.errors import ConfigurationError
from livecalc.kernels.projection_basis import ClaimTiming, ProjectionBasis
from livecalc.kernels.projection_discount import Discounting

__all__ = [
    "MULTIPLIERS",
    "AuditConfig",
    "DiscountingConfig",
    "DynamicLapseConfig",
    "ExpensesConfig",
    "ProjectionConfig",
    "build_basis",
    "parse_config",
]

MULTIPLIERS = (
    "premium_multiplier",
    "mortality_multiplier",
    "lapse_multiplier",
    "expense_multiplier",
)
"""The parameters ``set_parameters`` accepts (the solver's overrides)."""

_DEFAULT_SURRENDER = [round(min(0.9, 0.03 * year), 2) for year in range(31)]

Rates = str | list[float]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ExpensesConfig(_Model):
    """Expense assumptions; amounts per policy, in the policies' currency."""

    acquisition: float = Field(200.0, ge=0)
    maintenance: float = Field(40.0, ge=0)
    inflation: float = Field(0.02, gt=-1)
    percent_of_premium: float = Field(0.02, ge=0)
    per_claim: float = Field(150.0, ge=0)
    acquisition_per: Literal["policy", "model_point"] = "policy"


class DiscountingConfig(_Model):
    """How the deterministic curve (or scenario) rates become discount factors."""

    convention: Literal["flat_forward", "step_spot", "curve_per_step"] = "flat_forward"
    compounding: Literal["annual", "continuous", "monthly"] = "annual"
    file: str | None = None


class DynamicLapseConfig(_Model):
    """Lapse factor ``clip(1 + sensitivity (rate - reference_rate), min_factor, max_factor)``."""

    reference_rate: float
    sensitivity: float
    min_factor: float = Field(0.5, ge=0)
    max_factor: float = Field(2.0, ge=0)


class AuditConfig(_Model):
    """Which policies' period-by-period cash flows to return, under which scenario."""

    policy_ids: list[int] = Field(min_length=1)
    scenario_id: int = 0


class ProjectionConfig(_Model):
    """The projection engine's config object."""

    mortality_table: str | None = None
    lapse_table: Rates | None = None
    commissions: Rates = [0.5, 0.05]
    surrender_values: Rates = _DEFAULT_SURRENDER
    underwriting_class_factors: list[float] = Field([1.0, 1.6, 2.5, 4.0], min_length=1)
    time_step: Literal["annual", "monthly"] = "annual"
    premium_frequency: Literal["annual", "monthly"] = "annual"
    claim_timing: Literal["start", "middle", "end"] = "end"
    rate_type: Literal["forward", "spot"] = "forward"
    discount_rate: float = Field(0.03, gt=-1)
    yield_curve: str | None = None
    expenses: ExpensesConfig = ExpensesConfig()
    dynamic_lapse: DynamicLapseConfig | None = None
    premium_multiplier: float = Field(1.0, ge=0)
    mortality_multiplier: float = Field(1.0, ge=0)
    lapse_multiplier: float = Field(1.0, ge=0)
    expense_multiplier: float = Field(1.0, ge=0)
    output: Literal[
        "npv", "detail", "scenario_totals", "policy_means", "detail_ext", "cashflows"
    ] = "npv"
    method: Literal["auto", "separable", "full"] = "auto"
    audit: AuditConfig | None = None
    discounting: DiscountingConfig = DiscountingConfig()
    premium: Annotated[PremiumConfig, Field(discriminator="method")] = GivenPremium()
    cashflow_scenarios: list[int] = []


def _model_at(loc: Sequence[Any]) -> type[BaseModel]:
    """The config model that holds the keys at ``loc`` (nested blocks such as expenses)."""
    model: type[BaseModel] = ProjectionConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            # A tagged union's member (pydantic puts the tag in the path).
            tagged = [m for m in _UNION_MEMBERS if _tag(m) == str(part)]
            if tagged:
                model = tagged[0]
                continue
            break
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            break
        model = nested[0]
    return model


_UNION_MEMBERS = (GivenPremium, EquivalencePremium, RateTablePremium)


def _tag(model: type[BaseModel]) -> str:
    """The ``method`` value that selects a member of a tagged union."""
    return str(typing.get_args(model.model_fields["method"].annotation)[0])


def parse_config(config: Mapping[str, Any]) -> ProjectionConfig:
    """The config as a ProjectionConfig; every problem is reported at once, by key."""
    try:
        cfg = ProjectionConfig.model_validate(dict(config))
    except ValidationError as exc:
        problems = []
        tags = {_tag(m) for m in _UNION_MEMBERS}
        for err in exc.errors():
            loc = [p for p in err["loc"] if not str(p).startswith("function-")]
            where = ".".join(str(p) for p in loc if str(p) not in tags)
            if err["type"] == "extra_forbidden":
                known = list(_model_at(loc[:-1]).model_fields)
                close = difflib.get_close_matches(str(loc[-1]), known, 1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(
                    f"config.{where}: unknown key{hint}; known keys here: {', '.join(known)}"
                )
            else:
                problems.append(f"config.{where}: {err['msg']}")
        raise ConfigurationError("; ".join(problems)) from None
    if cfg.premium_frequency == "monthly" and cfg.time_step == "annual":
        raise ConfigurationError(
            'config.premium_frequency: "monthly" premiums need "time_step": "monthly"'
        )
    if cfg.method == "separable" and cfg.dynamic_lapse is not None:
        raise ConfigurationError(
            'config.method: "separable" cannot be used with config.dynamic_lapse (cash flows '
            'then depend on the scenario); use "auto" or "full"'
        )
    _check_discounting(cfg)
    if cfg.cashflow_scenarios and cfg.output != "cashflows":
        raise ConfigurationError(
            'config.cashflow_scenarios: chosen scenarios are for "output": "cashflows"; set '
            "that output or drop the key"
        )
    if any(not (math.isfinite(f) and f >= 0) for f in cfg.underwriting_class_factors):
        raise ConfigurationError("config.underwriting_class_factors: factors must be >= 0")
    dyn = cfg.dynamic_lapse
    if dyn is not None and dyn.min_factor > dyn.max_factor:
        raise ConfigurationError(
            f"config.dynamic_lapse: min_factor {dyn.min_factor:g} is above max_factor "
            f"{dyn.max_factor:g}; give min_factor <= max_factor"
        )
    check_ranges(cfg, PROJECTION_RANGES)
    return cfg


def _check_discounting(cfg: ProjectionConfig) -> None:
    """The discounting block against the other keys (every conflict named by key)."""
    disc = cfg.discounting
    problems = []
    if disc.convention == "curve_per_step":
        if disc.file is None:
            problems.append(
                "config.discounting.file: curve_per_step needs a file of discount factors "
                "(columns step, discount_factor) or spot rates (step, rate) by time step"
            )
        if cfg.yield_curve is not None:
            problems.append(
                "config.yield_curve: curve_per_step takes its factors from "
                "config.discounting.file; drop config.yield_curve"
            )
        if cfg.claim_timing == "middle":
            problems.append(
                'config.claim_timing: "middle" needs factors at half steps, which '
                'curve_per_step does not interpolate; use "start" or "end"'
            )
    elif disc.file is not None:
        problems.append(
            'config.discounting.file: only "convention": "curve_per_step" reads a file of '
            "factors by step; give the curve in config.yield_curve"
        )
    explicit_forward = "rate_type" in cfg.model_fields_set and cfg.rate_type != "spot"
    if disc.convention == "step_spot" and explicit_forward:
        problems.append(
            'config.rate_type: step_spot reads rates as spot rates; drop "rate_type" or '
            'set it to "spot"'
        )
    if problems:
        raise ConfigurationError("; ".join(problems))


def _rates(
    value: Rates, key: str, credentials: AMCredentials | None, high: float = 1.0
) -> RateTable:
    if isinstance(value, list):
        return RateTable.from_values(value, f"config.{key}", high=high)
    return load_rate_table(value, credentials, key=f"config.{key}")


def build_basis(cfg: ProjectionConfig, credentials: AMCredentials | None) -> ProjectionBasis:
    """Load the tables a config names and gather every assumption in a ProjectionBasis."""
    mortality = load_mortality_table(
        cfg.mortality_table or default_mortality_path(), credentials, "config.mortality_table"
    )
    lapse = _rates(cfg.lapse_table or str(default_lapse_path()), "lapse_table", credentials)
    dyn = cfg.dynamic_lapse
    return ProjectionBasis(
        mortality=mortality.q,
        mortality_age_min=mortality.age_min,
        lapse=lapse.rates,
        commission=_rates(cfg.commissions, "commissions", credentials, high=10.0).rates,
        surrender=_rates(cfg.surrender_values, "surrender_values", credentials, 10.0).rates,
        class_factors=np.array(cfg.underwriting_class_factors),
        steps_per_year=12 if cfg.time_step == "monthly" else 1,
        premium_monthly=cfg.premium_frequency == "monthly",
        claim_timing=ClaimTiming[cfg.claim_timing.upper()],
        spot_rates=cfg.rate_type == "spot" or cfg.discounting.convention == "step_spot",
        acquisition=cfg.expenses.acquisition,
        maintenance=cfg.expenses.maintenance,
        inflation=cfg.expenses.inflation,
        percent_of_premium=cfg.expenses.percent_of_premium,
        per_claim=cfg.expenses.per_claim,
        dynamic_lapse=dyn is not None,
        dynamic_reference_rate=dyn.reference_rate if dyn else 0.0,
        dynamic_sensitivity=dyn.sensitivity if dyn else 0.0,
        dynamic_min_factor=dyn.min_factor if dyn else 0.0,
        dynamic_max_factor=dyn.max_factor if dyn else 1.0,
        acquisition_per_model_point=cfg.expenses.acquisition_per == "model_point",
        discounting=Discounting(cfg.discounting.convention),
        multipliers={name: float(getattr(cfg, name)) for name in MULTIPLIERS},
    )
